using System.Text.RegularExpressions;

namespace Hone.Model;

/// <summary>What a tensor is in a Llama-family model.</summary>
public enum TensorRole
{
    TokenEmbedding, OutputNorm, Output, RopeFrequencies,
    AttentionNorm, AttentionQuery, AttentionKey, AttentionValue, AttentionOutput,
    FeedForwardNorm, FeedForwardGate, FeedForwardUp, FeedForwardDown,
    /// <summary>A mixture-of-experts layer's router [E, D].</summary>
    ExpertRouter,
    /// <summary>One expert's gate, up and down projections ([Fe, D], [Fe, D], [D, Fe]); GGUF stacks the experts in one tensor.</summary>
    ExpertGate, ExpertUp, ExpertDown,
    /// <summary>The shared expert (Qwen2-MoE): gate, up, down ([Fs, D], [Fs, D], [D, Fs]) and its sigmoid gate [1, D].</summary>
    SharedExpertGate, SharedExpertUp, SharedExpertDown, SharedExpertRouter,
    /// <summary>QK-norm: RMSNorm weights of the queries and keys after their projection — per head [Dh] (Qwen3) or
    /// over the whole projection [H·Dh], [Hkv·Dh] (OLMoE).</summary>
    AttentionQueryNorm, AttentionKeyNorm,
    /// <summary>Hone's residual shortcuts (per-layer SliceGPT, <see cref="ModelConfig.ResidualShortcuts"/>): [D, D]
    /// matrices S that carry the residual stream from one basis into the next around the attention and the MLP block,
    /// residual' = residual·Sᵀ + block(x). No other runtime knows them.</summary>
    AttentionShortcut, FeedForwardShortcut,
}

/// <summary>
/// The one table of tensor names: Hugging Face ↔ GGUF, per role. "{0}" stands for the layer index, "{1}" for the expert.
/// Our own code uses the GGUF names ("blk.3.attn_q.weight") as canonical names; one expert of a stacked GGUF tensor is
/// "blk.3.ffn_gate_exps.5.weight".
/// </summary>
public static class TensorNames
{
    /// <param name="Module">the HF/PEFT module name (q_proj ...) for projections, used for adapter targets</param>
    /// <param name="Family">the Hugging Face model_type whose checkpoints use this row's Hugging Face name; null for all
    /// (a role with several rows has one per family)</param>
    public sealed record Row(TensorRole Role, bool PerLayer, string? HuggingFace, string Gguf, string? Module, string? Family = null)
    {
        public bool PerExpert => HuggingFace?.Contains("{1}") == true;
    }

