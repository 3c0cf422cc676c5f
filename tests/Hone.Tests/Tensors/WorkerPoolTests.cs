using System.Diagnostics;
using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Tensors;

public unsafe class WorkerPoolTests
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
}
