using Hone.Model;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>What trains: all weights, selected weights, or adapters over a frozen (possibly quantized) base.</summary>
public enum TrainingMethod { Full, Freeze, Lora, Dora, QLora }

/// <summary>Adapter hyper-parameters (PEFT's names: r, lora_alpha, lora_dropout, target_modules, use_rslora).</summary>
/// <param name="Targets">module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or "all-linear"</param>
public sealed record AdapterSettings(int Rank = 8, float Alpha = 16, float Dropout = 0, IReadOnlyList<string>? Targets = null, bool RsLora = false)
{
    public static readonly string[] AllLinear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public IReadOnlyList<string> ResolvedTargets
    {
        get
        {
            var t = Targets ?? ["q_proj", "v_proj"];
            if (t.Count == 1 && t[0] == "all-linear") return AllLinear;
            foreach (var m in t)
                if (!AllLinear.Contains(m))
                    throw new ArgumentException($"unknown LoRA target module '{m}'; known: {string.Join(", ", AllLinear)} or all-linear");
            return t;
        }
    }
}

/// <summary>Which weights train with <see cref="TrainingMethod.Freeze"/>: the last N layers (first N when negative)
/// restricted to the listed modules (q_proj ... down_proj, self_attn, mlp, norm; empty = all), plus extras
/// (embed_tokens, lm_head, norm).</summary>
public sealed record FreezeSettings(int TrainableLayers = 2, IReadOnlyList<string>? Modules = null, IReadOnlyList<string>? Extra = null);

/// <param name="CheckpointActivations">keep only each layer's input and recompute the rest in backward</param>
public sealed record TrainingSetup(TrainingMethod Method, AdapterSettings? Adapter = null, FreezeSettings? Freeze = null,
    bool CheckpointActivations = false, ulong Seed = 1);

