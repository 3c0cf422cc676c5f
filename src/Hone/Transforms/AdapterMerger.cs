using Hone.Model;
using Hone.Tensors;

namespace Hone.Transforms;

public sealed record MergeOptions(string Model, string Adapter, string Output, TensorType? Type = null, int Threads = 0, double Tolerance = 1e-3);

public sealed record MergeReport(string Output, int MergedProjections, double MaxLogitDifference, IReadOnlyList<string> Notes);

/// <summary>
/// Folds a LoRA/DoRA adapter into the base weights (W' = W + s·B·A, or DoRA's m·(W+s·B·A)/‖W+s·B·A‖), in fp32.
/// Refuses non-finite results, and checks that the merged model's logits equal the unmerged model-with-adapter's
/// before writing anything.
/// </summary>
public static unsafe class AdapterMerger
{
    public static MergeReport Merge(MergeOptions o, Action<string>? log = null)
    {
        log ??= _ => { };
        using var checkpoint = Checkpoint.Open(o.Model);
        using var pool = new WorkerPool(WorkerPool.ResolveThreadCount(o.Threads));
        using var baseWeights = LlamaWeights.Load(checkpoint);
        var adapters = PeftAdapter.Load(o.Adapter, baseWeights);
        try
        {
            log($"merging {adapters.Count} adapted projections in fp32...");
            using var merged = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
            var byName = merged.Matrices().ToDictionary(m => m.Name);
            var baseByName = baseWeights.Matrices().ToDictionary(m => m.Name);
            foreach (var (target, adapter) in adapters)
            {
                var w = byName[target];
                var delta = adapter.MergedDelta(baseByName[target]);
                float* data = (float*)w.Data;
                for (long i = 0; i < delta.LongLength; i++)
                {
                    float v = data[i] + delta[i];
                    if (!float.IsFinite(v))
                        throw new InvalidOperationException($"merging the adapter into {TensorNames.GgufToHuggingFace(target)} gives a non-finite value at element {i}; the adapter is broken");
                    data[i] = v;
                }
            }
            // Verify: base + adapters (applied at the Linear choke point) vs the merged weights.
            var c = baseWeights.Config;
            var tokens = Enumerable.Range(0, 24).Select(i => (i * 7919 + 11) % c.VocabSize).ToArray();
            var withAdapter = new float[tokens.Length * c.VocabSize];
            var withMerged = new float[tokens.Length * c.VocabSize];
            // Non-finite logits on either side are an error naming the layer (and adapter) where they start: a NaN
            // difference would otherwise compare as "within tolerance".
            using (var m = new LlamaModel(baseWeights, pool, maxContext: 32))
            {
                foreach (var (t, a) in adapters) m.Adapters[t] = a;
                m.Forward(tokens, withAdapter, allLogits: true);
                if (!withAdapter.All(float.IsFinite))
                    throw new InvalidOperationException($"{o.Adapter}: {m.DiagnoseNonFinite(tokens, "the base model's logits with the adapter").Message}; nothing was written");
            }
            using (var m = new LlamaModel(merged, pool, maxContext: 32))
            {
                m.Forward(tokens, withMerged, allLogits: true);
                if (!withMerged.All(float.IsFinite))
                    throw new InvalidOperationException($"{o.Adapter}: {m.DiagnoseNonFinite(tokens, "the merged model's logits").Message}; nothing was written");
            }
            double max = 0, scale = 1e-6;
            for (int i = 0; i < withAdapter.Length; i++)
            {
                max = Math.Max(max, Math.Abs(withAdapter[i] - withMerged[i]));
                scale = Math.Max(scale, Math.Abs(withAdapter[i]));
            }
            if (!(max <= o.Tolerance * Math.Max(1, scale))) // NaN-safe: a NaN difference fails
                throw new InvalidOperationException($"merged and unmerged logits differ by {max:G3} (tolerance {o.Tolerance * Math.Max(1, scale):G3}); nothing was written");
            var notes = new List<string> { $"verified: merged vs base+adapter logits differ by at most {max:G3}" };
            ModelConverter.Write(merged, checkpoint, o.Output, o.Type ?? TensorType.F32, notes, log);
            return new MergeReport(o.Output, adapters.Count, max, notes);
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
    }
}
