using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors;

/// <summary>
/// Causal grouped-query attention over a preallocated KV cache.
/// Dimensions: T new query tokens, H query heads, Hkv key/value heads (H multiple of Hkv), Dh head dim,
/// P = start position of the first query (the cache already holds positions 0..P-1 and the new keys/values at P..P+T-1).
/// </summary>
public static unsafe class Attention
{
    const int QueryBlock = 64;

    struct Job
    {
        public float* Q; public long QStride;            // Q[T, H*Dh]
        public float* K, V; public long KvStride;        // K,V[Tmax, Hkv*Dh] of this layer
        public float* Output; public long OutputStride;  // O[T, H*Dh]
        public int Tokens, Heads, KvHeads, HeadDim, Start;
        public float Scale;
        public bool BFloat16;                            // K and V hold bfloat16 elements (same strides, in elements)
    }

    /// <summary>O[t, h] = Σ_{j ≤ P+t} softmax_j(scale · q[t,h]·k[j,g]) v[j,g] with g = h / (H/Hkv).</summary>
    /// <param name="promptRows">the queries are prompt tokens: the blocked prefill kernel even for one query, so each
    /// query's result is the same whatever chunk it came in (one decode query takes the per-head kernel)</param>
    /// <param name="k">K[Tmax, Hkv·Dh] in <paramref name="cacheType"/>, row stride kvStride elements (likewise v)</param>
    public static void Forward(WorkerPool pool, float* q, long qStride, void* k, void* v, long kvStride,
        float* output, long outputStride, int tokens, int heads, int kvHeads, int headDim, int start, float scale,
        bool promptRows = false, KvCacheType cacheType = KvCacheType.F32)
    {
        if (heads % kvHeads != 0) throw new ArgumentException($"{heads} query heads are not a multiple of {kvHeads} KV heads");
        var job = new Job
        {
            Q = q, QStride = qStride, K = (float*)k, V = (float*)v, KvStride = kvStride, Output = output, OutputStride = outputStride,
            Tokens = tokens, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, Start = start, Scale = scale,
            BFloat16 = cacheType == KvCacheType.BF16,
        };
        pool.Run(tokens == 1 && !promptRows ? &DecodeWorker : &PrefillWorker, &job);
    }

