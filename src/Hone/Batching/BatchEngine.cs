using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
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
    readonly Checkpoint _checkpoint;
    readonly LlamaWeights _weights;
    readonly WorkerPool _pool;
    readonly Slot[] _slots;
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

    public Tokenizer Tokenizer { get; }
    public ModelConfig Config => _checkpoint.Config;
    /// <summary>The base model's name (its file or directory name), as requests name it.</summary>
    public string ModelName { get; }
    public string ModelPath => _checkpoint.Path;
    /// <summary>Tokens per sequence, prompt and output together.</summary>
    public int ContextLength { get; }
    public int Parallel => _slots.Length;
    public EngineOptions Options => _options;
    /// <summary>Raised on the engine's thread after every step (keep handlers short).</summary>
    public event Action<StepStatistics>? StepCompleted;

    BatchEngine(Checkpoint checkpoint, LlamaWeights weights, Tokenizer tokenizer, WorkerPool pool, EngineOptions options, int context)
    {
        _checkpoint = checkpoint; _weights = weights; Tokenizer = tokenizer; _pool = pool; _options = options; ContextLength = context;
        ModelName = ModelNameOf(checkpoint.Path);
        _endOfTurn = tokenizer.EndOfTurnIds.ToHashSet();
        if (tokenizer.EosId is int eos) _endOfTurn.Add(eos);
        _sampleable = Math.Min(checkpoint.Config.VocabSize, tokenizer.VocabSize);
        _slots = new Slot[options.Parallel];
        try
        {
            for (int i = 0; i < _slots.Length; i++)
                _slots[i] = new Slot(i, new LlamaModel(weights, pool, context, options.StepTokens) { Precision = options.Precision }, checkpoint.Config.VocabSize);
        }
        catch
        {
            foreach (var s in _slots) s?.Model.Dispose();
            throw;
        }
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
        if (options.Context < 0) throw new ArgumentException($"--ctx must be at least 0 (0 = the model's context, at most {LoadedModel.DefaultContextCap}), found {options.Context}");
        if (options.Threads < 0) throw new ArgumentException($"--threads must be at least 0 (0 = one per core), found {options.Threads}");
        var checkpoint = Checkpoint.Open(modelPath);
        LlamaWeights? weights = null;
        WorkerPool? pool = null;
        BatchEngine? engine = null;
        try
        {
            var config = checkpoint.Config;
            if (options.Context > config.MaxPositions)
                throw new ArgumentException($"--ctx {options.Context} is more than the model's context of {config.MaxPositions} tokens");
            int context = options.Context > 0 ? options.Context : Math.Min(config.MaxPositions, LoadedModel.DefaultContextCap);
            long weightBytes = checkpoint.Tensors.Sum(t => t.ByteLength);
            long perSlot = LlamaModel.RequiredBytes(config, context, options.StepTokens);
            MemoryBudget.Require(weightBytes + (perSlot >= long.MaxValue / options.Parallel ? long.MaxValue : perSlot * options.Parallel),
                $"{checkpoint.Path} with {options.Parallel} sequences of {context} tokens (weights and KV cache)");
            var tokenizer = checkpoint.LoadTokenizer();
            if (tokenizer.VocabSize > config.VocabSize)
                throw new Formats.ModelFormatException(modelPath, $"the tokenizer has {tokenizer.VocabSize} tokens but the model only {config.VocabSize}");
            weights = LlamaWeights.Load(checkpoint);
            pool = new WorkerPool(WorkerPool.ResolveThreadCount(options.Threads));
            engine = new BatchEngine(checkpoint, weights, tokenizer, pool, options, context);
            foreach (var (name, path) in adapters) engine.AddAdapter(name, path);
            return engine;
        }
        catch
        {
            if (engine != null) engine.Dispose();
            else { weights?.Dispose(); pool?.Dispose(); checkpoint.Dispose(); }
            throw;
        }
    }

    // ---- adapters ---------------------------------------------------------------------------------------

    sealed class AdapterEntry(string name, string path, Dictionary<string, LoraAdapter> adapters)
    {
        public string Name { get; } = name;
        public string Path { get; } = path;
        public Dictionary<string, LoraAdapter> Adapters { get; } = adapters;
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

    sealed class Slot(int index, LlamaModel model, int vocab)
    {
        public int Index { get; } = index;
        public LlamaModel Model { get; } = model;
        public float[] Logits { get; } = new float[vocab];
        /// <summary>The prompt whose keys and values the slot holds from position 0 (prompt rows only: decode rows are
        /// never reused, since a fresh run computes those positions as prompt rows).</summary>
        public int[] CachedPrompt = [];
        public int CachedLength;
        /// <summary>The adapter those keys and values were computed with (null: the base): another adapter's request
        /// cannot reuse them.</summary>
        public AdapterEntry? CachedAdapter;
        public Active? Sequence;
    }

    sealed class Active
    {
        public required Pending Pending;
        public required Slot Slot;
        public required Sampler Sampler;
        public required StreamingDecoder Decoder;
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

    /// <summary>Moves waiting requests into free slots, choosing the slot whose cached prompt shares the longest prefix.</summary>
    void Admit(List<Active> actives)
    {
        while (true)
        {
            Pending? next;
            lock (_lock)
            {
                while (_queue.First is { } first && first.Value.Handle.CancelRequested)
                {
                    _queue.RemoveFirst();
                    FinishUnstarted(first.Value);
                }
                if (_queue.Count == 0 || _slots.All(s => s.Sequence != null)) return;
                next = _queue.First!.Value;
                _queue.RemoveFirst();
            }
            var prompt = next.Request.Prompt.ToArray();
            Slot? best = null;
            int bestCommon = -1;
            foreach (var slot in _slots)
            {
                if (slot.Sequence != null) continue;
                int common = next.Embedding || slot.CachedAdapter != next.Adapter ? 0 : CommonPrefix(slot.CachedPrompt, slot.CachedLength, prompt);
                if (common > bestCommon) { best = slot; bestCommon = common; }
            }
            var s = best!;
            int reuse = Math.Min(bestCommon, prompt.Length - 1); // at least one token runs, for the logits
            s.Model.Truncate(reuse); // the slot still holds the cached prompt's keys and values below `reuse`
            s.CachedPrompt = prompt;
            s.CachedLength = reuse;
            s.CachedAdapter = next.Adapter;
            var r = next.Request;
            var active = new Active
            {
                Pending = next, Slot = s, Sampler = new Sampler(r.Sampler), Decoder = Tokenizer.CreateStreamingDecoder(skipSpecialTokens: false),
                Stops = r.StopStrings.Where(x => x.Length > 0).ToArray(), Prompt = prompt, Computed = reuse, CachedPrompt = reuse,
                StartedTicks = Stopwatch.GetTimestamp(), HiddenSum = next.Embedding ? new double[Config.HiddenSize] : null,
            };
            foreach (var t in prompt) active.Sampler.Accept(t);
            s.Sequence = active;
            ApplyAdapters(s, next.Adapter);
            actives.Add(active);
            Interlocked.Increment(ref _active);
            Interlocked.Add(ref _kvUsed, reuse);
        }
    }

    static int CommonPrefix(int[] cached, int cachedLength, int[] prompt)
    {
        int n = Math.Min(cachedLength, prompt.Length), i = 0;
        while (i < n && cached[i] == prompt[i]) i++;
        return i;
    }

    static void ApplyAdapters(Slot slot, AdapterEntry? adapter)
    {
        slot.Model.Adapters.Clear();
        if (adapter != null) foreach (var (target, a) in adapter.Adapters) slot.Model.Adapters[target] = a;
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

    /// <summary>One step: every decoding sequence feeds its last token, prompts take what is left of the step's rows.</summary>
    void Step(List<Active> actives)
    {
        long start = Stopwatch.GetTimestamp();
        int budget = _options.StepTokens, decodeRows = 0, promptRows = 0;
        var ran = new List<Active>();
        foreach (var a in actives)
            if (!a.InPrefill && a.NextToken is int token)
            {
                a.Slot.Model.Forward(new ReadOnlySpan<int>(in token), a.Slot.Logits);
                a.NextToken = null;
                a.Computed++;
                Interlocked.Increment(ref _kvUsed);
                decodeRows++; budget--;
                ran.Add(a);
            }
        foreach (var a in actives)
        {
            if (!a.InPrefill || budget <= 0) continue;
            int count = Math.Min(budget, a.Prompt.Length - a.Computed);
            var chunk = a.Prompt.AsSpan(a.Computed, count);
            if (a.HiddenSum != null)
            {
                var mean = new float[Config.HiddenSize];
                a.Slot.Model.ForwardMeanHidden(chunk, mean);
                for (int i = 0; i < mean.Length; i++) a.HiddenSum[i] += (double)mean[i] * count;
            }
            else a.Slot.Model.Forward(chunk, a.Slot.Logits, promptRows: true);
            a.Computed += count;
            a.Slot.CachedLength = a.Computed;
            Interlocked.Add(ref _kvUsed, count);
            promptRows += count; budget -= count;
            if (!a.InPrefill) ran.Add(a);
        }
        foreach (var a in ran) Advance(a, actives);
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
        var logits = a.Slot.Logits.AsSpan(0, _sampleable);
        int token;
        try { token = a.Sampler.Sample(logits); }
        catch (NonFiniteException)
        {
            throw new NonFiniteException($"the logits after {a.Computed} tokens are not finite (NaN or infinity)", null, []);
        }
        if (a.FirstTokenTicks == 0) a.FirstTokenTicks = Stopwatch.GetTimestamp();
        if (r.StopAtEndOfTurn && _endOfTurn.Contains(token)) { End(a, actives, "stop"); return; }
        a.Generated++;
        a.Sampler.Accept(token);
        a.Unsent.Add(Logprobs(logits, token, r.TopLogprobs));
        a.Text.Append(a.Decoder.Add(token));
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
            a.Text.Append(a.Decoder.Flush());
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
        p.Handle.Writer.TryWrite(new SequenceEnd(reason, usage));
        p.Handle.Writer.TryComplete();
        p.EmbeddingResult?.TrySetCanceled();
        Release(a);
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
        a.Slot.Model.Adapters.Clear();
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
        foreach (var s in _slots) s?.Model.Dispose();
        lock (_lock)
        {
            foreach (var a in _adapters.Values) a.Dispose();
            _adapters.Clear();
        }
        _weights.Dispose();
        _pool.Dispose();
        _checkpoint.Dispose();
        _wake.Dispose();
    }
}
