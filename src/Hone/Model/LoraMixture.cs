using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Formats;
using Hone.Tensors;

namespace Hone.Model;

/// <summary>
/// The router of one layer of a LoRA mixture: logits z = h·Rᵀ from the layer's normed input h (the attention norm's
/// output, which q, k and v read), the top k experts of each row, their weights the softmax over the chosen logits
/// (MixLoRA's top-k routing). Every mixture adapter of the layer scales its experts' low-rank terms by these weights,
/// and adds ∂L/∂w to <see cref="WeightGradients"/> in backward; <see cref="Backward"/> then takes them to R and h.
/// Glossary: N rows, D hidden, E experts, k chosen per row.
/// </summary>
public sealed unsafe class LoraRouter : IDisposable
{
    readonly NativeBuffer _weight;       // R [E, D]
    NativeBuffer? _logits, _dense, _denseGradient; // [N, E] each
    int[] _chosen = [];                  // [N, k]
    float[] _chosenWeights = [];         // [N, k]
    int _capacity, _rows;

    public int Layer { get; }
    public int Experts { get; }
    public int TopK { get; }
    public int In { get; }
    public float* Weight => _weight.AsFloats;
    /// <summary>The last routing's logits [N, E] and dense weights [N, E] (0 for experts a row did not choose).</summary>
    public float* Logits => _logits!.AsFloats;
    public float* DenseWeights => _dense!.AsFloats;
    /// <summary>∂L/∂(dense weights) [N, E]: cleared by <see cref="Route"/>, added to by the layer's adapters in backward.</summary>
    public float* WeightGradients => _denseGradient!.AsFloats;
    public int Rows => _rows;
    public ReadOnlySpan<int> Chosen => _chosen.AsSpan(0, _rows * TopK);

    public LoraRouter(int layer, int experts, int topK, int inFeatures)
    {
        if (experts < 2) throw new ArgumentException($"a LoRA mixture needs at least 2 experts, got {experts}");
        if (topK < 1 || topK > experts) throw new ArgumentException($"top_k {topK} must be between 1 and the {experts} experts");
        Layer = layer; Experts = experts; TopK = topK; In = inFeatures;
        _weight = new NativeBuffer((long)experts * inFeatures * 4);
    }

