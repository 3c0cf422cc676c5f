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
        float* scores = ThreadBuffer<ScoreRows>.ForThread(QueryBlock * (long)maxKeys);
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
                float* widened = ThreadBuffer<WidenedKv>.ForThread(2L * keys * job.HeadDim);
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
        float* scores = ThreadBuffer<ScoreRows>.ForThread(job.Start + 4);
        for (int h = h0; h < h1; h++) DecodeHead(ref job, h, scores);
    }

    /// <summary>One head of one decode query (the query at position Start, attending to keys 0..Start).</summary>
    static void DecodeHead(ref Job job, int h, float* scores)
    {
        if (job.BFloat16) DecodeHead<BFloat16Elements>(ref job, h, scores);
        else DecodeHead<F32Elements>(ref job, h, scores);
    }

    static void DecodeHead<T>(ref Job job, int h, float* scores) where T : struct, ICacheElements
    {
        int keys = job.Start + 1;
        int g = h / (job.Heads / job.KvHeads);
        float* qh = job.Q + h * job.HeadDim;
        byte* kg = (byte*)job.K + (long)g * job.HeadDim * T.Bytes, vg = (byte*)job.V + (long)g * job.HeadDim * T.Bytes;
        if (Avx512F.IsSupported && job.HeadDim % 16 == 0) Scores<T>(qh, kg, job.KvStride, keys, job.HeadDim, job.Scale, scores);
        else
            for (int j = 0; j < keys; j++) scores[j] = Dot<T>(qh, kg + j * job.KvStride * T.Bytes, job.HeadDim) * job.Scale;
        Softmax.InPlace(scores, keys);
        WeightedSum<T>(scores, vg, job.KvStride, keys, job.Output + h * job.HeadDim, job.HeadDim);
    }

    /// <summary>How decode attention reads the elements of a KV cache row: 16 at a time widened to fp32 (exactly), or
    /// one. The kernels below are written once over it; each element type gets its own compiled copy.</summary>
    interface ICacheElements
    {
        static abstract int Bytes { get; }
        /// <summary>Elements i..i+15 of <paramref name="row"/> as fp32.</summary>
        static abstract Vector512<float> Load(void* row, long i);
        static abstract float Scalar(void* row, long i);
    }

    readonly struct F32Elements : ICacheElements
    {
        public static int Bytes => 4;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(void* row, long i) => Vector512.Load((float*)row + i);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Scalar(void* row, long i) => ((float*)row)[i];
    }

    readonly struct BFloat16Elements : ICacheElements
    {
        public static int Bytes => 2;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(void* row, long i) => KvCacheTypes.WidenBFloat16((ushort*)row + i);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Scalar(void* row, long i) => NumberConversion.BFloat16ToSingle(((ushort*)row)[i]);
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
        float* scores = ThreadBuffer<ScoreRows>.ForThread(maxKeys + 3);
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
    /// <param name="k">k[keys, Dh] in T's elements, rows <paramref name="stride"/> elements apart</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Scores<T>(float* q, void* k, long stride, int keys, int dh, float scale, float* scores) where T : struct, ICacheElements
    {
        for (int j = 0; j < keys; j += 4)
        {
            long k0 = j * stride;
            var a0 = Vector512.Load(q) * T.Load(k, k0);
            var a1 = j + 1 < keys ? Vector512.Load(q) * T.Load(k, k0 + stride) : default;
            var a2 = j + 2 < keys ? Vector512.Load(q) * T.Load(k, k0 + 2 * stride) : default;
            var a3 = j + 3 < keys ? Vector512.Load(q) * T.Load(k, k0 + 3 * stride) : default;
            for (int c = 16; c < dh; c += 16)
            {
                var qc = Vector512.Load(q + c);
                a0 = Vector512.FusedMultiplyAdd(qc, T.Load(k, k0 + c), a0);
                if (j + 1 < keys) a1 = Vector512.FusedMultiplyAdd(qc, T.Load(k, k0 + stride + c), a1);
                if (j + 2 < keys) a2 = Vector512.FusedMultiplyAdd(qc, T.Load(k, k0 + 2 * stride + c), a2);
                if (j + 3 < keys) a3 = Vector512.FusedMultiplyAdd(qc, T.Load(k, k0 + 3 * stride + c), a3);
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
    internal static float Dot(float* a, float* b, int n) => Dot<F32Elements>(a, b, n);

    /// <summary>Σ a[i]·b[i] for b in T's elements (widened exactly).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot<T>(float* a, void* b, int n) where T : struct, ICacheElements
    {
        int i = 0;
        var acc = Vector512<float>.Zero;
        for (; i + 16 <= n; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), T.Load(b, i), acc);
        float s = Vector512.Sum(acc);
        for (; i < n; i++) s += a[i] * T.Scalar(b, i);
        return s;
    }

    /// <summary>o[Dh] = Σ_j p[j]·v[j, :] for v in T's elements, rows <paramref name="stride"/> elements apart.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void WeightedSum<T>(float* p, void* v, long stride, int keys, float* o, int dh) where T : struct, ICacheElements
    {
        int i = 0;
        // Four 16-wide columns per pass over the keys: each lane still sums p[j]·v[j, lane] for j in order, as the
        // one-column loop below does, so the result is the same bit for bit; the values rows are read once, not four times.
        for (; i + 64 <= dh; i += 64)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            long vj = i;
            for (int j = 0; j < keys; j++, vj += stride)
            {
                var pj = Vector512.Create(p[j]);
                a0 = Vector512.FusedMultiplyAdd(pj, T.Load(v, vj), a0);
                a1 = Vector512.FusedMultiplyAdd(pj, T.Load(v, vj + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(pj, T.Load(v, vj + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(pj, T.Load(v, vj + 48), a3);
            }
            Vector512.Store(a0, o + i);
            Vector512.Store(a1, o + i + 16);
            Vector512.Store(a2, o + i + 32);
            Vector512.Store(a3, o + i + 48);
        }
        for (; i + 16 <= dh; i += 16)
        {
            var acc = Vector512<float>.Zero;
            for (int j = 0; j < keys; j++) acc = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), T.Load(v, j * stride + i), acc);
            Vector512.Store(acc, o + i);
        }
        for (; i < dh; i++)
        {
            float s = 0;
            for (int j = 0; j < keys; j++) s += p[j] * T.Scalar(v, j * stride + i);
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

    sealed class ScoreRows;
    sealed class WidenedKv;

    /// <summary>A per-thread float buffer that grows and is kept, one per <typeparamref name="TUse"/> (each closed
    /// generic type has its own thread statics): scores, and widened bf16 keys and values in prefill.</summary>
    static class ThreadBuffer<TUse>
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
