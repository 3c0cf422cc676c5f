using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Merging;

/// <summary>How the routers of a built mixture are initialized (mergekit-moe's gate_mode).</summary>
public enum GateMode
{
    /// <summary>Each expert's row in layer l's router is the base model's residual stream entering layer l at the last
    /// token of the expert's positive prompts (averaged over prompts), minus the same for its negative prompts, scaled
    /// to unit length.</summary>
    Hidden,
    /// <summary>As <see cref="Hidden"/>, with the residual averaged over each prompt's tokens.</summary>
    HiddenAvg,
    /// <summary>The sum of the prompts' token embeddings (minus the negatives'), unit length, the same in every layer.</summary>
    CheapEmbed,
    /// <summary>Standard normal rows (seeded): for a mixture that will be trained.</summary>
    Random,
    /// <summary>Uniform in ±1/√D, torch.nn.Linear's initialization (seeded).</summary>
    UniformRandom,
}

/// <summary>One expert of a built mixture: the model whose MLPs it takes (optionally with a LoRA/DoRA adapter folded in
/// first: mergekit's "model+adapter"), its prompts for the router, and mergekit's per-expert options.</summary>
/// <param name="NoiseScale">adds N(0, scale²) noise to the expert's MLP weights (seeded)</param>
/// <param name="ResidualScale">multiplies the expert's down projection</param>
public sealed record ExpertSource(string Model, string? Adapter = null, IReadOnlyList<string>? PositivePrompts = null,
    IReadOnlyList<string>? NegativePrompts = null, double? NoiseScale = null, double? ResidualScale = null);

/// <param name="BaseModel">attention, norms, embeddings and head come from it; "hidden" routers run it</param>
/// <param name="AllowIdenticalExperts">build even when every expert is the same model (upcycling: train afterwards)</param>
public sealed record MixtureBuildOptions(string BaseModel, IReadOnlyList<ExpertSource> Experts, string Output, GateMode GateMode = GateMode.Hidden,
    int ExpertsPerToken = 2, TensorType? Type = null, int Threads = 0, ulong Seed = 0, bool AllowIdenticalExperts = false)
{
    /// <summary>mergekit-moe's configuration keys this reader knows.</summary>
    public static readonly string[] Keys = ["base_model", "experts", "gate_mode", "dtype", "experts_per_token", "shared_experts", "architecture"];
    public static readonly string[] ExpertKeys = ["source_model", "positive_prompts", "negative_prompts", "noise_scale", "residual_scale"];

    /// <summary>
    /// Options from a mergekit-moe YAML configuration: base_model, experts (source_model — "model+adapter" folds an
    /// adapter in —, positive_prompts, negative_prompts, noise_scale, residual_scale), gate_mode (hidden, hidden_avg,
    /// cheap_embed, random, uniform_random), dtype (float32, float16, bfloat16), experts_per_token (default 2).
    /// Relative paths are relative to the configuration's folder. shared_experts and architectures other than Mixtral are
    /// refused, as is any unknown key.
    /// </summary>
    public static MixtureBuildOptions FromConfig(ConfigNode root, string output)
    {
        var top = root.Mapping("the configuration", Keys);
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(root.Path)) ?? ".";
        string Resolve(string p) => System.IO.Path.IsPathRooted(p) || File.Exists(p) || Directory.Exists(p) ? p : System.IO.Path.Combine(folder, p);
        if (!top.TryGetValue("base_model", out var baseNode)) throw root.Error("base_model is required: the model whose attention, norms and embeddings the mixture takes");
        if (!top.TryGetValue("experts", out var expertsNode)) throw root.Error("experts is required: a list of source_model entries");
        if (top.TryGetValue("shared_experts", out var shared) && !shared.IsNull && shared.List("shared_experts").Count > 0)
            throw shared.Error("shared_experts make a Qwen-MoE or DeepSeek-MoE output, which `hone moe build` does not write yet; it writes Mixtral");
        if (top.TryGetValue("architecture", out var arch) && !arch.IsNull && !arch.Text("architecture").Equals("mixtral", StringComparison.OrdinalIgnoreCase))
            throw arch.Error($"architecture '{arch.Scalar}': `hone moe build` writes Mixtral (architecture: mixtral)");
        var gate = GateMode.Hidden;
        if (top.TryGetValue("gate_mode", out var gateNode))
            gate = gateNode.Text("gate_mode") switch
            {
                "hidden" or "hidden_last" => GateMode.Hidden,
                "hidden_avg" => GateMode.HiddenAvg,
                "cheap_embed" => GateMode.CheapEmbed,
                "random" => GateMode.Random,
                "uniform_random" => GateMode.UniformRandom,
                var other => throw gateNode.Error($"gate_mode '{other}' is not one of hidden, hidden_avg, cheap_embed, random, uniform_random"),
            };
        TensorType? type = null;
        if (top.TryGetValue("dtype", out var dtype) && !dtype.IsNull)
            type = dtype.Text("dtype") switch
            {
                "float32" or "fp32" => TensorType.F32,
                "float16" or "fp16" => TensorType.F16,
                "bfloat16" or "bf16" => TensorType.BF16,
                var other => throw dtype.Error($"dtype '{other}' is not one of float32, float16, bfloat16"),
            };
        int k = top.TryGetValue("experts_per_token", out var kNode) ? kNode.Integer("experts_per_token") : 2;
        var experts = new List<ExpertSource>();
        foreach (var item in expertsNode.List("experts"))
        {
            var e = item.Mapping("an expert", ExpertKeys);
            if (!e.TryGetValue("source_model", out var source)) throw item.Error("an expert needs source_model");
            string model = source.Text("source_model");
            string? adapter = null;
            int plus = model.IndexOf('+');
            if (plus > 0) { adapter = Resolve(model[(plus + 1)..]); model = model[..plus]; }
            experts.Add(new ExpertSource(Resolve(model), adapter,
                e.TryGetValue("positive_prompts", out var pos) ? pos.TextList("positive_prompts") : null,
                e.TryGetValue("negative_prompts", out var neg) ? neg.TextList("negative_prompts") : null,
                e.TryGetValue("noise_scale", out var noise) && !noise.IsNull ? noise.Number("noise_scale") : null,
                e.TryGetValue("residual_scale", out var residual) && !residual.IsNull ? residual.Number("residual_scale") : null));
        }
        return new MixtureBuildOptions(Resolve(baseNode.Text("base_model")), experts, output, gate, k, type);
    }
}

