using Hone.Experts;
using Hone.Model;
using Hone.Tensors;

namespace Hone.Batching;

/// <summary>
/// The Llama forward pass over the rows of many sequences at once (continuous batching): one step runs every row —
/// one decode token of each generating sequence and chunks of prompts — through each projection together (decode rows
/// share one pass over the weights, prompt rows one GEMM), while attention, RoPE and the KV cache are per sequence.
/// Glossary: S slots (sequences in flight), R rows in a step (≤ StepRows), G rows that want logits (≤ S), D hidden,
/// F feed-forward, L layers, H heads, Hkv KV heads, Dh head dim, V vocabulary, Tmax context per slot.
/// <para>Each row's result is a function of that row, its sequence's cache and its kind alone (decode rows: the
/// matrix-vector kernels, or for Q8_0 the GEMM on packed weights, and per-head attention; prompt rows: the GEMM and
/// blocked attention), exactly as
/// <see cref="LlamaModel"/> computes a one-sequence step — so no sequence's output depends on the others in its step.</para>
/// </summary>
public sealed unsafe class BatchedLlama : IDisposable
{
    readonly NativeBuffer _keys, _values;           // [S, L, Tmax, Hkv·Dh] in CacheType
    readonly NativeBuffer _x, _h;                   // [R, D]
    readonly NativeBuffer _q, _attention;           // [R, H·Dh]
    readonly NativeBuffer _k, _v;                   // [R, Hkv·Dh]
    readonly NativeBuffer _gate, _up;               // [R, max(F, Fe, Fs)]
    readonly NativeBuffer? _routerLogits;           // [R, E] (a mixture of experts)
    readonly NativeBuffer? _expertInput, _expertOutput; // [R, D] one expert's gathered rows and their outputs
    readonly int[] _routedExperts = [], _routeOrder = [], _expertStarts = []; // [R·k], [R·k], [E + 1]
    readonly float[] _routedWeights = [];           // [R·k]
    readonly RowGroup[] _expertGroups;              // [R] an expert's gathered rows split by the step's row groups
    readonly int[] _groupOfRow;                     // [R] the step's row group of each row
    readonly NativeBuffer _scratch;                 // [R, max(D, F, H·Dh)] non-additive adapters meeting a residual
    readonly NativeBuffer _headInput;               // [S, D] final-normed rows that want logits
    readonly Rope _rope;
    readonly Attention.DecodeQuery[] _queries;      // [S]
    readonly DecodeRowWrite[] _decodeWrites;        // [S]
    readonly RowGroup[] _groups, _headGroups;       // [R], [S]

    public ModelConfig Config { get; }
    public LlamaWeights Weights { get; }
    public WorkerPool Pool { get; }
    public int Slots { get; }
    public int Context { get; }
    public int StepRows { get; }
    public ComputePrecision Precision { get; }
    /// <summary>How the KV cache holds keys and values (<see cref="KvCacheType"/>).</summary>
    public KvCacheType CacheType { get; }
    /// <summary>A mixture of experts whose experts stay in the checkpoint's mapping: the cache that keeps the hot ones
    /// resident (the caller owns it); null computes on the experts where they are.</summary>
    public ExpertCache? ExpertCache { get; set; }

