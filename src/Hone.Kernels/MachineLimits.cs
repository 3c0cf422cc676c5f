using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hone.Tensors;

/// <summary>The machine's measured limits, against which every hot path is reported as a ratio.</summary>
/// <param name="PeakGflops">fp32 FMA throughput of all threads together (register-only loop, widest vectors): the sum
/// of each thread's own rate while all run at once, so a vCPU the host slows counts for what it gives (timing the
/// group by its slowest thread read 180–250 instead of ~420 GFLOP/s when one of two vCPUs was slowed)</param>
/// <param name="BandwidthGBs">streaming read bandwidth of all threads together from a buffer far larger than cache</param>
public sealed unsafe record MachineLimits(int Threads, double PeakGflops, double BandwidthGBs, string Vectors)
{
    /// <summary>Measure both limits with <paramref name="pool"/>'s threads (about half a second).</summary>
    public static unsafe MachineLimits Measure(WorkerPool pool, long bufferBytes = 512L << 20)
    {
        var rates = new double[pool.Threads];
        fixed (double* f = rates)
        {
            var ctx = new FlopContext { Results = f, Iterations = 20_000_000 };
            pool.Run(&FlopWorker, &ctx); // warm up clocks and the JIT
            double best = 0;
            for (int rep = 0; rep < 3; rep++)
            {
                pool.Run(&FlopWorker, &ctx);
                best = Math.Max(best, rates.Sum());
            }
            double bandwidth = MeasureBandwidth(pool, bufferBytes);
            string vectors = Vector512.IsHardwareAccelerated ? "avx512" : Vector256.IsHardwareAccelerated ? "avx2" : "sse/scalar";
            return new MachineLimits(pool.Threads, best / 1e9, bandwidth, vectors);
        }
    }

    /// <summary>Streaming read bandwidth of the pool's threads in GB/s: best of three passes over a buffer far larger
    /// than the caches (about a quarter of a second). Benchmarks call it again next to a bandwidth-bound test, since a
    /// VM's bandwidth moves with its neighbours.</summary>
    public static double MeasureBandwidth(WorkerPool pool, long bufferBytes = 512L << 20)
    {
        using var buffer = new NativeBuffer(bufferBytes);
        new Span<byte>(buffer.Pointer, (int)Math.Min(bufferBytes, int.MaxValue)).Fill(1);
        if (bufferBytes > int.MaxValue) buffer.Clear();
        var mem = new MemoryContext { Data = buffer.Pointer, Bytes = bufferBytes };
        pool.Run(&MemoryWorker, &mem);
        double bestBandwidth = 0;
        for (int rep = 0; rep < 3; rep++)
        {
            var sw = Stopwatch.StartNew();
            pool.Run(&MemoryWorker, &mem);
            bestBandwidth = Math.Max(bestBandwidth, bufferBytes / sw.Elapsed.TotalSeconds);
        }
        return bestBandwidth / 1e9;
    }

    struct FlopContext { public double* Results; public long Iterations; } // Results: FLOP/s per thread
    struct MemoryContext { public byte* Data; public long Bytes; public float Sink; }