    public static readonly IReadOnlyList<Row> Table =
    [
        new(TensorRole.TokenEmbedding, false, "model.embed_tokens", "token_embd", "embed_tokens"),
        new(TensorRole.OutputNorm, false, "model.norm", "output_norm", null),
        new(TensorRole.Output, false, "lm_head", "output", "lm_head"),
        new(TensorRole.RopeFrequencies, false, null, "rope_freqs", null),
        new(TensorRole.AttentionNorm, true, "model.layers.{0}.input_layernorm", "blk.{0}.attn_norm", null),
        new(TensorRole.AttentionQuery, true, "model.layers.{0}.self_attn.q_proj", "blk.{0}.attn_q", "q_proj"),
        new(TensorRole.AttentionKey, true, "model.layers.{0}.self_attn.k_proj", "blk.{0}.attn_k", "k_proj"),
        new(TensorRole.AttentionValue, true, "model.layers.{0}.self_attn.v_proj", "blk.{0}.attn_v", "v_proj"),
        new(TensorRole.AttentionOutput, true, "model.layers.{0}.self_attn.o_proj", "blk.{0}.attn_output", "o_proj"),
        new(TensorRole.AttentionQueryNorm, true, "model.layers.{0}.self_attn.q_norm", "blk.{0}.attn_q_norm", null),
        new(TensorRole.AttentionKeyNorm, true, "model.layers.{0}.self_attn.k_norm", "blk.{0}.attn_k_norm", null),
        new(TensorRole.FeedForwardNorm, true, "model.layers.{0}.post_attention_layernorm", "blk.{0}.ffn_norm", null),
        new(TensorRole.FeedForwardGate, true, "model.layers.{0}.mlp.gate_proj", "blk.{0}.ffn_gate", "gate_proj"),
        new(TensorRole.FeedForwardUp, true, "model.layers.{0}.mlp.up_proj", "blk.{0}.ffn_up", "up_proj"),
        new(TensorRole.FeedForwardDown, true, "model.layers.{0}.mlp.down_proj", "blk.{0}.ffn_down", "down_proj"),
        new(TensorRole.AttentionShortcut, true, "model.layers.{0}.attn_shortcut", "blk.{0}.attn_shortcut", null),
        new(TensorRole.FeedForwardShortcut, true, "model.layers.{0}.mlp_shortcut", "blk.{0}.ffn_shortcut", null),
        // Mixtral: block_sparse_moe with experts' w1 (gate), w3 (up), w2 (down).
        new(TensorRole.ExpertRouter, true, "model.layers.{0}.block_sparse_moe.gate", "blk.{0}.ffn_gate_inp", null, "mixtral"),
        new(TensorRole.ExpertGate, true, "model.layers.{0}.block_sparse_moe.experts.{1}.w1", "blk.{0}.ffn_gate_exps", null, "mixtral"),
        new(TensorRole.ExpertUp, true, "model.layers.{0}.block_sparse_moe.experts.{1}.w3", "blk.{0}.ffn_up_exps", null, "mixtral"),
        new(TensorRole.ExpertDown, true, "model.layers.{0}.block_sparse_moe.experts.{1}.w2", "blk.{0}.ffn_down_exps", null, "mixtral"),
        // Qwen2-MoE: mlp.gate routes, mlp.experts.N.*_proj, mlp.shared_expert.* with mlp.shared_expert_gate.
        new(TensorRole.ExpertRouter, true, "model.layers.{0}.mlp.gate", "blk.{0}.ffn_gate_inp", null, "qwen2_moe"),
        new(TensorRole.ExpertGate, true, "model.layers.{0}.mlp.experts.{1}.gate_proj", "blk.{0}.ffn_gate_exps", null, "qwen2_moe"),
        new(TensorRole.ExpertUp, true, "model.layers.{0}.mlp.experts.{1}.up_proj", "blk.{0}.ffn_up_exps", null, "qwen2_moe"),
        new(TensorRole.ExpertDown, true, "model.layers.{0}.mlp.experts.{1}.down_proj", "blk.{0}.ffn_down_exps", null, "qwen2_moe"),
        new(TensorRole.SharedExpertGate, true, "model.layers.{0}.mlp.shared_expert.gate_proj", "blk.{0}.ffn_gate_shexp", null, "qwen2_moe"),
        new(TensorRole.SharedExpertUp, true, "model.layers.{0}.mlp.shared_expert.up_proj", "blk.{0}.ffn_up_shexp", null, "qwen2_moe"),
        new(TensorRole.SharedExpertDown, true, "model.layers.{0}.mlp.shared_expert.down_proj", "blk.{0}.ffn_down_shexp", null, "qwen2_moe"),
        new(TensorRole.SharedExpertRouter, true, "model.layers.{0}.mlp.shared_expert_gate", "blk.{0}.ffn_gate_inp_shexp", null, "qwen2_moe"),
    ];

    /// <summary>HF tensors that carry no weights we need (buffers saved by old transformers versions).</summary>
    static readonly Regex IgnorableHuggingFace = new(@"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$", RegexOptions.Compiled);

    static readonly Dictionary<TensorRole, Row> ByRole = Table.GroupBy(r => r.Role).ToDictionary(g => g.Key, g => g.First());

    static string Pattern(string name) => Regex.Escape(name).Replace(@"\{0}", @"(?<layer>\d+)").Replace(@"\{1}", @"(?<expert>\d+)");

    static readonly (Regex Pattern, Row Row)[] HfPatterns = Table.Where(r => r.HuggingFace != null)
        .Select(r => (new Regex("^" + Pattern(r.HuggingFace!) + @"\.(?<kind>weight|bias)$", RegexOptions.Compiled), r)).ToArray();

