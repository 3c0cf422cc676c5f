using Hone.Experts;
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
/// A mixture-of-experts layer (E experts of feed-forward size Fe, k per token, a shared expert of size Fs) routes
/// each row to its top k, runs every expert once over the rows routed to it (grouped, as in inference) and adds the
/// weighted outputs; its backward goes through the experts, the routing weights and the softmax to the router. The
/// auxiliary losses (load balancing, z-loss; <see cref="RouterLosses"/>) are computed over every sparse layer's
/// router logits together after the forward, and their gradients join each layer's router gradient in backward.
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
    readonly int[] _routedLayers;                     // layers with a router: sparse layers, or a LoRA mixture's routed layers
    readonly NativeBuffer? _auxLogits, _auxGradient; // [Ls·N, E]: the counted rows of every sparse layer, together
    readonly int[] _lengths;                          // [B] counted tokens of each sequence
    readonly NativeBuffer? _mixtureAuxGradient;       // [L, N, E] a LoRA mixture's routers' aux-loss gradients
    readonly NativeBuffer? _mixtureRouterGradient;    // [N, E] ∂L/∂ router logits, one layer at a time

    /// <summary>MixLoRA's load-balancing coefficient, the default for a LoRA mixture.</summary>
    public const double DefaultMixtureAuxLossCoef = 0.01;
    int _rows, _batch, _sequence;
    bool _recomputing;
    readonly double _expertChoice;                    // capacity factor of expert-choice routing; 0: top-k
    long[] _choiceKeys = [];                          // [N] rows by one expert's score (expert-choice routing)
    bool[] _taken = [];                               // [N, E] which expert took which row
    int[] _tokens = [], _targets = [];

    /// <summary>An adapter with the base weight it adapts and its tensors' gradients (in <see cref="LoraAdapter.Tensors"/> order).</summary>
    sealed record AdapterSlot(LoraAdapter Adapter, WeightMatrix Weight, nint[] Gradients);

    public ModelConfig Config { get; }
    public IReadOnlyList<Parameter> Parameters => _parameters;
    public IReadOnlyDictionary<string, LoraAdapter> Adapters => _adapters;
    /// <summary>The LoRA mixture that trains, or null.</summary>
    public LoraMixture? Mixture { get; }
    /// <summary>Experts and experts per token of the routed layers (a mixture of experts' sparse layers, or a LoRA
    /// mixture's routers); 0 when nothing routes.</summary>
    public int RoutingExperts { get; }
    public int RoutingTopK { get; }
    /// <summary>The kind of the adapters that train, or null when weights train.</summary>
    public AdapterKind? AdapterKind { get; }
    public LlamaWeights Weights => _weights;
    public TrainingSetup Setup => _setup;
    public long ActivationBytes => _buffers.Bytes;
    /// <summary>The micro-step counter that seeds LoRA dropout masks (set by the trainer, so resumes reproduce them).</summary>
    public long Step { get => _dropout.Step; set => _dropout.Step = value; }
    /// <summary>The load-balancing loss's coefficient (router_aux_loss_coef; the setup's, else the checkpoint's).</summary>
    public double RouterAuxLossCoef { get; }
    /// <summary>The router z-loss's coefficient (router_z_loss_coef).</summary>
    public double RouterZLossCoef { get; }
    /// <summary>The last <see cref="ForwardBackward"/>'s load-balancing and z-loss, before their coefficients (NaN for a
    /// dense model).</summary>
    public double LastBalanceLoss { get; private set; } = double.NaN;
    public double LastZLoss { get; private set; } = double.NaN;
    /// <summary>When set, every training and validation forward adds its routing of the counted rows here (not the
    /// recomputation of checkpointed layers).</summary>
    public RoutingStatistics? Routing { get; set; }
    /// <summary>When set, the loss of every loss chunk instead of plain cross-entropy, on the same target positions
    /// (knowledge distillation: <see cref="DistillationLoss"/>); null: cross-entropy.</summary>
    public ILogitsLoss? LogitsLoss { get; set; }

    /// <summary>
    /// Unlearning (<see cref="UnlearningObjective"/>): signed weights on each sequence's loss, applied in
    /// <see cref="ForwardBackward"/> only. Called once per micro-batch with each sequence's summed NLL of its targets
    /// under the current weights (double[B]); returns float[B] that multiply lossScale for that sequence's rows
    /// (−1 ascends its loss; NPO's weight depends on the NLL, hence the callback). Null: every sequence weighs 1.
    /// </summary>
    public Func<double[], float[]>? SequenceLossWeights { get; set; }

    /// <summary>The weights of those routes [N, k] ([N, E] under expert-choice routing: 0 where the expert did not take the row).</summary>
    public ReadOnlySpan<float> RoutedWeights(int layer) =>
        _buffers.Layers[layer].RoutedWeights is { } routed ? routed.AsSpan(0, _rows * Slots) : throw new ArgumentException($"layer {layer} is dense");

    /// <summary>The experts the last forward routed each row of sparse layer <paramref name="layer"/> to [N, k].</summary>
    public ReadOnlySpan<int> RoutedExperts(int layer) =>
        _buffers.Layers[layer].RoutedExperts is { } routed ? routed.AsSpan(0, _rows * Slots) : throw new ArgumentException($"layer {layer} is dense");

    public TrainableLlama(LlamaWeights weights, WorkerPool pool, TrainingSetup setup, int maxBatch, int maxSequence)
    {
        _weights = weights; _pool = pool; _setup = setup; Config = weights.Config;
        var c = Config;
        _maxSequence = maxSequence;
        _maxRows = maxBatch * maxSequence;
        if (c.ResidualShortcuts)
            throw new NotSupportedException("this model has residual shortcut matrices (hone prune width --rotation per-layer): Hone cannot train it; train the model before slicing it, or slice with the single rotation");
        if (maxSequence > c.MaxPositions) throw new ArgumentException($"sequence length {maxSequence} exceeds the model's context {c.MaxPositions}");
        var plan = new TrainingPlan(weights, setup);
        _adapters = plan.Adapters;
        AdapterKind = plan.AdapterKind;
        Mixture = plan.Mixture;
        _routedLayers = Mixture != null
            ? Enumerable.Range(0, c.Layers).Where(l => Mixture.Routers[l] != null).ToArray()
            : Enumerable.Range(0, c.Layers).Where(c.IsSparseLayer).ToArray();
        RoutingExperts = Mixture?.Experts.Count ?? c.Experts;
        RoutingTopK = Mixture?.TopK ?? c.ExpertsPerToken;
        _lengths = new int[maxBatch];
        RouterAuxLossCoef = setup.RouterAuxLossCoef ?? (Mixture != null ? DefaultMixtureAuxLossCoef : c.RouterAuxLossCoef);
        RouterZLossCoef = setup.RouterZLossCoef;
        try
        {
            if (_routedLayers.Length > 0)
            {
                _auxLogits = new NativeBuffer(checked((long)_routedLayers.Length * _maxRows * RoutingExperts * 4));
                _auxGradient = new NativeBuffer(_auxLogits.Length);
            }
            if (Mixture != null)
            {
                _mixtureAuxGradient = new NativeBuffer(checked((long)c.Layers * _maxRows * RoutingExperts * 4));
                _mixtureRouterGradient = new NativeBuffer(checked((long)_maxRows * RoutingExperts * 4));
            }
            _rope = new Rope(c.HeadDim, c.RotaryDims, maxSequence, c.RopeTheta, c.RopeLayout, c.RopeLinearFactor, c.RopeLlama3, weights.RopeFrequencyDivisors);
            _gradients = new GradientArena(plan.GradientFloats);
            foreach (var p in plan.Parameters)
            {
                var param = new Parameter(p.Name, p.Value, _gradients.Take((long)p.Rows * p.Cols), p.Rows, p.Cols, p.WeightDecay);
                _parameters.Add(param);
                _byName[p.Name] = param;
            }
            var matrices = weights.Matrices().ToDictionary(m => m.Name);
            // A frozen adapter (a LoRA mixture's experts while only its routers train) gets no gradients (null).
            foreach (var (target, adapter) in _adapters)
                _adapterSlots[target] = new AdapterSlot(adapter, matrices[target],
                    adapter.Tensors.Select(t => _byName.TryGetValue(target + ":" + t.Parameter, out var p) ? (nint)p.Gradient : 0).ToArray());
            float dropout = setup.Adapter?.Dropout ?? 0;
            if (setup.ExpertChoiceCapacity > 0 && !c.IsMixtureOfExperts)
                throw new ArgumentException("expert-choice routing applies to mixture-of-experts models; this one is dense");
            if (setup.ExpertChoiceCapacity < 0 || setup.ExpertChoiceCapacity > c.Experts)
                throw new ArgumentException($"the expert-choice capacity factor {setup.ExpertChoiceCapacity} must be between 0 and the {c.Experts} experts");
            _expertChoice = setup.ExpertChoiceCapacity;
            _buffers = new TrainingActivations(c, _maxRows, maxSequence, setup.CheckpointActivations, _adapters.Values, dropout > 0, _expertChoice);
            _dropout = new LoraDropout(dropout, setup.Seed, _buffers.Dropout);
        }
        catch { Dispose(); throw; }
    }

    public Parameter? Find(string name) => _byName.GetValueOrDefault(name);

    public void ZeroGradients() => _gradients.Clear(_pool);

    // ---- forward --------------------------------------------------------------------------------------

    /// <summary>
    /// Run the model over <paramref name="batch"/> sequences of <paramref name="sequence"/> tokens and return the summed
    /// cross-entropy (nats, double) over the targets that are ≥ 0 (the <see cref="LogitsLoss"/>'s loss when one is
    /// set). No gradients (validation).
    /// </summary>
    /// <param name="tokens">[B·T] input ids</param>
    /// <param name="targets">[B·T] the id each position should predict, or −1 to ignore the position</param>
    /// <param name="lengths">[B] the tokens of each sequence that are not padding (router telemetry counts only
    /// them); empty: all</param>
    public double Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence, ReadOnlySpan<int> lengths = default)
    {
        _dropout.Training = false;
        RunLayers(tokens, targets, batch, sequence, lengths);
        RouterLossesForward(0, gradients: false);
        return LossForward(0, backward: false);
    }

    /// <summary>
    /// Forward and backward: returns the summed NLL (the <see cref="LogitsLoss"/>'s loss when one is set) and accumulates into every trainable parameter's gradient
    /// ∂(lossScale·Σ NLL + auxScale·(aux_coef·balance + z_coef·z))/∂θ, the router losses over the rows that are not
    /// padding (as Hugging Face masks them with the attention mask) for a mixture of experts (call
    /// <see cref="ZeroGradients"/> between optimizer steps).
    /// </summary>
    /// <param name="auxScale">the router losses' weight in this micro-batch: 1 / micro-batches per step, as Hugging
    /// Face's trainer averages each micro-batch's loss</param>
    /// <param name="lengths">[B] the tokens of each sequence that are not padding; empty: all</param>
    public double ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence, float lossScale,
        float auxScale = 1, ReadOnlySpan<int> lengths = default)
    {
        _dropout.Training = true;
        RunLayers(tokens, targets, batch, sequence, lengths);
        RouterLossesForward(auxScale, gradients: true);
        double loss = LossForward(lossScale, backward: true);
        BackwardLayers();
        return loss;
    }

    void RunLayers(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence, ReadOnlySpan<int> lengths)
    {
        var c = Config;
        int n = batch * sequence;
        if (n > _maxRows || sequence > _maxSequence) throw new ArgumentException($"batch {batch}×{sequence} exceeds the allocated {_maxRows / _maxSequence}×{_maxSequence}");
        if (tokens.Length != n || targets.Length != n) throw new ArgumentException("tokens and targets must both hold batch × sequence ids");
        foreach (var t in tokens) if ((uint)t >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} outside the vocabulary of {c.VocabSize}");
        if (!lengths.IsEmpty && lengths.Length != batch) throw new ArgumentException($"{lengths.Length} sequence lengths for a batch of {batch}");
        for (int b = 0; b < batch; b++)
        {
            _lengths[b] = lengths.IsEmpty ? sequence : lengths[b];
            if ((uint)_lengths[b] > (uint)sequence) throw new ArgumentOutOfRangeException(nameof(lengths), $"sequence {b} has {_lengths[b]} tokens, more than {sequence}");
        }
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
        var own = _buffers.Layers[l];
        s.XIn = own.XIn; s.XMid = own.XMid;
        s.RouterLogits = own.RouterLogits; s.AuxGradient = own.AuxGradient;
        s.RoutedExperts = own.RoutedExperts; s.RoutedWeights = own.RoutedWeights; s.RouteOrder = own.RouteOrder; s.ExpertStarts = own.ExpertStarts;
        return s;
    }

    void LayerForward(int l, TrainingActivations.Layer a, float* xOut)
    {
        var c = Config;
        var w = _weights.Layers[l];
        int n = _rows, d = c.HiddenSize;
        float* h = _buffers.H, act = _buffers.Act;
        RowParallel.RmsNormForward(_pool, a.XIn, w.AttentionNorm, h, n, d, c.RmsNormEps);
        if (Mixture?.Routers[l] is { } router)
        {
            router.Route(_pool, h, n);
            if (Routing != null && !_recomputing) AddRouting(l, router.Logits, router.Chosen, router.Experts, router.TopK);
        }
        LinearForward(w.Query, w.QueryBias, h, a.Q, a);
        LinearForward(w.Key, w.KeyBias, h, a.K, a);
        LinearForward(w.Value, w.ValueBias, h, a.V, a);
        if (c.QkNorm != QkNorm.None)
        {
            RowParallel.Copy(_pool, a.Q, a.QPre, (long)n * c.QueryDim);
            RowParallel.Copy(_pool, a.K, a.KPre, (long)n * c.KvDim);
            w.NormalizeQueriesKeys(_pool, c, a.Q, a.K, n);
        }
        for (int b = 0; b < _batch; b++)
        {
            RowParallel.RopeApply(_pool, _rope, a.Q + (long)b * _sequence * c.QueryDim, _sequence, c.Heads, c.QueryDim, 0);
            RowParallel.RopeApply(_pool, _rope, a.K + (long)b * _sequence * c.KvDim, _sequence, c.KvHeads, c.KvDim, 0);
        }
        AttentionTraining.Forward(_pool, a.Q, a.K, a.V, a.Att, a.Lse, c.QueryDim, c.KvDim, _batch, _sequence, c.Heads, c.KvHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
        RowParallel.Copy(_pool, a.XIn, a.XMid, (long)n * d);
        LinearForward(w.AttentionOutput, null, a.Att, a.XMid, a, accumulate: true);
        RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, h, n, d, c.RmsNormEps);
        if (w.IsSparse)
        {
            RowParallel.Copy(_pool, a.XMid, xOut, (long)n * d);
            MixtureForward(l, w, a, h, xOut);
            return;
        }
        LinearForward(w.Gate, null, h, a.Gate, a);
        LinearForward(w.Up, null, h, a.Up, a);
        RowParallel.SwiGlu(_pool, a.Gate, a.Up, act, (long)n * c.IntermediateSize);
        RowParallel.Copy(_pool, a.XMid, xOut, (long)n * d);
        LinearForward(w.Down, null, act, xOut, a, accumulate: true);
    }

    /// <summary>
    /// A mixture-of-experts MLP over the normed rows <paramref name="h"/> [N, D], added to <paramref name="xOut"/>
    /// (which holds XMid): route, run each expert over its gathered rows (pre-activations into the layer's Gate and Up
    /// at the expert's offset in the grouped order, outputs into ExpertOut), add each output times its weight; then
    /// the shared expert over all rows times sigmoid(h·g).
    /// </summary>
    void MixtureForward(int l, LayerWeights w, TrainingActivations.Layer a, float* h, float* xOut)
    {
        var c = Config;
        int n = _rows, d = c.HiddenSize, experts = c.Experts, k = Slots, fe = c.ExpertFeedForwardSize;
        float* input = _buffers.ExpertIn, act = _buffers.Act;
        LinearForward(w.Router!, null, h, a.RouterLogits, a, rows: n);
        var logits = new ReadOnlySpan<float>(a.RouterLogits, n * experts);
        if (_expertChoice > 0)
        {
            ExpertChoice(logits, n, a.RoutedExperts!, a.RoutedWeights!);
            if (Routing != null && !_recomputing)
                for (int b = 0; b < _batch; b++)
                    if (_lengths[b] > 0)
                        Routing.AddExpertChoice(l, logits.Slice(b * _sequence * experts, _lengths[b] * experts), _lengths[b],
                            a.RoutedWeights.AsSpan(b * _sequence * experts, _lengths[b] * experts));
            ExpertRouting.GroupByExpert(a.RoutedExperts, n, experts, k, a.ExpertStarts, a.RouteOrder, a.RoutedWeights);
        }
        else
        {
            ExpertRouting.Route(logits, n, experts, k, c.NormalizeTopK, a.RoutedExperts, a.RoutedWeights);
            if (Routing != null && !_recomputing) AddRouting(l, a.RouterLogits, a.RoutedExperts, experts, k);
            ExpertRouting.GroupByExpert(a.RoutedExperts, n, experts, k, a.ExpertStarts, a.RouteOrder);
        }
        for (int e = 0; e < experts; e++)
        {
            int start = a.ExpertStarts![e], count = a.ExpertStarts[e + 1] - start;
            if (count == 0) continue;
            GatherRows(h, a.RouteOrder!, start, count, k, input, d);
            float* gate = a.Gate + (long)start * fe, up = a.Up + (long)start * fe, y = a.ExpertOut + (long)start * d;
            LinearForward(w.ExpertGate![e], null, input, gate, a, rows: count);
            LinearForward(w.ExpertUp![e], null, input, up, a, rows: count);
            RowParallel.SwiGlu(_pool, gate, up, act, (long)count * fe);
            LinearForward(w.ExpertDown![e], null, act, y, a, rows: count);
            for (int i = 0; i < count; i++)
            {
                int route = a.RouteOrder![start + i];
                float* row = xOut + (long)(route / k) * d;
                LlamaModel.AddScaled(row, y + (long)i * d, a.RoutedWeights![route], d);
            }
        }
        if (w.SharedGate == null) return;
        int fs = c.SharedExpertFeedForwardSize;
        LinearForward(w.SharedGate, null, h, a.SharedGate, a, rows: n);
        LinearForward(w.SharedUp!, null, h, a.SharedUp, a, rows: n);
        RowParallel.SwiGlu(_pool, a.SharedGate, a.SharedUp, act, (long)n * fs);
        LinearForward(w.SharedDown!, null, act, a.SharedOut, a, rows: n);
        for (int t = 0; t < n; t++)
        {
            float logit = a.SharedLogit[t] = w.SharedGateLogit(h + (long)t * d, d);
            LlamaModel.AddScaled(xOut + (long)t * d, a.SharedOut + (long)t * d, 1f / (1f + MathF.Exp(-logit)), d);
        }
    }

    static float Dot(float* a, float* b, int n)
    {
        float sum = 0;
        for (int i = 0; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>y[n] = s · x[n]</summary>
    static void Scale(float* x, float s, float* y, int n)
    {
        for (int i = 0; i < n; i++) y[i] = s * x[i];
    }

    /// <summary>Adds a layer's routing of the counted (not padding) rows to <see cref="Routing"/>.</summary>
    void AddRouting(int l, float* logits, ReadOnlySpan<int> chosen, int experts, int k)
    {
        for (int b = 0; b < _batch; b++)
            if (_lengths[b] > 0)
                Routing!.Add(l, new ReadOnlySpan<float>(logits + (long)b * _sequence * experts, _lengths[b] * experts), _lengths[b],
                    chosen.Slice(b * _sequence * k, _lengths[b] * k));
    }

    /// <summary>Routing slots per row: k, or E under expert-choice routing.</summary>
    int Slots => _expertChoice > 0 ? Config.Experts : Config.ExpertsPerToken;

    /// <summary>
    /// Expert-choice routing (Zhou et al. 2022) over the micro-batch's N rows: p = softmax of each row's logits over
    /// the E experts; each expert takes the C = min(N, ⌈N·c/E⌉) rows with the highest p for it (ties to the lower row),
    /// weighted by p. Slots [N, E]: slot (t, e) holds expert e with weight p[t, e] when e took row t, else weight 0
    /// (left out of the grouping). A row may be taken by several experts or by none (it then passes the MLP by).
    /// Every expert sees the whole micro-batch, later positions included: a training-time router only (see the README).
    /// </summary>
    void ExpertChoice(ReadOnlySpan<float> logits, int n, int[] experts, float[] weights)
    {
        int e = Config.Experts;
        int capacity = (int)Math.Min(n, Math.Ceiling(n * _expertChoice / e));
        var p = weights.AsSpan(0, n * e);
        for (int t = 0; t < n; t++)
        {
            ExpertRouting.Softmax(logits.Slice(t * e, e), p.Slice(t * e, e));
            for (int j = 0; j < e; j++) experts[t * e + j] = j;
        }
        if (_choiceKeys.Length < n) _choiceKeys = new long[n];
        if (_taken.Length < n * e) _taken = new bool[n * e];
        var taken = _taken.AsSpan(0, n * e);
        taken.Clear();
        for (int j = 0; j < e; j++)
        {
            // Highest p first, then the lower row: p ≥ 0, so its bits order like its value.
            var keys = _choiceKeys.AsSpan(0, n);
            for (int t = 0; t < n; t++) keys[t] = ((long)(int.MaxValue - BitConverter.SingleToInt32Bits(weights[t * e + j])) << 32) | (uint)t;
            keys.Sort();
            for (int i = 0; i < capacity; i++) taken[(int)(keys[i] & 0xFFFFFFFF) * e + j] = true;
        }
        for (int i = 0; i < n * e; i++) if (!taken[i]) weights[i] = 0;
    }

    /// <summary>Copies the rows of <paramref name="source"/> [N, D] that an expert's routes name, in its grouped order,
    /// into <paramref name="destination"/> [count, D].</summary>
    static void GatherRows(float* source, int[] order, int start, int count, int k, float* destination, int d)
    {
        for (int i = 0; i < count; i++)
            new ReadOnlySpan<float>(source + (long)(order[start + i] / k) * d, d).CopyTo(new Span<float>(destination + (long)i * d, d));
    }

    /// <summary>
    /// The router losses of this forward: every sparse layer's router logits over the rows that are not padding,
    /// together, through <see cref="RouterLosses"/>; their gradients, times the coefficients and
    /// <paramref name="auxScale"/>, go to each layer's AuxGradient (0 on padding rows), which its backward adds to
    /// the router's gradient.
    /// </summary>
    /// <param name="gradients">false: only the values (<see cref="LastBalanceLoss"/>, <see cref="LastZLoss"/>)</param>
    void RouterLossesForward(float auxScale, bool gradients)
    {
        if (_routedLayers.Length == 0) return;
        int experts = RoutingExperts, counted = 0;
        for (int b = 0; b < _batch; b++) counted += _lengths[b];
        float* all = _auxLogits!.AsFloats, gradient = _auxGradient!.AsFloats;
        long rows = (long)counted * _routedLayers.Length;
        for (int s = 0; s < _routedLayers.Length; s++)
        {
            float* logits = RouterLogitsOf(_routedLayers[s]), to = all + (long)s * counted * experts;
            for (int b = 0; b < _batch; b++)
            {
                new ReadOnlySpan<float>(logits + (long)b * _sequence * experts, _lengths[b] * experts).CopyTo(new Span<float>(to, _lengths[b] * experts));
                to += (long)_lengths[b] * experts;
            }
        }
        if (rows == 0) { LastBalanceLoss = LastZLoss = 0; ClearAuxGradients(); return; }
        var logitSpan = new ReadOnlySpan<float>(all, checked((int)(rows * experts)));
        var gradientSpan = new Span<float>(gradient, logitSpan.Length);
        gradientSpan.Clear();
        LastBalanceLoss = RouterLosses.LoadBalancing(logitSpan, (int)rows, experts, RoutingTopK,
            gradients && RouterAuxLossCoef > 0 ? gradientSpan : default, (float)(auxScale * RouterAuxLossCoef));
        LastZLoss = RouterLosses.ZLoss(logitSpan, (int)rows, experts, gradients && RouterZLossCoef > 0 ? gradientSpan : default, (float)(auxScale * RouterZLossCoef));
        ClearAuxGradients();
        if (!gradients) return;
        for (int s = 0; s < _routedLayers.Length; s++)
        {
            float* from = gradient + (long)s * counted * experts, to = AuxGradientOf(_routedLayers[s]);
            for (int b = 0; b < _batch; b++)
            {
                new ReadOnlySpan<float>(from, _lengths[b] * experts).CopyTo(new Span<float>(to + (long)b * _sequence * experts, _lengths[b] * experts));
                from += (long)_lengths[b] * experts;
            }
        }
    }

    void ClearAuxGradients()
    {
        foreach (int l in _routedLayers) new Span<float>(AuxGradientOf(l), _rows * RoutingExperts).Clear();
    }

    /// <summary>A routed layer's router logits [N, E]: a sparse layer's, or its LoRA mixture router's.</summary>
    float* RouterLogitsOf(int layer) => Mixture?.Routers[layer] is { } router ? router.Logits : _buffers.Layers[layer].RouterLogits;

    /// <summary>Where a routed layer's aux-loss gradient [N, E] waits for its backward.</summary>
    float* AuxGradientOf(int layer) => Mixture != null
        ? _mixtureAuxGradient!.AsFloats + (long)layer * _maxRows * RoutingExperts
        : _buffers.Layers[layer].AuxGradient;

    AdapterPass Pass(int rows) => new(_pool, rows, _buffers.AdapterWork, _dropout);

    /// <summary>y[rows, out] (+)= x·Wᵀ + bias, or the adapted projection when an adapter sits on W (it keeps what its
    /// backward needs in the layer's slots); rows: N, or an expert's routed rows.</summary>
    void LinearForward(WeightMatrix w, float* bias, float* x, float* y, TrainingActivations.Layer a, bool accumulate = false, int rows = -1)
    {
        if (rows < 0) rows = _rows;
        if (_adapterSlots.TryGetValue(w.Name, out var slot))
            slot.Adapter.TrainingForward(Pass(rows), w, bias, x, y, accumulate, a.Saved(w.Name));
        else
            Linear.Forward(_pool, w, bias, x, rows, w.Cols, y, w.Rows, accumulate, packedWeights: false);
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
        float[]? sequenceWeights = backward && SequenceLossWeights is { } weighting ? weighting(SequenceNll(hFinal)) : null;
        LogitsLoss?.Begin(_tokens, _targets, _batch, _sequence);
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
            loss += sequenceWeights != null ? SequenceCrossEntropy(logits, r0, rows, lossScale, sequenceWeights)
                : LogitsLoss is { } custom ? custom.ForwardBackward(_pool, r0, rows, logits, v, _targets.AsSpan(r0, rows), lossScale)
                : RowParallel.CrossEntropyForwardBackward(_pool, logits, rows, v, _targets.AsSpan(r0, rows), lossScale);
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

    /// <summary>Cross-entropy of loss chunk rows [r0, r0+rows) split at sequence boundaries, each piece's dlogits scaled
    /// by scale·weights[sequence]. Returns the summed NLL.</summary>
    double SequenceCrossEntropy(float* logits, int r0, int rows, float scale, float[] weights)
    {
        int v = Config.VocabSize;
        double loss = 0;
        for (int i = 0; i < rows;)
        {
            int b = (r0 + i) / _sequence, end = Math.Min(rows, (b + 1) * _sequence - r0);
            loss += RowParallel.CrossEntropyForwardBackward(_pool, logits + (long)i * v, end - i, v, _targets.AsSpan(r0 + i, end - i), scale * weights[b]);
            i = end;
        }
        return loss;
    }

    /// <summary>Each sequence's summed NLL of its targets (double[B]): a forward-only pass of the output head over the
    /// final hidden states, so the sequence weights can depend on the current likelihood.</summary>
    double[] SequenceNll(float* hFinal)
    {
        int n = _rows, d = Config.HiddenSize, v = Config.VocabSize;
        var nll = new double[_batch];
        for (int r0 = 0; r0 < n; r0 += TrainingActivations.LossChunk)
        {
            int rows = Math.Min(TrainingActivations.LossChunk, n - r0);
            Linear.Forward(_pool, _weights.Output, null, hFinal + (long)r0 * d, rows, d, _buffers.Logits, v, false, packedWeights: false);
            for (int i = 0; i < rows;)
            {
                int b = (r0 + i) / _sequence, end = Math.Min(rows, (b + 1) * _sequence - r0);
                nll[b] += RowParallel.CrossEntropyForwardBackward(_pool, _buffers.Logits + (long)i * v, end - i, v, _targets.AsSpan(r0 + i, end - i), 0);
                i = end;
            }
        }
        return nll;
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
            if (_buffers.Shared != null)
            {
                // checkpointed: recompute what this layer's backward reads
                _recomputing = true;
                try { LayerForward(l, a, _buffers.RecomputeOut); }
                finally { _recomputing = false; }
            }
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
        float* dh2 = b.GradH;                      // [N, D]
        if (w.IsSparse)
        {
            RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, h, n, d, c.RmsNormEps);
            MixtureBackward(l, w, a, h, gradX, dh2);
        }
        else
        {
            RowParallel.SwiGlu(_pool, a.Gate, a.Up, act, (long)n * f);
            float* dAct = b.GradH;                     // [N, F]
            LinearBackward(w.Down, null, act, gradX, dAct, a, accumulateDx: false);
            RowParallel.SwiGluBackward(_pool, a.Gate, a.Up, dAct, b.GradGate, b.GradUp, (long)n * f);
            RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, h, n, d, c.RmsNormEps);
            // dh2 reuses GradH: dAct is consumed
            LinearBackward(w.Gate, null, h, b.GradGate, dh2, a, accumulateDx: false);
            LinearBackward(w.Up, null, h, b.GradUp, dh2, a, accumulateDx: true);
        }
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
        if (c.QkNorm != QkNorm.None)
        {
            // QK-norm: ∂L/∂(the projections before their norm), and the norms' weight gradients. GradH is free until dh1.
            bool perHead = c.QkNorm == QkNorm.PerHead;
            var qNorm = Find(TensorNames.Gguf(TensorRole.AttentionQueryNorm, l));
            var kNorm = Find(TensorNames.Gguf(TensorRole.AttentionKeyNorm, l));
            RowParallel.RmsNormBackward(_pool, a.QPre, w.QueryNorm, b.GradQ, b.GradH, qNorm != null ? qNorm.Gradient : null,
                perHead ? n * c.Heads : n, perHead ? c.HeadDim : c.QueryDim, c.RmsNormEps, accumulate: false);
            RowParallel.Copy(_pool, b.GradH, b.GradQ, (long)n * c.QueryDim);
            RowParallel.RmsNormBackward(_pool, a.KPre, w.KeyNorm, b.GradK, b.GradH, kNorm != null ? kNorm.Gradient : null,
                perHead ? n * c.KvHeads : n, perHead ? c.HeadDim : c.KvDim, c.RmsNormEps, accumulate: false);
            RowParallel.Copy(_pool, b.GradH, b.GradK, (long)n * c.KvDim);
        }
        RowParallel.RmsNormForward(_pool, a.XIn, w.AttentionNorm, h, n, d, c.RmsNormEps);
        float* dh1 = b.GradH;
        LinearBackward(w.Query, w.QueryBias, h, b.GradQ, dh1, a, accumulateDx: false);
        LinearBackward(w.Key, w.KeyBias, h, b.GradK, dh1, a, accumulateDx: true);
        LinearBackward(w.Value, w.ValueBias, h, b.GradV, dh1, a, accumulateDx: true);
        if (Mixture?.Routers[l] is { } router)
            router.Backward(_pool, h, AuxGradientOf(l), dh1, Find(TrainingPlan.RouterParameter(l)) is { } routerParam ? routerParam.Gradient : null,
                _mixtureRouterGradient!.AsFloats);
        var attnNorm = Find(TensorNames.Gguf(TensorRole.AttentionNorm, l));
        RowParallel.RmsNormBackward(_pool, a.XIn, w.AttentionNorm, dh1, gradX, attnNorm != null ? attnNorm.Gradient : null, n, d, c.RmsNormEps, accumulate: true);
    }

    /// <summary>
    /// Backward of <see cref="MixtureForward"/> given dy = ∂L/∂XOut [N, D]: writes ∂L/∂h into <paramref name="dh"/>
    /// [N, D] and accumulates the experts', the shared expert's and the router's gradients. With y = Σ_j w_j·Y_j:
    /// ∂L/∂w_j = dy·Y_j and expert j's output gradient is w_j·dy. The weights come from the softmax p of the router
    /// logits z, renormalized over the k chosen (then w = softmax of the chosen z: ∂z_j = w_j(∂w_j − Σ_i w_i ∂w_i))
    /// or not (w_j = p_j: ∂z = p ⊙ (∂p − p·∂p)); the auxiliary losses' gradient from the forward joins ∂z.
    /// The shared expert: out = σ(s)·Y_s with s = h·g, so ∂s = σ(1 − σ)·dy·Y_s and Y_s's gradient is σ·dy.
    /// </summary>
    void MixtureBackward(int l, LayerWeights w, TrainingActivations.Layer a, float* h, float* dy, float* dh)
    {
        var c = Config;
        var b = _buffers;
        int n = _rows, d = c.HiddenSize, experts = c.Experts, k = Slots, fe = c.ExpertFeedForwardSize;
        float* input = b.ExpertIn, dyRows = b.ExpertGradOut, dInput = b.ExpertGradIn, act = b.Act, dAct = b.ExpertGradAct, dz = b.RouterGrad;
        var routeGrad = b.RouteGrad!;
        Array.Clear(routeGrad, 0, n * k); // slots no expert ran (expert choice) keep ∂w = 0
        new Span<float>(dh, n * d).Clear();
        if (w.SharedGate != null)
        {
            int fs = c.SharedExpertFeedForwardSize;
            var gParam = Find(TensorNames.Gguf(TensorRole.SharedExpertRouter, l));
            for (int t = 0; t < n; t++)
            {
                float sigma = 1f / (1f + MathF.Exp(-a.SharedLogit[t]));
                float* dyRow = dy + (long)t * d;
                float ds = Dot(dyRow, a.SharedOut + (long)t * d, d) * sigma * (1 - sigma);
                Scale(dyRow, sigma, dyRows + (long)t * d, d);
                float* hRow = h + (long)t * d, dhRow = dh + (long)t * d;
                for (int i = 0; i < d; i++) dhRow[i] += ds * w.SharedRouter[i];
                if (gParam != null) for (int i = 0; i < d; i++) gParam.Gradient[i] += ds * hRow[i];
            }
            RowParallel.SwiGlu(_pool, a.SharedGate, a.SharedUp, act, (long)n * fs);
            LinearBackward(w.SharedDown!, null, act, dyRows, dAct, a, accumulateDx: false, rows: n);
            RowParallel.SwiGluBackward(_pool, a.SharedGate, a.SharedUp, dAct, b.GradGate, b.GradUp, (long)n * fs);
            LinearBackward(w.SharedGate, null, h, b.GradGate, dh, a, accumulateDx: true, rows: n);
            LinearBackward(w.SharedUp!, null, h, b.GradUp, dh, a, accumulateDx: true, rows: n);
        }
        for (int e = 0; e < experts; e++)
        {
            int start = a.ExpertStarts![e], count = a.ExpertStarts[e + 1] - start;
            if (count == 0) continue;
            float* gate = a.Gate + (long)start * fe, up = a.Up + (long)start * fe, y = a.ExpertOut + (long)start * d;
            for (int i = 0; i < count; i++)
            {
                int route = a.RouteOrder![start + i];
                float* dyRow = dy + (long)(route / k) * d;
                routeGrad[route] = Dot(dyRow, y + (long)i * d, d);
                Scale(dyRow, a.RoutedWeights![route], dyRows + (long)i * d, d);
            }
            GatherRows(h, a.RouteOrder!, start, count, k, input, d);
            RowParallel.SwiGlu(_pool, gate, up, act, (long)count * fe);
            LinearBackward(w.ExpertDown![e], null, act, dyRows, dAct, a, accumulateDx: false, rows: count);
            RowParallel.SwiGluBackward(_pool, gate, up, dAct, b.GradGate, b.GradUp, (long)count * fe);
            LinearBackward(w.ExpertGate![e], null, input, b.GradGate, dInput, a, accumulateDx: false, rows: count);
            LinearBackward(w.ExpertUp![e], null, input, b.GradUp, dInput, a, accumulateDx: true, rows: count);
            for (int i = 0; i < count; i++)
            {
                LlamaModel.AddScaled(dh + (long)(a.RouteOrder![start + i] / k) * d, dInput + (long)i * d, 1f, d);
            }
        }
        // The router: ∂z from the routing weights' gradients, plus the auxiliary losses'.
        new ReadOnlySpan<float>(a.AuxGradient, n * experts).CopyTo(new Span<float>(dz, n * experts));
        Span<float> p = experts <= 1024 ? stackalloc float[experts] : new float[experts];
        for (int t = 0; t < n; t++)
        {
            float* dzRow = dz + (long)t * experts;
            var chosen = a.RoutedExperts.AsSpan(t * k, k);
            var weights = a.RoutedWeights.AsSpan(t * k, k);
            var dw = routeGrad.AsSpan(t * k, k);
            if (c.NormalizeTopK && _expertChoice == 0)
            {
                float mixed = 0;
                for (int j = 0; j < k; j++) mixed += weights[j] * dw[j];
                for (int j = 0; j < k; j++) dzRow[chosen[j]] += weights[j] * (dw[j] - mixed);
            }
            else
            {
                ExpertRouting.Softmax(new ReadOnlySpan<float>(a.RouterLogits + (long)t * experts, experts), p);
                float mixed = 0;
                for (int j = 0; j < k; j++) mixed += p[chosen[j]] * dw[j];
                for (int e = 0; e < experts; e++) dzRow[e] -= p[e] * mixed;
                for (int j = 0; j < k; j++) dzRow[chosen[j]] += p[chosen[j]] * dw[j];
            }
        }
        LinearBackward(w.Router!, null, h, dz, dh, a, accumulateDx: true, rows: n);
    }

    /// <summary>
    /// Backward of y = x·Wᵀ + b given dy[rows, out]: dx[rows, in] (+)= ∂L/∂x and the gradients of W and b where they
    /// train; for an adapted projection (W and b frozen), the adapter's backward. rows: N, or an expert's routed rows.
    /// </summary>
    void LinearBackward(WeightMatrix w, float* bias, float* x, float* dy, float* dx, TrainingActivations.Layer a, bool accumulateDx, int rows = -1)
    {
        int n = rows < 0 ? _rows : rows;
        if (_adapterSlots.TryGetValue(w.Name, out var slot))
        {
            slot.Adapter.TrainingBackward(Pass(n), w, x, dy, dx, accumulateDx, a.Saved(w.Name), slot.Gradients);
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
        Mixture?.Dispose();
        _mixtureAuxGradient?.Dispose(); _mixtureRouterGradient?.Dispose();
        _auxLogits?.Dispose(); _auxGradient?.Dispose();
        _gradients?.Dispose();
        _rope?.Dispose();
    }
}
