using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Hone.Tensors;

/// <summary>
/// Causal grouped-query attention for training: B sequences of T tokens each, stored row-major as
/// Q[B·T, H·Dh], K/V[B·T, Hkv·Dh], O[B·T, H·Dh]. The forward pass keeps only the log-sum-exp of every score row
/// (LSE[B, H, T]); the backward pass recomputes the probabilities from it, block by block, so no [T, T] matrix
/// outlives one (sequence, head, query block) work item.
/// </summary>
public static unsafe class AttentionTraining
{
    const int QueryBlock = 64;

    struct Job
    {
        public float* Q, K, V, O, DO, DQ, DK, DV, Lse;
        public long QStride, KvStride;
        public int Batch, Tokens, Heads, KvHeads, HeadDim;
        public float Scale;
        public int* Next; // the next unclaimed work item: threads take items as they finish, not a fixed share
        public float* KeysT; // forward: Kᵀ per (sequence, KV head) [B, Hkv, Dh, T], so Q·Kᵀ reads B in place
        public float* RowDots; // backward: D = rowsum(dO ⊙ O) [B, H, T]
    }

    public static void Forward(WorkerPool pool, float* q, float* k, float* v, float* o, float* lse, long qStride, long kvStride,
        int batch, int tokens, int heads, int kvHeads, int headDim, float scale)
    {
        var job = new Job
        {
            Q = q, K = k, V = v, O = o, Lse = lse, QStride = qStride, KvStride = kvStride,
            Batch = batch, Tokens = tokens, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, Scale = scale,
        };
        int next = 0;
        job.Next = &next;
        // Kᵀ once per (sequence, KV head) instead of a packing transpose of K in every (query head, block) product.
        job.KeysT = Scratch.ForThread(5, (long)batch * kvHeads * headDim * tokens); // the caller's; workers read it
        pool.Run(&TransposeKeysWorker, &job);
        pool.Run(&ForwardWorker, &job);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // long loops: not left to on-stack replacement
    static void TransposeKeysWorker(void* context, int thread, int threads)
    {
        ref Job j = ref *(Job*)context;
        var (i0, i1) = WorkerPool.Share(j.Batch * j.KvHeads, thread, threads);
        for (int item = i0; item < i1; item++)
        {
            int b = item / j.KvHeads, g = item % j.KvHeads;
            Transpose.Block(j.K + (long)b * j.Tokens * j.KvStride + g * j.HeadDim, (nint)j.KvStride,
                j.KeysT + (long)item * j.HeadDim * j.Tokens, j.Tokens, j.Tokens, j.HeadDim);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // long loops: not left to on-stack replacement
    static void ForwardWorker(void* context, int thread, int threads)
    {
        ref Job j = ref *(Job*)context;
        int blocks = (j.Tokens + QueryBlock - 1) / QueryBlock;
        int items = j.Batch * j.Heads * blocks, group = j.Heads / j.KvHeads;
        float* scores = Scratch.ForThread(0, (long)QueryBlock * j.Tokens);
        // Items claimed in order of falling cost (last query blocks, which see the most keys, first).
        for (int item; (item = Interlocked.Increment(ref *j.Next) - 1) < items;)
        {
            int block = blocks - 1 - item / (j.Batch * j.Heads), h = item % j.Heads, b = item / j.Heads % j.Batch, g = h / group;
            int t0 = block * QueryBlock, bq = Math.Min(QueryBlock, j.Tokens - t0), keys = t0 + bq;
            long row0 = (long)b * j.Tokens;
            float* q = j.Q + (row0 + t0) * j.QStride + h * j.HeadDim;
            float* kt = j.KeysT + ((long)b * j.KvHeads + g) * j.HeadDim * j.Tokens, v = j.V + row0 * j.KvStride + g * j.HeadDim;
            Gemm.MultiplySerial(bq, keys, j.HeadDim, q, (int)j.QStride, false, kt, j.Tokens, GemmBLayout.KByN, scores, keys, false);
            for (int i = 0; i < bq; i++)
            {
                float* row = scores + (long)i * keys;
                int visible = t0 + i + 1;
                j.Lse[((long)b * j.Heads + h) * j.Tokens + t0 + i] = Softmax.ScaledInPlace(row, visible, j.Scale, keys);
            }
            Gemm.MultiplySerial(bq, j.HeadDim, keys, scores, keys, false, v, (int)j.KvStride, GemmBLayout.KByN,
                j.O + (row0 + t0) * j.QStride + h * j.HeadDim, (int)j.QStride, false);
        }
    }

    /// <summary>dQ[B·T, H·Dh] = ∂L/∂Q; dK, dV[B·T, Hkv·Dh] are overwritten with ∂L/∂K, ∂L/∂V.</summary>
    public static void Backward(WorkerPool pool, float* q, float* k, float* v, float* o, float* dO, float* lse,
        float* dq, float* dk, float* dv, long qStride, long kvStride, int batch, int tokens, int heads, int kvHeads, int headDim, float scale)
    {
        var job = new Job
        {
            Q = q, K = k, V = v, O = o, DO = dO, Lse = lse, DQ = dq, DK = dk, DV = dv, QStride = qStride, KvStride = kvStride,
            Batch = batch, Tokens = tokens, Heads = heads, KvHeads = kvHeads, HeadDim = headDim, Scale = scale,
        };
        int next = 0;
        job.Next = &next;
        // D = rowsum(dO ⊙ O) per (sequence, head, token) in one streaming pass first (as FlashAttention-2 does): inside
        // the work items these strided rows were cache misses, about a tenth of the backward.
        job.RowDots = Scratch.ForThread(6, (long)batch * heads * tokens); // the caller's; workers read it
        pool.Run(&RowDotsWorker, &job);
        pool.Run(&BackwardWorker, &job);
    }

    /// <summary>RowDots[b, h, t] = Σ_c dO[b·T + t, h·Dh + c] · O[b·T + t, h·Dh + c], in shares of rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void RowDotsWorker(void* context, int thread, int threads)
    {
        ref Job j = ref *(Job*)context;
        var (r0, r1) = WorkerPool.Balanced(j.Batch * j.Tokens, thread, threads, 16);
        for (int r = r0; r < r1; r++)
        {
            int b = r / j.Tokens, t = r % j.Tokens;
            float* o = j.O + r * j.QStride, dO = j.DO + r * j.QStride;
            for (int h = 0; h < j.Heads; h++)
                j.RowDots[((long)b * j.Heads + h) * j.Tokens + t] = Attention.Dot(o + h * j.HeadDim, dO + h * j.HeadDim, j.HeadDim);
        }
    }

    /// <summary>One work item = one (sequence, KV head): its query heads are processed in turn so dK/dV of the group
    /// are owned by one thread (deterministic, no atomics).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // long loops: not left to on-stack replacement
    static void BackwardWorker(void* context, int thread, int threads)
    {
        ref Job j = ref *(Job*)context;
        int group = j.Heads / j.KvHeads, dh = j.HeadDim;
        float* p = Scratch.ForThread(0, (long)QueryBlock * j.Tokens);
        float* dp = Scratch.ForThread(1, (long)QueryBlock * j.Tokens);
        float* kt = Scratch.ForThread(3, (long)j.HeadDim * j.Tokens);   // Kᵀ [Dh, T] of the item's KV head
        float* vt = Scratch.ForThread(4, (long)j.HeadDim * j.Tokens);   // Vᵀ [Dh, T]
        for (int item; (item = Interlocked.Increment(ref *j.Next) - 1) < j.Batch * j.KvHeads;)
        {
            int b = item / j.KvHeads, g = item % j.KvHeads;
            long row0 = (long)b * j.Tokens;
            float* k = j.K + row0 * j.KvStride + g * dh, v = j.V + row0 * j.KvStride + g * dh;
            float* dk = j.DK + row0 * j.KvStride + g * dh, dv = j.DV + row0 * j.KvStride + g * dh;
            for (int t = 0; t < j.Tokens; t++)
            {
                new Span<float>(dk + t * j.KvStride, dh).Clear();
                new Span<float>(dv + t * j.KvStride, dh).Clear();
            }
            // Transposed once per item, read in place by Q·Kᵀ and dO·Vᵀ of all its query heads and blocks.
            Transpose.Block(k, (nint)j.KvStride, kt, j.Tokens, j.Tokens, dh);
            Transpose.Block(v, (nint)j.KvStride, vt, j.Tokens, j.Tokens, dh);
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t0 = 0; t0 < j.Tokens; t0 += QueryBlock)
                {
                    int bq = Math.Min(QueryBlock, j.Tokens - t0), keys = t0 + bq;
                    long qOffset = (row0 + t0) * j.QStride + h * dh;
                    float* q = j.Q + qOffset, dO = j.DO + qOffset, dq = j.DQ + qOffset;
                    float* lse = j.Lse + ((long)b * j.Heads + h) * j.Tokens + t0;
                    float* rowDots = j.RowDots + ((long)b * j.Heads + h) * j.Tokens + t0;
                    // P = exp(scale·QKᵀ − LSE), masked; dP = dO·Vᵀ; D = rowsum(dO ⊙ O) (precomputed); dS = P ⊙ (dP − D)·scale.
                    Gemm.MultiplySerial(bq, keys, dh, q, (int)j.QStride, false, kt, j.Tokens, GemmBLayout.KByN, p, keys, false);
                    Gemm.MultiplySerial(bq, keys, dh, dO, (int)j.QStride, false, vt, j.Tokens, GemmBLayout.KByN, dp, keys, false);
                    for (int i = 0; i < bq; i++)
                    {
                        float* pr = p + (long)i * keys, dpr = dp + (long)i * keys;
                        int visible = t0 + i + 1;
                        ProbabilitiesAndScoreGradients(pr, dpr, visible, keys, j.Scale, lse[i], rowDots[i]);
                    }
                    Gemm.MultiplySerial(bq, dh, keys, dp, keys, false, k, (int)j.KvStride, GemmBLayout.KByN, dq, (int)j.QStride, false);
                    Gemm.MultiplySerial(keys, dh, bq, dp, keys, true, q, (int)j.QStride, GemmBLayout.KByN, dk, (int)j.KvStride, true);
                    Gemm.MultiplySerial(keys, dh, bq, p, keys, true, dO, (int)j.QStride, GemmBLayout.KByN, dv, (int)j.KvStride, true);
                }
        }
    }

    /// <summary>One query row: p = exp(scale·s − lse) and dS = p·(dP − D)·scale over the visible keys, zeros after.</summary>
    /// <param name="p">[keys] in: raw scores Q·Kᵀ; out: probabilities</param>
    /// <param name="dp">[keys] in: dO·Vᵀ; out: score gradients</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    internal static void ProbabilitiesAndScoreGradients(float* p, float* dp, int visible, int keys, float scale, float lse, float rowDot)
    {
        int c = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vs = Vector512.Create(scale); var vl = Vector512.Create(lse); var vd = Vector512.Create(rowDot);
            for (; c + 16 <= visible; c += 16)
            {
                var prob = FastExp.Exp(Vector512.Load(p + c) * vs - vl);
                prob.Store(p + c);
                (prob * (Vector512.Load(dp + c) - vd) * vs).Store(dp + c);
            }
            if (c < visible && c + 16 <= keys)
            {
                // The ragged end as one masked vector (lanes past visible are masked keys: 0), not up to 15 scalar exps.
                var inside = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(visible - c)).AsSingle();
                var prob = Vector512.ConditionalSelect(inside, FastExp.Exp(Vector512.Load(p + c) * vs - vl), Vector512<float>.Zero);
                prob.Store(p + c);
                Vector512.ConditionalSelect(inside, prob * (Vector512.Load(dp + c) - vd) * vs, Vector512<float>.Zero).Store(dp + c);
                c += 16; // past visible: the scalar loop below has nothing left
            }
        }
        for (; c < visible; c++)
        {
            float prob = MathF.Exp(p[c] * scale - lse);
            p[c] = prob;
            dp[c] = prob * (dp[c] - rowDot) * scale;
        }
        if (c < keys) { new Span<float>(p + c, keys - c).Clear(); new Span<float>(dp + c, keys - c).Clear(); }
    }

