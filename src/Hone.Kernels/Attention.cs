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
        float* scores = ThreadBuffer<ScoreRows>.ForThread(GroupRun * ScoreStride(job.Start + 1));
        DecodeHeads(ref job, h0, h1, scores);
    }

    /// <summary>Most query heads of one KV group computed in one pass over its keys and values.</summary>
    const int GroupRun = 4;

    /// <summary>Floats between the score rows of a run's heads: the keys rounded up to whole groups of four.</summary>
    static int ScoreStride(int keys) => (keys + 3) & ~3;

    /// <summary>Heads h0..h1 of one decode query (the query at position Start, attending to keys 0..Start), in runs of up
    /// to <see cref="GroupRun"/> heads that share a KV head: each run reads its keys and values once for all its heads.
    /// Every head's arithmetic is the same in any run, so the result does not depend on how threads split the heads.</summary>
    static void DecodeHeads(ref Job job, int h0, int h1, float* scores)
    {
        int group = job.Heads / job.KvHeads;
        for (int h = h0; h < h1;)
        {
            int count = Math.Min(Math.Min(h1, (h / group + 1) * group) - h, GroupRun);
            if (job.BFloat16) DecodeRun<BFloat16Elements>(ref job, h, count, scores);
            else DecodeRun<F32Elements>(ref job, h, count, scores);
            h += count;
        }
    }

    /// <param name="scores">[count, ScoreStride(keys)] scratch</param>
    static void DecodeRun<T>(ref Job job, int h0, int count, float* scores) where T : struct, ICacheElements
    {
        int keys = job.Start + 1, stride = ScoreStride(keys);
        int g = h0 / (job.Heads / job.KvHeads);
        float* q = job.Q + h0 * job.HeadDim;
        byte* kg = (byte*)job.K + (long)g * job.HeadDim * T.Bytes, vg = (byte*)job.V + (long)g * job.HeadDim * T.Bytes;
        if (Avx512F.IsSupported && job.HeadDim % 16 == 0) ScoresRun<T>(q, count, kg, job.KvStride, keys, job.HeadDim, job.Scale, scores, stride);
        else
            for (int i = 0; i < count; i++)
                for (int j = 0; j < keys; j++)
                    scores[i * stride + j] = Dot<T>(q + i * job.HeadDim, kg + j * job.KvStride * T.Bytes, job.HeadDim) * job.Scale;
        for (int i = 0; i < count; i++) Softmax.InPlace(scores + i * stride, keys);
        WeightedSumRun<T>(scores, stride, count, vg, job.KvStride, keys, job.Output + h0 * job.HeadDim, job.HeadDim);
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
        // Threads split the (sequence, head) items by their cost, the keys they read (a head of a sequence at position
        // P reads P + 1), in shares by the threads' learned speeds.
        long total = 0;
        int maxKeys = 0;
        for (int i = 0; i < batch.Count; i++)
        {
            int keys = batch.Queries[i].Position + 1;
            total += (long)keys * batch.Heads;
            maxKeys = Math.Max(maxKeys, keys);
        }
        var (c0, c1) = WorkerPool.Balanced((int)Math.Min(total, int.MaxValue), thread, threads);
        float* scores = ThreadBuffer<ScoreRows>.ForThread(GroupRun * ScoreStride(maxKeys));
        long before = 0; // cost of the items ahead of this sequence
        for (int sequence = 0; sequence < batch.Count && before < c1; sequence++)
        {
            var query = batch.Queries[sequence];
            int keys = query.Position + 1;
            // Items whose cost starts in [c0, c1): heads h with before + h·keys in that range.
            long from = Math.Max(0, c0 - before), to = c1 - before;
            int h0 = (int)Math.Min(batch.Heads, (from + keys - 1) / keys), h1 = (int)Math.Min(batch.Heads, (to + keys - 1) / keys);
            before += (long)keys * batch.Heads;
            if (h0 >= h1) continue;
            var job = new Job
            {
                Q = (float*)query.Q, QStride = 0, K = (float*)query.K, V = (float*)query.V, KvStride = batch.KvStride,
                Output = (float*)query.Output, OutputStride = 0, Tokens = 1, Heads = batch.Heads, KvHeads = batch.KvHeads,
                HeadDim = batch.HeadDim, Start = query.Position, Scale = batch.Scale, BFloat16 = batch.BFloat16,
            };
            DecodeHeads(ref job, h0, h1, scores);
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
            Vector128.Store(HorizontalSum.Four(a0, a1, a2, a3) * scale, scores + j);
        }
    }

    /// <summary>The scores of a run of 1..4 heads of one KV group: each key row is loaded once for all of them, and
    /// every head's score of every key is computed exactly as <see cref="Scores{T}"/> computes it alone.</summary>
    /// <param name="q">q[count, Dh]: the run's query heads, one after another</param>
    /// <param name="k">k[keys, Dh] in T's elements, rows <paramref name="stride"/> elements apart</param>
    /// <param name="scores">[count, scoreStride]; scoreStride ≥ keys rounded up to 4</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ScoresRun<T>(float* q, int count, void* k, long stride, int keys, int dh, float scale, float* scores, int scoreStride)
        where T : struct, ICacheElements
    {
        float* q1 = q + dh, q2 = q + 2 * dh, q3 = q + 3 * dh;
        int full = keys & ~3;
        for (int j = 0; j < full; j += 4)
        {
            long r0 = j * stride, r1 = r0 + stride, r2 = r1 + stride, r3 = r2 + stride;
            for (int ahead = 0; ahead < 4; ahead++) PrefetchRow((byte*)k + (r0 + (PrefetchKeys + ahead) * stride) * T.Bytes, dh * T.Bytes);
            var k0 = T.Load(k, r0); var k1 = T.Load(k, r1); var k2 = T.Load(k, r2); var k3 = T.Load(k, r3);
            var x = Vector512.Load(q);
            Vector512<float> a00 = x * k0, a01 = x * k1, a02 = x * k2, a03 = x * k3;
            Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
            Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
            if (count > 1) { x = Vector512.Load(q1); a10 = x * k0; a11 = x * k1; a12 = x * k2; a13 = x * k3; }
            if (count > 2) { x = Vector512.Load(q2); a20 = x * k0; a21 = x * k1; a22 = x * k2; a23 = x * k3; }
            if (count > 3) { x = Vector512.Load(q3); a30 = x * k0; a31 = x * k1; a32 = x * k2; a33 = x * k3; }
            for (int c = 16; c < dh; c += 16)
            {
                k0 = T.Load(k, r0 + c); k1 = T.Load(k, r1 + c); k2 = T.Load(k, r2 + c); k3 = T.Load(k, r3 + c);
                x = Vector512.Load(q + c);
                a00 = Vector512.FusedMultiplyAdd(x, k0, a00); a01 = Vector512.FusedMultiplyAdd(x, k1, a01);
                a02 = Vector512.FusedMultiplyAdd(x, k2, a02); a03 = Vector512.FusedMultiplyAdd(x, k3, a03);
                if (count > 1)
                {
                    x = Vector512.Load(q1 + c);
                    a10 = Vector512.FusedMultiplyAdd(x, k0, a10); a11 = Vector512.FusedMultiplyAdd(x, k1, a11);
                    a12 = Vector512.FusedMultiplyAdd(x, k2, a12); a13 = Vector512.FusedMultiplyAdd(x, k3, a13);
                }
                if (count > 2)
                {
                    x = Vector512.Load(q2 + c);
                    a20 = Vector512.FusedMultiplyAdd(x, k0, a20); a21 = Vector512.FusedMultiplyAdd(x, k1, a21);
                    a22 = Vector512.FusedMultiplyAdd(x, k2, a22); a23 = Vector512.FusedMultiplyAdd(x, k3, a23);
                }
                if (count > 3)
                {
                    x = Vector512.Load(q3 + c);
                    a30 = Vector512.FusedMultiplyAdd(x, k0, a30); a31 = Vector512.FusedMultiplyAdd(x, k1, a31);
                    a32 = Vector512.FusedMultiplyAdd(x, k2, a32); a33 = Vector512.FusedMultiplyAdd(x, k3, a33);
                }
            }
            Vector128.Store(HorizontalSum.Four(a00, a01, a02, a03) * scale, scores + j);
            if (count > 1) Vector128.Store(HorizontalSum.Four(a10, a11, a12, a13) * scale, scores + scoreStride + j);
            if (count > 2) Vector128.Store(HorizontalSum.Four(a20, a21, a22, a23) * scale, scores + 2 * scoreStride + j);
            if (count > 3) Vector128.Store(HorizontalSum.Four(a30, a31, a32, a33) * scale, scores + 3 * scoreStride + j);
        }
        if (full < keys)
            for (int i = 0; i < count; i++)
                Scores<T>(q + i * dh, (byte*)k + full * stride * T.Bytes, stride, keys - full, dh, scale, scores + i * scoreStride + full);
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

    /// <summary>o_h[Dh] = Σ_j p_h[j]·v[j, :] for a run of 1..4 heads of one KV group and v in T's elements: each value
    /// row is read once for all the heads. Every lane of every head sums p_h[j]·v[j, lane] for j in order, whatever the
    /// run, so a head's output is the same bit for bit alone or with others.</summary>
    /// <param name="p">p[count, pStride]</param>
    /// <param name="v">v[keys, Dh], rows <paramref name="stride"/> elements apart</param>
    /// <param name="o">o[count, Dh]</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void WeightedSumRun<T>(float* p, int pStride, int count, void* v, long stride, int keys, float* o, int dh)
        where T : struct, ICacheElements
    {
        float* p1 = p + pStride, p2 = p1 + pStride, p3 = p2 + pStride;
        int i = 0;
        for (; i + 64 <= dh; i += 64)
        {
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
            Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
            Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
            long vj = i;
            for (int j = 0; j < keys; j++, vj += stride)
            {
                PrefetchRow((byte*)v + (vj + PrefetchKeys * stride) * T.Bytes, 64 * T.Bytes);
                var v0 = T.Load(v, vj); var v1 = T.Load(v, vj + 16); var v2 = T.Load(v, vj + 32); var v3 = T.Load(v, vj + 48);
                var pj = Vector512.Create(p[j]);
                a00 = Vector512.FusedMultiplyAdd(pj, v0, a00); a01 = Vector512.FusedMultiplyAdd(pj, v1, a01);
                a02 = Vector512.FusedMultiplyAdd(pj, v2, a02); a03 = Vector512.FusedMultiplyAdd(pj, v3, a03);
                if (count > 1)
                {
                    pj = Vector512.Create(p1[j]);
                    a10 = Vector512.FusedMultiplyAdd(pj, v0, a10); a11 = Vector512.FusedMultiplyAdd(pj, v1, a11);
                    a12 = Vector512.FusedMultiplyAdd(pj, v2, a12); a13 = Vector512.FusedMultiplyAdd(pj, v3, a13);
                }
                if (count > 2)
                {
                    pj = Vector512.Create(p2[j]);
                    a20 = Vector512.FusedMultiplyAdd(pj, v0, a20); a21 = Vector512.FusedMultiplyAdd(pj, v1, a21);
                    a22 = Vector512.FusedMultiplyAdd(pj, v2, a22); a23 = Vector512.FusedMultiplyAdd(pj, v3, a23);
                }
                if (count > 3)
                {
                    pj = Vector512.Create(p3[j]);
                    a30 = Vector512.FusedMultiplyAdd(pj, v0, a30); a31 = Vector512.FusedMultiplyAdd(pj, v1, a31);
                    a32 = Vector512.FusedMultiplyAdd(pj, v2, a32); a33 = Vector512.FusedMultiplyAdd(pj, v3, a33);
                }
            }
            Store4(o + i, a00, a01, a02, a03);
            if (count > 1) Store4(o + dh + i, a10, a11, a12, a13);
            if (count > 2) Store4(o + 2 * dh + i, a20, a21, a22, a23);
            if (count > 3) Store4(o + 3 * dh + i, a30, a31, a32, a33);
        }
        if (i < dh)
            for (int h = 0; h < count; h++) WeightedSumColumns<T>(p + h * pStride, v, stride, keys, o + h * dh, i, dh);
    }

    /// <summary>How many keys ahead decode attention asks for cache rows: the rows of one KV head are a strided walk the
    /// hardware prefetchers follow too late (a cold step ran at half the speed of a cache-resident one).</summary>
    const int PrefetchKeys = 32;

    /// <summary>Prefetch the cache lines of [row, row + bytes) (prefetches never fault, so rows past the cache are harmless).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void PrefetchRow(byte* row, int bytes)
    {
        for (int b = 0; b < bytes; b += 64) Sse.Prefetch1(row + b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store4(float* o, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        Vector512.Store(a0, o);
        Vector512.Store(a1, o + 16);
        Vector512.Store(a2, o + 32);
        Vector512.Store(a3, o + 48);
    }

    /// <summary>Columns first..Dh of o[Dh] = Σ_j p[j]·v[j, :], 16 lanes at a time, then one at a time.</summary>
    static void WeightedSumColumns<T>(float* p, void* v, long stride, int keys, float* o, int first, int dh) where T : struct, ICacheElements
    {
        int i = first;
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