public sealed record MixtureBuildReport(string Output, string Format, int Experts, int ExpertsPerToken, long Parameters, long ActiveParameters,
    IReadOnlyList<string> Notes);

/// <summary>
/// Builds a Mixtral mixture of experts out of dense Llama/Mistral models of one shape (mergekit-moe): attention, norms,
/// embeddings and head from the base model; expert e of every layer is model e's MLP (gate, up, down as w1, w3, w2);
/// the routers come from <see cref="GateMode"/>. One expert model is held at a time, beside the output.
/// </summary>
public static unsafe class MixtureBuilder
{
    public static MixtureBuildReport Build(MixtureBuildOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        Validate(o);
        using var baseCheckpoint = Checkpoint.Open(o.BaseModel);
        var b = baseCheckpoint.Config;
        if (b.IsMixtureOfExperts) throw new ArgumentException($"{o.BaseModel}: the base model is already a mixture of experts ({b.Architecture}); a mixture is built from dense models");
        if (b.Architecture is not ("llama" or "mistral") || b.AttentionBias)
            throw new ArgumentException($"{o.BaseModel}: a {b.Architecture} model{(b.AttentionBias ? " with attention biases" : "")} cannot be the base of a Mixtral mixture; use a Llama or Mistral model");
        var notes = new List<string>();
        var config = b with
        {
            Architecture = "mixtral", Experts = o.Experts.Count, ExpertsPerToken = o.ExpertsPerToken, ExpertFeedForwardSize = b.IntermediateSize,
            NormalizeTopK = true, SparseStep = 1, DenseLayers = [], RouterAuxLossCoef = 0.001,
        };
        if ((config.Experts & (config.Experts - 1)) != 0)
            notes.Add($"{config.Experts} experts is not a power of two; llama.cpp loads it, some of its kernels are tuned for powers of two");
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(o.Threads));
        using var output = LlamaWeights.CreateRandom(config, TensorType.F32, 1);
        using (var baseWeights = LlamaWeights.Load(baseCheckpoint, new WeightLoadOptions(TensorType.F32)))
        {
            log($"base {o.BaseModel}: attention, norms, embeddings{(b.TiedEmbeddings ? "" : ", head")}");
            CopyShared(baseWeights, output);
            log($"routers: {o.GateMode}");
            var gates = GateVectors(o, baseCheckpoint, baseWeights, pool, notes);
            for (int l = 0; l < b.Layers; l++)
                new ReadOnlySpan<float>(gates, l * o.Experts.Count * b.HiddenSize, o.Experts.Count * b.HiddenSize)
                    .CopyTo(new Span<float>(output.Layers[l].Router!.Data, o.Experts.Count * b.HiddenSize));
        }
        var rng = new Xoshiro256(o.Seed * 0x9E3779B97F4A7C15UL + 17);
        for (int e = 0; e < o.Experts.Count; e++)
        {
            var source = o.Experts[e];
            log($"expert {e}: {source.Model}{(source.Adapter != null ? " + " + source.Adapter : "")}");
            using var checkpoint = Checkpoint.Open(source.Model);
            RequireSameShape(b, checkpoint.Config, o.BaseModel, source.Model);
            using var weights = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
            if (source.Adapter != null) FoldAdapter(source.Adapter, weights, notes, e);
            for (int l = 0; l < b.Layers; l++)
            {
                var from = weights.Layers[l];
                var to = output.Layers[l];
                Copy(from.Gate, to.ExpertGate![e], source.NoiseScale, 1, rng);
                Copy(from.Up, to.ExpertUp![e], source.NoiseScale, 1, rng);
                Copy(from.Down, to.ExpertDown![e], source.NoiseScale, source.ResidualScale ?? 1, rng);
            }
        }
        notes.Add($"{config.ParameterCount:N0} parameters, {config.ActiveParameterCount:N0} used per token ({o.ExpertsPerToken} of {o.Experts.Count} experts)");
        var (format, _, _) = ModelConverter.Write(output, baseCheckpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
        return new MixtureBuildReport(o.Output, format, o.Experts.Count, o.ExpertsPerToken, config.ParameterCount, config.ActiveParameterCount, notes);
    }