    static unsafe void FlopWorker(void* context, int thread, int threads)
    {
        ref var ctx = ref *(FlopContext*)context;
        long start = Stopwatch.GetTimestamp();
        double flops = FmaLoop(ctx.Iterations);
        ctx.Results[thread] = flops / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>12 independent FMA chains per iteration (enough to cover FMA latency on every x86 core we know).
    /// Returns the FLOPs performed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static double FmaLoop(long iterations)
    {
        if (!Vector256.IsHardwareAccelerated)
        {
            // Scalar FMAs: the peak of the scalar paths that run where no wide vectors are (a ratio against 0 is no ratio).
            float x = 1.0000001f, y = 0.9999999f;
            float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0, a9 = 0, a10 = 0, a11 = 0;
            for (long i = 0; i < iterations; i++)
            {
                a0 = MathF.FusedMultiplyAdd(x, y, a0); a1 = MathF.FusedMultiplyAdd(x, y, a1); a2 = MathF.FusedMultiplyAdd(x, y, a2);
                a3 = MathF.FusedMultiplyAdd(x, y, a3); a4 = MathF.FusedMultiplyAdd(x, y, a4); a5 = MathF.FusedMultiplyAdd(x, y, a5);
                a6 = MathF.FusedMultiplyAdd(x, y, a6); a7 = MathF.FusedMultiplyAdd(x, y, a7); a8 = MathF.FusedMultiplyAdd(x, y, a8);
                a9 = MathF.FusedMultiplyAdd(x, y, a9); a10 = MathF.FusedMultiplyAdd(x, y, a10); a11 = MathF.FusedMultiplyAdd(x, y, a11);
            }
            Sink = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
            return iterations * 12.0 * 2;
        }
        if (Vector512.IsHardwareAccelerated)
        {
            var x = Vector512.Create(1.0000001f); var y = Vector512.Create(0.9999999f);
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
            Vector512<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
            for (long i = 0; i < iterations; i++)
            {
                a0 = Vector512.FusedMultiplyAdd(x, y, a0); a1 = Vector512.FusedMultiplyAdd(x, y, a1); a2 = Vector512.FusedMultiplyAdd(x, y, a2);
                a3 = Vector512.FusedMultiplyAdd(x, y, a3); a4 = Vector512.FusedMultiplyAdd(x, y, a4); a5 = Vector512.FusedMultiplyAdd(x, y, a5);
                a6 = Vector512.FusedMultiplyAdd(x, y, a6); a7 = Vector512.FusedMultiplyAdd(x, y, a7); a8 = Vector512.FusedMultiplyAdd(x, y, a8);
                a9 = Vector512.FusedMultiplyAdd(x, y, a9); a10 = Vector512.FusedMultiplyAdd(x, y, a10); a11 = Vector512.FusedMultiplyAdd(x, y, a11);
            }
            Sink = Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
            return iterations * 12.0 * 32;
        }
        else
        {
            var x = Vector256.Create(1.0000001f); var y = Vector256.Create(0.9999999f);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
            Vector256<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
            for (long i = 0; i < iterations; i++)
            {
                a0 = Vector256.FusedMultiplyAdd(x, y, a0); a1 = Vector256.FusedMultiplyAdd(x, y, a1); a2 = Vector256.FusedMultiplyAdd(x, y, a2);
                a3 = Vector256.FusedMultiplyAdd(x, y, a3); a4 = Vector256.FusedMultiplyAdd(x, y, a4); a5 = Vector256.FusedMultiplyAdd(x, y, a5);
                a6 = Vector256.FusedMultiplyAdd(x, y, a6); a7 = Vector256.FusedMultiplyAdd(x, y, a7); a8 = Vector256.FusedMultiplyAdd(x, y, a8);
                a9 = Vector256.FusedMultiplyAdd(x, y, a9); a10 = Vector256.FusedMultiplyAdd(x, y, a10); a11 = Vector256.FusedMultiplyAdd(x, y, a11);
            }
            Sink = Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
            return iterations * 12.0 * 16;
        }
    }

    static float Sink;

    static unsafe void MemoryWorker(void* context, int thread, int threads)
    {
        ref var ctx = ref *(MemoryContext*)context;
        long chunk = ctx.Bytes / threads / 64 * 64;
        ctx.Sink += ReadSum(ctx.Data + chunk * thread, chunk);
    }

    /// <summary>Stream through memory with four independent accumulators.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe float ReadSum(byte* data, long bytes)
    {
        var f = (float*)data;
        long n = bytes / 4;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (long i = 0; i + 32 <= n; i += 32)
        {
            a0 += Vector256.Load(f + i); a1 += Vector256.Load(f + i + 8);
            a2 += Vector256.Load(f + i + 16); a3 += Vector256.Load(f + i + 24);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }
}
