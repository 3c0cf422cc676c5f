using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms.Pruning;

/// <param name="Remove">how many layers to remove (the least influential); ignored when <paramref name="Layers"/> is given</param>
/// <param name="Layers">remove exactly these layers (0-based) instead of ranking</param>
/// <param name="Calibration">the text whose hidden states rank the layers (plain text, run in windows of
/// <paramref name="Context"/> tokens up to <paramref name="MaxTokens"/>)</param>
public sealed record LayerPruneOptions(string Model, string Calibration, string Output, int Remove = 1, IReadOnlyList<int>? Layers = null,
    int Context = 512, int MaxTokens = 16384, TensorType? Type = null, int Threads = 0);

/// <param name="Influence">[L] each layer's block influence on the calibration text</param>
/// <param name="Removed">the removed layers (original indices), in order</param>
public sealed record LayerPruneReport(string Output, int LayersBefore, int LayersAfter, IReadOnlyList<double> Influence, IReadOnlyList<int> Removed,
    long ParametersBefore, long ParametersAfter, int CalibrationTokens, IReadOnlyList<string> Notes)
{
    public string Protocol => "block influence (ShortGPT, Men et al. 2024): 1 − mean over calibration tokens of cos(residual entering the layer, residual leaving it); " +
                              "the layers with the lowest influence are removed";
}

/// <summary>
/// Depth pruning by block influence (ShortGPT): a calibration text runs through the model, and each layer's influence is
/// 1 − the mean cosine similarity between the residual stream entering it and leaving it, over every token (a layer
/// that barely turns the residual changes the model least when removed). The layers with the lowest influence are
/// dropped and the rest renumbered; the output is an ordinary checkpoint of the same family with fewer layers (a mixture
/// of experts keeps each layer's kind: its dense layers are listed in mlp_only_layers).
/// </summary>
public static unsafe class LayerPruner
{
    /// <summary>Each layer's block influence on the calibration text, and the tokens used.</summary>
    public static (double[] Influence, int Tokens) Influence(string model, string calibration, int context, int maxTokens, int threads)
    {
        using var run = new CalibrationRun(model, calibration, context, maxTokens, threads);
        var c = run.Config;
        var sums = new double[c.Layers];
        long rows = 0;
        var previous = new float[(long)run.MaxRows * c.HiddenSize]; // [T, D] the residual entering the layer before
        fixed (float* prev = previous)
        {
            float* p = prev;
            run.Run((layer, x, count, d) =>
            {
                if (layer > 0)
                {
                    double sum = 0;
                    for (int t = 0; t < count; t++) sum += 1 - Cosine(p + (long)t * d, x + (long)t * d, d);
                    sums[layer - 1] += sum;
                }
                if (layer == 0) rows += count;
                Buffer.MemoryCopy(x, p, (long)count * d * 4, (long)count * d * 4);
            });
        }
        return (sums.Select(s => s / rows).ToArray(), run.Tokens);
    }

    static double Cosine(float* a, float* b, int n)
    {
        double dot = 0, aa = 0, bb = 0;
        for (int i = 0; i < n; i++) { dot += (double)a[i] * b[i]; aa += (double)a[i] * a[i]; bb += (double)b[i] * b[i]; }
        return aa == 0 || bb == 0 ? 1 : dot / Math.Sqrt(aa * bb);
    }

    public static LayerPruneReport Prune(LayerPruneOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        ModelConfig c;
        using (var probe = Checkpoint.Open(o.Model)) c = probe.Config;
        if (c.ResidualShortcuts)
            throw new NotSupportedException($"{o.Model} has residual shortcuts (per-layer SliceGPT): removing a layer would break the chain of bases; prune layers before slicing");
        log($"ranking the {c.Layers} layers of {o.Model} by block influence on {o.Calibration}...");
        var (influence, tokens) = Influence(o.Model, o.Calibration, o.Context, o.MaxTokens, o.Threads);
        int[] removed;
        if (o.Layers is { Count: > 0 } chosen)
        {
            foreach (int l in chosen)
                if (l < 0 || l >= c.Layers) throw new ArgumentException($"--layers: layer {l} is outside the model's 0..{c.Layers - 1}");
            removed = chosen.Distinct().Order().ToArray();
        }
        else
        {
            if (o.Remove < 1 || o.Remove >= c.Layers) throw new ArgumentException($"--remove {o.Remove}: remove between 1 and {c.Layers - 1} of the {c.Layers} layers");
            removed = Enumerable.Range(0, c.Layers).OrderBy(l => influence[l]).ThenByDescending(l => l).Take(o.Remove).Order().ToArray();
        }
        if (removed.Length >= c.Layers) throw new ArgumentException("that removes every layer");
        var kept = Enumerable.Range(0, c.Layers).Where(l => !removed.Contains(l)).ToArray();
        var config = c with
        {
            Layers = kept.Length,
            SparseStep = 1,
            DenseLayers = c.IsMixtureOfExperts ? Enumerable.Range(0, kept.Length).Where(j => !c.IsSparseLayer(kept[j])).ToList() : [],
        };
        var notes = new List<string>
        {
            $"calibration: {tokens:N0} tokens of {Path.GetFileName(o.Calibration)}; removed layer{(removed.Length > 1 ? "s" : "")} " +
            string.Join(", ", removed.Select(l => $"{l} (influence {influence[l]:G3})")),
        };
        using (var checkpoint = Checkpoint.Open(o.Model))
        using (var source = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32)))
        using (var output = LlamaWeights.CreateRandom(config, TensorType.F32, 1))
        {
            var from = source.Matrices().ToDictionary(m => m.Name);
            foreach (var (role, layer, bias, rows, cols, expert) in LlamaWeights.Expected(config))
            {
                int old = layer < 0 ? layer : kept[layer];
                if (rows == 1)
                {
                    new ReadOnlySpan<float>(source.Vector(role, old, bias), cols).CopyTo(new Span<float>(output.Vector(role, layer, bias), cols));
                    continue;
                }
                var src = from[TensorNames.Gguf(role, old, bias, expert)];
                var dst = output.Matrices().First(m => m.Name == TensorNames.Gguf(role, layer, bias, expert));
                Buffer.MemoryCopy(src.Data, dst.Data, dst.ByteLength, src.ByteLength);
            }
            ModelConverter.Write(output, checkpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
        }
        return new LayerPruneReport(o.Output, c.Layers, kept.Length, influence, removed, c.ParameterCount, config.ParameterCount, tokens, notes);
    }
}
