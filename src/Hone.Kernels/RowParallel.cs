namespace Hone.Tensors;

/// <summary>
/// Row-parallel versions of the element-wise kernels (norms, activations, RoPE, cross-entropy): threads take
/// contiguous row ranges, each running the single-threaded kernel, so results are identical for any thread count.
/// Purely element-wise kernels size the ranges by the threads' learned speeds (<see cref="WorkerPool.Balanced"/>); the
/// ones that sum per thread (RMSNorm's weight gradient, the loss) keep even shares so their sums keep a fixed order.
/// Small inputs run inline (dispatch would cost more than the work).
/// </summary>
public static unsafe class RowParallel
{
    const long InlineBelow = 1 << 14; // elements

    struct Job
    {
        public float* A, B, C, D, E;
        public int Rows, Width, Heads, Start;
        public long Stride;
        public float Eps, Scale;
        public bool Flag;
        public Rope.TableView Rope;
        public int* Targets;
        public double* Losses;
    }

    public static void RmsNormForward(WorkerPool pool, float* x, float* weight, float* y, int rows, int d, float eps)
    {
        if ((long)rows * d < InlineBelow || pool.Threads == 1) { RmsNorm.Forward(x, weight, y, rows, d, eps); return; }
        var job = new Job { A = x, B = weight, C = y, Rows = rows, Width = d, Eps = eps };
        pool.Run(&RmsNormWorker, &job);
    }

