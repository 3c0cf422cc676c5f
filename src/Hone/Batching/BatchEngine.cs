using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Hone.Grammars;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;

namespace Hone.Batching;

/// <summary>
/// Many sequences over one model at once (continuous batching). Each sequence holds one KV slot from admission to its
/// end; every step runs the rows of all sequences in flight — one token of each decoding sequence and chunks of prompts
/// under <see cref="EngineOptions.StepTokens"/> — and new requests join, finished ones leave, between steps. A slot
/// keeps its prompt's keys and values after its sequence ends, and a request whose prompt starts the same way reuses
/// them (prefix caching). Each sequence samples on its own (seed, temperature, stop strings) and may name its own adapter.
/// <para>Results do not depend on the batch: prompt rows always take the GEMM and blocked attention, decode rows the
/// matrix-vector kernels, and each row's result is a function of that row alone — so a greedy request gives the
/// tokens <see cref="Generator"/> gives, alone or among others.</para>
/// </summary>
public sealed class BatchEngine : IDisposable
{
    readonly Checkpoint? _checkpoint;   // null for an engine over weights made in memory (benchmarks)
    readonly LlamaWeights _weights;
    readonly Tokenizer? _tokenizer;     // null: ids only (no text, no stop strings, no end of turn)
    readonly WorkerPool _pool;
    readonly Slot[] _slots;
    readonly BatchedLlama _model;
    readonly float[] _logits;       // [S, V]
    readonly int[] _rows;           // [R] the step's tokens
    readonly BatchedLlama.Segment[] _segments; // [S]
    readonly EngineOptions _options;
    readonly HashSet<int> _endOfTurn;
    readonly int _sampleable;
    readonly object _lock = new();
    readonly LinkedList<Pending> _queue = new();
    readonly Dictionary<string, AdapterEntry> _adapters = new(StringComparer.Ordinal);
    readonly SemaphoreSlim _wake = new(0);
    readonly Thread _loop;
    volatile bool _disposed;
    int _active;
    long _kvUsed;

    public Tokenizer Tokenizer => _tokenizer ?? throw new InvalidOperationException("this engine runs on ids only (it has no tokenizer)");
    public ModelConfig Config => _weights.Config;
    /// <summary>The base model's name (its file or directory name), as requests name it.</summary>
    public string ModelName { get; }
    public string ModelPath => _checkpoint?.Path ?? ModelName;
    /// <summary>Tokens per sequence, prompt and output together.</summary>
    public int ContextLength { get; }
    public int Parallel => _slots.Length;
    /// <summary>How the KV cache holds keys and values.</summary>
    public KvCacheType CacheType => _model.CacheType;
    public EngineOptions Options => _options;
    /// <summary>Raised on the engine's thread after every step (keep handlers short).</summary>
    public event Action<StepStatistics>? StepCompleted;
    /// <summary>Raised on the engine's thread when a sequence ends — finished, cancelled (its client gone) or an
    /// embedding done — with its usage; not for one that failed (keep handlers short).</summary>
    readonly ExpertCache? _expertCache;
    public event Action<SequenceEnd>? SequenceEnded;

    BatchEngine(Checkpoint? checkpoint, LlamaWeights weights, Tokenizer? tokenizer, WorkerPool pool, EngineOptions options, int context, string name,
        ExpertCache? expertCache = null)
    {
        _expertCache = expertCache;
        _checkpoint = checkpoint; _weights = weights; _tokenizer = tokenizer; _pool = pool; _options = options; ContextLength = context;
        ModelName = name;
        _endOfTurn = tokenizer?.EndOfTurnIds.ToHashSet() ?? [];
        if (tokenizer?.EosId is int eos) _endOfTurn.Add(eos);
        _sampleable = Math.Min(weights.Config.VocabSize, tokenizer?.VocabSize ?? int.MaxValue);
        _model = new BatchedLlama(weights, pool, options.Parallel, context, Math.Max(options.StepTokens, options.Parallel), options.Precision,
            options.CacheType) { ExpertCache = expertCache };
        _slots = new Slot[options.Parallel];
        for (int i = 0; i < _slots.Length; i++) _slots[i] = new Slot(i, weights.Config.VocabSize);
        _logits = new float[(long)options.Parallel * weights.Config.VocabSize];
        _rows = new int[_model.StepRows];
        _segments = new BatchedLlama.Segment[options.Parallel];
        _loop = new Thread(Loop) { IsBackground = true, Name = "hone-batch-engine" };
        _loop.Start();
    }