    /// <summary>Standard normal rows times <paramref name="std"/> (seeded).</summary>
    public void Initialize(ulong seed, float std)
    {
        var rng = new Xoshiro256(seed);
        for (long i = 0; i < (long)Experts * In; i++)
        {
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            Weight[i] = (float)(std * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }

    void Reserve(int rows)
    {
        if (rows <= _capacity) return;
        int capacity = Math.Max(rows, 16);
        _logits?.Dispose(); _dense?.Dispose(); _denseGradient?.Dispose();
        _logits = new NativeBuffer((long)capacity * Experts * 4);
        _dense = new NativeBuffer((long)capacity * Experts * 4);
        _denseGradient = new NativeBuffer((long)capacity * Experts * 4);
        _chosen = new int[capacity * TopK];
        _chosenWeights = new float[capacity * TopK];
        _capacity = capacity;
    }

    /// <summary>Routes the rows of <paramref name="h"/> [N, D].</summary>
    public void Route(WorkerPool pool, float* h, int rows)
    {
        Reserve(rows);
        _rows = rows;
        Gemm.Multiply(pool, rows, Experts, In, h, In, false, Weight, In, GemmBLayout.NByK, Logits, Experts, false);
        ExpertRouting.Route(new ReadOnlySpan<float>(Logits, rows * Experts), rows, Experts, TopK, normalize: true, _chosen, _chosenWeights);
        new Span<float>(DenseWeights, rows * Experts).Clear();
        new Span<float>(WeightGradients, rows * Experts).Clear();
        for (int t = 0; t < rows; t++)
            for (int j = 0; j < TopK; j++) DenseWeights[(long)t * Experts + _chosen[t * TopK + j]] = _chosenWeights[t * TopK + j];
    }

    /// <summary>
    /// Backward of the routing given the adapters' ∂L/∂w (<see cref="WeightGradients"/>) and, when not null,
    /// <paramref name="auxGradient"/> [N, E] (the balancing loss's ∂/∂z): w = softmax of the chosen z, so
    /// ∂z_j = w_j(∂w_j − Σ_i w_i ∂w_i) on the chosen; then dR += ∂zᵀ·h (when <paramref name="gradient"/> is set) and
    /// dh += ∂z·R.
    /// </summary>
    public void Backward(WorkerPool pool, float* h, float* auxGradient, float* dh, float* gradient, float* dz)
    {
        int rows = _rows, e = Experts, k = TopK;
        if (auxGradient != null) new ReadOnlySpan<float>(auxGradient, rows * e).CopyTo(new Span<float>(dz, rows * e));
        else new Span<float>(dz, rows * e).Clear();
        for (int t = 0; t < rows; t++)
        {
            float* dw = WeightGradients + (long)t * e, row = dz + (long)t * e;
            float mixed = 0;
            for (int j = 0; j < k; j++) mixed += _chosenWeights[t * k + j] * dw[_chosen[t * k + j]];
            for (int j = 0; j < k; j++)
            {
                int expert = _chosen[t * k + j];
                row[expert] += _chosenWeights[t * k + j] * (dw[expert] - mixed);
            }
        }
        if (gradient != null) Gemm.Multiply(pool, e, In, rows, dz, e, true, h, In, GemmBLayout.KByN, gradient, In, true);
        Gemm.Multiply(pool, rows, In, e, dz, e, false, Weight, In, GemmBLayout.KByN, dh, In, true);
    }

    bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _weight.Dispose(); _logits?.Dispose(); _dense?.Dispose(); _denseGradient?.Dispose();
    }
}

/// <summary>
/// A mixture of LoRA experts on one projection W[out, in]: y = W·x + Σ_e w_e(x_row) · s_e · B_e·A_e·x, with the
/// weights w from the layer's <see cref="LoraRouter"/> (k of E nonzero per row). The experts are held as one LoRA of
/// rank R = Σ r_e — A = [A_0; A_1; …] [R, in], B = [B_0 B_1 …] [out, R] — whose low-rank columns are scaled per row by
/// s_e·w_e, so one pair of GEMMs computes all experts. Training updates the router (experts frozen, X-LoRA style) or
/// also A and B (MixLoRA style); each expert saves as a plain PEFT adapter (<see cref="LoraMixture"/>).
/// </summary>
public sealed unsafe class LoraMixtureAdapter : LoraAdapter
{
    readonly int[] _offsets;   // [E + 1] expert e's columns are [offsets[e], offsets[e + 1])
    readonly float[] _scales;  // [E]

    public override AdapterKind Kind => LoraMixture.Kind;
    public LoraRouter Router { get; }
    public int Experts => _scales.Length;
    public int ExpertRank(int e) => _offsets[e + 1] - _offsets[e];
    public int ExpertOffset(int e) => _offsets[e];
    public float ExpertScale(int e) => _scales[e];

    /// <param name="experts">each expert's adapter on this projection, or null when that expert does not adapt it</param>
    public LoraMixtureAdapter(string target, int inFeatures, int outFeatures, IReadOnlyList<LoraAdapter?> experts, LoraRouter router)
        : base(new AdapterShape(target, Math.Max(1, experts.Sum(e => e?.Rank ?? 0)), inFeatures, outFeatures, 1), 0)
    {
        Router = router;
        _offsets = new int[experts.Count + 1];
        _scales = new float[experts.Count];
        for (int e = 0; e < experts.Count; e++)
        {
            var x = experts[e];
            if (x != null && (x.In != inFeatures || x.Out != outFeatures)) throw new ArgumentException($"expert {e}'s adapter of {target} is [{x.Out}, {x.In}], not [{outFeatures}, {inFeatures}]");
            if (x != null && !x.IsAdditive || x is DoraAdapter) throw new ArgumentException($"expert {e} on {target} is a {x!.Kind} adapter; a LoRA mixture holds plain LoRA experts");
            _offsets[e + 1] = _offsets[e] + (x?.Rank ?? 0);
            _scales[e] = x?.Scale ?? 0;
            if (x == null) continue;
            Buffer.MemoryCopy(x.A, A + (long)_offsets[e] * In, (long)x.Rank * In * 4, (long)x.Rank * In * 4);
            for (int o = 0; o < Out; o++)
                Buffer.MemoryCopy(x.B + (long)o * x.Rank, B + (long)o * Rank + _offsets[e], x.Rank * 4, x.Rank * 4);
        }
        if (_offsets[^1] == 0) throw new ArgumentException($"no expert adapts {target}");
    }

