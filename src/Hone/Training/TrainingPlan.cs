using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>What trains: all weights, selected weights, or adapters over a frozen (possibly quantized) base.
/// Dora is the name users know for adapters of the DoRA kind (LLaMA-Factory's use_dora), QLora adapters over a
/// quantized base.</summary>
public enum TrainingMethod { Full, Freeze, Lora, Dora, QLora }

/// <summary>Adapter hyper-parameters (PEFT's names: r, lora_alpha, lora_dropout, target_modules, use_rslora).</summary>
/// <param name="Targets">module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or "all-linear"; in a
/// mixture of experts also experts (every routed expert's gate, up and down), shared_expert and router (all-linear
/// stands for attention and dense MLPs: adapting experts multiplies the adapter by the expert count, so it is asked for)</param>
/// <param name="Kind">a registered adapter kind (<see cref="AdapterKinds"/>); null: lora (dora with <see cref="TrainingMethod.Dora"/>)</param>
public sealed record AdapterSettings(int Rank = 8, float Alpha = 16, float Dropout = 0, IReadOnlyList<string>? Targets = null, bool RsLora = false,
    string? Kind = null)
{
    public static readonly string[] AllLinear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    /// <summary>The parts of a mixture of experts' sparse layers an adapter may sit on, by the target word that names them.</summary>
    public static readonly string[] MixtureParts = ["experts", "shared_expert", "router"];

    public IReadOnlyList<string> ResolvedTargets
    {
        get
        {
            var t = Targets ?? ["q_proj", "v_proj"];
            var resolved = new List<string>();
            foreach (var m in t)
            {
                if (m == "all-linear") resolved.AddRange(AllLinear);
                else if (AllLinear.Contains(m) || MixtureParts.Contains(m)) resolved.Add(m);
                else throw new ArgumentException($"unknown LoRA target module '{m}'; known: {string.Join(", ", AllLinear)}, all-linear, " +
                                                 $"and for a mixture of experts {string.Join(", ", MixtureParts)}");
            }
            return resolved.Distinct().ToList();
        }
    }
}

/// <summary>A mixture of LoRA experts to train: PEFT adapter directories of one base (plain LoRA), the experts each
/// token is routed to, and whether the experts train too (MixLoRA) or only the routers (X-LoRA).</summary>
public sealed record LoraMixtureSettings(IReadOnlyList<string> Experts, int TopK = 2, bool TrainExperts = false);

/// <summary>Which weights train with <see cref="TrainingMethod.Freeze"/>: the last N layers (first N when negative)
/// restricted to the listed modules (q_proj ... down_proj, self_attn, mlp, norm; empty = all), plus extras
/// (embed_tokens, lm_head, norm).</summary>
public sealed record FreezeSettings(int TrainableLayers = 2, IReadOnlyList<string>? Modules = null, IReadOnlyList<string>? Extra = null);

/// <param name="CheckpointActivations">keep only each layer's input and recompute the rest in backward</param>
/// <param name="RouterAuxLossCoef">mixture of experts: the load-balancing loss's coefficient (null: the checkpoint's
/// router_aux_loss_coef)</param>
/// <param name="RouterZLossCoef">mixture of experts: the router z-loss's coefficient</param>
/// <param name="Mixture">train a mixture of these LoRA experts (a router per layer) instead of one adapter</param>
/// <param name="ExpertChoiceCapacity">mixture of experts: 0 routes each token to its top k experts; c &gt; 0 lets each
/// expert take its ⌈N·c/E⌉ highest-scoring rows of the micro-batch instead (expert-choice routing, Zhou et al. 2022)</param>
public sealed record TrainingSetup(TrainingMethod Method, AdapterSettings? Adapter = null, FreezeSettings? Freeze = null,
    bool CheckpointActivations = false, ulong Seed = 1, double? RouterAuxLossCoef = null, double RouterZLossCoef = 0,
    LoraMixtureSettings? Mixture = null, double ExpertChoiceCapacity = 0)
{
    public bool UsesAdapters => Method is TrainingMethod.Lora or TrainingMethod.Dora or TrainingMethod.QLora;

    /// <summary>The kind of adapter that trains; null when weights train.</summary>
    public AdapterKind? AdapterKind
    {
        get
        {
            if (!UsesAdapters) return null;
            string? named = Adapter?.Kind;
            if (Method == TrainingMethod.Dora && named != null && named != AdapterKinds.Dora.Name)
                throw new ArgumentException($"method dora trains DoRA adapters, but the adapter kind is '{named}'; use method lora with that kind");
            return Method == TrainingMethod.Dora ? AdapterKinds.Dora : AdapterKinds.Get(named ?? AdapterKinds.Lora.Name);
        }
    }
}

