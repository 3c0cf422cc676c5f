using Hone.Formats;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Merging;

/// <summary>How LoRA adapters become one.</summary>
public enum AdapterCombination
{
    /// <summary>Each projection's ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ re-factored to the chosen rank by a truncated SVD (the best rank-r
    /// approximation; exact when r reaches ΔW's rank).</summary>
    Svd,
    /// <summary>The adapters' ranks stacked: A = [A₁; A₂; …], B = [w₁s₁B₁ | w₂s₂B₂ | …], exactly Σ wᵢ·sᵢ·Bᵢ·Aᵢ at rank Σ rᵢ.</summary>
    Concat,
}

/// <param name="Weights">one weight per adapter (null: 1 each)</param>
/// <param name="Rank">the output's rank for <see cref="AdapterCombination.Svd"/> (null: the largest input rank)</param>
public sealed record AdapterCombineOptions(IReadOnlyList<string> Adapters, string Output, IReadOnlyList<double>? Weights = null,
    AdapterCombination Combination = AdapterCombination.Svd, int? Rank = null);

/// <param name="RetainedEnergy">for SVD: the smallest share, over projections, of ‖ΔW‖²_F the kept singular values hold</param>
public sealed record AdapterCombineReport(string Output, int Projections, int Rank, double? RetainedEnergy, IReadOnlyList<string> Notes);

/// <summary>
/// Combines LoRA adapters (PEFT directories) of one base model into one plain LoRA adapter. The result is linear in the
/// adapters' deltas: ΔW = Σ wᵢ·sᵢ·Bᵢ·Aᵢ per projection (sᵢ = alpha/r, or alpha/√r with rsLoRA), never a product of one
/// adapter's B with another's A. The output has alpha = rank (scale 1) so B·A is ΔW itself. A projection only some
/// adapters adapt takes the others as zero. DoRA and other kinds are refused: their deltas are not linear in A and B.
/// </summary>
public static unsafe class AdapterCombiner
{
    const string Prefix = "base_model.model.";

    sealed record Factors(int Rank, int In, int Out, double Scale, float[] A, float[] B);