    public BatchedLlama(LlamaWeights weights, WorkerPool pool, int slots, int context, int stepRows, ComputePrecision precision,
        KvCacheType cacheType = KvCacheType.F32)
    {
        CacheType = cacheType;
        if (slots < 1) throw new ArgumentException($"at least one slot is needed, found {slots}");
        if (stepRows < slots) throw new ArgumentException($"a step must hold at least one row per slot ({slots}), found {stepRows}");
        Weights = weights; Config = weights.Config; Pool = pool; Slots = slots; Context = context; StepRows = stepRows; Precision = precision;
        var c = Config;
        long kv = checked((long)slots * c.Layers * context * c.KvDim);
        var buffers = new List<NativeBuffer>();
        NativeBuffer Buffer(long floats) { var b = new NativeBuffer(checked(floats * 4)); buffers.Add(b); return b; }
        try
        {
            _keys = new NativeBuffer(checked(kv * cacheType.ElementBytes())); buffers.Add(_keys);
            _values = new NativeBuffer(checked(kv * cacheType.ElementBytes())); buffers.Add(_values);
            _x = Buffer((long)stepRows * c.HiddenSize); _h = Buffer((long)stepRows * c.HiddenSize);
            _q = Buffer((long)stepRows * c.QueryDim); _attention = Buffer((long)stepRows * c.QueryDim);
            _k = Buffer((long)stepRows * c.KvDim); _v = Buffer((long)stepRows * c.KvDim);
            int feedForward = c.FeedForwardWidth;
            _gate = Buffer((long)stepRows * feedForward); _up = Buffer((long)stepRows * feedForward);
            _scratch = Buffer((long)stepRows * Math.Max(c.HiddenSize, Math.Max(feedForward, c.QueryDim)));
            if (c.IsMixtureOfExperts)
            {
                _routerLogits = Buffer((long)stepRows * c.Experts);
                _expertInput = Buffer((long)stepRows * c.HiddenSize);
                _expertOutput = Buffer((long)stepRows * c.HiddenSize);
                _routedExperts = new int[stepRows * c.ExpertsPerToken];
                _routedWeights = new float[stepRows * c.ExpertsPerToken];
                _routeOrder = new int[stepRows * c.ExpertsPerToken];
                _expertStarts = new int[c.Experts + 1];
            }
            _headInput = Buffer((long)slots * c.HiddenSize);
            _rope = new Rope(c.HeadDim, c.RotaryDims, context, c.RopeTheta, c.RopeLayout, c.RopeLinearFactor, c.RopeLlama3, weights.RopeFrequencyDivisors);
        }
        catch
        {
            foreach (var b in buffers) b.Dispose();
            throw;
        }
        _queries = new Attention.DecodeQuery[slots];
        _decodeWrites = new DecodeRowWrite[slots];
        _groups = new RowGroup[stepRows];
        _expertGroups = new RowGroup[stepRows];
        _groupOfRow = new int[stepRows];
        _headGroups = new RowGroup[slots];
        // Q8_0 and F32 weights get their packed copy now rather than at the first request, so memory is fixed from start-up.
        if (precision == ComputePrecision.Fast)
        {
            foreach (var m in weights.Matrices())
                if (m != weights.TokenEmbedding || m == weights.Output) // an untied embedding is only looked up
                {
                    m.PackedForGemm(pool);
                    m.PackedF32ForGemm(pool);
                }
        }
    }

    /// <summary>Bytes the constructor allocates (KV cache and step buffers; the weights are apart).</summary>
    public static long RequiredBytes(ModelConfig c, int slots, int context, int stepRows, KvCacheType cacheType = KvCacheType.F32)
    {
        try
        {
            checked
            {
                long kv = 2L * slots * c.Layers * context * c.KvDim;
                long feedForward = c.FeedForwardWidth;
                long rows = (long)stepRows * (2L * c.HiddenSize + 2L * c.QueryDim + 2L * c.KvDim + 2L * feedForward
                                              + Math.Max(c.HiddenSize, Math.Max(feedForward, c.QueryDim))
                                              + (c.IsMixtureOfExperts ? c.Experts + 2L * c.HiddenSize + 3L * c.ExpertsPerToken : 0));
                return cacheType.ElementBytes() * kv + 4 * (rows + (long)slots * c.HiddenSize);
            }
        }
        catch (OverflowException) { return long.MaxValue; }
    }

    readonly List<LoraRouter> _routed = new();