/// <summary>
/// Planning: which tensors train and what is allocated for them. Weight methods train views of the base weights
/// (which must be f32); adapter methods create one adapter of the setup's kind per targeted projection, initialized
/// from the seed, and train its tensors.
/// </summary>
internal sealed unsafe class TrainingPlan
{
    public readonly record struct Entry(string Name, nint Value, int Rows, int Cols, bool WeightDecay);

    public List<Entry> Parameters { get; } = new();
    /// <summary>The adapters, by target ("blk.0.attn_q.weight"); the plan's owner disposes them.</summary>
    public Dictionary<string, LoraAdapter> Adapters { get; } = new();
    public AdapterKind? AdapterKind { get; }
    /// <summary>The LoRA mixture that trains (its adapters are <see cref="Adapters"/>), or null.</summary>
    public LoraMixture? Mixture { get; }

    readonly LlamaWeights _weights;
    readonly TrainingSetup _setup;

    public TrainingPlan(LlamaWeights weights, TrainingSetup setup)
    {
        _weights = weights; _setup = setup;
        AdapterKind = setup.AdapterKind;
        if (AdapterKind == null && weights.TokenEmbedding.Type != TensorType.F32)
            throw new ArgumentException($"{setup.Method} fine-tuning needs f32 weights; load the model with f32 matrices (it is {weights.TokenEmbedding.Type.Name()})");
        try
        {
            if (setup.Mixture is { } mixture)
            {
                if (setup.Method != TrainingMethod.Lora || AdapterKind != AdapterKinds.Lora)
                    throw new ArgumentException($"a LoRA mixture trains with method lora (experts are plain LoRA adapters), not {setup.Method.ToString().ToLowerInvariant()}");
                Mixture = LoraMixture.Create(mixture.Experts, weights, mixture.TopK, setup.Seed);
                AdapterKind = AdapterKinds.LoraMixture;
                foreach (var (target, adapter) in Mixture.Adapters)
                {
                    Adapters[target] = adapter;
                    if (mixture.TrainExperts)
                        foreach (var t in adapter.Tensors)
                            Parameters.Add(new Entry(target + ":" + t.Parameter, t.Data, t.Rows, t.Cols, t.WeightDecay));
                }
                foreach (var router in Mixture.Routers.OfType<LoraRouter>())
                    Parameters.Add(new Entry(RouterParameter(router.Layer), (nint)router.Weight, router.Experts, router.In, WeightDecay: false));
            }
            else if (AdapterKind != null) PlanAdapters(AdapterKind);
            else PlanWeights();
        }
        catch { foreach (var a in Adapters.Values) a.Dispose(); throw; }
    }

    /// <summary>The parameter name of layer <paramref name="layer"/>'s LoRA mixture router.</summary>
    public static string RouterParameter(int layer) => $"blk.{layer}.lora_router.weight";

    /// <summary>Gradient floats for all parameters, each rounded up to the arena's alignment.</summary>
    public long GradientFloats => Parameters.Sum(p => NativeBuffer.Align((long)p.Rows * p.Cols * 4) / 4 + 16);

    void PlanWeights()
    {
        var c = _weights.Config;
        bool full = _setup.Method == TrainingMethod.Full;
        var freeze = _setup.Freeze ?? new FreezeSettings();
        var modules = freeze.Modules ?? [];
        var extra = freeze.Extra ?? [];
        bool LayerTrains(int l) => full || (freeze.TrainableLayers >= 0 ? l >= c.Layers - freeze.TrainableLayers : l < -freeze.TrainableLayers);
        bool ModuleTrains(TensorRole role)
        {
            if (full || modules.Count == 0) return true;
            string? module = TensorNames.Module(role);
            bool attention = role is TensorRole.AttentionQuery or TensorRole.AttentionKey or TensorRole.AttentionValue or TensorRole.AttentionOutput
                or TensorRole.AttentionQueryNorm or TensorRole.AttentionKeyNorm;
            bool mlp = role is TensorRole.FeedForwardGate or TensorRole.FeedForwardUp or TensorRole.FeedForwardDown or TensorRole.ExpertRouter
                or TensorRole.ExpertGate or TensorRole.ExpertUp or TensorRole.ExpertDown or TensorRole.SharedExpertGate or TensorRole.SharedExpertUp
                or TensorRole.SharedExpertDown or TensorRole.SharedExpertRouter;
            bool norm = role is TensorRole.AttentionNorm or TensorRole.FeedForwardNorm;
            return (module != null && modules.Contains(module)) || (attention && modules.Contains("self_attn")) || (mlp && modules.Contains("mlp")) || (norm && modules.Contains("norm"));
        }
        var matrices = _weights.Matrices().ToDictionary(m => m.Name);
        foreach (var (role, layer, bias, rows, cols, expert) in LlamaWeights.Expected(c))
        {
            bool trains = role switch
            {
                TensorRole.TokenEmbedding => full || extra.Contains("embed_tokens") || (c.TiedEmbeddings && extra.Contains("lm_head")),
                TensorRole.Output => full || extra.Contains("lm_head"),
                TensorRole.OutputNorm => full || extra.Contains("norm"),
                _ => LayerTrains(layer) && ModuleTrains(role),
            };
            if (!trains) continue;
            string name = TensorNames.Gguf(role, layer, bias, expert);
            nint value = rows == 1 ? (nint)_weights.Vector(role, layer, bias) : (nint)matrices[name].Data;
            Parameters.Add(new Entry(name, value, rows, cols, rows > 1));
        }
        if (Parameters.Count == 0) throw new ArgumentException("the freeze settings leave nothing to train");
    }