    /// <summary>Prefill: per (head, block of queries), S = Q·Kᵀ and O = softmax(S)·V as two register-tiled GEMMs.</summary>
    static void PrefillWorker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        int blocks = (job.Tokens + QueryBlock - 1) / QueryBlock;
        int items = blocks * job.Heads;
        int group = job.Heads / job.KvHeads;
        int maxKeys = job.Start + job.Tokens;
        float* scores = ScoreBuffer.ForThread(QueryBlock * (long)maxKeys);
        // Round-robin from the most expensive (last) blocks so causal work balances across threads.
        for (int item = thread; item < items; item += threads)
        {
            int block = blocks - 1 - item / job.Heads, h = item % job.Heads, g = h / group;
            int t0 = block * QueryBlock, bq = Math.Min(QueryBlock, job.Tokens - t0);
            int keys = job.Start + t0 + bq;
            float* qh = job.Q + t0 * job.QStride + h * job.HeadDim;
            float* kh = job.K + g * job.HeadDim, vh = job.V + g * job.HeadDim;
            int kvStride = (int)job.KvStride;
            if (job.BFloat16)
            {
                // This head's keys and values widened to fp32 [keys, Dh] (1/64 of the GEMMs' work at full blocks).
                float* widened = KvBuffer.ForThread(2L * keys * job.HeadDim);
                ushort* k16 = (ushort*)job.K + g * job.HeadDim, v16 = (ushort*)job.V + g * job.HeadDim;
                for (int j = 0; j < keys; j++)
                {
                    NumberConversion.BFloat16ToSingle(k16 + j * job.KvStride, widened + (long)j * job.HeadDim, job.HeadDim);
                    NumberConversion.BFloat16ToSingle(v16 + j * job.KvStride, widened + ((long)keys + j) * job.HeadDim, job.HeadDim);
                }
                kh = widened; vh = widened + (long)keys * job.HeadDim; kvStride = job.HeadDim;
            }
            Gemm.MultiplySerial(bq, keys, job.HeadDim, qh, (int)job.QStride, false, kh, kvStride, GemmBLayout.NByK, scores, keys, false);
            for (int i = 0; i < bq; i++)
            {
                float* row = scores + (long)i * keys;
                int visible = job.Start + t0 + i + 1;
                ScaleInPlace(row, visible, job.Scale);
                Softmax.InPlace(row, visible);
                new Span<float>(row + visible, keys - visible).Clear();
            }
            Gemm.MultiplySerial(bq, job.HeadDim, keys, scores, keys, false, vh, kvStride, GemmBLayout.KByN,
                job.Output + t0 * job.OutputStride + h * job.HeadDim, (int)job.OutputStride, false);
        }
    }

    /// <summary>Decode: one query per head; threads split the heads.</summary>
    static void DecodeWorker(void* context, int thread, int threads)
    {
        ref Job job = ref *(Job*)context;
        var (h0, h1) = WorkerPool.Share(job.Heads, thread, threads);
        float* scores = ScoreBuffer.ForThread(job.Start + 4);
        for (int h = h0; h < h1; h++) DecodeHead(ref job, h, scores);
    }

    /// <summary>One head of one decode query (the query at position Start, attending to keys 0..Start).</summary>
    static void DecodeHead(ref Job job, int h, float* scores)
    {
        int keys = job.Start + 1;
        int g = h / (job.Heads / job.KvHeads);
        float* qh = job.Q + h * job.HeadDim;
        if (job.BFloat16)
        {
            ushort* k16 = (ushort*)job.K + g * job.HeadDim, v16 = (ushort*)job.V + g * job.HeadDim;
            if (Avx512F.IsSupported && job.HeadDim % 16 == 0) ScoresBFloat16(qh, k16, job.KvStride, keys, job.HeadDim, job.Scale, scores);
            else
            for (int j = 0; j < keys; j++) scores[j] = DotBFloat16(qh, k16 + j * job.KvStride, job.HeadDim) * job.Scale;
            Softmax.InPlace(scores, keys);
            WeightedSumBFloat16(scores, v16, job.KvStride, keys, job.Output + h * job.HeadDim, job.HeadDim);
            return;
        }
        float* kg = job.K + g * job.HeadDim, vg = job.V + g * job.HeadDim;
        if (Avx512F.IsSupported && job.HeadDim % 16 == 0) Scores(qh, kg, job.KvStride, keys, job.HeadDim, job.Scale, scores);
        else
        for (int j = 0; j < keys; j++) scores[j] = Dot(qh, kg + j * job.KvStride, job.HeadDim) * job.Scale;
        Softmax.InPlace(scores, keys);
        WeightedSum(scores, vg, job.KvStride, keys, job.Output + h * job.HeadDim, job.HeadDim);
    }

    /// <summary>One decode query of one sequence: its query and output rows, its own KV cache, its position.</summary>
    /// <param name="Q">q[H·Dh] (after RoPE)</param>
    /// <param name="K">the sequence's key cache of this layer [Tmax, Hkv·Dh], holding positions 0..Position</param>
    /// <param name="Output">o[H·Dh]</param>
    public readonly record struct DecodeQuery(nint Q, nint K, nint V, nint Output, int Position);

    struct BatchJob
    {
        public DecodeQuery* Queries; public int Count;
        public long KvStride; public int Heads, KvHeads, HeadDim; public float Scale;
        public bool BFloat16;
    }

    /// <summary>
    /// The decode queries of many sequences in one parallel region: threads split the (sequence, head) pairs, and each
    /// pair is computed exactly as <see cref="Forward"/> computes one decode query's head, so every sequence's result
    /// is bit-identical to its own call (one dispatch per layer instead of one per sequence).
    /// </summary>
    public static void ForwardDecodeBatch(WorkerPool pool, ReadOnlySpan<DecodeQuery> queries, long kvStride,
        int heads, int kvHeads, int headDim, float scale, KvCacheType cacheType = KvCacheType.F32)
    {
        if (queries.Length == 0) return;
        if (heads % kvHeads != 0) throw new ArgumentException($"{heads} query heads are not a multiple of {kvHeads} KV heads");
        fixed (DecodeQuery* q = queries)
        {
            var job = new BatchJob
            {
                Queries = q, Count = queries.Length, KvStride = kvStride, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, Scale = scale,
                BFloat16 = cacheType == KvCacheType.BF16,
            };
            pool.Run(&DecodeBatchWorker, &job);
        }
    }

    static void DecodeBatchWorker(void* context, int thread, int threads)
    {
        ref BatchJob batch = ref *(BatchJob*)context;
        var (i0, i1) = WorkerPool.Share(batch.Count * batch.Heads, thread, threads);
        int maxKeys = 0;
        for (int i = 0; i < batch.Count; i++) maxKeys = Math.Max(maxKeys, batch.Queries[i].Position + 1);
        float* scores = ScoreBuffer.ForThread(maxKeys + 3);
        for (int item = i0; item < i1; item++)
        {
            var query = batch.Queries[item / batch.Heads];
            var job = new Job
            {
                Q = (float*)query.Q, QStride = 0, K = (float*)query.K, V = (float*)query.V, KvStride = batch.KvStride,
                Output = (float*)query.Output, OutputStride = 0, Tokens = 1, Heads = batch.Heads, KvHeads = batch.KvHeads,
                HeadDim = batch.HeadDim, Start = query.Position, Scale = batch.Scale, BFloat16 = batch.BFloat16,
            };
            DecodeHead(ref job, item % batch.Heads, scores);
        }
    }

    /// <summary>scores[j] = scale·q·k_j, four keys at a time: each key's lane-wise products summed over its Dh/16 chunks
    /// in order, then the four keys' vectors reduced together (unpack, then 128- and 256-bit halves), so one key's
    /// score depends on q and that key only. Dh a multiple of 16; scores needs room for keys rounded up to 4.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Scores(float* q, float* k, long stride, int keys, int dh, float scale, float* scores)
    {
        for (int j = 0; j < keys; j += 4)
        {
            float* k0 = k + j * stride;
            var a0 = Vector512.Load(q) * Vector512.Load(k0);
            var a1 = j + 1 < keys ? Vector512.Load(q) * Vector512.Load(k0 + stride) : default;
            var a2 = j + 2 < keys ? Vector512.Load(q) * Vector512.Load(k0 + 2 * stride) : default;
            var a3 = j + 3 < keys ? Vector512.Load(q) * Vector512.Load(k0 + 3 * stride) : default;
            for (int c = 16; c < dh; c += 16)
            {
                var qc = Vector512.Load(q + c);
                a0 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(k0 + c), a0);
                if (j + 1 < keys) a1 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(k0 + stride + c), a1);
                if (j + 2 < keys) a2 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(k0 + 2 * stride + c), a2);
                if (j + 3 < keys) a3 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(k0 + 3 * stride + c), a3);
            }
            Vector128.Store(Reduce4(a0, a1, a2, a3) * scale, scores + j);
        }
    }

    /// <summary><see cref="Scores"/> over bfloat16 keys, widened exactly.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ScoresBFloat16(float* q, ushort* k, long stride, int keys, int dh, float scale, float* scores)
    {
        for (int j = 0; j < keys; j += 4)
        {
            ushort* k0 = k + j * stride;
            var a0 = Vector512.Load(q) * KvCacheTypes.WidenBFloat16(k0);
            var a1 = j + 1 < keys ? Vector512.Load(q) * KvCacheTypes.WidenBFloat16(k0 + stride) : default;
            var a2 = j + 2 < keys ? Vector512.Load(q) * KvCacheTypes.WidenBFloat16(k0 + 2 * stride) : default;
            var a3 = j + 3 < keys ? Vector512.Load(q) * KvCacheTypes.WidenBFloat16(k0 + 3 * stride) : default;
            for (int c = 16; c < dh; c += 16)
            {
                var qc = Vector512.Load(q + c);
                a0 = Vector512.FusedMultiplyAdd(qc, KvCacheTypes.WidenBFloat16(k0 + c), a0);
                if (j + 1 < keys) a1 = Vector512.FusedMultiplyAdd(qc, KvCacheTypes.WidenBFloat16(k0 + stride + c), a1);
                if (j + 2 < keys) a2 = Vector512.FusedMultiplyAdd(qc, KvCacheTypes.WidenBFloat16(k0 + 2 * stride + c), a2);
                if (j + 3 < keys) a3 = Vector512.FusedMultiplyAdd(qc, KvCacheTypes.WidenBFloat16(k0 + 3 * stride + c), a3);
            }
            Vector128.Store(Reduce4(a0, a1, a2, a3) * scale, scores + j);
        }
    }

    /// <summary>[Σ a0, Σ a1, Σ a2, Σ a3], each sum over its own 16 lanes by one fixed tree.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector128<float> Reduce4(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        // Per 128-bit lane: [a0 a1 a0 a1] pair sums, then [a0 a1 a2 a3] quad sums; then the four lanes added.
        var p01 = Avx512F.UnpackLow(a0, a1) + Avx512F.UnpackHigh(a0, a1);
        var p23 = Avx512F.UnpackLow(a2, a3) + Avx512F.UnpackHigh(a2, a3);
        var quad = Avx512F.Shuffle(p01, p23, 0x44) + Avx512F.Shuffle(p01, p23, 0xEE);
        var halves = quad.GetLower() + quad.GetUpper();
        return halves.GetLower() + halves.GetUpper();
    }

    /// <summary>Σ a[i]·b[i] in fp32 vectors with a scalar tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(float* a, float* b, int n)
    {
        int i = 0;
        var acc = Vector512<float>.Zero;
        for (; i + 16 <= n; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
        float s = Vector512.Sum(acc);
        for (; i < n; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>Σ a[i]·b[i] for bfloat16 b, widened exactly: the same operations as <see cref="Dot"/> on the widened b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float DotBFloat16(float* a, ushort* b, int n)
    {
        int i = 0;
        var acc = Vector512<float>.Zero;
        for (; i + 16 <= n; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), KvCacheTypes.WidenBFloat16(b + i), acc);
        float s = Vector512.Sum(acc);
        for (; i < n; i++) s += a[i] * NumberConversion.BFloat16ToSingle(b[i]);
        return s;
    }

    /// <summary>o[Dh] = Σ_j p[j]·v[j, :] for bfloat16 v, as <see cref="WeightedSum"/> does on the widened rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void WeightedSumBFloat16(float* p, ushort* v, long stride, int keys, float* o, int dh)
    {
        int i = 0;
        for (; i + 64 <= dh; i += 64)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            ushort* vj = v + i;
            for (int j = 0; j < keys; j++, vj += stride)
            {
                var pj = Vector512.Create(p[j]);
                a0 = Vector512.FusedMultiplyAdd(pj, KvCacheTypes.WidenBFloat16(vj), a0);
                a1 = Vector512.FusedMultiplyAdd(pj, KvCacheTypes.WidenBFloat16(vj + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(pj, KvCacheTypes.WidenBFloat16(vj + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(pj, KvCacheTypes.WidenBFloat16(vj + 48), a3);
            }
            Vector512.Store(a0, o + i);
            Vector512.Store(a1, o + i + 16);
            Vector512.Store(a2, o + i + 32);
            Vector512.Store(a3, o + i + 48);
        }
        for (; i + 16 <= dh; i += 16)
        {
            var acc = Vector512<float>.Zero;
            for (int j = 0; j < keys; j++) acc = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), KvCacheTypes.WidenBFloat16(v + j * stride + i), acc);
            Vector512.Store(acc, o + i);
        }
        for (; i < dh; i++)
        {
            float s = 0;
            for (int j = 0; j < keys; j++) s += p[j] * NumberConversion.BFloat16ToSingle(v[j * stride + i]);
            o[i] = s;
        }
    }

    /// <summary>o[Dh] = Σ_j p[j]·v[j, :].</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void WeightedSum(float* p, float* v, long stride, int keys, float* o, int dh)
    {
        int i = 0;
        // Four 16-wide columns per pass over the keys: each lane still sums p[j]·v[j, lane] for j in order, as the
        // one-column loop below does, so the result is the same bit for bit; the values rows are read once, not four times.
        for (; i + 64 <= dh; i += 64)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            float* vj = v + i;
            for (int j = 0; j < keys; j++, vj += stride)
            {
                var pj = Vector512.Create(p[j]);
                a0 = Vector512.FusedMultiplyAdd(pj, Vector512.Load(vj), a0);
                a1 = Vector512.FusedMultiplyAdd(pj, Vector512.Load(vj + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(pj, Vector512.Load(vj + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(pj, Vector512.Load(vj + 48), a3);
            }
            Vector512.Store(a0, o + i);
            Vector512.Store(a1, o + i + 16);
            Vector512.Store(a2, o + i + 32);
            Vector512.Store(a3, o + i + 48);
        }
        for (; i + 16 <= dh; i += 16)
        {
            var acc = Vector512<float>.Zero;
            for (int j = 0; j < keys; j++) acc = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Vector512.Load(v + j * stride + i), acc);
            Vector512.Store(acc, o + i);
        }
        for (; i < dh; i++)
        {
            float s = 0;
            for (int j = 0; j < keys; j++) s += p[j] * v[j * stride + i];
            o[i] = s;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void ScaleInPlace(float* x, int n, float scale)
    {
        int i = 0;
        var s = Vector512.Create(scale);
        for (; i + 16 <= n; i += 16) Vector512.Store(Vector512.Load(x + i) * s, x + i);
        for (; i < n; i++) x[i] *= scale;
    }

    /// <summary>Straightforward double-precision reference twin.</summary>
    public static void ForwardReference(float* q, long qStride, float* k, float* v, long kvStride,
        float* output, long outputStride, int tokens, int heads, int kvHeads, int headDim, int start, float scale)
    {
        int group = heads / kvHeads;
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads; h++)
            {
                int g = h / group, keys = start + t + 1;
                var s = new double[keys];
                double max = double.NegativeInfinity;
                for (int j = 0; j < keys; j++)
                {
                    double d = 0;
                    for (int i = 0; i < headDim; i++) d += (double)q[t * qStride + h * headDim + i] * k[j * kvStride + g * headDim + i];
                    s[j] = d * scale; max = Math.Max(max, s[j]);
                }
                double sum = 0;
                for (int j = 0; j < keys; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                for (int i = 0; i < headDim; i++)
                {
                    double o = 0;
                    for (int j = 0; j < keys; j++) o += s[j] / sum * v[j * kvStride + g * headDim + i];
                    output[t * outputStride + h * headDim + i] = (float)o;
                }
            }
    }

    /// <summary>Per-thread fp32 copies of a head's bfloat16 keys and values (prefill).</summary>
    static class KvBuffer
    {
        [ThreadStatic] static float* _buffer;
        [ThreadStatic] static long _capacity;

        public static float* ForThread(long floats)
        {
            if (_capacity < floats)
            {
                if (_buffer != null) NativeMemory.AlignedFree(_buffer);
                _capacity = Math.Max(floats, 4096);
                _buffer = (float*)NativeMemory.AlignedAlloc((nuint)(_capacity * 4), 64);
            }
            return _buffer;
        }
    }

    static class ScoreBuffer
    {
        [ThreadStatic] static float* _buffer;
        [ThreadStatic] static long _capacity;

        public static float* ForThread(long floats)
        {
            if (_capacity < floats)
            {
                if (_buffer != null) NativeMemory.AlignedFree(_buffer);
                _capacity = Math.Max(floats, 4096);
                _buffer = (float*)NativeMemory.AlignedAlloc((nuint)(_capacity * 4), 64);
            }
            return _buffer;
        }
    }
}