    /// <summary>Expert <paramref name="e"/>'s own adapter (its A rows and B columns), or null when it has none here.</summary>
    public LoraAdapter? ExtractExpert(int e, float alpha, bool rsLora)
    {
        int r = ExpertRank(e);
        if (r == 0) return null;
        var x = new LoraAdapter(Target, r, In, Out, alpha, rsLora);
        Buffer.MemoryCopy(A + (long)_offsets[e] * In, x.A, (long)r * In * 4, (long)r * In * 4);
        for (int o = 0; o < Out; o++)
            Buffer.MemoryCopy(B + (long)o * Rank + _offsets[e], x.B + (long)o * r, r * 4, r * 4);
        return x;
    }

    /// <summary>work[N, R] = xa ⊙ (s_e · w_e) column group by column group, with the router's weights of each row
    /// (rows <paramref name="firstRow"/>.. of the routed ones).</summary>
    void ScaleColumns(float* xa, float* work, int rows, int firstRow = 0)
    {
        float* weights = Router.DenseWeights + (long)firstRow * Experts;
        int r = Rank, e = Experts;
        for (int t = 0; t < rows; t++)
        {
            float* src = xa + (long)t * r, dst = work + (long)t * r, w = weights + (long)t * e;
            for (int x = 0; x < e; x++)
            {
                float s = _scales[x] * w[x];
                for (int i = _offsets[x]; i < _offsets[x + 1]; i++) dst[i] = src[i] * s;
            }
        }
    }

    void RequireRouted(int rows, int firstRow = 0)
    {
        if (Router.Rows < firstRow + rows)
            throw new InvalidOperationException($"the router of layer {Router.Layer} routed {Router.Rows} rows, the projection {Target} runs rows {firstRow}..{firstRow + rows - 1}");
    }

    public override void Apply(WorkerPool pool, WeightMatrix weight, float* x, int tokens, int ldx, float* y, int ldy) =>
        ApplyRows(pool, weight, x, 0, tokens, ldx, y, ldy);

    /// <summary>Rows <paramref name="firstRow"/>.. of a batched step, whose router routed every row of the step.</summary>
    public override void ApplyRows(WorkerPool pool, WeightMatrix weight, float* x, int firstRow, int tokens, int ldx, float* y, int ldy)
    {
        RequireRouted(tokens, firstRow);
        if (_scratchRows < tokens) { _applyScratch?.Dispose(); _applyScratch = new NativeBuffer(2L * Math.Max(tokens, 16) * Rank * 4); _scratchRows = Math.Max(tokens, 16); }
        float* xa = _applyScratch!.AsFloats, work = xa + (long)tokens * Rank;
        Gemm.Multiply(pool, tokens, Rank, In, x, ldx, false, A, In, GemmBLayout.NByK, xa, Rank, false);
        ScaleColumns(xa, work, tokens, firstRow);
        Gemm.Multiply(pool, tokens, Out, Rank, work, Rank, false, B, Rank, GemmBLayout.NByK, y, ldy, true);
    }

    NativeBuffer? _applyScratch;
    int _scratchRows;