    /// <summary>The name a model is served under: its file name without .gguf, or its directory's name.</summary>
    public static string ModelNameOf(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        string name = Path.GetFileName(full);
        return name.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? name[..^5] : name;
    }

    /// <summary>Opens a model (a Hugging Face directory or GGUF file) and its adapters (name, PEFT directory or llama.cpp
    /// LoRA GGUF) and allocates every slot.</summary>
    public static BatchEngine Open(string modelPath, IEnumerable<(string Name, string Path)> adapters, EngineOptions options)
    {
        if (options.Parallel < 1) throw new ArgumentException($"--parallel must be at least 1, found {options.Parallel}");
        if (options.StepTokens < 1) throw new ArgumentException($"the step must hold at least 1 token, found {options.StepTokens}");
        if (options.QueueLimit < 0) throw new ArgumentException($"the queue limit must be at least 0, found {options.QueueLimit}");
        LoadedModel.CheckLimits(options.Context, options.Threads);
        var checkpoint = Checkpoint.Open(modelPath);
        LlamaWeights? weights = null;
        WorkerPool? pool = null;
        BatchEngine? engine = null;
        ExpertCache? cache = null;
        try
        {
            var config = checkpoint.Config;
            int context = LoadedModel.ResolveContext(config, options.Context);
            bool inPlace = options.ExpertCache != null;
            if (inPlace && !config.IsMixtureOfExperts) throw new ArgumentException($"--expert-cache applies to mixtures of experts; {checkpoint.Path} is dense");
            long weightBytes = checkpoint.Tensors.Where(t => !inPlace || !ExpertCache.IsExpertProjection(t.Name)).Sum(t => t.ByteLength);
            MemoryBudget.Require(weightBytes + BatchedLlama.RequiredBytes(config, options.Parallel, context, Math.Max(options.StepTokens, options.Parallel), options.CacheType),
                $"{checkpoint.Path} with {options.Parallel} sequences of {context} tokens (weights and KV cache)");
            var tokenizer = LoadedModel.LoadTokenizer(checkpoint);
            weights = LlamaWeights.Load(checkpoint, new WeightLoadOptions(ExpertsInPlace: inPlace));
            pool = new WorkerPool(WorkerPool.ResolveThreadCount(options.Threads));
            if (inPlace) cache = ExpertCache.Open(weights, options.ExpertCache!, pool, options.Precision);
            engine = new BatchEngine(checkpoint, weights, tokenizer, pool, options, context, ModelNameOf(checkpoint.Path), cache);
            foreach (var (name, path) in adapters) engine.AddAdapter(name, path);
            return engine;
        }
        catch
        {
            if (engine != null) engine.Dispose();
            else { cache?.Dispose(); weights?.Dispose(); pool?.Dispose(); checkpoint.Dispose(); }
            throw;
        }
    }

    /// <summary>The expert cache's counts (a mixture of experts served with --expert-cache), else null.</summary>
    public ExpertCacheStatistics? ExpertCacheStatistics => _expertCache?.Statistics;

    /// <summary>An engine over weights already in memory (random weights for benchmarks), on ids only: no tokenizer,
    /// so no text, stop strings or end of turn. The caller keeps ownership of <paramref name="weights"/>.</summary>
    public static BatchEngine ForWeights(LlamaWeights weights, EngineOptions options, string name)
    {
        if (options.Parallel < 1) throw new ArgumentException($"--parallel must be at least 1, found {options.Parallel}");
        LoadedModel.CheckLimits(options.Context, options.Threads);
        int context = LoadedModel.ResolveContext(weights.Config, options.Context);
        var pool = new WorkerPool(WorkerPool.ResolveThreadCount(options.Threads));
        try { return new BatchEngine(null, weights, null, pool, options, context, name); }
        catch { pool.Dispose(); throw; }
    }

    // ---- adapters ---------------------------------------------------------------------------------------

    sealed class AdapterEntry(string name, string path, Dictionary<string, LoraAdapter> adapters)
    {
        public string Name { get; } = name;
        public string Path { get; } = path;
        public Dictionary<string, LoraAdapter> Adapters { get; } = adapters;
        public IReadOnlyDictionary<string, ILinearAdapter> ByWeight { get; } = adapters.ToDictionary(p => p.Key, p => (ILinearAdapter)p.Value);
        public int Users;
        public bool Removed;
        public void Dispose() { foreach (var a in Adapters.Values) a.Dispose(); }
    }