    public static AdapterCombineReport Combine(AdapterCombineOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        if (o.Adapters.Count < 1) throw new ArgumentException("no adapters to combine");
        var weights = o.Weights ?? o.Adapters.Select(_ => 1.0).ToList();
        if (weights.Count != o.Adapters.Count)
            throw new ArgumentException($"{weights.Count} weights for {o.Adapters.Count} adapters: give one weight per adapter");
        if (weights.Any(w => !double.IsFinite(w))) throw new ArgumentException("adapter weights must be finite numbers");
        if (o.Rank is int requested && requested < 1) throw new ArgumentException($"rank {requested} must be at least 1");
        foreach (var a in o.Adapters)
            if (System.IO.Path.GetFullPath(a).TrimEnd('/') == System.IO.Path.GetFullPath(o.Output).TrimEnd('/'))
                throw new ArgumentException($"the output {o.Output} would overwrite the adapter {a}");

        var adapters = o.Adapters.Select(Read).ToList();
        var configs = o.Adapters.Select(PeftAdapter.ReadConfig).ToList();
        var modules = adapters.SelectMany(a => a.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        foreach (var module in modules)
        {
            var present = adapters.Select((a, i) => (a.GetValueOrDefault(module), i)).Where(p => p.Item1 != null).ToList();
            var (first, firstIndex) = present[0];
            foreach (var (f, i) in present.Skip(1))
                if (f!.In != first!.In || f.Out != first.Out)
                    throw new ArgumentException($"{o.Adapters[i]}: {module} is [{f.Out}, {f.In}], in {o.Adapters[firstIndex]} [{first.Out}, {first.In}]; adapters of different models do not combine");
        }
        int rank = o.Combination == AdapterCombination.Concat ? adapters.Sum(a => a.Values.Max(f => f.Rank))
                 : o.Rank ?? adapters.Max(a => a.Values.Max(f => f.Rank));
        var notes = new List<string>();
        var combined = new List<LoraAdapter>();
        double? worstEnergy = null;
        try
        {
            foreach (var module in modules)
            {
                var parts = adapters.Select((a, i) => (Factors: a.GetValueOrDefault(module), Weight: weights[i])).Where(p => p.Factors != null).ToList();
                int inFeatures = parts[0].Factors!.In, outFeatures = parts[0].Factors!.Out;
                // The exact stacked factors: B_cat [out, R] with each adapter's weight and scale, A_cat [R, in].
                int total = parts.Sum(p => p.Factors!.Rank);
                var bCat = new double[outFeatures, total];
                var aCat = new double[total, inFeatures];
                int offset = 0;
                foreach (var (f, w) in parts)
                {
                    double c = w * f!.Scale;
                    for (int i = 0; i < outFeatures; i++)
                        for (int k = 0; k < f.Rank; k++) bCat[i, offset + k] = c * f.B[i * f.Rank + k];
                    for (int k = 0; k < f.Rank; k++)
                        for (int j = 0; j < inFeatures; j++) aCat[offset + k, j] = f.A[k * inFeatures + j];
                    offset += f.Rank;
                }
                double[,] newB, newA;
                if (o.Combination == AdapterCombination.Concat) { newB = Pad(bCat, outFeatures, rank, columns: true); newA = Pad(aCat, rank, inFeatures, columns: false); }
                else
                {
                    double[] singular;
                    (newB, newA, singular) = LowRankProduct.Truncate(bCat, aCat, rank);
                    double all = singular.Sum(x => x * x), kept = singular.Take(rank).Sum(x => x * x);
                    double share = all > 0 ? kept / all : 1;
                    worstEnergy = Math.Min(worstEnergy ?? 1, share);
                }
                string target = TensorNames.HuggingFaceToGguf(module + ".weight")!;
                var adapter = new LoraAdapter(target, rank, inFeatures, outFeatures, rank);
                combined.Add(adapter);
                for (int k = 0; k < rank; k++)
                    for (int j = 0; j < inFeatures; j++) adapter.A[(long)k * inFeatures + j] = (float)newA[k, j];
                for (int i = 0; i < outFeatures; i++)
                    for (int k = 0; k < rank; k++) adapter.B[(long)i * rank + k] = (float)newB[i, k];
            }
            log($"{o.Combination.ToString().ToLowerInvariant()}: {modules.Count} projections at rank {rank}");
            var targets = PeftTargets.Of(modules);
            var config = new PeftAdapterConfig(rank, rank, 0, targets, false, AdapterKinds.Lora, configs[0].BaseModel);
            string staged = AtomicFile.TemporarySibling(o.Output.TrimEnd('/', '\\'));
            try
            {
                PeftAdapter.Save(staged, combined, config);
                var output = System.IO.Path.GetFullPath(o.Output.TrimEnd('/', '\\'));
                if (Directory.Exists(output))
                {
                    if (Directory.EnumerateFileSystemEntries(output).Any(e => System.IO.Path.GetFileName(e) is not ("adapter_config.json" or "adapter_model.safetensors")))
                        throw new ArgumentException($"{o.Output} exists and holds other files; give a new or empty directory, or an adapter directory to replace");
                    Directory.Delete(output, recursive: true);
                }
                Directory.Move(staged, output);
            }
            catch
            {
                try { if (Directory.Exists(staged)) Directory.Delete(staged, recursive: true); } catch (IOException) { }
                throw;
            }
            if (configs.Select(c => c.BaseModel).Distinct().Count() > 1)
                notes.Add($"the adapters name different base models ({string.Join(", ", configs.Select(c => c.BaseModel ?? "none").Distinct())}); the output names the first's");
            return new AdapterCombineReport(o.Output, modules.Count, rank, worstEnergy, notes);
        }
        finally { foreach (var a in combined) a.Dispose(); }
    }

    static double[,] Pad(double[,] m, int rows, int cols, bool columns)
    {
        if (m.GetLength(0) == rows && m.GetLength(1) == cols) return m;
        var p = new double[rows, cols];
        for (int i = 0; i < m.GetLength(0); i++)
            for (int j = 0; j < m.GetLength(1); j++) p[i, j] = m[i, j];
        return p;
    }

    /// <summary>A PEFT LoRA directory's factors by module (model.layers.0.self_attn.q_proj), checked: plain LoRA, A and B
    /// for every module, shapes that chain, finite values.</summary>
    static Dictionary<string, Factors> Read(string directory)
    {
        var config = PeftAdapter.ReadConfig(directory);
        if (config.Kind != AdapterKinds.Lora)
            throw new ArgumentException($"{directory}: a {config.Kind} adapter; only plain LoRA adapters combine (a {config.Kind} delta is not linear in its factors): fold it into the model with hone merge-adapter");
        string file = System.IO.Path.Combine(directory, "adapter_model.safetensors");
        if (!File.Exists(file)) throw new ModelFormatException(directory, "adapter_model.safetensors is missing");
        using var st = SafetensorsFile.Open(file);
        var parts = new Dictionary<string, (SafetensorsTensorInfo? A, SafetensorsTensorInfo? B)>(StringComparer.Ordinal);
        foreach (var t in st.Tensors)
        {
            string name = t.Name.StartsWith(Prefix, StringComparison.Ordinal) ? t.Name[Prefix.Length..] : t.Name;
            bool isA = name.EndsWith(".lora_A.weight", StringComparison.Ordinal), isB = name.EndsWith(".lora_B.weight", StringComparison.Ordinal);
            if (!isA && !isB) throw new ModelFormatException(file, "is not a LoRA A or B tensor", $"tensor '{t.Name}'");
            string module = name[..^".lora_A.weight".Length];
            if (TensorNames.HuggingFaceToGguf(module + ".weight") is not string target || !TensorNames.TryParseGguf(target, out _))
                throw new ModelFormatException(file, "does not adapt a projection of a Llama-family model", $"tensor '{t.Name}'");
            var entry = parts.GetValueOrDefault(module);
            parts[module] = isA ? (t, entry.B) : (entry.A, t);
        }
        var result = new Dictionary<string, Factors>(StringComparer.Ordinal);
        foreach (var (module, (a, b)) in parts)
        {
            if (a == null || b == null) throw new ModelFormatException(file, "needs both lora_A and lora_B", $"adapter of '{module}'");
            if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != config.Rank || b.Shape[1] != config.Rank)
                throw new ModelFormatException(file, $"lora_A {Shape(a)} and lora_B {Shape(b)} do not have rank {config.Rank} (adapter_config.json's r)", $"adapter of '{module}'");
            if ((long)a.Shape[1] * config.Rank > Array.MaxLength || (long)b.Shape[0] * config.Rank > Array.MaxLength)
                throw new ModelFormatException(file, "is too large for an adapter", $"adapter of '{module}'");
            int inFeatures = (int)a.Shape[1], outFeatures = (int)b.Shape[0];
            double scale = config.UseRsLora ? config.Alpha / Math.Sqrt(config.Rank) : (double)config.Alpha / config.Rank;
            result[module] = new Factors(config.Rank, inFeatures, outFeatures, scale, Values(st, a), Values(st, b));
        }
        if (result.Count == 0) throw new ModelFormatException(file, "holds no LoRA tensors");
        return result;
    }

    static string Shape(SafetensorsTensorInfo t) => $"[{string.Join(", ", t.Shape)}]";

    static float[] Values(SafetensorsFile st, SafetensorsTensorInfo t)
    {
        if (t.Type is not (TensorType.F32 or TensorType.F16 or TensorType.BF16))
            throw new ModelFormatException(st.Path, $"dtype {t.DType} is not supported (F32, F16, BF16)", $"tensor '{t.Name}'");
        var values = new float[t.ElementCount];
        fixed (float* v = values)
        {
            WeightRows.DequantizeSegment(t.Type.Value, st.TensorData(t), 0, values.Length, v);
            PeftAdapter.RequireFinite(st.Path, t.Name, v, values.Length);
        }
        return values;
    }
}
