using System.Diagnostics;
using Hone.Tensors;

namespace Hone.Bench;

/// <summary>`attention` mode: one batched decode step's attention on SmolLM2-135M's shape (30 layers, 9 query heads,
/// 3 KV heads, Dh 64) for S sequences at a context of C keys each, fp32 (or, with "bf16", bfloat16) caches of distinct
/// memory per sequence and layer (as the batched engine's slots), best of the repetitions, in ms per step.</summary>
internal static unsafe class AttentionBench
{
    public static int Run(string[] args)
    {
        int threads = args.Length > 0 ? int.Parse(args[0]) : 2;
        int sequences = args.Length > 1 ? int.Parse(args[1]) : 16;
        int context = args.Length > 2 ? int.Parse(args[2]) : 192;
        bool hot = args.Contains("hot"); // every layer reads layer 0's caches (cache-resident when they fit)
        var cacheType = args.Contains("bf16") ? KvCacheType.BF16 : KvCacheType.F32;
        int elementBytes = cacheType == KvCacheType.BF16 ? 2 : 4;
        const int Layers = 30, Heads = 9, KvHeads = 3, Dh = 64, Tmax = 512;
        using var pool = new WorkerPool(threads);
        long kvStride = KvHeads * Dh;
        long cacheFloats = (long)Tmax * kvStride;
        using var k = new NativeBuffer(Layers * sequences * cacheFloats * 4);
        using var v = new NativeBuffer(Layers * sequences * cacheFloats * 4);
        using var q = new NativeBuffer((long)sequences * Heads * Dh * 4);
        using var o = new NativeBuffer((long)sequences * Heads * Dh * 4);
        var rng = new Random(1);
        for (long i = 0; i < Layers * sequences * cacheFloats; i++) { k.AsFloats[i] = (float)(rng.NextDouble() - 0.5); v.AsFloats[i] = (float)(rng.NextDouble() - 0.5); }
        if (cacheType == KvCacheType.BF16) // the leading half of each buffer as bf16 elements
            for (long i = 0; i < Layers * sequences * cacheFloats; i++)
            {
                ((ushort*)k.AsFloats)[i] = NumberConversion.SingleToBFloat16(k.AsFloats[i]);
                ((ushort*)v.AsFloats)[i] = NumberConversion.SingleToBFloat16(v.AsFloats[i]);
            }
        for (long i = 0; i < (long)sequences * Heads * Dh; i++) q.AsFloats[i] = (float)(rng.NextDouble() - 0.5);
        var queries = new Attention.DecodeQuery[sequences];
        double best = double.MaxValue;
        for (int rep = 0; rep < 20; rep++)
        {
            var sw = Stopwatch.StartNew();
            for (int l = 0; l < Layers; l++)
            {
                for (int s = 0; s < sequences; s++)
                {
                    long cache = ((long)(hot ? 0 : l) * sequences + s) * cacheFloats * elementBytes;
                    queries[s] = new Attention.DecodeQuery((nint)(q.AsFloats + (long)s * Heads * Dh), (nint)((byte*)k.AsFloats + cache), (nint)((byte*)v.AsFloats + cache),
                        (nint)(o.AsFloats + (long)s * Heads * Dh), context - 1);
                }
                Attention.ForwardDecodeBatch(pool, queries, kvStride, Heads, KvHeads, Dh, 0.125f, cacheType);
            }
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        double bytes = 2.0 * Layers * sequences * context * kvStride * elementBytes;
        Console.WriteLine($"decode attention, {sequences} sequences × {context} keys, {cacheType} cache, {threads} threads: {best * 1e3:F2} ms per step ({bytes / best / 1e9:F1} GB/s of K and V)");
        return 0;
    }
}