    /// <summary>Also releases the layer's router (shared by the layer's mixture adapters; releasing it twice is safe).</summary>
    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) { Router.Dispose(); _applyScratch?.Dispose(); }
    }

    public override float[] MergedDelta(WeightMatrix weight) =>
        throw new NotSupportedException($"{Describe()}: a LoRA mixture's weights depend on each token's routing; it cannot be folded into the weights");

    public override void TrainingForward(in AdapterPass pass, WeightMatrix w, float* bias, float* x, float* y, bool accumulate, nint[] saved)
    {
        int n = pass.Rows;
        RequireRouted(n);
        float* xa = (float*)saved[0];
        float* xin = pass.Dropout.Apply(Target, x, (long)n * In);
        Gemm.Multiply(pass.Pool, n, Rank, In, xin, In, false, A, In, GemmBLayout.NByK, xa, Rank, false);
        ScaleColumns(xa, pass.Work, n);
        Linear.Forward(pass.Pool, w, bias, x, n, w.Cols, y, w.Rows, accumulate,
            lowRank: new Gemm.LowRankTerm((nint)pass.Work, Rank, (nint)B, Rank, Rank));
    }

    /// <summary>Backward given g = ∂L/∂y [N, out]: with c = xa ⊙ sw (the scaled columns) and u = g·B [N, R]:
    /// dB += gᵀ·c; ∂w_e += s_e Σ_{i∈e} u_i·xa_i (to the router); dA += (u ⊙ sw)ᵀ·drop(x); dx (+)= g·W + drop'((u ⊙ sw)·A).
    /// Frozen experts (null gradients) skip dA and dB.</summary>
    public override void TrainingBackward(in AdapterPass pass, WeightMatrix w, float* x, float* g, float* dx, bool accumulateDx, nint[] saved, nint[] gradients)
    {
        int n = pass.Rows, r = Rank, e = Experts;
        RequireRouted(n);
        float* xa = (float*)saved[0], work = pass.Work, dw = Router.WeightGradients;
        float* gradientA = (float*)gradients[0], gradientB = (float*)gradients[1];
        if (gradientB != null)
        {
            ScaleColumns(xa, work, n);
            Gemm.Multiply(pass.Pool, w.Rows, r, n, g, w.Rows, true, work, r, GemmBLayout.KByN, gradientB, r, true);
        }
        Gemm.Multiply(pass.Pool, n, r, w.Rows, g, w.Rows, false, B, r, GemmBLayout.KByN, work, r, false);
        for (int t = 0; t < n; t++)
        {
            float* u = work + (long)t * r, a = xa + (long)t * r;
            for (int x2 = 0; x2 < e; x2++)
            {
                float sum = 0;
                for (int i = _offsets[x2]; i < _offsets[x2 + 1]; i++) sum += u[i] * a[i];
                dw[(long)t * e + x2] += _scales[x2] * sum;
            }
        }
        ScaleColumns(work, work, n);
        float* xin = pass.Dropout.Apply(Target, x, (long)n * w.Cols);
        if (gradientA != null)
            Gemm.Multiply(pass.Pool, r, w.Cols, n, work, r, true, xin, w.Cols, GemmBLayout.KByN, gradientA, w.Cols, true);
        if (pass.Dropout.Active)
        {
            Gemm.MultiplyByWeights(pass.Pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx);
            float* ua = xin;
            Gemm.Multiply(pass.Pool, n, w.Cols, r, work, r, false, A, w.Cols, GemmBLayout.KByN, ua, w.Cols, false);
            pass.Dropout.AddMasked(Target, ua, dx, (long)n * w.Cols);
        }
        else
            Gemm.MultiplyByWeights(pass.Pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx,
                new Gemm.LowRankTerm((nint)work, r, (nint)A, w.Cols, r));
    }
}

/// <summary>One expert of a LoRA mixture: its name (its folder under experts/) and its PEFT settings.</summary>
public sealed record LoraMixtureExpert(string Name, PeftAdapterConfig Config);

