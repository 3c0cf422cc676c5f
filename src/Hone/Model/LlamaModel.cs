using Hone.Experts;
using Hone.Tensors;

namespace Hone.Model;

/// <summary>
/// The Llama-family forward pass for inference:
/// embedding → L × [RMSNorm → attention (GQA, RoPE, optional qkv bias) → residual → RMSNorm → SwiGLU MLP → residual]
/// → RMSNorm → head. In a mixture-of-experts layer the MLP is k of E SwiGLU experts chosen per token by a router (and a
/// shared expert behind a sigmoid gate, Qwen2-MoE): each expert runs once over the rows routed to it, so a decode step
/// reads only the chosen experts' weights.
/// Glossary: T tokens in a step (≤ MaxBatch), D hidden, F feed-forward, L layers, H heads, Hkv KV heads, Dh head dim,
/// V vocabulary, Tmax context; E experts, k per token, Fe an expert's feed-forward size, Fs the shared expert's.
/// All buffers, the KV cache [L, Tmax, Hkv·Dh] included, are allocated once here; a forward step allocates nothing.
/// </summary>
public sealed unsafe class LlamaModel : IDisposable
{
    readonly NativeBuffer _keys, _values;          // [L, Tmax, Hkv·Dh] in CacheType
    readonly NativeBuffer? _newKeys, _newValues;   // [MaxBatch, Hkv·Dh] fp32: a step's keys and values before a bf16 cache rounds them
    readonly NativeBuffer _x, _h, _q, _attention;  // [MaxBatch, D] ×2, [MaxBatch, H·Dh] ×2
    readonly NativeBuffer _gate, _up, _scratch;    // [MaxBatch, max(F, Fe, Fs)] ×2, [MaxBatch, max(D, F, V?)] adapter scratch
    readonly NativeBuffer? _routerLogits;          // [MaxBatch, E]
    readonly NativeBuffer? _expertInput, _expertOutput; // [MaxBatch, D] ×2: one expert's gathered rows and its output
    readonly int[] _routedExperts = [], _expertStarts = [], _routeOrder = []; // [MaxBatch·k], [E + 1], [MaxBatch·k]
    readonly float[] _routedWeights = [];          // [MaxBatch·k]
    readonly Rope _rope;

    public ModelConfig Config { get; }
    public LlamaWeights Weights { get; }
    public WorkerPool Pool { get; }
    public int MaxContext { get; }
    public int MaxBatch { get; }
    /// <summary>Tokens currently in the KV cache (the position of the next token).</summary>
    public int Position { get; private set; }
    /// <summary>A mixture of experts: skip a token's routed experts after its first whose weight is under this (see
    /// <see cref="ExpertRouting.Skip"/>); 0 runs every chosen expert.</summary>
    public float ExpertSkipThreshold { get; set; }
    /// <summary>A mixture of experts whose experts stay in the checkpoint's mapping: the cache that keeps the hot ones
    /// resident (the caller owns it); null computes on the experts where they are.</summary>
    public ExpertCache? ExpertCache { get; set; }
    /// <summary>Expert evaluations routing chose, and those <see cref="ExpertSkipThreshold"/> skipped, since construction.</summary>
    public long RoutedExpertRuns { get; private set; }
    public long SkippedExpertRuns { get; private set; }

    /// <summary>Adapters by canonical weight name ("blk.0.attn_q.weight"); empty for the plain model.</summary>
    public Dictionary<string, ILinearAdapter> Adapters { get; } = new();
    /// <summary>How activations meet the weights in every projection: Fast (llama.cpp's kernels; generation) unless
    /// set to Exact (fp32 activations throughout; evaluation). See <see cref="ComputePrecision"/>.</summary>
    public ComputePrecision Precision { get; set; } = ComputePrecision.Fast;

    /// <summary>When set, every mixture-of-experts layer adds its routing to it (<c>hone inspect --routing</c>).</summary>
    public RoutingStatistics? Routing { get; set; }

    /// <summary>When set, sees the input rows of every projection of one-sequence steps (<see cref="IActivationObserver"/>;
    /// <c>hone imatrix</c>); null on every normal pass, which then pays one null check per projection.</summary>
    public IActivationObserver? ActivationObserver { get; set; }

