using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Hone.Tensors;

/// <summary>
/// A fixed set of threads that run one job at a time, each thread taking its share of the outer dimension.
/// Built for decode, where a forward pass dispatches hundreds of short jobs per token: a job is a function pointer plus
/// a context pointer, so dispatching allocates nothing. The calling thread is worker 0.
/// Waiting: a worker waiting for the next job and the caller waiting for the workers at the join each spin for
/// <see cref="SpinMicroseconds"/> of wall-clock time (decode's jobs come microseconds apart, and waking a blocked
/// thread costs tens of microseconds under a hypervisor), then block on an event. A thread that spun longer would burn
/// the core that the thread it waits for, or a neighbouring process, needs when the machine is shared.
/// Balanced shares: jobs that split work with <see cref="Balanced"/> give each thread a share proportional to the speed
/// it showed on earlier such jobs (its share over its busy time, smoothed). On a VM the host can slow one vCPU for
/// minutes at a time (two vCPUs here ran up to 2× apart on scalar code); an even split then leaves the faster thread
/// waiting at every join, while claiming small chunks at run time costs 2–7% on the GEMMs when the threads are even
/// (measured). The split never changes results: every kernel that uses it computes each output element alone.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    readonly Thread[] _threads;
    readonly object _gate = new();
    readonly ManualResetEventSlim[] _wake;    // [Threads - 1] set when a job is dispatched to a worker that blocked
    readonly ManualResetEventSlim _joined = new(true, 0); // set by the last worker to finish a job, for a blocked caller
    readonly long _spinTicks;
    long _callerBlocks, _workerBlocks;
    delegate*<void*, int, int, void> _job;
    void* _context;
    long _generation;
    int _pending;
    volatile bool _disposed;
    [ThreadStatic] static WorkerPool? _insideJobOf;
    Exception? _failure;
    readonly double[] _speed;        // [Threads] relative speed learned from balanced jobs (mean 1)
    readonly double[] _boundary;     // [Threads + 1] cumulative share of each thread for the current job, 0 .. 1
    readonly long[] _busy;           // [Threads] Stopwatch ticks each thread spent in the current job
    volatile bool _balancedJob;      // the current job asked for balanced shares
    const double LearnAboveSeconds = 200e-6; // shorter jobs time too coarsely to learn from

    /// <summary>Split work by learned thread speeds (true) or evenly (false; for comparisons).</summary>
    public bool Balancing { get; set; } = Environment.GetEnvironmentVariable("HONE_EVEN_SPLIT") != "1";

    /// <summary>The learned relative speed of each thread (mean 1): for diagnostics.</summary>
    public IReadOnlyList<double> Speeds => _speed;

    public int Threads { get; }

    /// <summary>How long a waiting thread spins before it blocks: 50 µs, or HONE_SPIN_MICROSECONDS (0 blocks at once).</summary>
    public static int SpinMicroseconds { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("HONE_SPIN_MICROSECONDS"), out int us) && us >= 0 ? us : 50;

    /// <summary>How many times the caller stopped spinning at a join and blocked: for tests and diagnostics.</summary>
    internal long CallerBlocks => Volatile.Read(ref _callerBlocks);

    /// <summary>How many times a worker stopped spinning for the next job and blocked: for tests and diagnostics.</summary>
    internal long WorkerBlocks => Volatile.Read(ref _workerBlocks);

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), "need at least one thread");
        Threads = threads;
        _speed = Enumerable.Repeat(1.0, threads).ToArray();
        _boundary = Enumerable.Range(0, threads + 1).Select(t => (double)t / threads).ToArray();
        _busy = new long[threads];
        _spinTicks = Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
        _threads = new Thread[threads - 1];
        _wake = new ManualResetEventSlim[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i + 1;
            _wake[i] = new ManualResetEventSlim(false, 0); // no spinning of its own: the pool spins first
            _threads[i] = new Thread(() => WorkerLoop(index)) { IsBackground = true, Name = $"hone-worker-{index}" };
            _threads[i].Start();
        }
    }

    static WorkerPool? _default;
    /// <summary>A pool with one thread per core, created on first use.</summary>
    public static WorkerPool Default => _default ??= new WorkerPool(Environment.ProcessorCount);

    /// <summary>Parse a --threads value: 0 or less means one per core.</summary>
    public static int ResolveThreadCount(int requested) => requested > 0 ? requested : Environment.ProcessorCount;

    /// <summary>Run <paramref name="job"/>(context, threadIndex, threadCount) on every thread and wait for all of them.
    /// Calls from inside a job of the same pool run the job inline on one thread.</summary>
    public void Run(delegate*<void*, int, int, void> job, void* context)
    {
        if (Threads == 1 || _insideJobOf == this) { job(context, 0, 1); return; }
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _job = job;
            _context = context;
            _failure = null;
            _balancedJob = false;
            Volatile.Write(ref _pending, Threads - 1);
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < _wake.Length; i++) if (!_wake[i].IsSet) _wake[i].Set();
            _insideJobOf = this;
            long start = Stopwatch.GetTimestamp();
            try { job(context, 0, Threads); }
            finally
            {
                _busy[0] = Stopwatch.GetTimestamp() - start;
                _insideJobOf = null;
                if (Volatile.Read(ref _pending) != 0) AwaitWorkers();
            }
            if (_failure != null) throw new AggregateException("a worker thread failed", _failure);
            if (_balancedJob) Learn();
        }
    }

    /// <summary>The caller at the join: spin for the spin time, then block until the last worker sets <see cref="_joined"/>.
    /// No sched_yield: under a hypervisor it is an expensive system call, and on a busy machine it keeps the thread
    /// runnable, taking turns from the very threads it waits for.</summary>
    void AwaitWorkers()
    {
        long deadline = Stopwatch.GetTimestamp() + _spinTicks;
        while (Volatile.Read(ref _pending) != 0)
        {
            if (Stopwatch.GetTimestamp() < deadline) { Thread.SpinWait(SpinStep); continue; }
            // Reset, then look again: a worker that finishes after the reset sees the event clear and sets it.
            _joined.Reset();
            if (Volatile.Read(ref _pending) == 0) return;
            Interlocked.Increment(ref _callerBlocks);
            _joined.Wait();
        }
    }

    /// <summary>Pause instructions between looks at the flag a spinning thread waits on (about 0.1–0.3 µs).</summary>
    const int SpinStep = 4;

    /// <summary>After a balanced job: each thread's speed is its share over its busy time; blend it into the estimate
    /// and recompute the shares the next job will use.</summary>
    void Learn()
    {
        Span<double> seconds = stackalloc double[Threads];
        for (int t = 0; t < Threads; t++) seconds[t] = (double)_busy[t] / Stopwatch.Frequency;
        Learn(seconds);
    }

    /// <summary>One learning step from each thread's busy seconds on the shares of the last job (tests call it directly).</summary>
    internal void Learn(ReadOnlySpan<double> busySeconds)
    {
        double observed = 0;
        Span<double> rate = stackalloc double[Threads];
        for (int t = 0; t < Threads; t++)
        {
            double share = _boundary[t + 1] - _boundary[t];
            if (busySeconds[t] < LearnAboveSeconds || share <= 0) return;
            rate[t] = share / busySeconds[t];
            observed += rate[t];
        }
        double total = 0;
        for (int t = 0; t < Threads; t++)
        {
            // Blend slowly (one job can be disturbed) and keep every thread within 1/4 .. 4 of the mean.
            _speed[t] = Math.Clamp(0.8 * _speed[t] + 0.2 * rate[t] * Threads / observed, 0.25, 4.0);
            total += _speed[t];
        }
        for (int t = 0; t < Threads; t++) _boundary[t + 1] = _boundary[t] + _speed[t] / total;
        _boundary[Threads] = 1;
    }

    /// <summary>
    /// This thread's [start, end) of <paramref name="count"/> items in chunks of <paramref name="granularity"/>, sized by
    /// the learned thread speeds when called from a job of a balancing pool (and even otherwise). Every thread of a job
    /// sees the same boundaries. Only for work whose results do not depend on the split.
    /// </summary>
    public static (int Start, int End) Balanced(int count, int thread, int threads, int granularity = 1)
    {
        var pool = _insideJobOf;
        if (threads == 1 || pool == null || pool.Threads != threads || !pool.Balancing) return Share(count, thread, threads, granularity);
        pool._balancedJob = true;
        int chunks = (count + granularity - 1) / granularity;
        int start = (int)Math.Round(chunks * pool._boundary[thread]) * granularity;
        int end = (int)Math.Round(chunks * pool._boundary[thread + 1]) * granularity;
        return (Math.Min(start, count), Math.Min(end, count));
    }

    void WorkerLoop(int index)
    {
        _insideJobOf = this;
        long seen = 0;
        var wake = _wake[index - 1];
        while (true)
        {
            // Spin for the spin time (decode dispatches jobs microseconds apart), then block until Run sets the event.
            long deadline = Stopwatch.GetTimestamp() + _spinTicks;
            while (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                if (Stopwatch.GetTimestamp() < deadline) { Thread.SpinWait(SpinStep); continue; }
                // Reset, then look again: Run increments the generation before it looks whether the event is set.
                wake.Reset();
                if (Volatile.Read(ref _generation) != seen || _disposed) break;
                Interlocked.Increment(ref _workerBlocks);
                wake.Wait();
            }
            if (_disposed) return;
            seen = Volatile.Read(ref _generation);
            long start = Stopwatch.GetTimestamp();
            try { _job(_context, index, Threads); }
            catch (Exception e) { _failure = e; }
            _busy[index] = Stopwatch.GetTimestamp() - start;
            // The last worker out wakes a caller that blocked (one that reset the event after this decrement finds
            // _pending at zero and does not wait).
            if (Interlocked.Decrement(ref _pending) == 0 && !_joined.IsSet) _joined.Set();
        }
    }

    /// <summary>The [start, end) share of <paramref name="count"/> items for one thread, in chunks of <paramref name="granularity"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (int Start, int End) Share(int count, int thread, int threads, int granularity = 1)
    {
        int chunks = (count + granularity - 1) / granularity;
        int start = (int)((long)chunks * thread / threads) * granularity;
        int end = (int)((long)chunks * (thread + 1) / threads) * granularity;
        return (Math.Min(start, count), Math.Min(end, count));
    }

    public void Dispose()
    {
        _disposed = true;
        foreach (var w in _wake) w.Set();
        foreach (var t in _threads) t.Join();
        foreach (var w in _wake) w.Dispose();
        _joined.Dispose();
    }
}
