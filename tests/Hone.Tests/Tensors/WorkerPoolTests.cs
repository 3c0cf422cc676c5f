using System.Diagnostics;
using Hone.Tensors;
using Xunit;

namespace Hone.Tests.Tensors;

public unsafe class WorkerPoolTests
{
    /// <summary>A balanced job where thread 1 is <paramref name="slowdown"/>× slower per item: each thread spins for its
    /// items × cost. Writes each thread's share into counts[thread].</summary>
    struct SkewJob { public int* Counts; public int Items; public double SecondsPerItem; public double Slowdown; }

    static void Skewed(void* context, int thread, int threads)
    {
        ref var j = ref *(SkewJob*)context;
        var (start, end) = WorkerPool.Balanced(j.Items, thread, threads);
        j.Counts[thread] = end - start;
        double seconds = (end - start) * j.SecondsPerItem * (thread == 1 ? j.Slowdown : 1);
        long until = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < until) Thread.SpinWait(10);
    }

    /// <summary>Skews a pool's learned speeds by running jobs on which thread 1 is three times slower (an even split of
    /// these would give 500 / 500; the learned one tends to 750 / 250; the assertions leave room for a busy machine).</summary>
    internal static void Skew(WorkerPool pool, int jobs = 30)
    {
        int* counts = stackalloc int[pool.Threads];
        var job = new SkewJob { Counts = counts, Items = 1000, SecondsPerItem = 1e-6, Slowdown = 3 };
        for (int i = 0; i < jobs; i++) pool.Run(&Skewed, &job);
    }

    [Fact]
    public void Balanced_shares_follow_the_speed_each_thread_shows()
    {
        using var pool = new WorkerPool(2);
        int* counts = stackalloc int[2];
        var job = new SkewJob { Counts = counts, Items = 1000, SecondsPerItem = 1e-6, Slowdown = 3 };
        pool.Run(&Skewed, &job);
        Assert.Equal(500, counts[0]);                      // nothing learned yet: even shares
        for (int i = 0; i < 40; i++) pool.Run(&Skewed, &job);
        Assert.Equal(1000, counts[0] + counts[1]);         // every item exactly once
        Assert.True(counts[0] > 600, $"the faster thread should take most items; shares {counts[0]} / {counts[1]}, speeds {string.Join("/", pool.Speeds)}");
        Assert.True(counts[1] > 0);
        Assert.True(Math.Abs(pool.Speeds[0] / (pool.Speeds[0] + pool.Speeds[1]) - counts[0] / 1000.0) < 0.002);

        // Switched off, the same pool splits evenly again; outside a job the share is the plain even one.
        pool.Balancing = false;
        pool.Run(&Skewed, &job);
        Assert.Equal(500, counts[0]);
        Assert.Equal((0, 500), WorkerPool.Balanced(1000, 0, 2));
    }

    [Fact]
    public void Balanced_ranges_cover_every_item_once_in_granularity_chunks()
    {
        using var pool = new WorkerPool(3);
        Skew(pool, 10);
        int* seen = stackalloc int[3 * 2];
        foreach (int count in new[] { 0, 1, 5, 16, 17, 1000, 1001 })
            foreach (int granularity in new[] { 1, 6, 16 })
            {
                var job = new CoverJob { Ranges = seen, Count = count, Granularity = granularity };
                pool.Run(&Cover, &job);
                int next = 0;
                for (int t = 0; t < 3; t++)
                {
                    Assert.Equal(next, seen[2 * t]);
                    Assert.True(seen[2 * t + 1] >= seen[2 * t]);
                    Assert.True(seen[2 * t + 1] == count || seen[2 * t + 1] % granularity == 0);
                    next = seen[2 * t + 1];
                }
                Assert.Equal(count, next);
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
}