    /// <summary>The loaded adapters' names, in the order they were added.</summary>
    public IReadOnlyList<string> AdapterNames { get { lock (_lock) return _adapters.Values.Where(a => !a.Removed).Select(a => a.Name).ToList(); } }

    /// <summary>Where an adapter was loaded from.</summary>
    public string? AdapterPath(string name) { lock (_lock) return _adapters.TryGetValue(name, out var a) && !a.Removed ? a.Path : null; }

    /// <summary>A name requests can use for an adapter: 1–64 letters, digits, '.', '_' or '-', starting with a letter or
    /// digit (so never a path), and not the base model's name.</summary>
    public static bool IsValidAdapterName(string name) =>
        name.Length is >= 1 and <= 64 && char.IsAsciiLetterOrDigit(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')
        && !name.Contains("..", StringComparison.Ordinal);

    /// <summary>Loads an adapter next to the base; requests name it by <paramref name="name"/>.</summary>
    public void AddAdapter(string name, string path)
    {
        if (!IsValidAdapterName(name))
            throw new ArgumentException($"adapter name '{name}' is not allowed: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        if (name == ModelName) throw new ArgumentException($"adapter name '{name}' is the base model's name");
        lock (_lock)
            if (_adapters.TryGetValue(name, out var existing) && !existing.Removed)
                throw new ArgumentException($"an adapter named '{name}' is already loaded (from {existing.Path})");
        var loaded = PeftAdapter.Load(path, _weights);
        lock (_lock)
        {
            if (_adapters.TryGetValue(name, out var existing) && !existing.Removed)
            {
                foreach (var a in loaded.Values) a.Dispose();
                throw new ArgumentException($"an adapter named '{name}' is already loaded (from {existing.Path})");
            }
            _adapters[name] = new AdapterEntry(name, path, loaded);
        }
    }

    /// <summary>Unloads an adapter: new requests can no longer name it; sequences using it finish first. False when no
    /// adapter has that name.</summary>
    public bool RemoveAdapter(string name)
    {
        lock (_lock)
        {
            if (!_adapters.TryGetValue(name, out var entry) || entry.Removed) return false;
            entry.Removed = true;
            if (entry.Users == 0) { _adapters.Remove(name); entry.Dispose(); }
            return true;
        }
    }

    // ---- requests ---------------------------------------------------------------------------------------

    /// <summary>A submitted sequence: read its events; cancel it (or the token given to Submit) to end it at the next step.</summary>
    public sealed class SequenceHandle
    {
        readonly Channel<SequenceEvent> _events = Channel.CreateUnbounded<SequenceEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        internal ChannelWriter<SequenceEvent> Writer => _events.Writer;
        internal volatile bool CancelRequested;
        internal Action? OnCancel;

        public ChannelReader<SequenceEvent> Events => _events.Reader;

        public void Cancel() { CancelRequested = true; OnCancel?.Invoke(); }

        /// <summary>Reads every event and returns the whole result.</summary>
        public async Task<SequenceResult> CompleteAsync(CancellationToken cancel = default)
        {
            var text = new StringBuilder();
            var tokens = new List<GeneratedToken>();
            await foreach (var e in Events.ReadAllAsync(cancel).ConfigureAwait(false))
                switch (e)
                {
                    case SequenceUpdate u: text.Append(u.Text); tokens.AddRange(u.Tokens); break;
                    case SequenceEnd end: return new SequenceResult(text.ToString(), tokens, end.FinishReason, end.Usage);
                }
            throw new InvalidOperationException("the sequence ended without a result");
        }
    }

    sealed class Pending
    {
        public required SequenceRequest Request;
        public required SequenceHandle Handle;
        public required AdapterEntry? Adapter;
        public required long SubmittedTicks;
        public bool Embedding;
        public TaskCompletionSource<float[]>? EmbeddingResult;
        public CancellationTokenRegistration Registration;
    }

    /// <summary>Queues a sequence. Throws <see cref="RequestRejectedException"/> when the queue is full, the prompt does
    /// not fit the context, the adapter is unknown or a value is out of range — before anything runs.</summary>
    public SequenceHandle Submit(SequenceRequest request, CancellationToken cancel = default)
    {
        Validate(request);
        var handle = new SequenceHandle();
        Enqueue(request, handle, cancel, embedding: false, null);
        return handle;
    }

    /// <summary>The mean of the final hidden states of <paramref name="tokens"/> (after the output norm), L2-normalized.</summary>
    public Task<float[]> EmbedAsync(IReadOnlyList<int> tokens, string? adapter = null, CancellationToken cancel = default)
    {
        var request = new SequenceRequest { Prompt = tokens, Adapter = adapter, MaxTokens = 0 };
        Validate(request);
        var handle = new SequenceHandle();
        var result = new TaskCompletionSource<float[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(request, handle, cancel, embedding: true, result);
        return result.Task;
    }

    void Validate(SequenceRequest r)
    {
        if (r.Prompt.Count == 0) throw new RequestRejectedException(RejectReason.Invalid, "the prompt has no tokens", "prompt");
        if (r.Prompt.Count + 1 > ContextLength && r.MaxTokens > 0 || r.Prompt.Count > ContextLength)
            throw new RequestRejectedException(RejectReason.PromptTooLong,
                $"the prompt has {r.Prompt.Count} tokens; this server's context holds {ContextLength} per sequence, so at most {ContextLength - 1} prompt tokens fit with room to generate",
                "messages");
        foreach (var t in r.Prompt)
            if ((uint)t >= (uint)Config.VocabSize)
                throw new RequestRejectedException(RejectReason.Invalid, $"token id {t} is outside the vocabulary of {Config.VocabSize}", "prompt");
        if (r.MaxTokens < 0) throw new RequestRejectedException(RejectReason.Invalid, $"max_tokens must be at least 0, found {r.MaxTokens}", "max_tokens");
        if (r.TopLogprobs > SequenceRequest.MaxTopLogprobs)
            throw new RequestRejectedException(RejectReason.Invalid, $"top_logprobs must be at most {SequenceRequest.MaxTopLogprobs}, found {r.TopLogprobs}", "top_logprobs");
        try { r.Sampler.Validate(); }
        catch (ArgumentException e) { throw new RequestRejectedException(RejectReason.Invalid, e.Message, null); }
        if (r.Grammar != null && _tokenizer == null)
            throw new RequestRejectedException(RejectReason.Invalid, "a grammar needs the model's tokenizer, and this engine has none", "response_format");
    }

    void Enqueue(SequenceRequest request, SequenceHandle handle, CancellationToken cancel, bool embedding, TaskCompletionSource<float[]>? embeddingResult)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_lock)
        {
            AdapterEntry? adapter = null;
            if (request.Adapter != null && request.Adapter != ModelName)
                if (!_adapters.TryGetValue(request.Adapter, out adapter) || adapter.Removed)
                    throw new RequestRejectedException(RejectReason.UnknownModel, $"no model or adapter named '{request.Adapter}' is served here", "model");
            if (_queue.Count >= _options.QueueLimit)
                throw new RequestRejectedException(RejectReason.QueueFull, $"the server is busy: {_queue.Count} requests are waiting; try again shortly");
            if (adapter != null) adapter.Users++;
            var pending = new Pending
            {
                Request = request, Handle = handle, Adapter = adapter, SubmittedTicks = Stopwatch.GetTimestamp(),
                Embedding = embedding, EmbeddingResult = embeddingResult,
            };
            _queue.AddLast(pending);
            handle.OnCancel = () => _wake.Release();
            if (cancel.CanBeCanceled) pending.Registration = cancel.Register(handle.Cancel);
        }
        _wake.Release();
    }

    public EngineStatistics Statistics
    {
        get { lock (_lock) return new EngineStatistics(_queue.Count, Volatile.Read(ref _active), Interlocked.Read(ref _kvUsed), (long)_slots.Length * ContextLength); }
    }

    // ---- slots and sequences -----------------------------------------------------------------------------

    sealed class Slot(int index, int vocab)
    {
        public int Index { get; } = index;
        /// <summary>The sampler's working buffer [V], reused by every sequence of the slot.</summary>
        public (int Id, float Logit)[] Candidates { get; } = new (int, float)[vocab];
        /// <summary>The grammar's token mask [V / 64], reused by every constrained sequence of the slot.</summary>
        public ulong[]? Mask;
        public long LastUsed;
        /// <summary>The prompt whose keys and values the slot holds from position 0 (prompt rows only: decode rows are
        /// never reused, since a fresh run computes those positions as prompt rows).</summary>
        public int[] CachedPrompt = [];
        public int CachedLength;
        /// <summary>The adapter the cached prompt ran with (its keys and values depend on it); null for the base.</summary>
        public AdapterEntry? CachedAdapter;
        public Active? Sequence;
    }

    sealed class Active
    {
        public required Pending Pending;
        public required Slot Slot;
        public required Sampler Sampler;
        public required StreamingDecoder? Decoder;
        public GrammarConstraint? Constraint;
        public required string[] Stops;
        public int[] Prompt = [];
        public int Computed;         // tokens whose keys and values are in the slot
        public int CachedPrompt;     // of them, reused from the cache
        public int? NextToken;       // sampled, not yet fed
        public int Generated;
        public readonly StringBuilder Text = new();
        public int Emitted;
        public readonly List<GeneratedToken> Unsent = new();
        public long StartedTicks, FirstTokenTicks;
        public double[]? HiddenSum;
        public int LogitsRow = -1;
        public bool InPrefill => Computed < Prompt.Length;
    }

    void Loop()
    {
        var actives = new List<Active>();
        while (!_disposed)
        {
            try
            {
                Admit(actives);
                DropCancelled(actives);
                if (actives.Count == 0)
                {
                    _wake.Wait();
                    continue;
                }
                Step(actives);
            }
            catch (Exception e) when (!_disposed)
            {
                // An engine fault (not a request's): fail everything in flight rather than hang its clients.
                foreach (var a in actives) Fail(a, e);
                actives.Clear();
            }
        }
        foreach (var a in actives) Fail(a, new ObjectDisposedException(nameof(BatchEngine)));
        lock (_lock)
        {
            foreach (var p in _queue) FailPending(p, new ObjectDisposedException(nameof(BatchEngine)));
            _queue.Clear();
        }
    }

    /// <summary>Moves waiting requests into free slots. A prompt reuses the longest prefix of prompt rows already
    /// computed: in the free slot it takes, or copied from any other slot's cache. A request whose prompt shares more
    /// with a prompt still being prefilled waits for that prefill (n choices, bursts behind one system prompt).</summary>
    void Admit(List<Active> actives)
    {
        lock (_lock)
            for (var node = _queue.First; node != null;)
            {
                var next = node.Value;
                var following = node.Next;
                if (next.Handle.CancelRequested)
                {
                    _queue.Remove(node);
                    FinishUnstarted(next);
                }
                else if (_slots.All(s => s.Sequence != null)) return;
                else if (TryStart(next, actives)) _queue.Remove(node);
                node = following;
            }
    }

    bool TryStart(Pending next, List<Active> actives)
    {
        var prompt = next.Request.Prompt as int[] ?? next.Request.Prompt.ToArray();
        int limit = prompt.Length - 1; // at least one prompt row runs, for the logits
        Slot? free = null, donor = null;
        int freeCommon = -1, donorCommon = 0, pendingCommon = 0;
        foreach (var slot in _slots)
        {
            int common = next.Embedding || slot.CachedAdapter != next.Adapter ? 0 : Math.Min(limit, CommonPrefix(slot.CachedPrompt, slot.CachedLength, prompt));
            if (slot.Sequence == null)
            {
                if (common > freeCommon || common == freeCommon && free != null && slot.LastUsed < free.LastUsed) { free = slot; freeCommon = common; }
            }
            else
            {
                if (common > donorCommon) { donor = slot; donorCommon = common; }
                if (!next.Embedding && slot.Sequence.InPrefill && slot.CachedAdapter == next.Adapter)
                    pendingCommon = Math.Max(pendingCommon, Math.Min(limit, CommonPrefix(slot.CachedPrompt, slot.Sequence.Prompt.Length, prompt)));
            }
        }
        if (free == null) return false;
        if (pendingCommon >= Math.Max(freeCommon, donorCommon) + 16) return false; // worth waiting a few steps for
        int reuse = Math.Max(freeCommon, 0);
        if (donor != null && donorCommon > reuse)
        {
            // Take the least recently used free slot and copy the prefix into it.
            free = _slots.Where(s => s.Sequence == null).MinBy(s => s.LastUsed)!;
            _model.CopyPrefix(donor.Index, free.Index, donorCommon);
            reuse = donorCommon;
        }
        var s = free;
        s.CachedPrompt = prompt;
        s.CachedLength = reuse;
        s.CachedAdapter = next.Adapter;
        s.LastUsed = Stopwatch.GetTimestamp();
        var r = next.Request;
        var active = new Active
        {
            Pending = next, Slot = s, Sampler = new Sampler(r.Sampler, s.Candidates), Decoder = _tokenizer?.CreateStreamingDecoder(skipSpecialTokens: false),
            Stops = r.StopStrings.Where(x => x.Length > 0).ToArray(), Prompt = prompt, Computed = reuse, CachedPrompt = reuse,
            StartedTicks = Stopwatch.GetTimestamp(), HiddenSum = next.Embedding ? new double[Config.HiddenSize] : null,
        };
        foreach (var t in prompt) active.Sampler.Accept(t);
        if (r.Grammar is { } grammar)
        {
            var vocabulary = TokenVocabulary.For(_tokenizer!);
            active.Constraint = new GrammarConstraint(grammar, vocabulary);
            s.Mask ??= new ulong[vocabulary.MaskWords];
        }
        s.Sequence = active;
        actives.Add(active);
        Interlocked.Increment(ref _active);
        Interlocked.Add(ref _kvUsed, reuse);
        return true;
    }

    static int CommonPrefix(int[] cached, int cachedLength, int[] prompt)
    {
        int n = Math.Min(cachedLength, prompt.Length), i = 0;
        while (i < n && cached[i] == prompt[i]) i++;
        return i;
    }

    void DropCancelled(List<Active> actives)
    {
        for (int i = actives.Count - 1; i >= 0; i--)
            if (actives[i].Pending.Handle.CancelRequested)
            {
                Finish(actives[i], "cancelled");
                actives.RemoveAt(i);
            }
    }

    readonly List<Active> _ran = new(), _decoding = new();
    readonly List<(Active Active, int Count)> _prefill = new();

    /// <summary>Rows of one adapter are consecutive (its low-rank product runs once over them); slot order breaks ties.</summary>
    static int ByAdapter(Active a, Active b)
    {
        int c = string.CompareOrdinal(a.Pending.Adapter?.Name, b.Pending.Adapter?.Name);
        return c != 0 ? c : a.Slot.Index.CompareTo(b.Slot.Index);
    }

    /// <summary>One step: every decoding sequence feeds its last token, prompts take what is left of the step's rows
    /// (oldest first); all of it runs as one forward pass.</summary>
    void Step(List<Active> actives)
    {
        long start = Stopwatch.GetTimestamp();
        int rows = 0, segments = 0, logitRows = 0, decodeRows = 0, promptRows = 0;
        _ran.Clear(); _decoding.Clear(); _prefill.Clear();
        foreach (var a in actives)
            if (!a.InPrefill && a.NextToken != null) _decoding.Add(a);
        _decoding.Sort(ByAdapter);
        foreach (var a in _decoding)
        {
            _rows[rows] = a.NextToken!.Value;
            a.LogitsRow = logitRows++;
            _segments[segments++] = new BatchedLlama.Segment(a.Slot.Index, a.Computed, rows, 1, true, a.Pending.Adapter?.ByWeight, a.LogitsRow, null);
            a.NextToken = null;
            rows++; decodeRows++;
            _ran.Add(a);
        }
        // Prompts take what is left, oldest first.
        int budget = _model.StepRows - rows;
        foreach (var a in actives)
        {
            if (!a.InPrefill || budget <= 0) continue;
            int count = Math.Min(budget, a.Prompt.Length - a.Computed);
            _prefill.Add((a, count));
            budget -= count;
        }
        _prefill.Sort((x, y) => ByAdapter(x.Active, y.Active));
        foreach (var (a, count) in _prefill)
        {
            a.Prompt.AsSpan(a.Computed, count).CopyTo(_rows.AsSpan(rows));
            bool last = a.Computed + count == a.Prompt.Length;
            a.LogitsRow = last && a.HiddenSum == null ? logitRows++ : -1;
            _segments[segments++] = new BatchedLlama.Segment(a.Slot.Index, a.Computed, rows, count, false, a.Pending.Adapter?.ByWeight, a.LogitsRow, a.HiddenSum);
            rows += count; promptRows += count;
            if (last) _ran.Add(a);
        }
        _model.Step(_rows.AsSpan(0, rows), _segments.AsSpan(0, segments), _logits);
        foreach (var seg in _segments.AsSpan(0, segments))
        {
            var a = _slots[seg.Slot].Sequence!;
            a.Computed += seg.Count;
            if (!seg.Decode) a.Slot.CachedLength = a.Computed;
            Interlocked.Add(ref _kvUsed, seg.Count);
        }
        foreach (var a in _ran)
        {
            try { Advance(a, actives); }
            catch (Exception e) when (e is NonFiniteException or GrammarException or InvalidOperationException)
            {
                // This sequence's logits broke (its adapter, or the model on its text), or its grammar could not go on
                // with this vocabulary: it fails alone.
                Fail(a, e);
                actives.Remove(a);
            }
        }
        StepCompleted?.Invoke(new StepStatistics(decodeRows, promptRows, Stopwatch.GetElapsedTime(start).TotalSeconds));
    }

    /// <summary>After a step that produced logits for <paramref name="a"/>: sample, stream, and end it when it is done.</summary>
    void Advance(Active a, List<Active> actives)
    {
        var r = a.Pending.Request;
        if (a.HiddenSum != null)
        {
            var embedding = new float[a.HiddenSum.Length];
            double norm = 0;
            for (int i = 0; i < embedding.Length; i++) { double m = a.HiddenSum[i] / a.Prompt.Length; embedding[i] = (float)m; norm += m * m; }
            float scale = norm > 0 ? (float)(1 / Math.Sqrt(norm)) : 0;
            for (int i = 0; i < embedding.Length; i++) embedding[i] *= scale;
            a.Pending.EmbeddingResult!.TrySetResult(embedding);
            End(a, actives, "stop");
            return;
        }
        if (a.Generated >= r.MaxTokens) { End(a, actives, "length"); return; }
        var logits = _logits.AsSpan(a.LogitsRow * Config.VocabSize, _sampleable);
        int token;
        if (a.Constraint is { IsComplete: true }) { End(a, actives, "stop"); return; }
        try { token = a.Sampler.Sample(logits, a.Constraint != null && a.Constraint.TryFillAllowed(a.Slot.Mask) ? a.Slot.Mask : default); }
        catch (NonFiniteException)
        {
            throw new NonFiniteException($"the logits after {a.Computed} tokens are not finite (NaN or infinity)" +
                (a.Pending.Adapter is { } adapter ? $" with the adapter '{adapter.Name}' ({adapter.Path})" : ""), null, []);
        }
        if (a.FirstTokenTicks == 0) a.FirstTokenTicks = Stopwatch.GetTimestamp();
        a.Constraint?.Accept(token);
        if (r.StopAtEndOfTurn && _endOfTurn.Contains(token)) { End(a, actives, "stop"); return; }
        a.Generated++;
        a.Sampler.Accept(token);
        a.Unsent.Add(Logprobs(logits, token, r.TopLogprobs));
        if (a.Decoder != null) a.Text.Append(a.Decoder.Add(token));
        int stopAt = StopStrings.FirstStop(a.Text, a.Stops);
        if (stopAt >= 0)
        {
            a.Text.Length = stopAt;
            Send(a, 0);
            End(a, actives, "stop", flush: false);
            return;
        }
        Send(a, StopStrings.HoldBack(a.Text, a.Stops));
        if (a.Generated >= r.MaxTokens || a.Computed + 1 > ContextLength) { End(a, actives, "length"); return; }
        a.NextToken = token;
    }

    static GeneratedToken Logprobs(ReadOnlySpan<float> logits, int token, int top)
    {
        if (top < 0) return new GeneratedToken(token, float.NaN, []);
        float max = float.NegativeInfinity;
        foreach (var l in logits) max = Math.Max(max, l);
        double sum = 0;
        foreach (var l in logits) sum += Math.Exp(l - max);
        float logSum = max + (float)Math.Log(sum);
        var best = new TokenLogprob[top];
        int found = 0;
        if (top > 0)
        {
            // The `top` largest logits, ties by lower id.
            for (int i = 0; i < logits.Length; i++)
            {
                float l = logits[i];
                if (found == top && l <= best[found - 1].Logprob) continue;
                int at = found < top ? found++ : top - 1;
                while (at > 0 && best[at - 1].Logprob < l) { best[at] = best[at - 1]; at--; }
                best[at] = new TokenLogprob(i, l);
            }
            for (int i = 0; i < found; i++) best[i] = best[i] with { Logprob = best[i].Logprob - logSum };
        }
        return new GeneratedToken(token, logits[token] - logSum, best[..found]);
    }

    void Send(Active a, int holdBack)
    {
        int upTo = a.Text.Length - holdBack;
        string text = upTo > a.Emitted ? a.Text.ToString(a.Emitted, upTo - a.Emitted) : "";
        if (text.Length == 0 && a.Unsent.Count == 0) return;
        a.Emitted = Math.Max(a.Emitted, upTo);
        a.Pending.Handle.Writer.TryWrite(new SequenceUpdate(text, a.Unsent.ToArray()));
        a.Unsent.Clear();
    }

    void End(Active a, List<Active> actives, string reason, bool flush = true)
    {
        if (flush)
        {
            if (a.Decoder != null) a.Text.Append(a.Decoder.Flush());
            Send(a, 0);
        }
        Finish(a, reason);
        actives.Remove(a);
    }

    void Finish(Active a, string reason)
    {
        if (a.Unsent.Count > 0) Send(a, a.Text.Length - a.Emitted);
        long now = Stopwatch.GetTimestamp();
        var p = a.Pending;
        double Seconds(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalSeconds;
        var usage = new SequenceUsage(a.Prompt.Length, a.CachedPrompt, a.Generated, Seconds(p.SubmittedTicks, a.StartedTicks),
            a.FirstTokenTicks == 0 ? 0 : Seconds(p.SubmittedTicks, a.FirstTokenTicks), Seconds(p.SubmittedTicks, now));
        var end = new SequenceEnd(reason, usage);
        p.Handle.Writer.TryWrite(end);
        p.Handle.Writer.TryComplete();
        p.EmbeddingResult?.TrySetCanceled();
        Release(a);
        SequenceEnded?.Invoke(end);
    }

    void Fail(Active a, Exception e)
    {
        a.Pending.Handle.Writer.TryComplete(e);
        a.Pending.EmbeddingResult?.TrySetException(e);
        a.Slot.CachedLength = 0;
        Release(a);
    }

    void Release(Active a)
    {
        a.Slot.Sequence = null;
        a.Slot.CachedLength = Math.Min(a.Slot.CachedLength, a.Prompt.Length);
        Interlocked.Decrement(ref _active);
        Interlocked.Add(ref _kvUsed, -a.Computed);
        a.Pending.Registration.Dispose();
        ReleaseAdapter(a.Pending.Adapter);
    }

    void ReleaseAdapter(AdapterEntry? adapter)
    {
        if (adapter == null) return;
        lock (_lock)
        {
            adapter.Users--;
            if (adapter.Removed && adapter.Users == 0)
            {
                if (_adapters.TryGetValue(adapter.Name, out var current) && current == adapter) _adapters.Remove(adapter.Name);
                adapter.Dispose();
            }
        }
    }

    void FinishUnstarted(Pending p)
    {
        var usage = new SequenceUsage(p.Request.Prompt.Count, 0, 0, 0, 0, Stopwatch.GetElapsedTime(p.SubmittedTicks).TotalSeconds);
        p.Handle.Writer.TryWrite(new SequenceEnd("cancelled", usage));
        p.Handle.Writer.TryComplete();
        p.EmbeddingResult?.TrySetCanceled();
        p.Registration.Dispose();
        if (p.Adapter != null) { p.Adapter.Users--; }
    }

    static void FailPending(Pending p, Exception e)
    {
        p.Handle.Writer.TryComplete(e);
        p.EmbeddingResult?.TrySetException(e);
        p.Registration.Dispose();
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _wake.Release();
        if (_loop.IsAlive && Thread.CurrentThread != _loop) _loop.Join();
        _model.Dispose();
        _expertCache?.Dispose();
        lock (_lock)
        {
            foreach (var a in _adapters.Values) a.Dispose();
            _adapters.Clear();
        }
        if (_checkpoint != null) { _weights.Dispose(); _checkpoint.Dispose(); }
        _pool.Dispose();
        _wake.Dispose();
    }
}
