using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>
/// Every activation and work buffer of a training step, for the largest batch, carved from one buffer: a sizing pass
/// adds up the requests, a carving pass hands them out (one allocation, all of it in 2 MiB pages; as separate
/// buffers the [N, D] ones, 2.4 MB at batch 4 × 256, kept their last partial 2 MiB in 4 KiB pages, and copies, norms
/// and attention over them ran 3–10× slower on a VM).
/// Per layer: the input XIn[N, D], the post-RoPE Q[N, H·Dh], K, V[N, Hkv·Dh], the attention LSE[B, H, T] and output
/// Att[N, H·Dh], the mid residual XMid[N, D], the MLP pre-activations Gate, Up[N, F], and what each adapter keeps
/// (<see cref="LoraAdapter.SavedWidths"/>). With checkpointing only XIn and XMid are per layer; the rest lives in one
/// shared slot, recomputed right before each layer's backward.
/// </summary>
internal sealed unsafe class TrainingActivations : IDisposable
{
    public sealed class Layer
    {
        public float* XIn, XMid, Q, K, V, Lse, Att, Gate, Up;
        /// <summary>What each adapter keeps from forward to backward, by target (in the shared slot, every layer's
        /// adapter on one module shares one entry).</summary>
        public readonly Dictionary<string, nint[]> AdapterSaved = new();

        public nint[] Saved(string target) => AdapterSaved[target];
    }

    public const int LossChunk = 256;

    NativeBuffer? _arena;
    long _arenaBytes, _arenaUsed;

    public Layer[] Layers { get; }
    /// <summary>The slot every layer's recomputable activations share with checkpointing; null without.</summary>
    public Layer? Shared { get; }
    public float* XFinal { get; }                     // XIn[L]: the residual after the last layer [N, D]
    public float* H { get; }                          // a norm's output [N, D]
    public float* GradX { get; }                      // ∂L/∂ residual [N, D]
    public float* GradH { get; }                      // ∂L/∂ a projection's input [N, widest]
    public float* GradQ { get; }
    public float* GradK { get; }
    public float* GradV { get; }
    public float* GradAtt { get; }
    public float* GradGate { get; }
    public float* GradUp { get; }
    public float* Act { get; }                        // SwiGLU(Gate, Up) [N, F]
    public float* AdapterWork { get; }                // [N, widest adapter WorkWidth], or null without adapters
    public float* Dropout { get; }                    // [N, widest] LoRA dropout output, when dropout is on
    public float* RecomputeOut { get; }               // [N, D] throwaway layer output when recomputing a checkpointed layer
    public float* Logits { get; }                     // [LossChunk, V]
    public long Bytes => _arena!.Length;

    public TrainingActivations(ModelConfig c, int maxRows, int maxSequence, bool checkpoint, IReadOnlyCollection<LoraAdapter> adapters, bool dropout)
    {
        Layers = new Layer[c.Layers];
        for (int pass = 0; pass < 2; pass++)
        {
            if (pass == 1) _arena = new NativeBuffer(_arenaBytes);
            long n = maxRows;
            int d = c.HiddenSize;
            for (int l = 0; l < c.Layers; l++)
            {
                var a = new Layer { XIn = Take(n * d), XMid = Take(n * d) };
                if (!checkpoint) TakeRecomputable(c, a, l, maxRows, maxSequence, adapters);
                Layers[l] = a;
            }
            if (checkpoint)
            {
                Shared = new Layer();
                TakeRecomputable(c, Shared, -1, maxRows, maxSequence, adapters);
            }
            XFinal = Take(n * d);
            int widest = Math.Max(d, Math.Max(c.QueryDim, c.IntermediateSize));
            H = Take(n * d); GradX = Take(n * d); GradH = Take(n * widest);
            GradQ = Take(n * c.QueryDim); GradK = Take(n * c.KvDim); GradV = Take(n * c.KvDim);
            GradAtt = Take(n * c.QueryDim); GradGate = Take(n * c.IntermediateSize); GradUp = Take(n * c.IntermediateSize);
            Act = Take(n * c.IntermediateSize);
            AdapterWork = adapters.Count > 0 ? Take(n * adapters.Max(a => a.WorkWidth)) : null;
            Dropout = dropout && adapters.Count > 0 ? Take(n * widest) : null;
            RecomputeOut = checkpoint ? Take(n * d) : null;
            Logits = Take((long)LossChunk * c.VocabSize);
        }
    }

    /// <summary>The next <paramref name="floats"/> of the arena (64-byte aligned); in the sizing pass, only counts them
    /// and returns null.</summary>
    float* Take(long floats)
    {
        long bytes = NativeBuffer.Align(floats * 4);
        if (_arena == null) { _arenaBytes += bytes; return null; }
        if (_arenaUsed + bytes > _arenaBytes) throw new InvalidOperationException("activation arena overrun: the sizing pass and the carving pass differ");
        float* p = (float*)(_arena.Pointer + _arenaUsed);
        _arenaUsed += bytes;
        return p;
    }

    void TakeRecomputable(ModelConfig c, Layer a, int layer, int maxRows, int maxSequence, IReadOnlyCollection<LoraAdapter> adapters)
    {
        long n = maxRows;
        a.Q = Take(n * c.QueryDim); a.K = Take(n * c.KvDim); a.V = Take(n * c.KvDim);
        a.Lse = Take((long)maxRows / Math.Max(1, maxSequence) * c.Heads * maxSequence);
        a.Att = Take(n * c.QueryDim); a.Gate = Take(n * c.IntermediateSize); a.Up = Take(n * c.IntermediateSize);
        var byModule = new Dictionary<string, nint[]>(); // the shared slot: one entry per module ("attn_q")
        foreach (var adapter in adapters)
        {
            if (layer >= 0 && !adapter.Target.StartsWith($"blk.{layer}.", StringComparison.Ordinal)) continue;
            string module = layer >= 0 ? adapter.Target : adapter.Target.Split('.')[2]; // blk.3.attn_q.weight → attn_q
            if (!byModule.TryGetValue(module, out var saved))
            {
                var widths = adapter.SavedWidths;
                saved = new nint[widths.Count];
                for (int i = 0; i < widths.Count; i++) saved[i] = (nint)Take(n * widths[i]);
                byModule[module] = saved;
            }
            a.AdapterSaved[adapter.Target] = saved;
        }
    }

    public void Dispose() => _arena?.Dispose();
}