    /// <summary>How the KV cache holds keys and values (<see cref="KvCacheType"/>).</summary>
    public KvCacheType CacheType { get; }

    public LlamaModel(LlamaWeights weights, WorkerPool pool, int maxContext = 0, int maxBatch = 512, KvCacheType cacheType = KvCacheType.F32)
    {
        Weights = weights;
        Config = weights.Config;
        Pool = pool;
        CacheType = cacheType;
        MaxContext = maxContext > 0 ? maxContext : Config.MaxPositions;
        MaxBatch = Math.Max(1, Math.Min(maxBatch, MaxContext));
        var c = Config;
        long kvElements = (long)c.Layers * MaxContext * c.KvDim;
        _keys = new NativeBuffer(kvElements * cacheType.ElementBytes());
        _values = new NativeBuffer(kvElements * cacheType.ElementBytes());
        if (cacheType != KvCacheType.F32)
        {
            _newKeys = new NativeBuffer((long)MaxBatch * c.KvDim * 4);
            _newValues = new NativeBuffer((long)MaxBatch * c.KvDim * 4);
        }
        _x = new NativeBuffer((long)MaxBatch * c.HiddenSize * 4);
        _h = new NativeBuffer((long)MaxBatch * c.HiddenSize * 4);
        _q = new NativeBuffer((long)MaxBatch * c.QueryDim * 4);
        _attention = new NativeBuffer((long)MaxBatch * c.QueryDim * 4);
        _gate = new NativeBuffer((long)MaxBatch * c.FeedForwardWidth * 4);
        _up = new NativeBuffer((long)MaxBatch * c.FeedForwardWidth * 4);
        if (c.IsMixtureOfExperts)
        {
            _routerLogits = new NativeBuffer((long)MaxBatch * c.Experts * 4);
            _expertInput = new NativeBuffer((long)MaxBatch * c.HiddenSize * 4);
            _expertOutput = new NativeBuffer((long)MaxBatch * c.HiddenSize * 4);
            _routedExperts = new int[MaxBatch * c.ExpertsPerToken];
            _routedWeights = new float[MaxBatch * c.ExpertsPerToken];
            _routeOrder = new int[MaxBatch * c.ExpertsPerToken];
            _expertStarts = new int[c.Experts + 1];
        }
        _scratch = new NativeBuffer((long)MaxBatch * Math.Max(c.HiddenSize, Math.Max(c.IntermediateSize, c.QueryDim)) * 4);
        _rope = new Rope(c.HeadDim, c.RotaryDims, MaxContext, c.RopeTheta, c.RopeLayout, c.RopeLinearFactor, c.RopeLlama3, weights.RopeFrequencyDivisors);
    }

    /// <summary>Bytes the constructor allocates for a context of <paramref name="maxContext"/> tokens and batches of
    /// <paramref name="maxBatch"/> (KV cache and activations; the weights are apart), computed as it allocates them.</summary>
    public static long RequiredBytes(ModelConfig c, int maxContext, int maxBatch, KvCacheType cacheType = KvCacheType.F32)
    {
        try
        {
            checked
            {
                long batch = Math.Max(1, Math.Min(maxBatch, maxContext));
                long kv = 2L * c.Layers * maxContext * c.KvDim;
                long activations = batch * (2L * c.HiddenSize + 2L * c.QueryDim + 2L * c.FeedForwardWidth
                                            + Math.Max(c.HiddenSize, Math.Max(c.IntermediateSize, c.QueryDim))
                                            + (cacheType == KvCacheType.F32 ? 0 : 2L * c.KvDim)
                                            + (c.IsMixtureOfExperts ? c.Experts + 2L * c.HiddenSize + 3L * c.ExpertsPerToken : 0));
                return cacheType.ElementBytes() * kv + 4 * activations;
            }
        }
        catch (OverflowException) { return long.MaxValue; }
    }


    /// <summary>Forget the cached context.</summary>
    public void Reset() => Position = 0;