/// <summary>
/// A mixture of LoRA experts over one base model: per projection a <see cref="LoraMixtureAdapter"/>, per layer a
/// <see cref="LoraRouter"/>. On disk (a directory):
/// <list type="bullet">
/// <item>lora_mixture.json — {"format": "hone-lora-mixture", "version": 1, "top_k": k, "router_input":
/// "input_layernorm", "experts": [{"name", "path"}], "base_model_name_or_path"};</item>
/// <item>router.safetensors — model.layers.L.lora_router.weight [E, D] for every routed layer;</item>
/// <item>experts/NAME/ — each expert a plain PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors) that
/// PEFT and `hone generate --adapter` load on their own.</item>
/// </list>
/// </summary>
public sealed unsafe class LoraMixture : IDisposable
{
    public const string Format = "hone-lora-mixture";
    public const int Version = 1;
    public const string ConfigFile = "lora_mixture.json";
    public const string RouterFile = "router.safetensors";

    public static AdapterKind Kind => AdapterKinds.LoraMixture;

    public IReadOnlyList<LoraMixtureExpert> Experts { get; }
    public int TopK { get; }
    public IReadOnlyDictionary<string, LoraMixtureAdapter> Adapters { get; }
    /// <summary>[L]: the router of each layer with mixture adapters, else null.</summary>
    public IReadOnlyList<LoraRouter?> Routers { get; }

    LoraMixture(IReadOnlyList<LoraMixtureExpert> experts, int topK, Dictionary<string, LoraMixtureAdapter> adapters, LoraRouter?[] routers)
    {
        Experts = experts; TopK = topK; Adapters = adapters; Routers = routers;
    }

    public static bool IsMixture(string directory) => Directory.Exists(directory) && File.Exists(Path.Combine(directory, ConfigFile));

    /// <summary>A mixture of the PEFT adapters in <paramref name="expertDirectories"/> (plain LoRA, one base), routers new
    /// (seeded, small: every expert starts near an equal share).</summary>
    public static LoraMixture Create(IReadOnlyList<string> expertDirectories, LlamaWeights weights, int topK, ulong seed)
    {
        if (expertDirectories.Count < 2) throw new ArgumentException($"a LoRA mixture needs at least 2 expert adapters, got {expertDirectories.Count}");
        if (weights.Config.IsMixtureOfExperts) throw new NotSupportedException("a LoRA mixture over a mixture-of-experts model is not supported");
        var names = new List<LoraMixtureExpert>();
        var loaded = new List<Dictionary<string, LoraAdapter>>();
        try
        {
            foreach (var dir in expertDirectories)
            {
                if (IsMixture(dir)) throw new ArgumentException($"{dir}: is a LoRA mixture; its experts are under {Path.Combine(dir, "experts")}");
                var config = PeftAdapter.ReadConfig(dir);
                if (config.Kind != AdapterKinds.Lora) throw new ArgumentException($"{dir}: a {config.Kind} adapter; a LoRA mixture holds plain LoRA experts");
                loaded.Add(PeftAdapter.Load(dir, weights));
                string name = Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/'));
                while (names.Any(n => n.Name == name)) name += "-" + names.Count;
                names.Add(new LoraMixtureExpert(name, config));
            }
            return Assemble(names, loaded, weights, topK, routers: null, seed);
        }
        finally { foreach (var set in loaded) foreach (var a in set.Values) a.Dispose(); }
    }

