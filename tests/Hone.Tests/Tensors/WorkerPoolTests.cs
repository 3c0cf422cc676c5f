using System.Diagnostics;
using System.Runtime.InteropServices;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

public unsafe partial class WorkerPoolTests
{
    /// <summary>Teaches a pool that thread 1 is three times slower than the others, through the same learning step real
    /// jobs take (busy time = share × cost), without depending on this machine's timing.</summary>
    internal static void Skew(WorkerPool pool, int jobs = 40)
    {
        var busy = new double[pool.Threads];
        for (int i = 0; i < jobs; i++)
        {
            double total = pool.Speeds.Sum();
            for (int t = 0; t < pool.Threads; t++) busy[t] = pool.Speeds[t] / total * 4e-3 * (t == 1 ? 3 : 1);
            pool.Learn(busy);
        }
    }

    struct CoverJob { public int* Ranges; public int Count, Granularity; }

    static void Cover(void* context, int thread, int threads)
    {
        ref var j = ref *(CoverJob*)context;
        var (start, end) = WorkerPool.Balanced(j.Count, thread, threads, j.Granularity);
        j.Ranges[2 * thread] = start;
        j.Ranges[2 * thread + 1] = end;
    }

    static (int Start, int End)[] Ranges(WorkerPool pool, int count, int granularity)
    {
        int* ranges = stackalloc int[2 * pool.Threads];
        var job = new CoverJob { Ranges = ranges, Count = count, Granularity = granularity };
        pool.Run(&Cover, &job);
        return Enumerable.Range(0, pool.Threads).Select(t => (ranges[2 * t], ranges[2 * t + 1])).ToArray();
    }

    [Fact]
    public void Balanced_shares_follow_the_learned_speeds()
    {
        using var pool = new WorkerPool(2);
        Assert.Equal([(0, 500), (500, 1000)], Ranges(pool, 1000, 1)); // nothing learned yet: even shares
        Skew(pool);
        Assert.True(pool.Speeds[0] > 2.5 * pool.Speeds[1], $"speeds {string.Join("/", pool.Speeds)}");
        var skewed = Ranges(pool, 1000, 1);
        Assert.Equal(0, skewed[0].Start);
        Assert.Equal(skewed[0].End, skewed[1].Start);
        Assert.Equal(1000, skewed[1].End);
        Assert.InRange(skewed[0].End, 700, 800);                         // 3 : 1 → 750 : 250

        // Switched off, the same pool splits evenly again; outside a job the share is the plain even one.
        pool.Balancing = false;
        Assert.Equal([(0, 500), (500, 1000)], Ranges(pool, 1000, 1));
        Assert.Equal((0, 500), WorkerPool.Balanced(1000, 0, 2));
    }

    [Fact]
    public void Balanced_ranges_cover_every_item_once_in_granularity_chunks()
    {
        using var pool = new WorkerPool(3);
        Skew(pool, 10);
        foreach (int count in new[] { 0, 1, 5, 16, 17, 1000, 1001 })
            foreach (int granularity in new[] { 1, 6, 16 })
            {
                var ranges = Ranges(pool, count, granularity);
                int next = 0;
                foreach (var (start, end) in ranges)
                {
                    Assert.Equal(next, start);
                    Assert.True(end >= start && (end == count || end % granularity == 0), $"count {count} granularity {granularity}: {start}..{end}");
                    next = end;
                }
                Assert.Equal(count, next);
            }
    }

    struct SpinJob { public double SecondsPerItem; }