    /// <summary>Drop cached positions from <paramref name="position"/> on (to reuse a shared prefix).</summary>
    public void Truncate(int position)
    {
        if (position < 0 || position > Position) throw new ArgumentOutOfRangeException(nameof(position));
        Position = position;
    }

    /// <summary>
    /// Append <paramref name="tokens"/> at the current position and compute logits: for every token
    /// (<paramref name="logits"/> is [T, V]) or only for the last one ([V]).
    /// </summary>
    /// <param name="promptRows">the tokens are a prompt: every chunk, even of one token, takes the GEMM and the blocked
    /// attention, so the result does not depend on how the prompt was cut into steps (without it one token is a decode
    /// step: matrix-vector products). Generation passes it for prompts; the batched engine computes prompt and decode
    /// rows the same two ways, which is why both give the same tokens.</param>
    public void Forward(ReadOnlySpan<int> tokens, Span<float> logits, bool allLogits = false, bool promptRows = false)
    {
        int v = Config.VocabSize;
        if (tokens.Length == 0) throw new ArgumentException("no tokens to process");
        if (Position + tokens.Length > MaxContext)
            throw new InvalidOperationException($"context full: {Position} + {tokens.Length} tokens exceed the context of {MaxContext}");
        if (logits.Length < (allLogits ? (long)tokens.Length * v : v))
            throw new ArgumentException($"logits buffer holds {logits.Length} floats, needs {(allLogits ? (long)tokens.Length * v : v)}");
        foreach (var t in tokens)
            if ((uint)t >= (uint)v) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary of {v}");
        fixed (float* logitsPointer = logits)
            for (int start = 0; start < tokens.Length; start += MaxBatch)
            {
                int count = Math.Min(MaxBatch, tokens.Length - start);
                bool last = start + count == tokens.Length;
                Step(tokens.Slice(start, count), allLogits ? logitsPointer + (long)start * v : (last ? logitsPointer : null), allLogits, false,
                    promptRows, null);
            }
    }