/// <summary>
/// Forward and backward passes of a Llama-family model for training, written per layer and in exact reverse order.
/// Glossary: B sequences of T tokens, N = B·T rows, D hidden, F feed-forward, L layers, H heads, Hkv KV heads,
/// Dh head dim, V vocabulary, r adapter rank.
/// Activation policy: each layer keeps its input XIn[N, D], the post-RoPE Q[N, H·Dh], K, V[N, Hkv·Dh], the attention
/// LSE[B, H, T] and output Att[N, H·Dh], the mid residual XMid[N, D] and the MLP pre-activations Gate, Up[N, F];
/// the norms' outputs and the SwiGLU product are recomputed in backward (cheap, element-wise). With
/// CheckpointActivations only XIn and XMid stay and a layer's forward is recomputed right before its backward.
/// All of it is allocated once for the largest batch.
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
    readonly Dictionary<string, LoraAdapter> _adapters = new();
    readonly Dictionary<string, (Parameter A, Parameter B, Parameter? Magnitude)> _adapterParameters = new();
    NativeBuffer? _arena;                          // every activation and work buffer below, carved by Alloc
    long _arenaBytes, _arenaUsed;
    readonly int _maxRows, _maxSequence;
    readonly LayerActivations[] _layers;
    readonly LayerActivations? _shared;
    readonly float* _xFinal;                       // XIn[L]: the residual after the last layer [N, D]
    readonly float* _h, _gradX, _gradH, _gradQ, _gradK, _gradV, _gradAtt, _gradGate, _gradUp, _act; // work buffers
    readonly float* _loraWork;                     // [N, r]
    readonly float* _dropout;                      // [N, widest] LoRA dropout output, when dropout is on
    readonly float* _doraGrad;                     // [N, widest] ∂L/∂z of a DoRA projection
    readonly float* _recomputeOut;                 // [N, D] throwaway layer output when recomputing a checkpointed layer
    readonly float* _logits;                       // [LossChunk, V]
    const int LossChunk = 256;
    int _rows, _batch, _sequence;
    int[] _tokens = [], _targets = [];
    bool _training;

    public ModelConfig Config { get; }
    public IReadOnlyList<Parameter> Parameters => _parameters;
    public IReadOnlyDictionary<string, LoraAdapter> Adapters => _adapters;
    public LlamaWeights Weights => _weights;
    public TrainingSetup Setup => _setup;
    public long ActivationBytes { get; }
    /// <summary>The micro-step counter that seeds LoRA dropout masks (set by the trainer, so resumes reproduce them).</summary>
    public long Step { get; set; }

    sealed class LayerActivations
    {
        public float* XIn, XMid, Q, K, V, Lse, Att, Gate, Up;
        public readonly Dictionary<string, nint> LoraInput = new();  // X·Aᵀ per adapter [N, r]
        public readonly Dictionary<string, nint> DoraBase = new();   // W·x + s·B·A·x per DoRA adapter [N, out]
    }

    public TrainableLlama(LlamaWeights weights, WorkerPool pool, TrainingSetup setup, int maxBatch, int maxSequence)
    {
        _weights = weights; _pool = pool; _setup = setup; Config = weights.Config;
        var c = Config;
        _maxSequence = maxSequence;
        _maxRows = maxBatch * maxSequence;
        if (maxSequence > c.MaxPositions) throw new ArgumentException($"sequence length {maxSequence} exceeds the model's context {c.MaxPositions}");
        bool adapters = setup.Method is TrainingMethod.Lora or TrainingMethod.Dora or TrainingMethod.QLora;
        if (!adapters && weights.TokenEmbedding.Type != TensorType.F32)
            throw new ArgumentException($"{setup.Method} fine-tuning needs f32 weights; load the model with f32 matrices (it is {weights.TokenEmbedding.Type.Name()})");
        _rope = new Rope(c.HeadDim, c.RotaryDims, maxSequence, c.RopeTheta, c.RopeLayout, c.RopeLinearFactor, c.RopeLlama3, weights.RopeFrequencyDivisors);

        // Trainable parameters and their gradients.
        var plan = new List<(string Name, nint Value, int Rows, int Cols, bool Decay)>();
        if (adapters) PlanAdapters(plan);
        else PlanWeights(plan);
        _gradients = new GradientArena(plan.Sum(p => NativeBuffer.Align((long)p.Rows * p.Cols * 4) / 4 + 16));
        foreach (var p in plan)
        {
            var param = new Parameter(p.Name, p.Value, _gradients.Take((long)p.Rows * p.Cols), p.Rows, p.Cols, p.Decay);
            _parameters.Add(param);
            _byName[p.Name] = param;
        }
        foreach (var (target, adapter) in _adapters)
            _adapterParameters[target] = (_byName[target + ":lora_A"], _byName[target + ":lora_B"], adapter.Dora ? _byName[target + ":magnitude"] : null);

        // Activations, carved from one buffer sized by a first pass that only adds up the requests: one allocation, all
        // of it in 2 MiB pages. As separate buffers the [N, D] ones (2.4 MB at batch 4 × 256) sat in 4 KiB pages (then
        // under NativeBuffer's huge-page minimum; now each would still keep its last partial 2 MiB in small pages), and
        // copies, norms and attention over them ran 3–10× slower on this VM.
        _layers = new LayerActivations[c.Layers];
        for (int pass = 0; pass < 2; pass++)
        {
            if (pass == 1) _arena = new NativeBuffer(_arenaBytes);
            int n = _maxRows, d = c.HiddenSize;
            for (int l = 0; l < c.Layers; l++)
            {
                var a = new LayerActivations { XIn = Alloc((long)n * d), XMid = Alloc((long)n * d) };
                if (!setup.CheckpointActivations) AllocateRecomputable(a, l);
                _layers[l] = a;
            }
            if (setup.CheckpointActivations)
            {
                _shared = new LayerActivations();
                AllocateRecomputable(_shared, -1);
            }
            _xFinal = Alloc((long)n * d);
            int widest = Math.Max(d, Math.Max(c.QueryDim, c.IntermediateSize));
            _h = Alloc((long)n * d); _gradX = Alloc((long)n * d); _gradH = Alloc((long)n * widest);
            _gradQ = Alloc((long)n * c.QueryDim); _gradK = Alloc((long)n * c.KvDim); _gradV = Alloc((long)n * c.KvDim);
            _gradAtt = Alloc((long)n * c.QueryDim); _gradGate = Alloc((long)n * c.IntermediateSize); _gradUp = Alloc((long)n * c.IntermediateSize);
            _act = Alloc((long)n * c.IntermediateSize);
            _loraWork = Alloc((long)n * Math.Max(1, setup.Adapter?.Rank ?? 1));
            _dropout = (setup.Adapter?.Dropout ?? 0) > 0 && adapters ? Alloc((long)n * widest) : null;
            _doraGrad = setup.Method == TrainingMethod.Dora ? Alloc((long)n * widest) : null;
            _recomputeOut = setup.CheckpointActivations ? Alloc((long)n * d) : null;
            _logits = Alloc((long)LossChunk * c.VocabSize);
        }
        ActivationBytes = _arena!.Length;
    }

    /// <summary>The next <paramref name="floats"/> of the activation arena (64-byte aligned); before the arena exists,
    /// only counts them and returns null.</summary>
    float* Alloc(long floats)
    {
        long bytes = NativeBuffer.Align(floats * 4);
        if (_arena == null) { _arenaBytes += bytes; return null; }
        if (_arenaUsed + bytes > _arenaBytes) throw new InvalidOperationException("activation arena overrun: the sizing pass and the carving pass differ");
        float* p = (float*)(_arena.Pointer + _arenaUsed);
        _arenaUsed += bytes;
        return p;
    }

    void AllocateRecomputable(LayerActivations a, int layer)
    {
        var c = Config;
        long n = _maxRows;
        a.Q = Alloc(n * c.QueryDim); a.K = Alloc(n * c.KvDim); a.V = Alloc(n * c.KvDim);
        a.Lse = Alloc((long)_maxRows / Math.Max(1, _maxSequence) * c.Heads * _maxSequence);
        a.Att = Alloc(n * c.QueryDim); a.Gate = Alloc(n * c.IntermediateSize); a.Up = Alloc(n * c.IntermediateSize);
        foreach (var adapter in _adapters.Values)
        {
            if (layer >= 0 && !adapter.Target.StartsWith($"blk.{layer}.", StringComparison.Ordinal)) continue;
            string key = layer >= 0 ? adapter.Target : ModuleKey(adapter.Target);
            if (!a.LoraInput.ContainsKey(key)) a.LoraInput[key] = (nint)Alloc(n * adapter.Rank);
            if (adapter.Dora && !a.DoraBase.ContainsKey(key)) a.DoraBase[key] = (nint)Alloc(n * adapter.Out);
        }
    }

    /// <summary>"blk.3.attn_q.weight" → "attn_q": the key of an adapter's slot in the shared (checkpointed) layer.</summary>
    static string ModuleKey(string target) => target.Split('.')[2];

    void PlanWeights(List<(string, nint, int, int, bool)> plan)
    {
        var c = Config;
        bool full = _setup.Method == TrainingMethod.Full;
        var freeze = _setup.Freeze ?? new FreezeSettings();
        var modules = freeze.Modules ?? [];
        var extra = freeze.Extra ?? [];
        bool LayerTrains(int l) => full || (freeze.TrainableLayers >= 0 ? l >= c.Layers - freeze.TrainableLayers : l < -freeze.TrainableLayers);
        bool ModuleTrains(TensorRole role)
        {
            if (full || modules.Count == 0) return true;
            string? module = TensorNames.Module(role);
            bool attention = role is TensorRole.AttentionQuery or TensorRole.AttentionKey or TensorRole.AttentionValue or TensorRole.AttentionOutput;
            bool mlp = role is TensorRole.FeedForwardGate or TensorRole.FeedForwardUp or TensorRole.FeedForwardDown;
            bool norm = role is TensorRole.AttentionNorm or TensorRole.FeedForwardNorm;
            return (module != null && modules.Contains(module)) || (attention && modules.Contains("self_attn")) || (mlp && modules.Contains("mlp")) || (norm && modules.Contains("norm"));
        }
        foreach (var (role, layer, bias, rows, cols) in LlamaWeights.Expected(c))
        {
            bool trains = role switch
            {
                TensorRole.TokenEmbedding => full || extra.Contains("embed_tokens") || (c.TiedEmbeddings && extra.Contains("lm_head")),
                TensorRole.Output => full || extra.Contains("lm_head"),
                TensorRole.OutputNorm => full || extra.Contains("norm"),
                _ => LayerTrains(layer) && ModuleTrains(role),
            };
            if (!trains) continue;
            string name = TensorNames.Gguf(role, layer, bias);
            nint value = rows == 1 ? (nint)VectorOf(role, layer, bias) : (nint)_weights.Matrices().First(m => m.Name == name).Data;
            plan.Add((name, value, rows, cols, rows > 1));
        }
        if (plan.Count == 0) throw new ArgumentException("the freeze settings leave nothing to train");
    }

    float* VectorOf(TensorRole role, int layer, bool bias) => role switch
    {
        TensorRole.OutputNorm => _weights.OutputNorm,
        TensorRole.AttentionNorm => _weights.Layers[layer].AttentionNorm,
        TensorRole.FeedForwardNorm => _weights.Layers[layer].FeedForwardNorm,
        TensorRole.AttentionQuery when bias => _weights.Layers[layer].QueryBias,
        TensorRole.AttentionKey when bias => _weights.Layers[layer].KeyBias,
        TensorRole.AttentionValue when bias => _weights.Layers[layer].ValueBias,
        _ => throw new ArgumentException($"{role} is not a vector"),
    };

    void PlanAdapters(List<(string, nint, int, int, bool)> plan)
    {
        var s = _setup.Adapter ?? new AdapterSettings();
        var targets = s.ResolvedTargets;
        bool dora = _setup.Method == TrainingMethod.Dora;
        ulong index = 0;
        for (int l = 0; l < Config.Layers; l++)
            foreach (var w in LayerMatrices(_weights.Layers[l]))
            {
                var role = TensorNames.TryParseGguf(w.Name, out var parsed) ? parsed.Role : throw new InvalidOperationException(w.Name);
                if (!targets.Contains(TensorNames.Module(role)!)) continue;
                var adapter = new LoraAdapter(w.Name, s.Rank, w.Cols, w.Rows, s.Alpha, s.RsLora, dora);
                adapter.Initialize(_setup.Seed * 1_000_003UL + index++, w);
                _adapters[w.Name] = adapter;
                plan.Add((w.Name + ":lora_A", (nint)adapter.A, s.Rank, w.Cols, true));
                plan.Add((w.Name + ":lora_B", (nint)adapter.B, w.Rows, s.Rank, true));
                if (dora) plan.Add((w.Name + ":magnitude", (nint)adapter.Magnitude, 1, w.Rows, false));
            }
        if (_adapters.Count == 0) throw new ArgumentException($"no projection matches the LoRA targets {string.Join(", ", targets)}");
    }

    static IEnumerable<WeightMatrix> LayerMatrices(LayerWeights w) =>
        [w.Query, w.Key, w.Value, w.AttentionOutput, w.Gate, w.Up, w.Down];

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
        _training = false;
        RunLayers(tokens, targets, batch, sequence);
        return LossForward(0, backward: false);
    }

    /// <summary>
    /// Forward and backward: returns the summed NLL and accumulates ∂(lossScale·Σ NLL)/∂θ into every trainable
    /// parameter's gradient (call <see cref="ZeroGradients"/> between optimizer steps).
    /// </summary>
    public double ForwardBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, int batch, int sequence, float lossScale)
    {
        _training = true;
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
        float* x0 = _layers[0].XIn;
        for (int t = 0; t < n; t++) _weights.TokenEmbedding.ReadRow(tokens[t], x0 + (long)t * c.HiddenSize);
        for (int l = 0; l < c.Layers; l++)
        {
            var a = Activations(l);
            LayerForward(l, a, l + 1 < c.Layers ? _layers[l + 1].XIn : _xFinal);
        }
    }

    LayerActivations Activations(int l)
    {
        if (_shared == null) return _layers[l];
        // Checkpointed: XIn/XMid are per layer, everything else lives in the shared slot.
        var s = _shared;
        s.XIn = _layers[l].XIn; s.XMid = _layers[l].XMid;
        return s;
    }

    nint LoraSlot(Dictionary<string, nint> slots, string target) =>
        slots.TryGetValue(target, out var p) ? p : slots[ModuleKey(target)];

    void LayerForward(int l, LayerActivations a, float* xOut)
    {
        var c = Config;
        var w = _weights.Layers[l];
        int n = _rows, d = c.HiddenSize;
        RowParallel.RmsNormForward(_pool, a.XIn, w.AttentionNorm, _h, n, d, c.RmsNormEps);
        LinearForward(w.Query, w.QueryBias, _h, a.Q, a);
        LinearForward(w.Key, w.KeyBias, _h, a.K, a);
        LinearForward(w.Value, w.ValueBias, _h, a.V, a);
        for (int b = 0; b < _batch; b++)
        {
            RowParallel.RopeApply(_pool, _rope, a.Q + (long)b * _sequence * c.QueryDim, _sequence, c.Heads, c.QueryDim, 0);
            RowParallel.RopeApply(_pool, _rope, a.K + (long)b * _sequence * c.KvDim, _sequence, c.KvHeads, c.KvDim, 0);
        }
        AttentionTraining.Forward(_pool, a.Q, a.K, a.V, a.Att, a.Lse, c.QueryDim, c.KvDim, _batch, _sequence, c.Heads, c.KvHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
        RowParallel.Copy(_pool, a.XIn, a.XMid, (long)n * d);
        LinearForward(w.AttentionOutput, null, a.Att, a.XMid, a, accumulate: true);
        RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, _h, n, d, c.RmsNormEps);
        LinearForward(w.Gate, null, _h, a.Gate, a);
        LinearForward(w.Up, null, _h, a.Up, a);
        RowParallel.SwiGlu(_pool, a.Gate, a.Up, _act, (long)n * c.IntermediateSize);
        RowParallel.Copy(_pool, a.XMid, xOut, (long)n * d);
        LinearForward(w.Down, null, _act, xOut, a, accumulate: true);
    }

    /// <summary>y[N, out] (+)= x·Wᵀ + bias, then the adapter (its X·Aᵀ and, for DoRA, its pre-scaling output are kept).</summary>
    void LinearForward(WeightMatrix w, float* bias, float* x, float* y, LayerActivations a, bool accumulate = false)
    {
        int n = _rows;
        if (!_adapters.TryGetValue(w.Name, out var adapter))
        {
            Linear.Forward(_pool, w, bias, x, n, w.Cols, y, w.Rows, accumulate);
            return;
        }
        // X·Aᵀ first (kept for backward); then the projection with s·(X·Aᵀ)·Bᵀ added in the same pass. LoRA adds to
        // whatever y holds (a zero B leaves the output bit-identical); DoRA scales the whole projection, which is
        // therefore computed on its own into z and kept for backward.
        float* xa = (float*)LoraSlot(a.LoraInput, w.Name);
        float* xin = DropoutInput(adapter, x, n);
        Gemm.Multiply(_pool, n, adapter.Rank, adapter.In, xin, adapter.In, false, adapter.A, adapter.In, GemmBLayout.NByK, xa, adapter.Rank, false);
        float s = adapter.Scale;
        for (long i = 0; i < (long)n * adapter.Rank; i++) _loraWork[i] = xa[i] * s;
        float* z = adapter.Dora ? (float*)LoraSlot(a.DoraBase, w.Name) : y;
        Linear.Forward(_pool, w, bias, x, n, w.Cols, z, w.Rows, accumulate && !adapter.Dora,
            lowRank: new Gemm.LowRankTerm((nint)_loraWork, adapter.Rank, (nint)adapter.B, adapter.Rank, adapter.Rank));
        if (adapter.Dora)
        {
            for (int t = 0; t < n; t++)
            {
                float* zr = z + (long)t * adapter.Out, yr = y + (long)t * adapter.Out;
                for (int o = 0; o < adapter.Out; o++)
                {
                    float v = zr[o] * adapter.Magnitude[o] / adapter.RowNorm[o];
                    yr[o] = accumulate ? yr[o] + v : v;
                }
            }
        }
    }

    /// <summary>LoRA dropout on the adapter's input: a mask derived from (seed, step, adapter, element), so backward
    /// regenerates it instead of storing it. Returns x itself when dropout is off.</summary>
    float* DropoutInput(LoraAdapter adapter, float* x, int n)
    {
        float p = _setup.Adapter?.Dropout ?? 0;
        if (p <= 0 || !_training) return x;
        float* dst = _dropout;
        ulong key = Hash(_setup.Seed, (ulong)Step, (ulong)adapter.Target.GetHashCode(StringComparison.Ordinal));
        float keep = 1 / (1 - p);
        for (long i = 0; i < (long)n * adapter.In; i++)
        {
            double u = (Hash(key, (ulong)i, 0) >> 11) * (1.0 / (1UL << 53));
            dst[i] = u < p ? 0 : x[i] * keep;
        }
        return dst;
    }

    static ulong Hash(ulong a, ulong b, ulong c)
    {
        ulong z = a * 0x9E3779B97F4A7C15 ^ (b + 0x632BE59BD9B4E019) * 0xBF58476D1CE4E5B9 ^ (c + 0x94D049BB133111EB);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
        return z ^ (z >> 31);
    }

    /// <summary>Final norm, head and cross-entropy in chunks of rows (never a [N, V] logits matrix). With backward,
    /// also ∂L/∂XFinal into _gradX and the head and final-norm gradients.</summary>
    double LossForward(float lossScale, bool backward)
    {
        var c = Config;
        int n = _rows, d = c.HiddenSize, v = c.VocabSize;
        float* hFinal = _h;
        RowParallel.RmsNormForward(_pool, _xFinal, _weights.OutputNorm, hFinal, n, d, c.RmsNormEps);
        var head = _weights.Output;
        var headParam = Find(head.Name);
        double loss = 0;
        for (int r0 = 0; r0 < n; r0 += LossChunk)
        {
            int rows = Math.Min(LossChunk, n - r0);
            bool any = false;
            for (int i = 0; i < rows; i++) if (_targets[r0 + i] >= 0) { any = true; break; }
            if (!any)
            {
                if (backward) new Span<float>(_gradH + (long)r0 * d, rows * d).Clear();
                continue;
            }
            Linear.Forward(_pool, head, null, hFinal + (long)r0 * d, rows, d, _logits, v, false);
            loss += RowParallel.CrossEntropyForwardBackward(_pool, _logits, rows, v, _targets.AsSpan(r0, rows), lossScale);
            if (!backward) continue;
            // dhFinal = dLogits·W; dW += dLogitsᵀ·hFinal
            Gemm.MultiplyByWeights(_pool, rows, d, v, _logits, v, head.Type, head.Data, head.RowBytes, _gradH + (long)r0 * d, d, false);
            if (headParam != null)
                Gemm.Multiply(_pool, v, d, rows, _logits, v, true, hFinal + (long)r0 * d, d, GemmBLayout.KByN, headParam.Gradient, d, true);
        }
        if (backward)
        {
            var normParam = Find(TensorNames.Gguf(TensorRole.OutputNorm));
            RowParallel.RmsNormBackward(_pool, _xFinal, _weights.OutputNorm, _gradH, _gradX, normParam != null ? normParam.Gradient : null, n, d, c.RmsNormEps, false);
        }
        return loss;
    }

    // ---- backward -------------------------------------------------------------------------------------

    /// <summary>Layers in reverse order, from ∂L/∂XFinal in _gradX down to the embedding.</summary>
    void BackwardLayers()
    {
        var c = Config;
        int n = _rows, d = c.HiddenSize;
        for (int l = c.Layers - 1; l >= 0; l--)
        {
            var a = Activations(l);
            if (_shared != null) LayerForward(l, a, _recomputeOut); // checkpointed: recompute what this layer's backward reads
            LayerBackward(l, a);
        }
        var embedding = Find(_weights.TokenEmbedding.Name);
        if (embedding != null)
            for (int t = 0; t < n; t++)
            {
                float* g = embedding.Gradient + (long)_tokens[t] * d, dx = _gradX + (long)t * d;
                for (int i = 0; i < d; i++) g[i] += dx[i];
            }
    }

    void LayerBackward(int l, LayerActivations a)
    {
        var c = Config;
        var w = _weights.Layers[l];
        int n = _rows, d = c.HiddenSize, f = c.IntermediateSize;
        // _gradX holds ∂L/∂XOut (= ∂L/∂XIn of layer l+1). MLP: XOut = XMid + Down(SwiGLU(Gate(h2), Up(h2))).
        RowParallel.SwiGlu(_pool, a.Gate, a.Up, _act, (long)n * f);
        float* dAct = _gradH;                      // [N, F]
        LinearBackward(w.Down, null, _act, _gradX, dAct, a, accumulateDx: false);
        RowParallel.SwiGluBackward(_pool, a.Gate, a.Up, dAct, _gradGate, _gradUp, (long)n * f);
        RowParallel.RmsNormForward(_pool, a.XMid, w.FeedForwardNorm, _h, n, d, c.RmsNormEps);
        float* dh2 = _gradH;                       // [N, D]; dAct is consumed
        LinearBackward(w.Gate, null, _h, _gradGate, dh2, a, accumulateDx: false);
        LinearBackward(w.Up, null, _h, _gradUp, dh2, a, accumulateDx: true);
        var ffnNorm = Find(TensorNames.Gguf(TensorRole.FeedForwardNorm, l));
        RowParallel.RmsNormBackward(_pool, a.XMid, w.FeedForwardNorm, dh2, _gradX, ffnNorm != null ? ffnNorm.Gradient : null, n, d, c.RmsNormEps, accumulate: true);

        // Attention: XMid = XIn + O(Attention(rope(Q(h1)), rope(K(h1)), V(h1))).
        LinearBackward(w.AttentionOutput, null, a.Att, _gradX, _gradAtt, a, accumulateDx: false);
        AttentionTraining.Backward(_pool, a.Q, a.K, a.V, a.Att, _gradAtt, a.Lse, _gradQ, _gradK, _gradV, c.QueryDim, c.KvDim,
            _batch, _sequence, c.Heads, c.KvHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
        for (int b = 0; b < _batch; b++)
        {
            RowParallel.RopeApply(_pool, _rope, _gradQ + (long)b * _sequence * c.QueryDim, _sequence, c.Heads, c.QueryDim, 0, inverse: true);
            RowParallel.RopeApply(_pool, _rope, _gradK + (long)b * _sequence * c.KvDim, _sequence, c.KvHeads, c.KvDim, 0, inverse: true);
        }
        RowParallel.RmsNormForward(_pool, a.XIn, w.AttentionNorm, _h, n, d, c.RmsNormEps);
        float* dh1 = _gradH;
        LinearBackward(w.Query, w.QueryBias, _h, _gradQ, dh1, a, accumulateDx: false);
        LinearBackward(w.Key, w.KeyBias, _h, _gradK, dh1, a, accumulateDx: true);
        LinearBackward(w.Value, w.ValueBias, _h, _gradV, dh1, a, accumulateDx: true);
        var attnNorm = Find(TensorNames.Gguf(TensorRole.AttentionNorm, l));
        RowParallel.RmsNormBackward(_pool, a.XIn, w.AttentionNorm, dh1, _gradX, attnNorm != null ? attnNorm.Gradient : null, n, d, c.RmsNormEps, accumulate: true);
    }

    /// <summary>
    /// Backward of y = x·Wᵀ + b (+ adapter) given dy[N, out]: dx[N, in] (+)= ∂L/∂x, and the gradients of whatever
    /// trains among W, b, A, B, m. For DoRA, dy is first turned into ∂L/∂z with z the unscaled output.
    /// </summary>
    void LinearBackward(WeightMatrix w, float* bias, float* x, float* dy, float* dx, LayerActivations a, bool accumulateDx)
    {
        int n = _rows;
        _adapters.TryGetValue(w.Name, out var adapter);
        float* g = dy;
        if (adapter is { Dora: true })
        {
            // y = (m/‖V‖)⊙z: ∂L/∂m = Σ_t dy⊙z/‖V‖; ∂L/∂z = dy⊙m/‖V‖ (the norm is a constant, as in PEFT).
            var (_, _, magnitude) = _adapterParameters[w.Name];
            float* z = (float*)LoraSlot(a.DoraBase, w.Name);
            g = _doraGrad; // dy itself may be the residual gradient, still needed after this projection
            for (int t = 0; t < n; t++)
            {
                float* dyr = dy + (long)t * w.Rows, zr = z + (long)t * w.Rows, gr = g + (long)t * w.Rows;
                for (int o = 0; o < w.Rows; o++)
                {
                    float inv = 1f / adapter.RowNorm[o];
                    magnitude!.Gradient[o] += dyr[o] * zr[o] * inv;
                    gr[o] = dyr[o] * adapter.Magnitude[o] * inv;
                }
            }
        }
        var weightParam = Find(w.Name);
        if (weightParam != null)
            Gemm.Multiply(_pool, w.Rows, w.Cols, n, g, w.Rows, true, x, w.Cols, GemmBLayout.KByN, weightParam.Gradient, w.Cols, true);
        if (bias != null)
        {
            var biasParam = Find(w.Name.Replace(".weight", ".bias", StringComparison.Ordinal));
            if (biasParam != null)
                for (int t = 0; t < n; t++)
                {
                    float* gr = g + (long)t * w.Rows;
                    for (int o = 0; o < w.Rows; o++) biasParam.Gradient[o] += gr[o];
                }
        }
        if (adapter == null)
        {
            Gemm.MultiplyByWeights(_pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx);
            return;
        }
        var (pa, pb, _) = _adapterParameters[w.Name];
        int r = adapter.Rank;
        float s = adapter.Scale;
        float* xa = (float*)LoraSlot(a.LoraInput, w.Name);          // X·Aᵀ [N, r]
        // dB += s·gᵀ·(X·Aᵀ)
        for (long i = 0; i < (long)n * r; i++) _loraWork[i] = xa[i] * s;
        Gemm.Multiply(_pool, w.Rows, r, n, g, w.Rows, true, _loraWork, r, GemmBLayout.KByN, pb.Gradient, r, true);
        // u = s·g·B [N, r]; dA += uᵀ·dropout(X); dx = g·W + u·A (the low-rank term fused into the same pass)
        Gemm.Multiply(_pool, n, r, w.Rows, g, w.Rows, false, adapter.B, r, GemmBLayout.KByN, _loraWork, r, false);
        for (long i = 0; i < (long)n * r; i++) _loraWork[i] *= s;
        float* xin = DropoutInput(adapter, x, n);
        Gemm.Multiply(_pool, r, w.Cols, n, _loraWork, r, true, xin, w.Cols, GemmBLayout.KByN, pa.Gradient, w.Cols, true);
        if ((_setup.Adapter?.Dropout ?? 0) > 0)
        {
            Gemm.MultiplyByWeights(_pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx);
            // ∂L/∂x through the dropout: the same mask and scale applied to u·A.
            float* ua = xin; // reuse the dropout buffer: its contents are no longer needed
            Gemm.Multiply(_pool, n, w.Cols, r, _loraWork, r, false, adapter.A, w.Cols, GemmBLayout.KByN, ua, w.Cols, false);
            float p = _setup.Adapter!.Dropout, keep = 1 / (1 - p);
            ulong key = Hash(_setup.Seed, (ulong)Step, (ulong)adapter.Target.GetHashCode(StringComparison.Ordinal));
            for (long i = 0; i < (long)n * w.Cols; i++)
            {
                double u = (Hash(key, (ulong)i, 0) >> 11) * (1.0 / (1UL << 53));
                dx[i] += u < p ? 0 : ua[i] * keep;
            }
        }
        else
            Gemm.MultiplyByWeights(_pool, n, w.Cols, w.Rows, g, w.Rows, w.Type, w.Data, w.RowBytes, dx, w.Cols, accumulateDx,
                new Gemm.LowRankTerm((nint)_loraWork, r, (nint)adapter.A, w.Cols, r));
    }

    /// <summary>After an optimizer step: DoRA row norms depend on A and B.</summary>
    public void AfterStep()
    {
        foreach (var (target, adapter) in _adapters)
            if (adapter.Dora) adapter.RefreshRowNorm(_weights.Matrices().First(m => m.Name == target));
    }

    public void Dispose()
    {
        _arena?.Dispose();
        foreach (var a in _adapters.Values) a.Dispose();
        _gradients.Dispose();
        _rope.Dispose();
    }
}