    /// <summary>Reference twin of <see cref="ProbabilitiesAndScoreGradients"/>, in double.</summary>
    internal static void ProbabilitiesAndScoreGradientsReference(float* p, float* dp, int visible, int keys, float scale, float lse, float rowDot)
    {
        for (int c = 0; c < keys; c++)
        {
            double prob = c < visible ? Math.Exp((double)p[c] * scale - lse) : 0;
            p[c] = (float)prob;
            dp[c] = c < visible ? (float)(prob * ((double)dp[c] - rowDot) * scale) : 0f;
        }
    }

    /// <summary>Per-thread float buffers, one per slot, grown on demand.</summary>
    static class Scratch
    {
        [ThreadStatic] static nint[]? _buffers;
        [ThreadStatic] static long[]? _sizes;

        public static float* ForThread(int slot, long floats)
        {
            _buffers ??= new nint[7];
            _sizes ??= new long[7];
            if (_sizes[slot] < floats)
            {
                if (_buffers[slot] != 0) NativeMemory.AlignedFree((void*)_buffers[slot]);
                _sizes[slot] = Math.Max(floats, 1024);
                _buffers[slot] = (nint)NativeMemory.AlignedAlloc((nuint)(_sizes[slot] * 4), 64);
            }
            return (float*)_buffers[slot];
        }
    }
}
