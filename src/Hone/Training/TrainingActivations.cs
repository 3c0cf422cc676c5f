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
/// (<see cref="LoraAdapter.SavedWidths"/>). A mixture-of-experts layer keeps instead of Gate and Up each routed row's
/// expert pre-activations [N·k, Fe] (grouped by expert) and outputs ExpertOut[N·k, D], the shared expert's
/// SharedGate, SharedUp[N, Fs], SharedOut[N, D] and gate logit SharedLogit[N], and, always per layer (the auxiliary
/// losses read every layer's after the forward), its router logits RouterLogits[N, E], their auxiliary-loss gradient
/// AuxGradient[N, E] and the routing. With checkpointing only XIn, XMid and those are per layer; the rest lives in
/// one shared slot, recomputed right before each layer's backward.
/// </summary>
internal sealed unsafe class TrainingActivations : IDisposable
{
    public sealed class Layer
    {
        public float* XIn, XMid, Q, K, V, Lse, Att, Gate, Up;
        /// <summary>QK-norm: the projected queries and keys before their norm [N, H·Dh], [N, Hkv·Dh]; null without.</summary>
        public float* QPre, KPre;
        public float* ExpertOut, SharedGate, SharedUp, SharedOut, SharedLogit;
        public float* RouterLogits, AuxGradient;
        /// <summary>The routing of a sparse layer's rows (<see cref="Hone.Experts.ExpertRouting"/>): experts and weights
        /// [N, k], expert starts [E + 1] and the grouped order [N·k]; null for a dense layer.</summary>
        public int[]? RoutedExperts, ExpertStarts, RouteOrder;
        public float[]? RoutedWeights;
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
    public float* Act { get; }                        // SwiGLU(Gate, Up) [N, widest feed-forward]
    public float* ExpertIn { get; }                   // one expert's gathered input [N, D] (null for a dense model)
    public float* ExpertGradOut { get; }              // its rows of ∂L/∂output, times their routing weights [N, D]
    public float* ExpertGradIn { get; }               // ∂L/∂ its gathered input [N, D]
    public float* ExpertGradAct { get; }              // ∂L/∂ its SwiGLU output [N, widest feed-forward]
    public float* RouterGrad { get; }                 // ∂L/∂ router logits [N, E]
    public float[]? RouteGrad { get; }                // ∂L/∂ routing weights [N·k]
    public float* AdapterWork { get; }                // [N, widest adapter WorkWidth], or null without adapters
    public float* Dropout { get; }                    // [N, widest] LoRA dropout output, when dropout is on
    public float* RecomputeOut { get; }               // [N, D] throwaway layer output when recomputing a checkpointed layer
    public float* Logits { get; }                     // [LossChunk, V]
    public long Bytes => _arena!.Length;

    /// <summary>Routing slots per row: k under top-k routing; E under expert-choice routing, where slot e says whether
    /// expert e took the row.</summary>
    readonly int _slots;
    /// <summary>Routed rows a layer can run at most, for its experts' pre-activations and outputs: N·k under top-k
    /// routing; N·⌈c⌉ + E under expert-choice routing with capacity factor c (each expert takes ⌈N·c/E⌉ rows).</summary>
    readonly Func<long, long> _routedRows;

