using System.Diagnostics;
using Hone.Tensors;

namespace Hone.Bench;

/// <summary>`rows` mode: one decode step of a SmolLM2-135M-shaped model's projections (30 layers and the head, weights
/// from memory) for M rows at once — MatVec.MultiplyRows (the batched engine's decode rows) against the GEMM the
/// same rows would take as prompt rows, and for Q8_0 the GEMM on weights packed once — in tokens/s (M ÷ time of the pass), best of the repetitions.</summary>
internal static unsafe class RowsBench
{
    public static int Run(string[] args)
    {
        int threads = args.Length > 0 ? int.Parse(args[0]) : 2;
        var types = args.Length > 1 ? args.Skip(1).Select(TensorTypes.Parse).ToArray() : [TensorType.F32, TensorType.Q8_0];
        using var pool = new WorkerPool(threads);
        var layer = new[] { (576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536) };
        foreach (var type in types)
        {
            var matrices = new List<(NativeBuffer W, int N, int K)>();
            for (int l = 0; l < 30; l++)
                foreach (var (n, k) in layer) matrices.Add((Filled(type, n, k), n, k));
            matrices.Add((Filled(type, 49152, 576), 49152, 576));
            using var x = new NativeBuffer(64L * 1536 * 4);
            using var y = new NativeBuffer(64L * 49152 * 4);
            var xs = new Span<float>(x.AsFloats, 64 * 1536);
            var rng = new Random(1);
            for (int i = 0; i < xs.Length; i++) xs[i] = (float)(rng.NextDouble() - 0.5);
            var packed = type == TensorType.Q8_0
                ? matrices.Select(t => Hone.Tensors.Emitted.WeightGemm.TryPack(pool, type, t.W.Pointer, type.Traits().BytesFor(t.K), t.N, t.K)!).ToList()
                : null;
            foreach (int m in new[] { 1, 4, 16, 64 })
            {
                double rows = Best(() => { foreach (var (w, n, k) in matrices) MatVec.MultiplyRows(pool, type, w.Pointer, type.Traits().BytesFor(k), n, k, x.AsFloats, k, m, y.AsFloats, n); });
                double gemm = Best(() => { foreach (var (w, n, k) in matrices) Gemm.MultiplyWeights(pool, m, n, k, x.AsFloats, k, type, w.Pointer, type.Traits().BytesFor(k), y.AsFloats, n, false); });
                string line = $"{type.Name(),-5} M={m,2}: decode rows {rows * 1e3,7:F1} ms ({m / rows,6:F0} tok/s)   gemm {gemm * 1e3,7:F1} ms ({m / gemm,6:F0} tok/s)";
                if (packed != null)
                {
                    double p = Best(() => { foreach (var w in packed) Hone.Tensors.Emitted.WeightGemm.MultiplyPacked(pool, m, x.AsFloats, w.K, w, y.AsFloats, w.N, false); });
                    line += $"   packed gemm {p * 1e3,7:F1} ms ({m / p,6:F0} tok/s)";
                }
                Console.WriteLine(line);
            }
            foreach (var (w, _, _) in matrices) w.Dispose();
        }
        return 0;
    }

    static NativeBuffer Filled(TensorType type, int n, int k)
    {
        long rowBytes = type.Traits().BytesFor(k);
        var b = new NativeBuffer(rowBytes * n);
        var rng = new Random(n + k);
        var row = new float[k];
        for (int r = 0; r < n; r++)
        {
            for (int i = 0; i < k; i++) row[i] = (float)(rng.NextDouble() - 0.5) * 0.05f;
            var dst = new Span<byte>(b.Pointer + r * rowBytes, (int)rowBytes);
            if (type == TensorType.F32) System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()).CopyTo(dst);
            else Hone.Tensors.Quantization.BlockQuantization.QuantizeRow(type, row, dst);
        }
        return b;
    }

    static double Best(Action pass)
    {
        double best = double.MaxValue;
        for (int rep = 0; rep < 6; rep++)
        {
            var sw = Stopwatch.StartNew();
            pass();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}