    static LoraMixture Assemble(List<LoraMixtureExpert> experts, List<Dictionary<string, LoraAdapter>> loaded, LlamaWeights weights, int topK,
        Dictionary<int, float[]>? routers, ulong seed)
    {
        var c = weights.Config;
        var matrices = weights.Matrices().ToDictionary(m => m.Name);
        var targets = loaded.SelectMany(set => set.Keys).Distinct().OrderBy(t => t, StringComparer.Ordinal).ToList();
        var layerRouters = new LoraRouter?[c.Layers];
        var adapters = new Dictionary<string, LoraMixtureAdapter>();
        try
        {
            foreach (var target in targets)
            {
                if (!TensorNames.TryParseGguf(target, out var p) || p.Layer < 0)
                    throw new ArgumentException($"{target}: a LoRA mixture routes per layer; its experts may adapt only layers' projections");
                var router = layerRouters[p.Layer];
                if (router == null)
                {
                    router = layerRouters[p.Layer] = new LoraRouter(p.Layer, experts.Count, topK, c.HiddenSize);
                    if (routers == null) router.Initialize(seed * 1_000_003UL + (ulong)p.Layer, 0.02f);
                    else if (routers.TryGetValue(p.Layer, out var values)) values.CopyTo(new Span<float>(router.Weight, values.Length));
                    else throw new ModelFormatException(RouterFile, $"holds no router for layer {p.Layer}, whose projections the experts adapt");
                }
                var w = matrices[target];
                adapters[target] = new LoraMixtureAdapter(target, w.Cols, w.Rows, loaded.Select(set => set.GetValueOrDefault(target)).ToList(), router);
            }
            return new LoraMixture(experts, topK, adapters, layerRouters);
        }
        catch
        {
            foreach (var a in adapters.Values) a.Dispose();
            foreach (var r in layerRouters) r?.Dispose();
            throw;
        }
    }

    /// <summary>Reads a mixture directory for a base model.</summary>
    public static LoraMixture Load(string directory, LlamaWeights weights)
    {
        string configPath = Path.Combine(directory, ConfigFile);
        JsonObject json;
        try { json = JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject ?? throw new ModelFormatException(configPath, "not a JSON object"); }
        catch (JsonException e) { throw new ModelFormatException(configPath, $"not valid JSON: {e.Message}"); }
        if (json["format"]?.GetValue<string>() != Format) throw new ModelFormatException(configPath, $"not a {Format} file", "format");
        int version = json["version"] is JsonValue v && v.TryGetValue(out int n) ? n : 0;
        if (version != Version) throw new ModelFormatException(configPath, $"version {version} is not supported (expected {Version})", "version");
        if (json["router_input"]?.GetValue<string>() != "input_layernorm")
            throw new ModelFormatException(configPath, $"router_input '{json["router_input"]}' is not supported (input_layernorm)", "router_input");
        int topK = json["top_k"] is JsonValue kv && kv.TryGetValue(out int k) ? k : throw new ModelFormatException(configPath, "is missing or not a whole number", "top_k");
        var entries = json["experts"] as JsonArray ?? throw new ModelFormatException(configPath, "is missing or not a list", "experts");
        var experts = new List<LoraMixtureExpert>();
        var loaded = new List<Dictionary<string, LoraAdapter>>();
        try
        {
            foreach (var entry in entries)
            {
                string name = entry?["name"]?.GetValue<string>() ?? throw new ModelFormatException(configPath, "an expert has no name", "experts");
                string path = entry["path"]?.GetValue<string>() ?? throw new ModelFormatException(configPath, $"expert '{name}' has no path", "experts");
                string full = Path.GetFullPath(Path.Combine(directory, path));
                if (!full.StartsWith(Path.GetFullPath(directory), StringComparison.Ordinal))
                    throw new ModelFormatException(configPath, $"expert '{name}' lies outside the mixture directory ({path})", "experts");
                var config = PeftAdapter.ReadConfig(full);
                if (config.Kind != AdapterKinds.Lora) throw new ModelFormatException(configPath, $"expert '{name}' is a {config.Kind} adapter; a mixture holds plain LoRA experts", "experts");
                loaded.Add(PeftAdapter.Load(full, weights));
                experts.Add(new LoraMixtureExpert(name, config));
            }
            if (experts.Count < 2) throw new ModelFormatException(configPath, $"{experts.Count} expert(s): a mixture needs at least 2", "experts");
            if (topK < 1 || topK > experts.Count) throw new ModelFormatException(configPath, $"{topK} is not between 1 and the {experts.Count} experts", "top_k");
            var routers = new Dictionary<int, float[]>();
            string routerPath = Path.Combine(directory, RouterFile);
            using (var st = SafetensorsFile.Open(routerPath))
                foreach (var t in st.Tensors)
                {
                    var m = System.Text.RegularExpressions.Regex.Match(t.Name, @"^model\.layers\.(\d+)\.lora_router\.weight$");
                    if (!m.Success || !int.TryParse(m.Groups[1].Value, out int layer) || layer >= weights.Config.Layers)
                        throw new ModelFormatException(routerPath, "is not a router of this model (model.layers.L.lora_router.weight)", $"tensor '{t.Name}'");
                    if (t.Type != TensorType.F32 || !t.Shape.SequenceEqual(new long[] { experts.Count, weights.Config.HiddenSize }))
                        throw new ModelFormatException(routerPath, $"is {t.DType} {string.Join("x", t.Shape)}, expected F32 {experts.Count}x{weights.Config.HiddenSize}", $"tensor '{t.Name}'");
                    var values = new float[experts.Count * weights.Config.HiddenSize];
                    unsafe { new ReadOnlySpan<float>(st.TensorData(t), values.Length).CopyTo(values); }
                    unsafe { fixed (float* pv = values) PeftAdapter.RequireFinite(routerPath, t.Name, pv, values.Length); }
                    routers[layer] = values;
                }
            var mixture = Assemble(experts, loaded, weights, topK, routers, 0);
            foreach (var a in mixture.Adapters.Values) a.Source = directory;
            return mixture;
        }
        finally { foreach (var set in loaded) foreach (var a in set.Values) a.Dispose(); }
    }