    /// <summary>The routers' rows [L, E, D] for the options' gate mode (see <see cref="GateMode"/>); notes layers whose
    /// rows are nearly parallel (condition number of the rows above 5, as mergekit warns).</summary>
    static float[] GateVectors(MixtureBuildOptions o, Checkpoint checkpoint, LlamaWeights weights, WorkerPool pool, List<string> notes)
    {
        var c = weights.Config;
        int layers = c.Layers, d = c.HiddenSize, experts = o.Experts.Count;
        var gates = new float[(long)layers * experts * d];
        var rng = new Xoshiro256(o.Seed * 0x9E3779B97F4A7C15UL + 5);
        if (o.GateMode == GateMode.Random)
        {
            for (long i = 0; i < gates.LongLength; i++) gates[i] = (float)Gaussian(rng);
            return gates;
        }
        if (o.GateMode == GateMode.UniformRandom)
        {
            double bound = 1 / Math.Sqrt(d);
            for (long i = 0; i < gates.LongLength; i++) gates[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            return gates;
        }
        var tokenizer = checkpoint.LoadTokenizer();
        int[] Ids(string prompt)
        {
            var ids = tokenizer.Encode(prompt, addSpecialTokens: false, parseSpecialTokens: true);
            if (tokenizer.BosId is int bos) ids = [bos, .. ids];
            if (ids.Length == 0) throw new ArgumentException($"the prompt \"{prompt}\" has no tokens");
            if (ids.Length > c.MaxPositions) throw new ArgumentException($"a prompt of {ids.Length} tokens is longer than the base model's context of {c.MaxPositions}");
            return ids;
        }
        var all = o.Experts.SelectMany(e => (e.PositivePrompts ?? []).Concat(e.NegativePrompts ?? [])).Select(Ids).ToList();
        using var model = o.GateMode == GateMode.CheapEmbed ? null : new LlamaModel(weights, pool, maxContext: all.Max(ids => ids.Length), maxBatch: 64);
        var buffer = new float[layers * d];
        var row = new float[d];
        // [L, D]: hidden — the per-layer residual at the prompt's last token (or its mean), averaged over the prompts;
        // cheap_embed — the sum of the prompts' token embeddings, unit length, in every layer.
        double[] Vectors(IReadOnlyList<string> prompts)
        {
            var sum = new double[layers * d];
            foreach (var prompt in prompts)
            {
                var ids = Ids(prompt);
                if (model == null)
                {
                    fixed (float* r = row)
                        foreach (int id in ids)
                        {
                            weights.TokenEmbedding.ReadRow(id, r);
                            for (int i = 0; i < d; i++) sum[i] += r[i];
                        }
                    continue;
                }
                model.Reset();
                model.ForwardLayerInputs(ids, buffer, average: o.GateMode == GateMode.HiddenAvg);
                for (int i = 0; i < sum.Length; i++) sum[i] += buffer[i] / prompts.Count;
            }
            if (model == null)
            {
                Normalize(sum.AsSpan(0, d));
                for (int l = 1; l < layers; l++) sum.AsSpan(0, d).CopyTo(sum.AsSpan(l * d, d));
            }
            return sum;
        }
        for (int e = 0; e < experts; e++)
        {
            var v = Vectors(o.Experts[e].PositivePrompts!);
            if (o.Experts[e].NegativePrompts is { Count: > 0 } negative)
            {
                var n = Vectors(negative);
                for (int i = 0; i < v.Length; i++) v[i] -= n[i];
            }
            for (int l = 0; l < layers; l++)
            {
                var layer = v.AsSpan(l * d, d);
                Normalize(layer);
                for (int i = 0; i < d; i++) gates[((long)l * experts + e) * d + i] = (float)layer[i];
            }
        }
        var degenerate = Enumerable.Range(0, layers).Where(l => ConditionNumber(gates.AsSpan(l * experts * d, experts * d), experts, d) > 5).ToList();
        if (degenerate.Count > 0)
            notes.Add($"{(degenerate.Count == layers ? "every layer has" : $"layer{(degenerate.Count > 1 ? "s" : "")} {string.Join(", ", degenerate)} {(degenerate.Count > 1 ? "have" : "has")}")} " +
                      "nearly parallel router rows (condition number above 5): the prompts may be too alike, and some experts will be little used");
        return gates;
    }

    static void Normalize(Span<double> v)
    {
        double norm = 0;
        foreach (double x in v) norm += x * x;
        norm = Math.Max(Math.Sqrt(norm), 1e-8);
        for (int i = 0; i < v.Length; i++) v[i] /= norm;
    }

    /// <summary>The condition number of the rows V [E, D] (E ≤ D): √(λmax/λmin) of the Gram matrix V·Vᵀ, its
    /// eigenvalues by Jacobi rotations.</summary>
    internal static double ConditionNumber(ReadOnlySpan<float> rows, int e, int d)
    {
        var g = new double[e, e];
        for (int i = 0; i < e; i++)
            for (int j = 0; j <= i; j++)
            {
                double s = 0;
                for (int k = 0; k < d; k++) s += (double)rows[i * d + k] * rows[j * d + k];
                g[i, j] = g[j, i] = s;
            }
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int i = 0; i < e; i++) for (int j = i + 1; j < e; j++) off += g[i, j] * g[i, j];
            if (off < 1e-30) break;
            for (int p = 0; p < e; p++)
                for (int q = p + 1; q < e; q++)
                {
                    if (Math.Abs(g[p, q]) < 1e-300) continue;
                    double theta = (g[q, q] - g[p, p]) / (2 * g[p, q]);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double cos = 1 / Math.Sqrt(t * t + 1), sin = t * cos;
                    for (int k = 0; k < e; k++)
                    {
                        double gkp = g[k, p], gkq = g[k, q];
                        g[k, p] = cos * gkp - sin * gkq; g[k, q] = sin * gkp + cos * gkq;
                    }
                    for (int k = 0; k < e; k++)
                    {
                        double gpk = g[p, k], gqk = g[q, k];
                        g[p, k] = cos * gpk - sin * gqk; g[q, k] = sin * gpk + cos * gqk;
                    }
                }
        }
        double max = 0, min = double.MaxValue;
        for (int i = 0; i < e; i++) { max = Math.Max(max, g[i, i]); min = Math.Min(min, g[i, i]); }
        return min <= 0 ? double.PositiveInfinity : Math.Sqrt(max / min);
    }

    static void Validate(MixtureBuildOptions o)
    {
        if (o.Experts.Count < 2) throw new ArgumentException($"a mixture needs at least 2 experts, the configuration has {o.Experts.Count}");
        if (o.ExpertsPerToken < 1 || o.ExpertsPerToken > o.Experts.Count)
            throw new ArgumentException($"experts_per_token {o.ExpertsPerToken} must be between 1 and the {o.Experts.Count} experts");
        if (o.Experts.Count > ModelConfig.MaxExperts) throw new ArgumentException($"{o.Experts.Count} experts is more than {ModelConfig.MaxExperts}");
        foreach (var e in o.Experts)
        {
            if (e.NoiseScale is double n && !(n >= 0)) throw new ArgumentException($"{e.Model}: noise_scale must be non-negative, got {n}");
            if (e.ResidualScale is double r && !double.IsFinite(r)) throw new ArgumentException($"{e.Model}: residual_scale must be a finite number");
        }
        if (o.GateMode is GateMode.Hidden or GateMode.HiddenAvg or GateMode.CheapEmbed)
        {
            for (int i = 0; i < o.Experts.Count; i++)
                if (o.Experts[i].PositivePrompts is not { Count: > 0 })
                    throw new ArgumentException($"expert {i} ({o.Experts[i].Model}) has no positive_prompts; gate_mode {Name(o.GateMode)} routes by them (or use gate_mode random)");
            string Prompts(ExpertSource e) => string.Join("\n", e.PositivePrompts!) + "\n--\n" + string.Join("\n", e.NegativePrompts ?? []);
            if (o.Experts.Select(Prompts).Distinct().Count() == 1)
                throw new ArgumentException("every expert has the same prompts: the routers could not tell them apart; give each expert prompts of what it should handle");
        }
        if (!o.AllowIdenticalExperts && o.Experts.Select(e => (System.IO.Path.GetFullPath(e.Model), e.Adapter == null ? null : System.IO.Path.GetFullPath(e.Adapter))).Distinct().Count() == 1)
            throw new ArgumentException("every expert is the same model: the mixture would give the same output at a higher cost; to upcycle a dense model and train it afterwards, allow identical experts (--allow-identical-experts)");
    }

    static string Name(GateMode m) => m switch
    {
        GateMode.HiddenAvg => "hidden_avg", GateMode.CheapEmbed => "cheap_embed", GateMode.UniformRandom => "uniform_random", _ => m.ToString().ToLowerInvariant(),
    };

    static void RequireSameShape(ModelConfig a, ModelConfig b, string basePath, string expertPath)
    {
        void Same<T>(T x, T y, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(x, y))
                throw new ArgumentException($"{expertPath}: {what} is {y}, the base model's ({basePath}) is {x}; experts must have the base's shape");
        }
        if (b.IsMixtureOfExperts) throw new ArgumentException($"{expertPath}: an expert is a dense model, not a mixture ({b.Architecture})");
        Same(a.HiddenSize, b.HiddenSize, "hidden_size");
        Same(a.IntermediateSize, b.IntermediateSize, "intermediate_size");
        Same(a.Layers, b.Layers, "num_hidden_layers");
        Same(a.VocabSize, b.VocabSize, "vocab_size");
    }

    /// <summary>Embeddings, head, norms and attention from the base.</summary>
    static void CopyShared(LlamaWeights from, LlamaWeights to)
    {
        var unused = new Xoshiro256(0);
        var source = from.Matrices().ToDictionary(m => m.Name);
        foreach (var m in to.Matrices())
            if (source.TryGetValue(m.Name, out var s)) Copy(s, m, null, 1, unused);
        var c = from.Config;
        foreach (var (role, layer, bias, rows, cols, _) in LlamaWeights.Expected(c))
            if (rows == 1)
                new ReadOnlySpan<float>(from.Vector(role, layer, bias), cols).CopyTo(new Span<float>(to.Vector(role, layer, bias), cols));
    }

    static void Copy(WeightMatrix from, WeightMatrix to, double? noise, double scale, Xoshiro256 rng)
    {
        if (from.Rows != to.Rows || from.Cols != to.Cols) throw new InvalidOperationException($"{from.Name} [{from.Rows}, {from.Cols}] does not fit {to.Name} [{to.Rows}, {to.Cols}]");
        long n = (long)from.Rows * from.Cols;
        float* src = (float*)from.Data, dst = (float*)to.Data;
        for (long i = 0; i < n; i++)
        {
            double v = src[i];
            if (noise is double s && s > 0) v += s * Gaussian(rng);
            dst[i] = (float)(v * scale);
        }
    }

    static double Gaussian(Xoshiro256 rng)
    {
        double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    static void FoldAdapter(string adapterPath, LlamaWeights weights, List<string> notes, int expert)
    {
        var adapters = PeftAdapter.Load(adapterPath, weights);
        try
        {
            var byName = weights.Matrices().ToDictionary(m => m.Name);
            int unused = 0;
            foreach (var (target, adapter) in adapters)
            {
                var w = byName[target];
                bool mlp = TensorNames.TryParseGguf(target, out var p) && p.Role is TensorRole.FeedForwardGate or TensorRole.FeedForwardUp or TensorRole.FeedForwardDown;
                if (!mlp) { unused++; continue; }
                var delta = adapter.MergedDelta(w);
                float* data = (float*)w.Data;
                for (long i = 0; i < delta.LongLength; i++)
                {
                    float v = data[i] + delta[i];
                    if (!float.IsFinite(v)) throw new InvalidOperationException($"{adapterPath}: folding the adapter into {TensorNames.GgufToHuggingFace(target)} gives a non-finite value");
                    data[i] = v;
                }
            }
            if (unused > 0)
                notes.Add($"expert {expert}: {unused} of the adapter's {adapters.Count} projections are outside the MLP (attention comes from the base model) and are not used");
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
    }
}