    static void RmsNormWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (r0, r1) = WorkerPool.Balanced(j.Rows, thread, threads);
        if (r1 > r0) RmsNorm.Forward(j.A + (long)r0 * j.Width, j.B, j.C + (long)r0 * j.Width, r1 - r0, j.Width, j.Eps);
    }

    /// <summary>Each thread sums its rows' weight gradient into its own partial, added to dWeight in thread order
    /// (deterministic for a given thread count).</summary>
    public static void RmsNormBackward(WorkerPool pool, float* x, float* weight, float* dy, float* dx, float* dWeight, int rows, int d, float eps, bool accumulate)
    {
        if ((long)rows * d < InlineBelow || pool.Threads == 1 || (long)d * pool.Threads > 1 << 16)
        {
            Tensors.RmsNormBackward.Compute(x, weight, dy, dx, dWeight, rows, d, eps, accumulate);
            return;
        }
        float* partials = stackalloc float[d * pool.Threads];
        var job = new Job { A = x, B = weight, C = dy, D = dx, E = dWeight != null ? partials : null, Rows = rows, Width = d, Eps = eps, Flag = accumulate };
        pool.Run(&RmsNormBackwardWorker, &job);
        if (dWeight == null) return;
        for (int t = 0; t < pool.Threads; t++)
            for (int i = 0; i < d; i++) dWeight[i] += partials[t * d + i];
    }

    static void RmsNormBackwardWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (r0, r1) = WorkerPool.Share(j.Rows, thread, threads);
        long o = (long)r0 * j.Width;
        float* partial = j.E == null ? null : j.E + (long)thread * j.Width;
        if (partial != null) new Span<float>(partial, j.Width).Clear();
        if (r1 > r0) Tensors.RmsNormBackward.Compute(j.A + o, j.B, j.C + o, j.D + o, partial, r1 - r0, j.Width, j.Eps, j.Flag);
    }

    /// <summary>One thread's [start, end) of n elements, in whole Vector512s (16 floats), sized by the pool's learned
    /// thread speeds (element-wise work: the split changes no result).</summary>
    static (long Start, long End) ElementShare(long n, int thread, int threads)
    {
        var (c0, c1) = WorkerPool.Balanced(checked((int)((n + 15) / 16)), thread, threads);
        return (Math.Min(n, c0 * 16L), Math.Min(n, c1 * 16L));
    }

    /// <summary>gate = silu(gate)·up in place.</summary>
    public static void SwiGlu(WorkerPool pool, float* gate, float* up, long n) => SwiGlu(pool, gate, up, gate, n);

    /// <summary>output = silu(gate)·up; output may be gate.</summary>
    public static void SwiGlu(WorkerPool pool, float* gate, float* up, float* output, long n)
    {
        if (n < InlineBelow || pool.Threads == 1) { Activations.SwiGlu(gate, up, output, n); return; }
        var job = new Job { A = gate, B = up, C = output, Stride = n };
        pool.Run(&SwiGluWorker, &job);
    }

    static void SwiGluWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (start, end) = ElementShare(j.Stride, thread, threads);
        if (end > start) Activations.SwiGlu(j.A + start, j.B + start, j.C + start, end - start);
    }

    /// <summary>destination[n] = source[n], split over the threads (the residual stream copies of training are
    /// megabytes; one thread copying them left the other waiting).</summary>
    public static void Copy(WorkerPool pool, float* source, float* destination, long n)
    {
        if (n < InlineBelow || pool.Threads == 1) { new ReadOnlySpan<float>(source, checked((int)n)).CopyTo(new Span<float>(destination, checked((int)n))); return; }
        var job = new Job { A = source, C = destination, Stride = n };
        pool.Run(&CopyWorker, &job);
    }

    static void CopyWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (start, end) = ElementShare(j.Stride, thread, threads);
        if (end > start) Buffer.MemoryCopy(j.A + start, j.C + start, (end - start) * 4, (end - start) * 4);
    }

    public static void SwiGluBackward(WorkerPool pool, float* gate, float* up, float* da, float* dGate, float* dUp, long n)
    {
        if (n < InlineBelow || pool.Threads == 1) { Tensors.SwiGluBackward.Compute(gate, up, da, dGate, dUp, n); return; }
        var job = new Job { A = gate, B = up, C = da, D = dGate, E = dUp, Stride = n };
        pool.Run(&SwiGluBackwardWorker, &job);
    }

    static void SwiGluBackwardWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (start, end) = ElementShare(j.Stride, thread, threads);
        if (end > start) Tensors.SwiGluBackward.Compute(j.A + start, j.B + start, j.C + start, j.D + start, j.E + start, end - start);
    }

    public static void RopeApply(WorkerPool pool, Rope rope, float* x, int tokens, int heads, long rowStride, int start, bool inverse = false)
    {
        if ((long)tokens * heads * rope.HeadDim < InlineBelow || pool.Threads == 1) { rope.Apply(x, tokens, heads, rowStride, start, inverse); return; }
        if (start < 0 || start + tokens > rope.MaxPositions) { rope.Apply(x, tokens, heads, rowStride, start, inverse); return; } // throws
        var job = new Job { A = x, Rows = tokens, Heads = heads, Stride = rowStride, Start = start, Flag = inverse, Rope = rope.Tables };
        pool.Run(&RopeWorker, &job);
    }

    static void RopeWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (t0, t1) = WorkerPool.Balanced(j.Rows, thread, threads);
        if (t1 > t0) Rope.Rotate(j.Rope, j.A + t0 * j.Stride, t1 - t0, j.Heads, j.Stride, j.Start + t0, j.Flag);
    }

    /// <summary><see cref="CrossEntropy.ForwardBackward"/> over row ranges; the per-thread loss sums are added in thread order.</summary>
    public static double CrossEntropyForwardBackward(WorkerPool pool, float* logits, int rows, int v, ReadOnlySpan<int> targets, float scale)
    {
        if (pool.Threads == 1 || rows < 2) return CrossEntropy.ForwardBackward(logits, rows, v, targets, scale);
        var losses = stackalloc double[pool.Threads];
        fixed (int* t = targets)
        {
            var job = new Job { A = logits, Rows = rows, Width = v, Scale = scale, Targets = t, Losses = losses };
            pool.Run(&CrossEntropyWorker, &job);
        }
        double total = 0;
        for (int i = 0; i < pool.Threads; i++) total += losses[i];
        return total;
    }

    static void CrossEntropyWorker(void* context, int thread, int threads)
    {
        ref var j = ref *(Job*)context;
        var (r0, r1) = WorkerPool.Share(j.Rows, thread, threads);
        j.Losses[thread] = r1 > r0
            ? CrossEntropy.ForwardBackward(j.A + (long)r0 * j.Width, r1 - r0, j.Width, new ReadOnlySpan<int>(j.Targets + r0, r1 - r0), j.Scale)
            : 0;
    }
}
