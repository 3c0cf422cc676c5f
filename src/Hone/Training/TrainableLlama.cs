using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>
/// Forward and backward passes of a Llama-family model for training, written per layer and in exact reverse order.
/// Glossary: B sequences of T tokens, N = B·T rows, D hidden, F feed-forward, L layers, H heads, Hkv KV heads,
/// Dh head dim, V vocabulary, r adapter rank.
/// What trains comes from <see cref="TrainingPlan"/>, where activations live from <see cref="TrainingActivations"/>,
/// and an adapted projection's math from its adapter kind (<see cref="LoraAdapter"/> and the kinds derived from it).
/// Activation policy: each layer keeps its input, the post-RoPE Q, K, V, the attention LSE and output, the mid
/// residual, the MLP pre-activations and what its adapters keep; the norms' outputs and the SwiGLU product are
/// recomputed in backward (cheap, element-wise). With CheckpointActivations only XIn and XMid stay and a layer's
/// forward is recomputed right before its backward.
/// </summary>
public sealed unsafe class TrainableLlama : IDisposable
{
    readonly LlamaWeights _weights;
    readonly WorkerPool _pool;
    readonly TrainingSetup _setup;
    readonly Rope _rope;
    readonly GradientArena _gradients;
    readonly List<Parameter> _parameters = new();
    readonly Dictionary<string, Parameter> _byName = new();
    readonly Dictionary<string, LoraAdapter> _adapters;
    readonly Dictionary<string, AdapterSlot> _adapterSlots = new();
    readonly TrainingActivations _buffers;
    readonly LoraDropout _dropout;
    readonly int _maxRows, _maxSequence;
    int _rows, _batch, _sequence;
    int[] _tokens = [], _targets = [];

    /// <summary>An adapter with the base weight it adapts and its tensors' gradients (in <see cref="LoraAdapter.Tensors"/> order).</summary>
    sealed record AdapterSlot(LoraAdapter Adapter, WeightMatrix Weight, nint[] Gradients);

    public ModelConfig Config { get; }
    public IReadOnlyList<Parameter> Parameters => _parameters;
    public IReadOnlyDictionary<string, LoraAdapter> Adapters => _adapters;
    /// <summary>The kind of the adapters that train, or null when weights train.</summary>
    public AdapterKind? AdapterKind { get; }
    public LlamaWeights Weights => _weights;
    public TrainingSetup Setup => _setup;
    public long ActivationBytes => _buffers.Bytes;
    /// <summary>The micro-step counter that seeds LoRA dropout masks (set by the trainer, so resumes reproduce them).</summary>
    public long Step { get => _dropout.Step; set => _dropout.Step = value; }

    public TrainableLlama(LlamaWeights weights, WorkerPool pool, TrainingSetup setup, int maxBatch, int maxSequence)
    {
        _weights = weights; _pool = pool; _setup = setup; Config = weights.Config;
        var c = Config;
        _maxSequence = maxSequence;
        _maxRows = maxBatch * maxSequence;
        if (maxSequence > c.MaxPositions) throw new ArgumentException($"sequence length {maxSequence} exceeds the model's context {c.MaxPositions}");
        var plan = new TrainingPlan(weights, setup);
        _adapters = plan.Adapters;
        AdapterKind = plan.AdapterKind;
        try
        {
            _rope = new Rope(c.HeadDim, c.RotaryDims, maxSequence, c.RopeTheta, c.RopeLayout, c.RopeLinearFactor, c.RopeLlama3, weights.RopeFrequencyDivisors);
            _gradients = new GradientArena(plan.GradientFloats);
            foreach (var p in plan.Parameters)
            {
                var param = new Parameter(p.Name, p.Value, _gradients.Take((long)p.Rows * p.Cols), p.Rows, p.Cols, p.WeightDecay);
                _parameters.Add(param);
                _byName[p.Name] = param;
            }
            var matrices = weights.Matrices().ToDictionary(m => m.Name);
            foreach (var (target, adapter) in _adapters)
                _adapterSlots[target] = new AdapterSlot(adapter, matrices[target],
                    adapter.Tensors.Select(t => (nint)_byName[target + ":" + t.Parameter].Gradient).ToArray());
            float dropout = setup.Adapter?.Dropout ?? 0;
            _buffers = new TrainingActivations(c, _maxRows, maxSequence, setup.CheckpointActivations, _adapters.Values, dropout > 0);
            _dropout = new LoraDropout(dropout, setup.Seed, _buffers.Dropout);
        }
        catch { Dispose(); throw; }
    }

