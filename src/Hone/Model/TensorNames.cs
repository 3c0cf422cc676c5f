using System.Text.RegularExpressions;

namespace Hone.Model;

/// <summary>What a tensor is in a Llama-family model.</summary>
public enum TensorRole
{
    TokenEmbedding, OutputNorm, Output, RopeFrequencies,
    AttentionNorm, AttentionQuery, AttentionKey, AttentionValue, AttentionOutput,
    FeedForwardNorm, FeedForwardGate, FeedForwardUp, FeedForwardDown,
}

/// <summary>
/// The one table of tensor names: Hugging Face ↔ GGUF, per role. "{0}" stands for the layer index.
/// Our own code uses the GGUF names ("blk.3.attn_q.weight") as canonical names.
/// </summary>
public static class TensorNames
{
    /// <param name="Module">the HF/PEFT module name (q_proj ...) for projections, used for adapter targets</param>
    public sealed record Row(TensorRole Role, bool PerLayer, string? HuggingFace, string Gguf, string? Module);

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
        new(TensorRole.FeedForwardNorm, true, "model.layers.{0}.post_attention_layernorm", "blk.{0}.ffn_norm", null),
        new(TensorRole.FeedForwardGate, true, "model.layers.{0}.mlp.gate_proj", "blk.{0}.ffn_gate", "gate_proj"),
        new(TensorRole.FeedForwardUp, true, "model.layers.{0}.mlp.up_proj", "blk.{0}.ffn_up", "up_proj"),
        new(TensorRole.FeedForwardDown, true, "model.layers.{0}.mlp.down_proj", "blk.{0}.ffn_down", "down_proj"),
    ];

    /// <summary>HF tensors that carry no weights we need (buffers saved by old transformers versions).</summary>
    static readonly Regex IgnorableHuggingFace = new(@"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$", RegexOptions.Compiled);

    static readonly Dictionary<TensorRole, Row> ByRole = Table.ToDictionary(r => r.Role);

    static readonly (Regex Pattern, Row Row)[] HfPatterns = Table.Where(r => r.HuggingFace != null)
        .Select(r => (new Regex("^" + Regex.Escape(r.HuggingFace!).Replace(@"\{0}", @"(\d+)") + @"\.(weight|bias)$", RegexOptions.Compiled), r)).ToArray();

    static readonly (Regex Pattern, Row Row)[] GgufPatterns = Table
        .Select(r => (new Regex("^" + Regex.Escape(r.Gguf).Replace(@"\{0}", @"(\d+)") + @"\.(weight|bias)$", RegexOptions.Compiled), r)).ToArray();

    /// <summary>The canonical (GGUF) name of a role's weight or bias.</summary>
    public static string Gguf(TensorRole role, int layer = -1, bool bias = false) => Format(ByRole[role].Gguf, role, layer, bias);

    public static string HuggingFace(TensorRole role, int layer = -1, bool bias = false) =>
        Format(ByRole[role].HuggingFace ?? throw new ArgumentException($"{role} has no Hugging Face name"), role, layer, bias);

    public static string? Module(TensorRole role) => ByRole[role].Module;

    public static Row RowOf(TensorRole role) => ByRole[role];

    static string Format(string pattern, TensorRole role, int layer, bool bias)
    {
        if (ByRole[role].PerLayer && layer < 0) throw new ArgumentException($"{role} needs a layer index");
        return string.Format(pattern, layer) + (bias ? ".bias" : ".weight");
    }

    public readonly record struct Parsed(TensorRole Role, int Layer, bool Bias);

    public static bool TryParseHuggingFace(string name, out Parsed parsed) => TryParse(HfPatterns, name, out parsed);
    public static bool TryParseGguf(string name, out Parsed parsed) => TryParse(GgufPatterns, name, out parsed);

    public static bool IsIgnorableHuggingFace(string name) => IgnorableHuggingFace.IsMatch(name);

    static bool TryParse((Regex Pattern, Row Row)[] patterns, string name, out Parsed parsed)
    {
        foreach (var (pattern, row) in patterns)
        {
            var m = pattern.Match(name);
            if (!m.Success) continue;
            int layer = row.PerLayer ? int.Parse(m.Groups[1].Value) : -1;
            bool bias = m.Groups[row.PerLayer ? 2 : 1].Value == "bias";
            parsed = new Parsed(row.Role, layer, bias);
            return true;
        }
        parsed = default;
        return false;
    }

    public static string? HuggingFaceToGguf(string name) =>
        TryParseHuggingFace(name, out var p) ? Gguf(p.Role, p.Layer, p.Bias) : null;

    public static string? GgufToHuggingFace(string name) =>
        TryParseGguf(name, out var p) && ByRole[p.Role].HuggingFace != null ? HuggingFace(p.Role, p.Layer, p.Bias) : null;
}
