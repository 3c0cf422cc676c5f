using System.Diagnostics;
using Hone.Tensors;

namespace Hone.Bench;

/// <summary>Decode matrix-vector products streaming from memory: many distinct matrices of the SmolLM2 decode shapes
/// (about 0.5 GB of weights in total), GB/s of weights per second, 1 and 2 threads.</summary>
internal static unsafe class MatVecBench
{
    public static int Run(string[] args)
    {
        foreach (var type in (args.Length > 0 ? args.Select(a => TensorTypes.Parse(a)) : new[] { TensorType.F32, TensorType.BF16, TensorType.F16, TensorType.Q8_0, TensorType.Q4_0 }))
            foreach (int threads in new[] { 1, 2 })
            {
                using var pool = new WorkerPool(threads);
                var shapes = new[] { (1536, 576), (576, 1536), (576, 576), (192, 576) };
                long bytesPerSet = shapes.Sum(s => type.Traits().BytesFor((long)s.Item1 * s.Item2));
                int sets = int.TryParse(Environment.GetEnvironmentVariable("HONE_MATVEC_SETS"), out var forced) ? forced // 1: cache-resident
                    : (int)Math.Max(1, (type == TensorType.F32 ? 512L << 20 : 256L << 20) / bytesPerSet);
                var buffers = new List<(NativeBuffer W, int N, int K)>();
                for (int s = 0; s < sets; s++)
                    foreach (var (n, k) in shapes)
                    {
                        var b = new NativeBuffer(type.Traits().BytesFor((long)n * k));
                        new Span<byte>(b.Pointer, (int)b.Length).Fill(0x3C);
                        buffers.Add((b, n, k));
                    }
                using var x = new NativeBuffer(1536 * 4);
                using var y = new NativeBuffer(1536 * 4);
                double best = double.MaxValue;
                for (int rep = 0; rep < (sets < 8 ? 200 : 5); rep++)
                {
                    var sw = Stopwatch.StartNew();
                    foreach (var (w, n, k) in buffers)
                        MatVec.Multiply(pool, type, w.Pointer, type.Traits().BytesFor(k), n, k, x.AsFloats, y.AsFloats);
                    best = Math.Min(best, sw.Elapsed.TotalSeconds);
                }
                long total = buffers.Sum(b => b.W.Length);
                Console.WriteLine($"{type.Name(),-5} threads {threads}: {total / best / 1e9:F1} GB/s over {total >> 20} MiB ({buffers.Count} matrices)");
                foreach (var b in buffers) b.W.Dispose();
            }
        return 0;
    }
}