    /// <param name="expertChoiceCapacity">0: top-k routing; else expert-choice routing with this capacity factor</param>
    public TrainingActivations(ModelConfig c, int maxRows, int maxSequence, bool checkpoint, IReadOnlyCollection<LoraAdapter> adapters, bool dropout,
        double expertChoiceCapacity = 0)
    {
        _slots = expertChoiceCapacity > 0 ? c.Experts : c.ExpertsPerToken;
        _routedRows = expertChoiceCapacity > 0 ? n => n * (long)Math.Ceiling(expertChoiceCapacity) + c.Experts : n => n * c.ExpertsPerToken;
        Layers = new Layer[c.Layers];
        for (int pass = 0; pass < 2; pass++)
        {
            if (pass == 1) _arena = new NativeBuffer(_arenaBytes);
            long n = maxRows;
            int d = c.HiddenSize;
            for (int l = 0; l < c.Layers; l++)
            {
                var a = new Layer { XIn = Take(n * d), XMid = Take(n * d) };
                if (c.IsSparseLayer(l))
                {
                    a.RouterLogits = Take(n * c.Experts);
                    a.AuxGradient = Take(n * c.Experts);
                    if (pass == 1)
                    {
                        a.RoutedExperts = new int[n * _slots];
                        a.RoutedWeights = new float[n * _slots];
                        a.RouteOrder = new int[n * _slots];
                        a.ExpertStarts = new int[c.Experts + 1];
                    }
                }
                if (!checkpoint) TakeRecomputable(c, a, l, maxRows, maxSequence, adapters);
                Layers[l] = a;
            }
            if (checkpoint)
            {
                Shared = new Layer();
                TakeRecomputable(c, Shared, -1, maxRows, maxSequence, adapters);
            }
            XFinal = Take(n * d);
            int feedForward = c.FeedForwardWidth;
            int widest = Math.Max(d, Math.Max(c.QueryDim, feedForward));
            H = Take(n * d); GradX = Take(n * d); GradH = Take(n * widest);
            GradQ = Take(n * c.QueryDim); GradK = Take(n * c.KvDim); GradV = Take(n * c.KvDim);
            GradAtt = Take(n * c.QueryDim); GradGate = Take(n * feedForward); GradUp = Take(n * feedForward);
            Act = Take(n * feedForward);
            if (c.IsMixtureOfExperts)
            {
                ExpertIn = Take(n * d); ExpertGradOut = Take(n * d); ExpertGradIn = Take(n * d); ExpertGradAct = Take(n * feedForward);
                RouterGrad = Take(n * c.Experts);
                if (pass == 1) RouteGrad = new float[n * _slots];
            }
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

    /// <param name="layer">the layer, or −1 for the shared slot of checkpointing (sized for the largest layer)</param>
    void TakeRecomputable(ModelConfig c, Layer a, int layer, int maxRows, int maxSequence, IReadOnlyCollection<LoraAdapter> adapters)
    {
        long n = maxRows;
        bool anySparse = layer >= 0 ? c.IsSparseLayer(layer) : Enumerable.Range(0, c.Layers).Any(c.IsSparseLayer);
        bool anyDense = layer >= 0 ? !c.IsSparseLayer(layer) : !Enumerable.Range(0, c.Layers).All(c.IsSparseLayer);
        // Gate and Up: a dense layer's [N, F], or a sparse layer's routed rows [N·k, Fe].
        long gateFloats = Math.Max(anyDense ? n * c.IntermediateSize : 0, anySparse ? _routedRows(n) * c.ExpertFeedForwardSize : 0);
        a.Q = Take(n * c.QueryDim); a.K = Take(n * c.KvDim); a.V = Take(n * c.KvDim);
        a.Lse = Take((long)maxRows / Math.Max(1, maxSequence) * c.Heads * maxSequence);
        a.Att = Take(n * c.QueryDim); a.Gate = Take(gateFloats); a.Up = Take(gateFloats);
        if (c.QkNorm != QkNorm.None) { a.QPre = Take(n * c.QueryDim); a.KPre = Take(n * c.KvDim); }
        if (anySparse)
        {
            a.ExpertOut = Take(_routedRows(n) * c.HiddenSize);
            if (c.SharedExpertFeedForwardSize > 0)
            {
                a.SharedGate = Take(n * c.SharedExpertFeedForwardSize); a.SharedUp = Take(n * c.SharedExpertFeedForwardSize);
                a.SharedOut = Take(n * c.HiddenSize); a.SharedLogit = Take(n);
            }
        }
        var byModule = new Dictionary<string, nint[]>(); // the shared slot: one entry per module ("attn_q", "ffn_gate_exps.3")
        foreach (var adapter in adapters)
        {
            if (layer >= 0 && !adapter.Target.StartsWith($"blk.{layer}.", StringComparison.Ordinal)) continue;
            // blk.3.attn_q.weight → attn_q.weight; blk.3.ffn_gate_exps.5.weight → ffn_gate_exps.5.weight
            string module = layer >= 0 ? adapter.Target : adapter.Target[(adapter.Target.IndexOf('.', 4) + 1)..];
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
