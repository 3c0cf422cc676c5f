using System.Diagnostics;
using Hone.Tensors;

namespace Hone.Bench;

public static unsafe class Program
{
    public static int Main(string[] args)
    {
        var mode = args.Length > 0 ? args[0] : "gemm";
        switch (mode)
        {
            case "gemm": return GemmBench(args.Skip(1).ToArray());
            case "emitted": return EmittedBench.Run(args.Skip(1).ToArray());
            default:
                Console.Error.WriteLine($"unknown benchmark '{mode}'; known: gemm, emitted");
                return 2;
        }
    }

    static int GemmBench(string[] args)
    {
        int threads = args.Length > 0 ? int.Parse(args[0]) : 1;
        using var pool = new WorkerPool(threads);
        for (int rep = 0; rep < 5; rep++)
        {
            var sw0 = Stopwatch.StartNew();
            double flops = Gemm.KernelOnly(20000, 256);
            Console.WriteLine($"micro-kernel alone (L1): {flops / sw0.Elapsed.TotalSeconds / 1e9:F1} GFLOP/s");
        }
        foreach (var (m, n, k) in new[] { (512, 1536, 576), (512, 576, 1536), (512, 576, 576), (512, 192, 576), (512, 49152, 576) })
        {
            var a = new NativeBuffer((long)m * k * 4); var b = new NativeBuffer((long)n * k * 4); var c = new NativeBuffer((long)m * n * 4);
            var rng = new Random(1);
            for (long i = 0; i < (long)m * k; i++) a.AsFloats[i] = (float)rng.NextDouble();
            for (long i = 0; i < (long)n * k; i++) b.AsFloats[i] = (float)rng.NextDouble();
            double best = double.MaxValue;
            for (int rep = 0; rep < 10; rep++)
            {
                var sw = Stopwatch.StartNew();
                Gemm.Multiply(pool, m, n, k, a.AsFloats, k, false, b.AsFloats, k, GemmBLayout.NByK, c.AsFloats, n, false);
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            double gflops = 2.0 * m * n * k / best / 1e9;
            Console.WriteLine($"M={m} N={n} K={k} threads={threads}: {best * 1e3:F2} ms, {gflops:F1} GFLOP/s");
            a.Dispose(); b.Dispose(); c.Dispose();
        }
        return 0;
    }
}