    /// <summary>Every LoRA mixture router of layer <paramref name="layer"/> that some row group's adapters use routes all
    /// the step's rows of the attention norm's output (rows of other groups get a routing they do not use); each
    /// group's mixture adapters then read their own rows' weights.</summary>
    void RouteLoraMixtures(int layer, float* h, int R, ReadOnlySpan<RowGroup> groups)
    {
        _routed.Clear();
        foreach (var g in groups)
        {
            if (g.Adapters == null) continue;
            foreach (var a in g.Adapters.Values)
                if (a is LoraMixtureAdapter m && m.Router.Layer == layer && !_routed.Contains(m.Router))
                {
                    _routed.Add(m.Router);
                    m.Router.Route(Pool, h, R);
                }
        }
    }


    /// <summary>A sequence's rows in a step.</summary>
    /// <param name="Slot">its KV slot</param>
    /// <param name="Position">the position of its first row (its cache holds positions below it)</param>
    /// <param name="Start">its first row in the step</param>
    /// <param name="Decode">one generated token (matrix-vector kernels or the packed Q8_0 GEMM, per-head attention) rather than prompt rows</param>
    /// <param name="Adapters">its adapters by canonical weight name, or null for the base</param>
    /// <param name="LogitsRow">the row of the logits output its last row's logits go to, or -1</param>
    /// <param name="HiddenSum">[D]: when set, its rows' final hidden states (after the output norm) are added here</param>
    public readonly record struct Segment(int Slot, int Position, int Start, int Count, bool Decode,
        IReadOnlyDictionary<string, ILinearAdapter>? Adapters, int LogitsRow, double[]? HiddenSum);

    /// <summary>
    /// Runs one step: <paramref name="tokens"/>[R] are the rows; <paramref name="segments"/> list decode sequences first
    /// (one row each), then prompt chunks, consecutive in row order, grouped by adapters where possible (each run of
    /// equal adapters is one low-rank product). Writes the logits [G, V] of every segment that asks for them.
    /// </summary>
    public void Step(ReadOnlySpan<int> tokens, ReadOnlySpan<Segment> segments, Span<float> logits)
    {
        var c = Config;
        int R = tokens.Length, D = c.HiddenSize, F = c.IntermediateSize, Qd = c.QueryDim, Kd = c.KvDim, V = c.VocabSize;
        if (R == 0 || R > StepRows) throw new ArgumentException($"a step runs 1 to {StepRows} rows, found {R}");
        int decodeRows = 0, next = 0, groups = 0, logitRows = 0;
        foreach (var s in segments)
        {
            if (s.Start != next || s.Count < 1) throw new ArgumentException($"segment at row {s.Start} ({s.Count} rows) does not follow row {next}");
            if (s.Decode && (s.Count != 1 || decodeRows != s.Start)) throw new ArgumentException("decode segments come first, one row each");
            if ((uint)s.Slot >= (uint)Slots) throw new ArgumentOutOfRangeException(nameof(segments), $"slot {s.Slot} of {Slots}");
            if (s.Position < 0 || s.Position + s.Count > Context)
                throw new ArgumentException($"slot {s.Slot}: positions {s.Position}..{s.Position + s.Count - 1} exceed the context of {Context}");
            if (s.Decode) decodeRows++;
            if (groups > 0 && ReferenceEquals(_groups[groups - 1].Adapters, s.Adapters) && (s.Decode || _groups[groups - 1].Start >= decodeRows))
                _groups[groups - 1] = _groups[groups - 1] with { Count = _groups[groups - 1].Count + s.Count };
            else _groups[groups++] = new RowGroup(s.Start, s.Count, s.Adapters);
            if (s.LogitsRow >= 0) logitRows = Math.Max(logitRows, s.LogitsRow + 1);
            next += s.Count;
        }
        if (next != R) throw new ArgumentException($"the segments cover {next} rows of {R}");
        if (logits.Length < (long)logitRows * V) throw new ArgumentException($"logits hold {logits.Length} floats, need {(long)logitRows * V}");
        for (int t = 0; t < R; t++)
            if ((uint)tokens[t] >= (uint)V) throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[t]} is outside the vocabulary of {V}");
        var rowGroups = new ReadOnlySpan<RowGroup>(_groups, 0, groups);
        for (int g = 0; g < groups; g++)
            for (int t = _groups[g].Start; t < _groups[g].Start + _groups[g].Count; t++) _groupOfRow[t] = g;