    /// <summary>Writes the mixture directory (through a temporary sibling, renamed when complete).</summary>
    public void Save(string directory, string? baseModel)
    {
        string full = Path.GetFullPath(directory);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            var list = new JsonArray();
            for (int e = 0; e < Experts.Count; e++)
            {
                var expert = Experts[e];
                var parts = Adapters.Values.Select(a => a.ExtractExpert(e, expert.Config.Alpha, expert.Config.UseRsLora)).OfType<LoraAdapter>().ToList();
                try
                {
                    PeftAdapter.Save(Path.Combine(temp, "experts", expert.Name), parts, expert.Config with { BaseModel = baseModel });
                }
                finally { foreach (var p in parts) p.Dispose(); }
                list.Add((JsonNode)new JsonObject { ["name"] = expert.Name, ["path"] = $"experts/{expert.Name}" });
            }
            var writer = new SafetensorsWriter();
            writer.SetMetadata("format", "pt");
            foreach (var router in Routers.OfType<LoraRouter>())
            {
                var r = router;
                writer.Add(new SafetensorsWriter.Tensor($"model.layers.{r.Layer}.lora_router.weight", TensorType.F32, [r.Experts, r.In],
                    s => { unsafe { s.Write(new ReadOnlySpan<byte>(r.Weight, r.Experts * r.In * 4)); } }));
            }
            writer.Write(Path.Combine(temp, RouterFile));
            var json = new JsonObject
            {
                ["format"] = Format, ["version"] = Version, ["top_k"] = TopK, ["router_input"] = "input_layernorm", ["experts"] = list,
                ["base_model_name_or_path"] = baseModel,
            };
            File.WriteAllText(Path.Combine(temp, ConfigFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(full))
            {
                // Replace only what a mixture writes; anything else in the output folder (metrics, checkpoints) stays.
                foreach (var name in new[] { ConfigFile, RouterFile }) File.Delete(Path.Combine(full, name));
                if (Directory.Exists(Path.Combine(full, "experts"))) Directory.Delete(Path.Combine(full, "experts"), true);
                foreach (var f in Directory.GetFiles(temp)) File.Move(f, Path.Combine(full, Path.GetFileName(f)));
                Directory.Move(Path.Combine(temp, "experts"), Path.Combine(full, "experts"));
                Directory.Delete(temp, true);
            }
            else Directory.Move(temp, full);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var a in Adapters.Values) a.Dispose();
        foreach (var r in Routers) r?.Dispose();
    }
}