    // One row per GGUF name; an expert's own name carries its index after the stacked tensor's name.
    static readonly (Regex Pattern, Row Row)[] GgufPatterns = Table.GroupBy(r => r.Gguf).Select(g => g.First())
        .Select(r => (new Regex("^" + Pattern(r.Gguf) + (r.PerExpert ? @"(\.(?<expert>\d+))?" : "") + @"\.(?<kind>weight|bias)$", RegexOptions.Compiled), r)).ToArray();

    /// <summary>The canonical (GGUF) name of a role's weight or bias; with <paramref name="expert"/> ≥ 0, that expert's
    /// slice of the stacked tensor.</summary>
    public static string Gguf(TensorRole role, int layer = -1, bool bias = false, int expert = -1) =>
        Format(ByRole[role].Gguf + (expert >= 0 ? "." + expert : ""), ByRole[role], layer, -1, bias);

    /// <summary>The Hugging Face name of a role's tensor in checkpoints of <paramref name="family"/> (model_type).</summary>
    public static string HuggingFace(TensorRole role, int layer = -1, bool bias = false, int expert = -1, string? family = null)
    {
        var row = RowFor(role, family);
        return Format(row.HuggingFace ?? throw new ArgumentException($"{role} has no Hugging Face name"), row, layer, expert, bias);
    }

    /// <summary>Qwen3-MoE and OLMoE name their routers and experts as Qwen2-MoE does (mlp.gate, mlp.experts.N.*_proj).</summary>
    static string? NamingFamily(string? family) => family is "qwen3_moe" or "olmoe" ? "qwen2_moe" : family;

    static Row RowFor(TensorRole role, string? family) =>
        NamingFamily(family) is not { } f ? ByRole[role] : Table.FirstOrDefault(r => r.Role == role && r.Family == f) ?? ByRole[role];

    public static string? Module(TensorRole role) => ByRole[role].Module;

    public static Row RowOf(TensorRole role) => ByRole[role];

    static string Format(string pattern, Row row, int layer, int expert, bool bias)
    {
        if (row.PerLayer && layer < 0) throw new ArgumentException($"{row.Role} needs a layer index");
        if (pattern.Contains("{1}") && expert < 0) throw new ArgumentException($"{row.Role} needs an expert index");
        return string.Format(pattern, layer, expert) + (bias ? ".bias" : ".weight");
    }

    /// <param name="Expert">the expert, or −1 (not an expert's tensor, or GGUF's stacked tensor of all of them)</param>
    public readonly record struct Parsed(TensorRole Role, int Layer, bool Bias, int Expert = -1);

    public static bool TryParseHuggingFace(string name, out Parsed parsed) => TryParse(HfPatterns, name, out parsed);
    public static bool TryParseGguf(string name, out Parsed parsed) => TryParse(GgufPatterns, name, out parsed);

    public static bool IsIgnorableHuggingFace(string name) => IgnorableHuggingFace.IsMatch(name);

    static bool TryParse((Regex Pattern, Row Row)[] patterns, string name, out Parsed parsed)
    {
        foreach (var (pattern, row) in patterns)
        {
            var m = pattern.Match(name);
            if (!m.Success) continue;
            int layer = -1, expert = -1;
            // An index beyond int is no tensor of ours (the caller reports the name as unexpected).
            if (m.Groups["layer"].Success && !int.TryParse(m.Groups["layer"].Value, out layer)) continue;
            if (m.Groups["expert"].Success && !int.TryParse(m.Groups["expert"].Value, out expert)) continue;
            parsed = new Parsed(row.Role, layer, m.Groups["kind"].Value == "bias", expert);
            return true;
        }
        parsed = default;
        return false;
    }

    public static string? HuggingFaceToGguf(string name) =>
        TryParseHuggingFace(name, out var p) ? Gguf(p.Role, p.Layer, p.Bias, p.Expert) : null;

    /// <param name="family">the model_type whose Hugging Face names to use (they differ for experts); null: the first</param>
    public static string? GgufToHuggingFace(string name, string? family = null) =>
        TryParseGguf(name, out var p) && RowFor(p.Role, family).HuggingFace is { } hf && (p.Expert >= 0 || !hf.Contains("{1}"))
            ? HuggingFace(p.Role, p.Layer, p.Bias, p.Expert, family) : null;
}