    /// <summary>Append <paramref name="tokens"/> as prompt rows and write the mean of their final hidden states (after
    /// the output norm, Hugging Face's last_hidden_state) to <paramref name="meanHidden"/> [D]; no logits.</summary>
    public void ForwardMeanHidden(ReadOnlySpan<int> tokens, Span<float> meanHidden)
    {
        int d = Config.HiddenSize;
        if (tokens.Length == 0) throw new ArgumentException("no tokens to embed");
        if (Position + tokens.Length > MaxContext)
            throw new InvalidOperationException($"context full: {Position} + {tokens.Length} tokens exceed the context of {MaxContext}");
        if (meanHidden.Length < d) throw new ArgumentException($"the hidden-state buffer holds {meanHidden.Length} floats, needs {d}");
        foreach (var t in tokens)
            if ((uint)t >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary of {Config.VocabSize}");
        var sum = new double[d];
        fixed (double* s = sum)
            for (int start = 0; start < tokens.Length; start += MaxBatch)
                Step(tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start)), null, false, false, true, s);
        for (int i = 0; i < d; i++) meanHidden[i] = (float)(sum[i] / tokens.Length);
    }

    /// <summary>Append <paramref name="tokens"/> as prompt rows and write, for every layer, the residual stream entering
    /// it (Hugging Face's hidden_states[l], l &lt; L: the embeddings, then each layer's output) at the last token, or
    /// averaged over the tokens, to <paramref name="layerInputs"/> [L, D]; no logits.</summary>
    public void ForwardLayerInputs(ReadOnlySpan<int> tokens, Span<float> layerInputs, bool average)
    {
        var c = Config;
        int d = c.HiddenSize;
        if (tokens.Length == 0) throw new ArgumentException("no tokens to run");
        if (Position + tokens.Length > MaxContext)
            throw new InvalidOperationException($"context full: {Position} + {tokens.Length} tokens exceed the context of {MaxContext}");
        if (layerInputs.Length < (long)c.Layers * d) throw new ArgumentException($"the buffer holds {layerInputs.Length} floats, needs {c.Layers} × {d}");
        foreach (var t in tokens)
            if ((uint)t >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary of {c.VocabSize}");
        var sums = new double[c.Layers * d];
        fixed (double* capture = sums)
        {
            _layerCapture = capture;
            _captureAverage = average;
            try
            {
                for (int start = 0; start < tokens.Length; start += MaxBatch)
                    Step(tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start)), null, false, false, true, null);
            }
            finally { _layerCapture = null; }
        }
        for (int i = 0; i < sums.Length; i++) layerInputs[i] = (float)(average ? sums[i] / tokens.Length : sums[i]);
    }

    /// <summary>Sees the residual stream x [rows, D] entering each layer (layer 0 .. L − 1: Hugging Face's
    /// hidden_states) and, with layer = L, the last layer's output, on every step; null on normal passes (calibration
    /// statistics such as block influence use it).</summary>
    public ResidualObserver? ResidualObserver { get; set; }

    /// <summary>Sees, and may change in place, the residual stream x [rows, D] at every block boundary: 2l before layer
    /// l's attention norm, 2l + 1 before its feed-forward norm, 2L after the last layer. Returning false ends the step
    /// there (no logits; the position still advances, and the layers passed keep their KV cache): per-layer SliceGPT
    /// runs the calibration text once per boundary, projecting the stream at the boundaries already sliced.</summary>
    public BlockBoundaryObserver? BlockBoundaryObserver { get; set; }

    double* _layerCapture;   // [L, D] while ForwardLayerInputs runs
    bool _captureAverage;

    /// <summary>Adds each row of the residual <paramref name="x"/> [T, D] entering layer <paramref name="layer"/> to
    /// the capture (average), or keeps the last row.</summary>
    void CaptureLayerInput(int layer, float* x, int T, int D)
    {
        double* dst = _layerCapture + (long)layer * D;
        if (_captureAverage)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < D; i++) dst[i] += x[(long)t * D + i];
        else
            for (int i = 0; i < D; i++) dst[i] = x[(long)(T - 1) * D + i];
    }

    /// <param name="diagnose">check every stage's output for NaN/∞ and throw <see cref="NonFiniteException"/> naming the
    /// first that has any (see <see cref="DiagnoseNonFinite"/>); off on every normal pass</param>
    /// <param name="hiddenSum">[D] in double: when set, every row's final hidden state (after the output norm) is added to it</param>
    void Step(ReadOnlySpan<int> tokens, float* logits, bool allLogits, bool diagnose, bool promptRows, double* hiddenSum)
    {
        var c = Config;
        int T = tokens.Length, D = c.HiddenSize, F = c.IntermediateSize, Qd = c.QueryDim, Kd = c.KvDim;
        float* x = _x.AsFloats, h = _h.AsFloats, q = _q.AsFloats, att = _attention.AsFloats;
        float* gate = _gate.AsFloats, up = _up.AsFloats, scratch = _scratch.AsFloats;
        for (int t = 0; t < T; t++) Weights.TokenEmbedding.ReadRow(tokens[t], x + (long)t * D);
        if (diagnose) CheckFinite(x, (long)T * D, -1, "token embeddings", Weights.TokenEmbedding);
        float scale = 1f / MathF.Sqrt(c.HeadDim);
        for (int l = 0; l < c.Layers; l++)
        {
            var w = Weights.Layers[l];
            if (_layerCapture != null) CaptureLayerInput(l, x, T, D);
            ResidualObserver?.Invoke(l, x, T, D);
            if (BlockBoundaryObserver is { } before && !before(2 * l, x, T, D)) { Position += T; return; }
            long layerOffset = (long)l * MaxContext * Kd * CacheType.ElementBytes(), positionOffset = (long)Position * Kd * CacheType.ElementBytes();
            byte* kCache = _keys.Pointer + layerOffset, vCache = _values.Pointer + layerOffset;
            // F32: the projections write straight into the cache; BF16: into fp32 rows, rounded into the cache after RoPE.
            bool direct = CacheType == KvCacheType.F32;
            float* kNew = direct ? (float*)(kCache + positionOffset) : _newKeys!.AsFloats;
            float* vNew = direct ? (float*)(vCache + positionOffset) : _newValues!.AsFloats;

            RowParallel.RmsNormForward(Pool, x, w.AttentionNorm, h, T, D, c.RmsNormEps);
            if (diagnose) CheckFinite(h, (long)T * D, l, "attention norm");
            RouteLoraMixture(l, h, T);
            if (ActivationObserver is { } observer)
            {
                observer.Observe(w.Query, h, T, D);
                observer.Observe(w.Key, h, T, D);
                observer.Observe(w.Value, h, T, D);
            }
            Linear.ForwardShared(Pool, h, T, D,
                w.Query, w.QueryBias, q, Qd, AdapterOf(w.Query),
                w.Key, w.KeyBias, kNew, Kd, AdapterOf(w.Key),
                w.Value, w.ValueBias, vNew, Kd, AdapterOf(w.Value), Precision, promptRows);
            if (diagnose)
            {
                CheckFinite(q, (long)T * Qd, l, "query projection", w.Query);
                CheckFinite(kNew, (long)T * Kd, l, "key projection", w.Key);
                CheckFinite(vNew, (long)T * Kd, l, "value projection", w.Value);
            }
            w.NormalizeQueriesKeys(Pool, c, q, kNew, T);
            RowParallel.RopeApply(Pool, _rope, q, T, c.Heads, Qd, Position);
            RowParallel.RopeApply(Pool, _rope, kNew, T, c.KvHeads, Kd, Position);
            if (!direct)
            {
                KvCacheTypes.Store(CacheType, kNew, kCache + positionOffset, (long)T * Kd);
                KvCacheTypes.Store(CacheType, vNew, vCache + positionOffset, (long)T * Kd);
            }
            Attention.Forward(Pool, q, Qd, kCache, vCache, Kd, att, Qd, T, c.Heads, c.KvHeads, c.HeadDim, Position, scale, promptRows, CacheType);
            if (diagnose) CheckFinite(att, (long)T * Qd, l, "attention", w.Query, w.Key, w.Value);
            if (w.AttentionShortcut != null) Shortcut(w.AttentionShortcut, x, h, T, D, promptRows);
            Project(w.AttentionOutput, null, att, T, Qd, x, D, true, scratch, promptRows);
            if (diagnose) CheckFinite(x, (long)T * D, l, "attention output projection", w.AttentionOutput);

            if (BlockBoundaryObserver is { } between && !between(2 * l + 1, x, T, D)) { Position += T; return; }
            RowParallel.RmsNormForward(Pool, x, w.FeedForwardNorm, h, T, D, c.RmsNormEps);
            if (diagnose) CheckFinite(h, (long)T * D, l, "feed-forward norm");
            if (w.IsSparse)
            {
                // The experts read h (the normed stream): the shortcut turns x after the router has read it, so h is
                // kept and the turned residual goes through the expert output buffer.
                if (w.FeedForwardShortcut != null) Shortcut(w.FeedForwardShortcut, x, _expertOutput!.AsFloats, T, D, promptRows);
                MixtureOfExperts(w, h, T, x, l, diagnose, promptRows);
                continue;
            }
            ObserveGated(w.Gate, w.Up, h, T, D);
            Linear.ForwardGated(Pool, h, T, D, w.Gate, AdapterOf(w.Gate), w.Up, AdapterOf(w.Up), gate, up, Precision, promptRows);
            if (diagnose) CheckFinite(gate, (long)T * F, l, "gate and up projections", w.Gate, w.Up);
            if (w.FeedForwardShortcut != null) Shortcut(w.FeedForwardShortcut, x, h, T, D, promptRows);
            Project(w.Down, null, gate, T, F, x, D, true, scratch, promptRows);
            if (diagnose) CheckFinite(x, (long)T * D, l, "down projection", w.Down);
        }
        Position += T;
        ResidualObserver?.Invoke(c.Layers, x, T, D);
        BlockBoundaryObserver?.Invoke(2 * c.Layers, x, T, D);
        if (hiddenSum != null)
        {
            RowParallel.RmsNormForward(Pool, x, Weights.OutputNorm, h, T, D, c.RmsNormEps);
            for (int t = 0; t < T; t++)
                for (int i = 0; i < D; i++) hiddenSum[i] += h[(long)t * D + i];
        }
        if (logits == null) return;
        // Only the rows whose logits are wanted go through the final norm and the head.
        int first = allLogits ? 0 : T - 1, rows = T - first;
        RowParallel.RmsNormForward(Pool, x + (long)first * D, Weights.OutputNorm, h, rows, D, c.RmsNormEps);
        if (diagnose) CheckFinite(h, (long)rows * D, c.Layers, "output norm");
        Project(Weights.Output, null, h, rows, D, logits, c.VocabSize, false, null, false);
        if (diagnose) CheckFinite(logits, (long)rows * c.VocabSize, c.Layers, "output head", Weights.Output);
    }

    /// <summary>
    /// A mixture-of-experts MLP over T rows: route (<see cref="ExpertRouting"/>), then per expert with any rows: gather
    /// them, SwiGLU through its gate, up and down, and add each row's output times its weight to the residual
    /// <paramref name="x"/>; then the shared expert over all rows, scaled by sigmoid(h·g).
    /// </summary>
    /// <param name="h">[T, D] the normed input</param>
    /// <param name="x">[T, D] the residual stream, added to</param>
    void MixtureOfExperts(LayerWeights w, float* h, int T, float* x, int layer, bool diagnose, bool promptRows)
    {
        var c = Config;
        int D = c.HiddenSize, E = c.Experts, k = c.ExpertsPerToken;
        float* logits = _routerLogits!.AsFloats, input = _expertInput!.AsFloats, output = _expertOutput!.AsFloats;
        float* gate = _gate.AsFloats, up = _up.AsFloats;
        Project(w.Router!, null, h, T, D, logits, E, false, null, promptRows);
        if (diagnose) CheckFinite(logits, (long)T * E, layer, "router", w.Router!);
        ExpertRouting.Route(new ReadOnlySpan<float>(logits, T * E), T, E, k, c.NormalizeTopK, _routedExperts, _routedWeights);
        Routing?.Add(layer, new ReadOnlySpan<float>(logits, T * E), T, _routedExperts);
        RoutedExpertRuns += (long)T * k;
        if (ExpertSkipThreshold > 0)
        {
            SkippedExpertRuns += ExpertRouting.Skip(_routedWeights, T, k, ExpertSkipThreshold, c.NormalizeTopK);
            ExpertRouting.GroupByExpert(_routedExperts, T, E, k, _expertStarts, _routeOrder, _routedWeights);
        }
        else ExpertRouting.GroupByExpert(_routedExperts, T, E, k, _expertStarts, _routeOrder);
        for (int e = 0; e < E; e++)
        {
            int start = _expertStarts[e], n = _expertStarts[e + 1] - start;
            if (n == 0) continue;
            for (int i = 0; i < n; i++)
                new ReadOnlySpan<float>(h + (long)(_routeOrder[start + i] / k) * D, D).CopyTo(new Span<float>(input + (long)i * D, D));
            var (expertGate, expertUp, expertDown) = ExpertCache?.Fetch(layer, e) ?? (w.ExpertGate![e], w.ExpertUp![e], w.ExpertDown![e]);
            ObserveGated(expertGate, expertUp, input, n, D);
            Linear.ForwardGated(Pool, input, n, D, expertGate, AdapterOf(expertGate), expertUp, AdapterOf(expertUp), gate, up, Precision, promptRows);
            Project(expertDown, null, gate, n, c.ExpertFeedForwardSize, output, D, false, null, promptRows);
            if (diagnose) CheckFinite(output, (long)n * D, layer, $"expert {e}", expertGate, expertUp, expertDown);
            for (int i = 0; i < n; i++)
            {
                int route = _routeOrder[start + i];
                AddScaled(x + (long)(route / k) * D, output + (long)i * D, _routedWeights[route], D);
            }
        }
        if (w.SharedGate != null)
        {
            int fs = c.SharedExpertFeedForwardSize;
            ObserveGated(w.SharedGate, w.SharedUp!, h, T, D);
            Linear.ForwardGated(Pool, h, T, D, w.SharedGate, AdapterOf(w.SharedGate), w.SharedUp!, AdapterOf(w.SharedUp!), gate, up, Precision, promptRows);
            Project(w.SharedDown!, null, gate, T, fs, output, D, false, null, promptRows);
            if (diagnose) CheckFinite(output, (long)T * D, layer, "shared expert", w.SharedGate, w.SharedUp!, w.SharedDown!);
            for (int t = 0; t < T; t++)
            {
                float logit = w.SharedGateLogit(h + (long)t * D, D);
                AddScaled(x + (long)t * D, output + (long)t * D, 1f / (1f + MathF.Exp(-logit)), D);
            }
        }
        if (diagnose) CheckFinite(x, (long)T * D, layer, "mixture of experts");
    }

    /// <summary>The residual x [T, D] turned by a shortcut S [D, D] in place (x ← x·Sᵀ, through <paramref name="free"/>
    /// [T, D], a buffer the layer no longer needs), before the block adds its output.</summary>
    void Shortcut(WeightMatrix shortcut, float* x, float* free, int T, int D, bool promptRows)
    {
        Project(shortcut, null, x, T, D, free, D, false, null, promptRows);
        Buffer.MemoryCopy(free, x, (long)T * D * 4, (long)T * D * 4);
    }

    /// <summary>A LoRA mixture's router of layer <paramref name="layer"/> (if its adapters are attached) routes the
    /// rows of the attention norm's output before any of the layer's adapted projections run.</summary>
    void RouteLoraMixture(int layer, float* h, int T)
    {
        LoraRouter? routed = null;
        foreach (var adapter in Adapters.Values)
            if (adapter is LoraMixtureAdapter m && m.Router.Layer == layer && !ReferenceEquals(m.Router, routed))
            {
                if (routed != null) throw new InvalidOperationException($"layer {layer} has adapters of two LoRA mixtures");
                routed = m.Router;
                routed.Route(Pool, h, T);
            }
    }

    /// <summary>y[n] += s · v[n] (O(D) per routed row, beside the expert's O(D·Fe) products)</summary>
    internal static void AddScaled(float* y, float* v, float s, int n)
    {
        for (int i = 0; i < n; i++) y[i] += s * v[i];
    }

    /// <summary>
    /// After a pass gave non-finite logits: reruns <paramref name="tokens"/> (the whole context those logits came from) from
    /// position 0, checking the output of every stage of every layer, and returns the error that names the first stage with
    /// NaN or ∞, its projection and any adapter applied there. The KV cache is lost (the model is reset). The normal pass
    /// never pays for this: callers detect non-finite logits where they already read them (sampling, log-softmax).
    /// </summary>
    /// <param name="what">what was found not finite, for the message ("the logits of the last token")</param>
    public NonFiniteException DiagnoseNonFinite(ReadOnlySpan<int> tokens, string what = "the logits")
    {
        Reset();
        try
        {
            if (tokens.Length > MaxContext) tokens = tokens[..MaxContext];
            var logits = new float[(long)Math.Min(MaxBatch, Math.Max(1, tokens.Length)) * Config.VocabSize];
            fixed (float* l = logits)
                for (int start = 0; start < tokens.Length; start += MaxBatch)
                    Step(tokens.Slice(start, Math.Min(MaxBatch, tokens.Length - start)), l, allLogits: true, diagnose: true, promptRows: false, hiddenSum: null);
        }
        catch (NonFiniteException found)
        {
            return new NonFiniteException($"{what} are not finite (NaN or infinity): {found.Message}", found.Layer, found.Adapters);
        }
        finally
        {
            Reset();
        }
        return new NonFiniteException($"{what} are not finite (NaN or infinity), but a stage-by-stage rerun of the same {tokens.Length} tokens found none", null, []);
    }

    void CheckFinite(float* values, long count, int layer, string stage, params WeightMatrix[] projections)
    {
        for (long i = 0; i < count; i++)
            if (!float.IsFinite(values[i])) throw NonFiniteAt(layer, stage, projections);
    }

    NonFiniteException NonFiniteAt(int layer, string stage, WeightMatrix[] projections)
    {
        var where = layer < 0 ? stage : layer >= Config.Layers ? $"the {stage}" : $"layer {layer}'s {stage}";
        string family = Config.Architecture;
        string Module(WeightMatrix w) => (TensorNames.GgufToHuggingFace(w.Name, family) ?? w.Name).Replace(".weight", "");
        string Short(WeightMatrix w) => Module(w)[(Module(w).LastIndexOf('.') + 1)..];
        var adapted = projections.Where(p => AdapterOf(p) != null).ToList();
        var adapters = adapted.Select(p => AdapterOf(p)!).Distinct().ToList();
        var message = $"they first appear in {where}" + (projections.Length > 0 ? $" ({string.Join(", ", projections.Select(Module))})" : "");
        if (adapted.Count > 0)
            message += ", where " + string.Join("; and ", adapted.GroupBy(p => Describe(AdapterOf(p)!))
                .Select(g => $"{g.Key} applies to {string.Join(", ", g.Select(Short))}")) + ": the adapter is broken (or its scale too large for these weights)";
        else if (Adapters.Count > 0)
            message += $"; no adapter applies at that stage (of the model's {Adapters.Count} adapted projections, those before it gave finite but possibly huge values)";
        else
            message += "; the model has no adapter: its own weights overflow";
        return new NonFiniteException(message, layer < 0 ? null : layer, adapters);
    }

    static string Describe(ILinearAdapter adapter) => adapter is LoraAdapter lora ? lora.Describe() : $"the adapter {adapter.GetType().Name}";

    ILinearAdapter? AdapterOf(WeightMatrix w) => Adapters.Count == 0 ? null : Adapters.GetValueOrDefault(w.Name);

    void ObserveGated(WeightMatrix gate, WeightMatrix up, float* x, int tokens, int ldx)
    {
        if (ActivationObserver is not { } observer) return;
        observer.Observe(gate, x, tokens, ldx);
        observer.Observe(up, x, tokens, ldx);
    }

    void Project(WeightMatrix w, float* bias, float* x, int tokens, int ldx, float* y, int ldy, bool accumulate, float* scratch, bool promptRows)
    {
        ActivationObserver?.Observe(w, x, tokens, ldx);
        Linear.Forward(Pool, w, bias, x, tokens, ldx, y, ldy, accumulate, AdapterOf(w), scratch, precision: Precision, promptRows: promptRows);
    }

    /// <summary>The cached key vector of one layer and position ([Hkv·Dh], after RoPE) — for tests and inspection.</summary>
    public ReadOnlySpan<float> CachedKey(int layer, int position) =>
        KvCacheTypes.ToArray(CacheType, _keys.Pointer + ((long)layer * MaxContext + position) * Config.KvDim * CacheType.ElementBytes(), Config.KvDim);

    public void Dispose()
    {
        _newKeys?.Dispose(); _newValues?.Dispose();
        _keys.Dispose(); _values.Dispose(); _x.Dispose(); _h.Dispose(); _q.Dispose(); _attention.Dispose();
        _gate.Dispose(); _up.Dispose(); _scratch.Dispose(); _rope.Dispose();
        _routerLogits?.Dispose(); _expertInput?.Dispose(); _expertOutput?.Dispose();
    }
}

/// <summary>Sees the residual stream x [rows, width] at a layer boundary (<see cref="LlamaModel.ResidualObserver"/>).</summary>
public unsafe delegate void ResidualObserver(int layer, float* x, int rows, int width);

/// <summary>Sees (and may change) the residual stream x [rows, width] at block boundary <paramref name="boundary"/>
/// (<see cref="LlamaModel.BlockBoundaryObserver"/>); false ends the step.</summary>
public unsafe delegate bool BlockBoundaryObserver(int boundary, float* x, int rows, int width);

/// <summary>
/// A forward pass produced NaN or infinity. <see cref="Layer"/> is the layer where they first appeared (the layer count for
/// the output head; null when unknown or in the embeddings) and <see cref="Adapters"/> the adapters applied at that stage.
/// </summary>
public sealed class NonFiniteException(string message, int? layer, IReadOnlyList<ILinearAdapter> adapters) : InvalidOperationException(message)
{
    public int? Layer { get; } = layer;
    public IReadOnlyList<ILinearAdapter> Adapters { get; } = adapters;
}