        float* x = _x.AsFloats, h = _h.AsFloats, q = _q.AsFloats, att = _attention.AsFloats, k = _k.AsFloats, v = _v.AsFloats;
        float* gate = _gate.AsFloats, up = _up.AsFloats, scratch = _scratch.AsFloats;
        for (int t = 0; t < R; t++) Weights.TokenEmbedding.ReadRow(tokens[t], x + (long)t * D);
        float scale = 1f / MathF.Sqrt(c.HeadDim);
        int element = CacheType.ElementBytes();
        long slotStride = (long)c.Layers * Context * Kd * element;
        for (int l = 0; l < c.Layers; l++)
        {
            var w = Weights.Layers[l];
            RowParallel.RmsNormForward(Pool, x, w.AttentionNorm, h, R, D, c.RmsNormEps);
            RouteLoraMixtures(l, h, R, rowGroups);
            Linear.ForwardSharedRows(Pool, h, D, w.Query, w.QueryBias, q, Qd, w.Key, w.KeyBias, k, Kd, w.Value, w.ValueBias, v, Kd,
                decodeRows, R, rowGroups, scratch, Precision);
            w.NormalizeQueriesKeys(Pool, c, q, k, R);
            int queries = 0;
            foreach (var s in segments)
            {
                byte* kCache = _keys.Pointer + s.Slot * slotStride + (long)l * Context * Kd * element;
                byte* vCache = _values.Pointer + s.Slot * slotStride + (long)l * Context * Kd * element;
                float* qs = q + (long)s.Start * Qd, ks = k + (long)s.Start * Kd;
                if (s.Decode)
                {
                    _decodeWrites[queries] = new DecodeRowWrite(qs, ks, v + (long)s.Start * Kd,
                        kCache + (long)s.Position * Kd * element, vCache + (long)s.Position * Kd * element, s.Position);
                    _queries[queries++] = new Attention.DecodeQuery((nint)qs, (nint)kCache, (nint)vCache, (nint)(att + (long)s.Start * Qd), s.Position);
                    continue;
                }
                RowParallel.RopeApply(Pool, _rope, qs, s.Count, c.Heads, Qd, s.Position);
                RowParallel.RopeApply(Pool, _rope, ks, s.Count, c.KvHeads, Kd, s.Position);
                KvCacheTypes.Store(CacheType, ks, kCache + (long)s.Position * Kd * element, (long)s.Count * Kd);
                KvCacheTypes.Store(CacheType, v + (long)s.Start * Kd, vCache + (long)s.Position * Kd * element, (long)s.Count * Kd);
                Attention.Forward(Pool, qs, Qd, kCache, vCache, Kd, att + (long)s.Start * Qd, Qd, s.Count, c.Heads, c.KvHeads, c.HeadDim,
                    s.Position, scale, promptRows: true, CacheType);
            }
            WriteDecodeRows(queries);
            Attention.ForwardDecodeBatch(Pool, _queries.AsSpan(0, queries), Kd, c.Heads, c.KvHeads, c.HeadDim, scale, CacheType);
            if (w.AttentionShortcut != null) Shortcut(w.AttentionShortcut, x, h, D, decodeRows, R, rowGroups);
            Linear.ForwardRows(Pool, w.AttentionOutput, null, att, Qd, x, D, true, decodeRows, R, rowGroups, scratch, Precision);

            RowParallel.RmsNormForward(Pool, x, w.FeedForwardNorm, h, R, D, c.RmsNormEps);
            if (w.IsSparse)
            {
                if (w.FeedForwardShortcut != null) Shortcut(w.FeedForwardShortcut, x, _expertOutput!.AsFloats, D, decodeRows, R, rowGroups);
                MixtureOfExperts(w, l, h, x, decodeRows, R, rowGroups);
                continue;
            }
            Linear.ForwardGatedRows(Pool, h, D, w.Gate, w.Up, gate, up, decodeRows, R, rowGroups, Precision);
            if (w.FeedForwardShortcut != null) Shortcut(w.FeedForwardShortcut, x, h, D, decodeRows, R, rowGroups);
            Linear.ForwardRows(Pool, w.Down, null, gate, F, x, D, true, decodeRows, R, rowGroups, scratch, Precision);
        }