    /// <summary>One adapter of the kind per targeted projection, in layer order (which seeds each one's initialization),
    /// and its tensors as parameters named target:tensor (blk.0.attn_q.weight:lora_A).</summary>
    void PlanAdapters(AdapterKind kind)
    {
        var s = _setup.Adapter ?? new AdapterSettings();
        var targets = s.ResolvedTargets;
        ulong index = 0;
        for (int l = 0; l < _weights.Config.Layers; l++)
            foreach (var w in LayerMatrices(_weights.Layers[l]))
            {
                var role = TensorNames.TryParseGguf(w.Name, out var parsed) ? parsed.Role : throw new InvalidOperationException(w.Name);
                if (!targets.Contains(TargetWord(role))) continue;
                var adapter = kind.Create(new AdapterShape(w.Name, s.Rank, w.Cols, w.Rows, s.Alpha, s.RsLora));
                Adapters[w.Name] = adapter;
                adapter.Initialize(_setup.Seed * 1_000_003UL + index++, w);
                foreach (var t in adapter.Tensors)
                    Parameters.Add(new Entry(w.Name + ":" + t.Parameter, t.Data, t.Rows, t.Cols, t.WeightDecay));
            }
        if (Adapters.Count == 0) throw new ArgumentException($"no projection matches the LoRA targets {string.Join(", ", targets)}");
        var unused = targets.Where(t => AdapterSettings.MixtureParts.Contains(t) && !Adapters.Keys.Any(a => TensorNames.TryParseGguf(a, out var p) && TargetWord(p.Role) == t)).ToList();
        if (unused.Count > 0)
            throw new ArgumentException($"the LoRA target{(unused.Count > 1 ? "s" : "")} {string.Join(", ", unused)} match{(unused.Count > 1 ? "" : "es")} nothing in this model " +
                                        (_weights.Config.IsMixtureOfExperts ? "(it has no shared expert)" : "(it is dense: experts, shared_expert and router are parts of a mixture of experts)"));
    }

    /// <summary>The target word that selects a projection of this role: its module name (q_proj ... down_proj), or
    /// experts, shared_expert or router for the parts of a sparse layer.</summary>
    public static string TargetWord(TensorRole role) => role switch
    {
        TensorRole.ExpertGate or TensorRole.ExpertUp or TensorRole.ExpertDown => "experts",
        TensorRole.SharedExpertGate or TensorRole.SharedExpertUp or TensorRole.SharedExpertDown => "shared_expert",
        TensorRole.ExpertRouter => "router",
        _ => TensorNames.Module(role)!,
    };

    /// <summary>The projections adapters may sit on: attention and a dense layer's MLP; in a sparse layer attention,
    /// the router, every expert's gate, up and down, and the shared expert's.</summary>
    public static IEnumerable<WeightMatrix> LayerMatrices(LayerWeights w)
    {
        if (!w.IsSparse) return [w.Query, w.Key, w.Value, w.AttentionOutput, w.Gate, w.Up, w.Down];
        var list = new List<WeightMatrix> { w.Query, w.Key, w.Value, w.AttentionOutput, w.Router! };
        for (int e = 0; e < w.ExpertGate!.Length; e++) { list.Add(w.ExpertGate[e]); list.Add(w.ExpertUp![e]); list.Add(w.ExpertDown![e]); }
        if (w.SharedGate != null) { list.Add(w.SharedGate); list.Add(w.SharedUp!); list.Add(w.SharedDown!); }
        return list;
    }
}
