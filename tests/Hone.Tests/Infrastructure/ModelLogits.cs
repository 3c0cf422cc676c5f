using Hone.Model;
using Hone.Tensors;

namespace Hone.Tests.Infrastructure;

/// <summary>The logits of a checkpoint (optionally with an adapter) at every position of a token sequence.</summary>
public static class ModelLogits
{
    static readonly WorkerPool Pool = new(2);

    /// <returns>[T, V] row-major</returns>
    public static float[] Of(string model, int[] tokens, string? adapter = null)
    {
        using var c = Checkpoint.Open(model);
        using var w = LlamaWeights.Load(c);
        var adapters = adapter != null ? PeftAdapter.Load(adapter, w) : new Dictionary<string, LoraAdapter>();
        try
        {
            using var m = new LlamaModel(w, Pool, maxContext: 64);
            foreach (var (t, a) in adapters) m.Adapters[t] = a;
            var logits = new float[tokens.Length * c.Config.VocabSize];
            m.Forward(tokens, logits, allLogits: true);
            return logits;
        }
        finally { foreach (var a in adapters.Values) a.Dispose(); }
    }
}