        // Final norm: the rows that want logits (gathered in logits-row order), and whole segments that want hidden states.
        int headGroups = 0;
        float* headInput = _headInput.AsFloats;
        foreach (var s in segments)
        {
            if (s.HiddenSum is double[] sum)
            {
                RowParallel.RmsNormForward(Pool, x + (long)s.Start * D, Weights.OutputNorm, h, s.Count, D, c.RmsNormEps);
                for (int t = 0; t < s.Count; t++)
                    for (int i = 0; i < D; i++) sum[i] += h[(long)t * D + i];
            }
            if (s.LogitsRow < 0) continue;
            RowParallel.RmsNormForward(Pool, x + (long)(s.Start + s.Count - 1) * D, Weights.OutputNorm, headInput + (long)s.LogitsRow * D, 1, D, c.RmsNormEps);
            _headGroups[headGroups++] = new RowGroup(s.LogitsRow, 1, s.Adapters);
        }
        if (logitRows == 0) return;
        // Logits rows must be 0..G-1, each once, so the head's groups tile them; sorted by row, each one its own group.
        Array.Sort(_headGroups, 0, headGroups, Comparer<RowGroup>.Create((a, b) => a.Start.CompareTo(b.Start)));
        for (int i = 0; i < headGroups; i++)
            if (_headGroups[i].Start != i) throw new ArgumentException($"logits rows must be 0..{headGroups - 1}, each once");
        fixed (float* output = logits)
            Linear.ForwardRows(Pool, Weights.Output, null, headInput, D, output, V, false, logitRows, logitRows,
                new ReadOnlySpan<RowGroup>(_headGroups, 0, headGroups), null, Precision);
    }

    /// <summary>The residual x [R, D] turned in place by a shortcut S [D, D] (x ← x·Sᵀ through <paramref name="free"/>
    /// [R, D]), each row by the kernel <see cref="LlamaModel"/> gives it alone (decode rows, prompt rows).</summary>
    void Shortcut(WeightMatrix shortcut, float* x, float* free, int D, int decodeRows, int R, ReadOnlySpan<RowGroup> rowGroups)
    {
        Linear.ForwardRows(Pool, shortcut, null, x, D, free, D, false, decodeRows, R, rowGroups, null, Precision);
        Buffer.MemoryCopy(free, x, (long)R * D * 4, (long)R * D * 4);
    }

    /// <summary>
    /// A mixture-of-experts MLP over the step's R rows, as <see cref="LlamaModel"/> computes it for one sequence: route
    /// every row (<see cref="ExpertRouting"/>), run each expert once over its rows (decode rows first, through the decode
    /// kernels, then prompt rows through the GEMM — each row gets the bits it gets alone), add each output times its
    /// weight in expert order, then the shared expert over all rows times sigmoid(h·g). Experts carry no adapters.
    /// </summary>
    /// <param name="h">[R, D] the normed input</param>
    /// <param name="x">[R, D] the residual stream, added to</param>
    void MixtureOfExperts(LayerWeights w, int layer, float* h, float* x, int decodeRows, int R, ReadOnlySpan<RowGroup> rowGroups)
    {
        var c = Config;
        int D = c.HiddenSize, E = c.Experts, k = c.ExpertsPerToken;
        float* logits = _routerLogits!.AsFloats, input = _expertInput!.AsFloats, output = _expertOutput!.AsFloats;
        float* gate = _gate.AsFloats, up = _up.AsFloats;
        Linear.ForwardRows(Pool, w.Router!, null, h, D, logits, E, false, decodeRows, R, rowGroups, null, Precision);
        ExpertRouting.Route(new ReadOnlySpan<float>(logits, R * E), R, E, k, c.NormalizeTopK, _routedExperts, _routedWeights);
        ExpertRouting.GroupByExpert(_routedExperts, R, E, k, _expertStarts, _routeOrder);
        for (int e = 0; e < E; e++)
        {
            int start = _expertStarts[e], n = _expertStarts[e + 1] - start, decode = 0;
            if (n == 0) continue;
            for (int i = 0; i < n; i++)
            {
                int row = _routeOrder[start + i] / k;
                if (row < decodeRows) decode++;
                new ReadOnlySpan<float>(h + (long)row * D, D).CopyTo(new Span<float>(input + (long)i * D, D));
            }
            var expertGroups = ExpertRowGroups(start, n, k, rowGroups);
            var (expertGate, expertUp, expertDown) = ExpertCache?.Fetch(layer, e) ?? (w.ExpertGate![e], w.ExpertUp![e], w.ExpertDown![e]);
            Linear.ForwardGatedRows(Pool, input, D, expertGate, expertUp, gate, up, decode, n, expertGroups, Precision);
            Linear.ForwardRows(Pool, expertDown, null, gate, c.ExpertFeedForwardSize, output, D, false, decode, n, expertGroups, null, Precision);
            for (int i = 0; i < n; i++)
            {
                int route = _routeOrder[start + i];
                LlamaModel.AddScaled(x + (long)(route / k) * D, output + (long)i * D, _routedWeights[route], D);
            }
        }
        if (w.SharedGate == null) return;
        Linear.ForwardGatedRows(Pool, h, D, w.SharedGate, w.SharedUp!, gate, up, decodeRows, R, rowGroups, Precision);
        Linear.ForwardRows(Pool, w.SharedDown!, null, gate, c.SharedExpertFeedForwardSize, output, D, false, decodeRows, R, rowGroups, null, Precision);
        for (int t = 0; t < R; t++)
        {
            float logit = w.SharedGateLogit(h + (long)t * D, D);
            LlamaModel.AddScaled(x + (long)t * D, output + (long)t * D, 1f / (1f + MathF.Exp(-logit)), D);
        }
    }

    /// <summary>An expert's n gathered rows (ascending step rows, from <see cref="ExpertRouting.GroupByExpert"/>) as runs
    /// that share the step's row group, so each run gets its group's adapters on the expert's projections.</summary>
    ReadOnlySpan<RowGroup> ExpertRowGroups(int start, int n, int k, ReadOnlySpan<RowGroup> rowGroups)
    {
        int count = 0, previous = -1;
        for (int i = 0; i < n; i++)
        {
            int g = _groupOfRow[_routeOrder[start + i] / k];
            if (g == previous) { _expertGroups[count - 1] = _expertGroups[count - 1] with { Count = _expertGroups[count - 1].Count + 1 }; continue; }
            _expertGroups[count++] = new RowGroup(i, 1, rowGroups[g].Adapters);
            previous = g;
        }
        return new ReadOnlySpan<RowGroup>(_expertGroups, 0, count);
    }

    /// <summary>One decode row's queries and keys to rotate at its position, and its key and value rows to store there.</summary>
    /// <param name="Q">q[H·Dh]</param>
    /// <param name="K">k[Hkv·Dh] (likewise V)</param>
    /// <param name="KeyCache">the cache row [Hkv·Dh] of this position in the slot's layer (likewise ValueCache)</param>
    readonly struct DecodeRowWrite(float* q, float* k, float* v, byte* keyCache, byte* valueCache, int position)
    {
        public readonly float* Q = q, K = k, V = v;
        public readonly byte* KeyCache = keyCache, ValueCache = valueCache;
        public readonly int Position = position;
    }

    struct DecodeWritesJob
    {
        public DecodeRowWrite* Rows; public int Count;
        public Rope.TableView Rope; public int Heads, KvHeads, QueryDim, KvDim;
        public KvCacheType CacheType;
    }

    /// <summary>RoPE and the cache writes of the step's decode rows in one dispatch (a few microseconds each, too short
    /// to split one row, too many to run one after another on the calling thread).</summary>
    void WriteDecodeRows(int count)
    {
        if (count == 0) return;
        fixed (DecodeRowWrite* rows = _decodeWrites)
        {
            var job = new DecodeWritesJob
            {
                Rows = rows, Count = count, Rope = _rope.Tables, Heads = Config.Heads, KvHeads = Config.KvHeads,
                QueryDim = Config.QueryDim, KvDim = Config.KvDim, CacheType = CacheType,
            };
            Pool.Run(&DecodeWritesWorker, &job);
        }
    }

    static void DecodeWritesWorker(void* context, int thread, int threads)
    {
        ref var job = ref *(DecodeWritesJob*)context;
        var (r0, r1) = WorkerPool.Share(job.Count, thread, threads);
        for (int r = r0; r < r1; r++)
        {
            var row = job.Rows[r];
            Rope.Rotate(job.Rope, row.Q, 1, job.Heads, job.QueryDim, row.Position, false);
            Rope.Rotate(job.Rope, row.K, 1, job.KvHeads, job.KvDim, row.Position, false);
            KvCacheTypes.Store(job.CacheType, row.K, row.KeyCache, job.KvDim);
            KvCacheTypes.Store(job.CacheType, row.V, row.ValueCache, job.KvDim);
        }
    }

    /// <summary>Copies positions [0, <paramref name="tokens"/>) of one slot's cache to another (a shared prompt prefix).</summary>
    public void CopyPrefix(int fromSlot, int toSlot, int tokens)
    {
        if ((uint)fromSlot >= (uint)Slots || (uint)toSlot >= (uint)Slots) throw new ArgumentOutOfRangeException(nameof(fromSlot));
        if (tokens < 0 || tokens > Context) throw new ArgumentOutOfRangeException(nameof(tokens));
        if (fromSlot == toSlot || tokens == 0) return;
        var c = Config;
        int element = CacheType.ElementBytes();
        long slotStride = (long)c.Layers * Context * c.KvDim * element, layerStride = (long)Context * c.KvDim * element;
        long bytes = (long)tokens * c.KvDim * element;
        foreach (var buffer in new[] { _keys, _values })
            for (int l = 0; l < c.Layers; l++)
            {
                byte* from = buffer.Pointer + fromSlot * slotStride + l * layerStride, to = buffer.Pointer + toSlot * slotStride + l * layerStride;
                Buffer.MemoryCopy(from, to, bytes, bytes);
            }
    }

    /// <summary>The cached key vector of one slot, layer and position ([Hkv·Dh], after RoPE) — for tests.</summary>
    public ReadOnlySpan<float> CachedKey(int slot, int layer, int position) =>
        KvCacheTypes.ToArray(CacheType, _keys.Pointer + (((long)slot * Config.Layers + layer) * Context + position) * Config.KvDim * CacheType.ElementBytes(),
            Config.KvDim);

    public void Dispose()
    {
        _keys.Dispose(); _values.Dispose(); _x.Dispose(); _h.Dispose(); _q.Dispose(); _attention.Dispose(); _k.Dispose(); _v.Dispose();
        _gate.Dispose(); _up.Dispose(); _scratch.Dispose(); _headInput.Dispose(); _rope.Dispose();
    }
}
