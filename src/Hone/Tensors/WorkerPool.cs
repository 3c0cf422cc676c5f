using System.Runtime.CompilerServices;

namespace Hone.Tensors;

/// <summary>
/// A fixed set of threads that run one job at a time, each thread taking its share of the outer dimension.
/// Built for decode, where a forward pass dispatches hundreds of short jobs per token: workers spin briefly on a
/// generation counter before sleeping, and a job is a function pointer plus a context pointer, so dispatching
/// allocates nothing. The calling thread is worker 0.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    readonly Thread[] _threads;
    readonly object _gate = new();
    readonly ManualResetEventSlim[] _wake;
    delegate*<void*, int, int, void> _job;
    void* _context;
    long _generation;
    int _pending;
    volatile bool _disposed;
    [ThreadStatic] static WorkerPool? _insideJobOf;
    Exception? _failure;

    public int Threads { get; }

    public WorkerPool(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), "need at least one thread");
        Threads = threads;
        _threads = new Thread[threads - 1];
        _wake = new ManualResetEventSlim[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int index = i + 1;
            _wake[i] = new ManualResetEventSlim(false);
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
            Volatile.Write(ref _pending, Threads - 1);
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < _wake.Length; i++) if (!_wake[i].IsSet) _wake[i].Set();
            _insideJobOf = this;
            try { job(context, 0, Threads); }
            finally
            {
                _insideJobOf = null;
                // Pause-spin before yielding: SpinWait yields after a few rounds, and sched_yield is a system call
                // (expensive under a hypervisor) in the middle of waits that last microseconds.
                int spins = 0;
                while (Volatile.Read(ref _pending) != 0)
                {
                    if (++spins < 4096) Thread.SpinWait(8);
                    else Thread.Yield();
                }
            }
            if (_failure != null) throw new AggregateException("a worker thread failed", _failure);
        }
    }

    void WorkerLoop(int index)
    {
        _insideJobOf = this;
        long seen = 0;
        var wake = _wake[index - 1];
        while (true)
        {
            // Spin a little (decode dispatches jobs microseconds apart), then sleep.
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                if (++spins < 20000) Thread.SpinWait(20);
                else
                {
                    wake.Reset();
                    if (Volatile.Read(ref _generation) != seen || _disposed) break;
                    wake.Wait(50);
                }
            }
            if (_disposed) return;
            seen = Volatile.Read(ref _generation);
            try { _job(_context, index, Threads); }
            catch (Exception e) { _failure = e; }
            Interlocked.Decrement(ref _pending);
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
    }
}