    static void Spin(void* context, int thread, int threads)
    {
        ref var j = ref *(SpinJob*)context;
        var (start, end) = WorkerPool.Balanced(1000, thread, threads);
        double seconds = (end - start) * j.SecondsPerItem * (thread == 1 ? 3 : 1);
        long until = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < until) Thread.SpinWait(10);
    }

    /// <summary>The wiring: a real balanced job's busy times reach the learning step (what is learned depends on this
    /// machine's load, so only that something was learned is asserted).</summary>
    [Fact]
    public void Balanced_jobs_are_timed_and_learned_from()
    {
        using var pool = new WorkerPool(2);
        var job = new SpinJob { SecondsPerItem = 1e-6 };
        for (int i = 0; i < 3; i++) pool.Run(&Spin, &job);
        Assert.NotEqual(1.0, pool.Speeds[0]);
    }

    // Waiting: a thread that waits long must block, not spin. Checked by the pool's count of blocking waits and by the
    // waiting thread's own CPU time (which a blocked thread does not accumulate however loaded the machine is), never
    // by how long anything took.

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out Timespec time);

    struct Timespec { public long Seconds, Nanoseconds; }

    /// <summary>CPU seconds the calling thread has used (CLOCK_THREAD_CPUTIME_ID).</summary>
    static double ThreadCpuSeconds()
    {
        Assert.Equal(0, ClockGetTime(3, out var t));
        return t.Seconds + t.Nanoseconds * 1e-9;
    }

    const double BlockedCpuSeconds = 0.1; // a blocked thread uses about none; one spinning through the wait, most of it

    /// <summary>Waits (sleeping) until <paramref name="blocks"/> exceeds <paramref name="before"/>, then a further
    /// <paramref name="thenMilliseconds"/>; false when the hang guard ran out first.</summary>
    static bool AwaitBlock(Func<long> blocks, long before, int thenMilliseconds)
    {
        if (!HangGuard.WaitUntil(() => blocks() != before)) return false;
        Thread.Sleep(thenMilliseconds);
        return true;
    }

    struct WaitJob { public nint Pool; public long BlockedBefore; public bool SawBlock; public double WorkerCpuAtEnd, WorkerCpuAtStart; }

    static WorkerPool PoolOf(in WaitJob j) => (WorkerPool)GCHandle.FromIntPtr(j.Pool).Target!;

    /// <summary>Worker 1 holds the job until the caller has blocked at the join (then 300 ms more); the caller has
    /// nothing to do.</summary>
    static void HoldUntilTheCallerBlocks(void* context, int thread, int threads)
    {
        ref var j = ref *(WaitJob*)context;
        if (thread != 1) return;
        var pool = PoolOf(j);
        j.SawBlock = AwaitBlock(() => pool.CallerBlocks, j.BlockedBefore, 300);
    }

    [SkippableFact]
    public void A_caller_waiting_long_at_the_join_blocks_instead_of_spinning()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads the thread's CPU time through Linux libc");
        using var pool = new WorkerPool(2);
        var handle = GCHandle.Alloc(pool);
        try
        {
            var job = new WaitJob { Pool = GCHandle.ToIntPtr(handle), BlockedBefore = pool.CallerBlocks };
            double cpu = ThreadCpuSeconds();
            pool.Run(&HoldUntilTheCallerBlocks, &job);
            double used = ThreadCpuSeconds() - cpu;
            Assert.True(job.SawBlock, $"the caller did not block within {HangGuard.Limit}");
            Assert.True(used < BlockedCpuSeconds, $"the caller used {used:F3} s of CPU waiting at the join");
        }
        finally { handle.Free(); }
    }

    /// <summary>Worker 1 notes its CPU time at the end of the first job (and how often it has blocked so far) and at the
    /// start of the second.</summary>
    static void RecordWorkerCpu(void* context, int thread, int threads)
    {
        ref var j = ref *(WaitJob*)context;
        if (thread != 1) return;
        if (j.WorkerCpuAtEnd != 0) { j.WorkerCpuAtStart = ThreadCpuSeconds(); return; }
        j.BlockedBefore = PoolOf(j).WorkerBlocks;
        j.WorkerCpuAtEnd = ThreadCpuSeconds();
    }

    [SkippableFact]
    public void A_worker_idle_between_jobs_blocks_instead_of_spinning()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads the thread's CPU time through Linux libc");
        using var pool = new WorkerPool(2);
        var handle = GCHandle.Alloc(pool);
        try
        {
            var job = new WaitJob { Pool = GCHandle.ToIntPtr(handle) };
            pool.Run(&RecordWorkerCpu, &job);
            Assert.True(AwaitBlock(() => pool.WorkerBlocks, job.BlockedBefore, 300), $"the idle worker did not block within {HangGuard.Limit}");
            pool.Run(&RecordWorkerCpu, &job);
            double used = job.WorkerCpuAtStart - job.WorkerCpuAtEnd;
            Assert.True(used < BlockedCpuSeconds, $"the worker used {used:F3} s of CPU while idle");
        }
        finally { handle.Free(); }
    }

    struct CountJob { public long* Counts; }

    static void Count(void* context, int thread, int threads) => Interlocked.Increment(ref ((CountJob*)context)->Counts[thread]);

    [Fact]
    public void Every_job_runs_once_on_every_thread_whether_the_threads_spin_or_block_between_jobs()
    {
        // Jobs back to back (the workers catch them spinning) and after pauses (the workers have blocked): each
        // thread runs each job exactly once and the caller returns only after all of them.
        using var pool = new WorkerPool(3);
        long* counts = stackalloc long[3];
        var job = new CountJob { Counts = counts };
        for (int round = 1; round <= 200; round++)
        {
            if (round % 50 == 0) Thread.Sleep(20);
            pool.Run(&Count, &job);
            for (int t = 0; t < 3; t++) Assert.Equal(round, counts[t]);
        }
    }
}