    public Parameter? Find(string name) => _byName.GetValueOrDefault(name);

    public void ZeroGradients() => _gradients.Clear(_pool);

    // ---- forward --------------------------------------------------------------------------------------

    /// <summary>
    /// Run the model over <paramref name="batch"/> sequences of <paramref name="sequence"/> tokens and return the summed
    /// cross-entropy (nats, double) over the targets that are ≥ 0. No gradients (validation).
    /// </summary>
    /// <param name="tokens">[B·T] input ids</param>
    /// <param name="targets">[B·T] the id each position should predict, or −1 to ignore the position</param>
    public double Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence)
    {
        _dropout.Training = false;
        RunLayers(tokens, targets, batch, sequence);
        return LossForward(0, backward: false);
    }

    /// <summary>
    /// Forward and backward: returns the summed NLL and accumulates ∂(lossScale·Σ NLL)/∂θ into every trainable
    /// parameter's gradient (call <see cref="ZeroGradients"/> between optimizer steps).
    /// </summary>
    public double ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence, float lossScale)
    {
        _dropout.Training = true;
        RunLayers(tokens, targets, batch, sequence);
        double loss = LossForward(lossScale, backward: true);
        BackwardLayers();
        return loss;
    }

    void RunLayers(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence)
    {
        var c = Config;
        int n = batch * sequence;
        if (n > _maxRows || sequence > _maxSequence) throw new ArgumentException($"batch {batch}×{sequence} exceeds the allocated {_maxRows / _maxSequence}×{_maxSequence}");
        if (tokens.Length != n || targets.Length != n) throw new ArgumentException("tokens and targets must both hold batch × sequence ids");
        foreach (var t in tokens) if ((uint)t >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} outside the vocabulary of {c.VocabSize}");
        _rows = n; _batch = batch; _sequence = sequence;
        _tokens = tokens.ToArray(); _targets = targets.ToArray();
        float* x0 = _buffers.Layers[0].XIn;
        for (int t = 0; t < n; t++) _weights.TokenEmbedding.ReadRow(tokens[t], x0 + (long)t * c.HiddenSize);
        for (int l = 0; l < c.Layers; l++)
        {
            var a = Activations(l);
            LayerForward(l, a, l + 1 < c.Layers ? _buffers.Layers[l + 1].XIn : _buffers.XFinal);
        }
    }

    TrainingActivations.Layer Activations(int l)
    {
        if (_buffers.Shared is not { } s) return _buffers.Layers[l];
        // Checkpointed: XIn/XMid are per layer, everything else lives in the shared slot.
        s.XIn = _buffers.Layers[l].XIn; s.XMid = _buffers.Layers[l].XMid;
        return s;
    }

    void LayerForward(int l, TrainingActivations.Layer a, float* xOut)
    {
        var c = Config;
        var w = _weights.Layers[l];
        int n = _rows, d = c.HiddenSize;
        float* h = _buffers.H, act = _buffers.Act;
        RowParallel.RmsNormForward(_pool, a.XIn, w.AttentionNorm, h, n, d, c.RmsNormEps);
        LinearForward(w.Query, w.QueryBias, h, a.Q, a);
        LinearForward(w.Key, w.KeyBias, h, a.K, a);
        LinearForward(w.Value, w.ValueBias, h, a.V, a);
        for (int b = 0; b < _batch; b++)
        {
            RowParallel.RopeApply(_pool, _rope, a.Q + (long)b * _sequence * c.QueryDim, _sequence, c.Heads, c.QueryDim, 0);
            RowParallel.RopeApply(_pool, _rope, a.K + (long)b * _sequence * c.KvDim, _sequence, c.KvHeads, c.KvDim, 0);
        }
        AttentionTraining.Forward(_pool, a.Q, a.K, a.V, a.Att, a.Lse, c.QueryDim, c.KvDim, _batch, _sequence, c.Heads, c.KvHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
        RowParallel.Copy(_pool, a.XIn, a.XMid, (long)n * d);
        LinearForward(w.AttentionOutput, null, a.Att, a.XMid, a, accumulate: true);
        RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, h, n, d, c.RmsNormEps);
        LinearForward(w.Gate, null, h, a.Gate, a);
        LinearForward(w.Up, null, h, a.Up, a);
        RowParallel.SwiGlu(_pool, a.Gate, a.Up, act, (long)n * c.IntermediateSize);
        RowParallel.Copy(_pool, a.XMid, xOut, (long)n * d);
        LinearForward(w.Down, null, act, xOut, a, accumulate: true);
    }

    AdapterPass Pass => new(_pool, _rows, _buffers.AdapterWork, _dropout);

    /// <summary>y[N, out] (+)= x·Wᵀ + bias, or the adapted projection when an adapter sits on W (it keeps what its
    /// backward needs in the layer's slots).</summary>
    void LinearForward(WeightMatrix w, float* bias, float* x, float* y, TrainingActivations.Layer a, bool accumulate = false)
    {
        if (_adapterSlots.TryGetValue(w.Name, out var slot))
            slot.Adapter.TrainingForward(Pass, w, bias, x, y, accumulate, a.Saved(w.Name));
        else
            Linear.Forward(_pool, w, bias, x, _rows, w.Cols, y, w.Rows, accumulate, packedWeights: false);
    }

    /// <summary>Final norm, head and cross-entropy in chunks of rows (never a [N, V] logits matrix). With backward,
    /// also ∂L/∂XFinal into GradX and the head and final-norm gradients.</summary>
    double LossForward(float lossScale, bool backward)
    {
        var c = Config;
        int n = _rows, d = c.HiddenSize, v = c.VocabSize;
        float* hFinal = _buffers.H, logits = _buffers.Logits, gradH = _buffers.GradH, xFinal = _buffers.XFinal;
        RowParallel.RmsNormForward(_pool, xFinal, _weights.OutputNorm, hFinal, n, d, c.RmsNormEps);
        var head = _weights.Output;
        var headParam = Find(head.Name);
        double loss = 0;
        for (int r0 = 0; r0 < n; r0 += TrainingActivations.LossChunk)
        {
            int rows = Math.Min(TrainingActivations.LossChunk, n - r0);
            bool any = false;
            for (int i = 0; i < rows; i++) if (_targets[r0 + i] >= 0) { any = true; break; }
            if (!any)
            {
                if (backward) new Span<float>(gradH + (long)r0 * d, rows * d).Clear();
                continue;
            }
            Linear.Forward(_pool, head, null, hFinal + (long)r0 * d, rows, d, logits, v, false, packedWeights: false);
            loss += RowParallel.CrossEntropyForwardBackward(_pool, logits, rows, v, _targets.AsSpan(r0, rows), lossScale);
            if (!backward) continue;
            // dhFinal = dLogits·W; dW += dLogitsᵀ·hFinal
            Gemm.MultiplyByWeights(_pool, rows, d, v, logits, v, head.Type, head.Data, head.RowBytes, gradH + (long)r0 * d, d, false);
            if (headParam != null)
                Gemm.Multiply(_pool, v, d, rows, logits, v, true, hFinal + (long)r0 * d, d, GemmBLayout.KByN, headParam.Gradient, d, true);
        }
        if (backward)
        {
            var normParam = Find(TensorNames.Gguf(TensorRole.OutputNorm));
            RowParallel.RmsNormBackward(_pool, xFinal, _weights.OutputNorm, gradH, _buffers.GradX, normParam != null ? normParam.Gradient : null, n, d, c.RmsNormEps, false);
        }
        return loss;
    }

    // ---- backward -------------------------------------------------------------------------------------

    /// <summary>Layers in reverse order, from ∂L/∂XFinal in GradX down to the embedding.</summary>
    void BackwardLayers()
    {
        var c = Config;
        int n = _rows, d = c.HiddenSize;
        for (int l = c.Layers - 1; l >= 0; l--)
        {
            var a = Activations(l);
            if (_buffers.Shared != null) LayerForward(l, a, _buffers.RecomputeOut); // checkpointed: recompute what this layer's backward reads
            LayerBackward(l, a);
        }
        var embedding = Find(_weights.TokenEmbedding.Name);
        if (embedding != null)
            for (int t = 0; t < n; t++)
            {
                float* g = embedding.Gradient + (long)_tokens[t] * d, dx = _buffers.GradX + (long)t * d;
                for (int i = 0; i < d; i++) g[i] += dx[i];
            }
    }

    void LayerBackward(int l, TrainingActivations.Layer a)
    {
        var c = Config;
        var w = _weights.Layers[l];
        int n = _rows, d = c.HiddenSize, f = c.IntermediateSize;
        var b = _buffers;
        float* h = b.H, act = b.Act, gradX = b.GradX;
        // GradX holds ∂L/∂XOut (= ∂L/∂XIn of layer l+1). MLP: XOut = XMid + Down(SwiGLU(Gate(h2), Up(h2))).
        RowParallel.SwiGlu(_pool, a.Gate, a.Up, act, (long)n * f);
        float* dAct = b.GradH;                     // [N, F]
        LinearBackward(w.Down, null, act, gradX, dAct, a, accumulateDx: false);
        RowParallel.SwiGluBackward(_pool, a.Gate, a.Up, dAct, b.GradGate, b.GradUp, (long)n * f);
        RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, h, n, d, c.RmsNormEps);
        float* dh2 = b.GradH;                      // [N, D]; dAct is consumed
        LinearBackward(w.Gate, null, h, b.GradGate, dh2, a, accumulateDx: false);
        LinearBackward(w.Up, null, h, b.GradUp, dh2, a, accumulateDx: true);
        var ffnNorm = Find(TensorNames.Gguf(TensorRole.FeedForwardNorm, l));
        RowParallel.RmsNormBackward(_pool, a.XMid, w.FeedForwardNorm, dh2, gradX, ffnNorm != null ? ffnNorm.Gradient : null, n, d, c.RmsNormEps, accumulate: true);

        // Attention: XMid = XIn + O(Attention(rope(Q(h1)), rope(K(h1)), V(h1))).
        LinearBackward(w.AttentionOutput, null, a.Att, gradX, b.GradAtt, a, accumulateDx: false);
        AttentionTraining.Backward(_pool, a.Q, a.K, a.V, a.Att, b.GradAtt, a.Lse, b.GradQ, b.GradK, b.GradV, c.QueryDim, c.KvDim,
            _batch, _sequence, c.Heads, c.KvHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
        for (int s = 0; s < _batch; s++)
        {
            RowParallel.RopeApply(_pool, _rope, b.GradQ + (long)s * _sequence * c.QueryDim, _sequence, c.Heads, c.QueryDim, 0, inverse: true);
            RowParallel.RopeApply(_pool, _rope, b.GradK + (long)s * _sequence * c.KvDim, _sequence, c.KvHeads, c.KvDim, 0, inverse: true);
        }
        RowParallel.RmsNormForward(_pool, a.XIn, w.AttentionNorm, h, n, d, c.RmsNormEps);
        float* dh1 = b.GradH;
        LinearBackward(w.Query, w.QueryBias, h, b.GradQ, dh1, a, accumulateDx: false);
        LinearBackward(w.Key, w.KeyBias, h, b.GradK, dh1, a, accumulateDx: true);
        LinearBackward(w.Value, w.ValueBias, h, b.GradV, dh1, a, accumulateDx: true);
        var attnNorm = Find(TensorNames.Gguf(TensorRole.AttentionNorm, l));
        RowParallel.RmsNormBackward(_pool, a.XIn, w.AttentionNorm, dh1, gradX, attnNorm != null ? attnNorm.Gradient : null, n, d, c.RmsNormEps, accumulate: true);
    }

    /// <summary>
    /// Backward of y = x·Wᵀ + b given dy[N, out]: dx[N, in] (+)= ∂L/∂x and the gradients of W and b where they train;
    /// for an adapted projection (W and b frozen), the adapter's backward.
    /// </summary>
    void LinearBackward(WeightMatrix w, float* bias, float* x, float* dy, float* dx, TrainingActivations.Layer a, bool accumulateDx)
    {
        int n = _rows;
        if (_adapterSlots.TryGetValue(w.Name, out var slot))
        {
            slot.Adapter.TrainingBackward(Pass, w, x, dy, dx, accumulateDx, a.Saved(w.Name), slot.Gradients);
            return;
        }
        var weightParam = Find(w.Name);
        if (weightParam != null)
            Gemm.Multiply(_pool, w.Rows, w.Cols, n, dy, w.Rows, true, x, w.Cols, GemmBLayout.KByN, weightParam.Gradient, w.Cols, true);
        if (bias != null)
        {
            var biasParam = Find(w.Name.Replace(".weight", ".bias", StringComparison.Ordinal));
            if (biasParam != null)
                for (int t = 0; t < n; t++)
                {
                    float* gr = dy + (long)t * w.Rows;
                    for (int o = 0; o < w.Rows; o++) biasParam.Gradient[o] += gr[o];
                }
        }
        Gemm.MultiplyByWeights(_pool, n, w.Cols, w.Rows, dy, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx);
    }

    /// <summary>After an optimizer step (or a restore): whatever the adapters derive from their tensors (DoRA's row norms).</summary>
    public void AfterStep()
    {
        foreach (var slot in _adapterSlots.Values) slot.Adapter.Refresh(slot.Weight);
    }

    public void Dispose()
    {
        _buffers?.Dispose();
        foreach (var a in _adapters.Values) a.Dispose();
        _gradients?.Dispose();
        _rope?.Dispose();
    }
}
