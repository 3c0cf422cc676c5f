using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>AdamW hyper-parameters (PyTorch's defaults).</summary>
public sealed record AdamWOptions(float Beta1 = 0.9f, float Beta2 = 0.999f, float Epsilon = 1e-8f, float WeightDecay = 0.01f);

/// <summary>
/// AdamW with fp32 moments and decoupled weight decay, exactly as torch.optim.AdamW updates:
/// p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε).
/// Moments live in one buffer (two floats per parameter), allocated once. Given a worker pool, the update and the
/// gradient norm run on all its threads with results independent of the thread count.
/// </summary>
public sealed unsafe class AdamW : IDisposable
{
    readonly IReadOnlyList<Parameter> _parameters;
    readonly NativeBuffer _moments;
    readonly long[] _offsets;
    readonly WorkerPool? _pool;
    // The squared-norm is summed over fixed chunks in a fixed order, so it is the same bits for any thread count.
    const int NormChunk = 1 << 20;
    readonly int _chunkCount;
    readonly NativeBuffer _views;      // [parameters] ParameterView: what the worker threads need, as plain pointers
    readonly NativeBuffer _chunkViews; // [chunks] NormChunkView
    readonly NativeBuffer _partials;   // [chunks] double: each chunk's sum of squares

    struct ParameterView { public float* Value, Gradient, First, Second; public long Count; public bool WeightDecay; }
    struct NormChunkView { public float* Start; public int Count; }
    float _pendingScale = 1f; // gradient clipping factor, applied inside the next Update (no separate pass)

    public AdamWOptions Options { get; }
    public long Step { get; set; }

    public AdamW(IReadOnlyList<Parameter> parameters, AdamWOptions options, WorkerPool? pool = null)
    {
        _parameters = parameters;
        _pool = pool;
        Options = options;
        _offsets = new long[parameters.Count];
        long total = 0;
        for (int i = 0; i < parameters.Count; i++) { _offsets[i] = total; total += NativeBuffer.Align(parameters[i].Count * 4) / 4; }
        _moments = new NativeBuffer(total * 2 * 4);
        MomentFloats = total;
        _views = new NativeBuffer(Math.Max(1, parameters.Count) * sizeof(ParameterView));
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (p.Count > int.MaxValue) throw new NotSupportedException($"{p.Name}: more than 2^31 elements in one tensor");
            ((ParameterView*)_views.Pointer)[i] = new ParameterView
            {
                Value = p.Value, Gradient = p.Gradient, First = FirstMoment(i), Second = SecondMoment(i), Count = p.Count, WeightDecay = p.WeightDecay,
            };
        }
        var chunks = new List<NormChunkView>();
        foreach (var p in parameters)
            for (long start = 0; start < p.Count; start += NormChunk)
                chunks.Add(new NormChunkView { Start = p.Gradient + start, Count = (int)Math.Min(NormChunk, p.Count - start) });
        _chunkCount = chunks.Count;
        _chunkViews = new NativeBuffer(Math.Max(1, _chunkCount) * sizeof(NormChunkView));
        chunks.ToArray().AsSpan().CopyTo(new Span<NormChunkView>(_chunkViews.Pointer, _chunkCount));
        _partials = new NativeBuffer(Math.Max(1, _chunkCount) * sizeof(double));
    }

    public long MomentFloats { get; }
    public float* FirstMoment(int parameter) => _moments.AsFloats + _offsets[parameter];
    public float* SecondMoment(int parameter) => _moments.AsFloats + MomentFloats + _offsets[parameter];

    /// <summary>Global L2 norm of all gradients (double accumulation).</summary>
    public double GradientNorm()
    {
        var partials = (double*)_partials.Pointer;
        var job = new NormJob { Chunks = (NormChunkView*)_chunkViews.Pointer, ChunkCount = _chunkCount, Partials = partials };
        RunOnPool(&NormWorker, &job);
        double sum = 0;
        for (int c = 0; c < _chunkCount; c++) sum += partials[c];
        return Math.Sqrt(sum);
    }

    /// <summary>The global gradient norm; when it exceeds <paramref name="maxNorm"/> the gradients are scaled down by
    /// maxNorm / norm, inside the next <see cref="Update"/> (read the gradients through Update, not in between).</summary>
    public double ClipGradients(double maxNorm)
    {
        double norm = GradientNorm();
        _pendingScale = maxNorm > 0 && norm > maxNorm ? (float)(maxNorm / (norm + 1e-6)) : 1f;
        return norm;
    }

    public void Update(float learningRate)
    {
        Step++;
        var o = Options;
        var job = new UpdateJob
        {
            Parameters = (ParameterView*)_views.Pointer, ParameterCount = _parameters.Count,
            LearningRate = learningRate, GradientScale = _pendingScale, Beta1 = o.Beta1, Beta2 = o.Beta2, Epsilon = o.Epsilon, WeightDecay = o.WeightDecay,
            C1 = 1f / (1f - MathF.Pow(o.Beta1, Step)), C2 = 1f / (1f - MathF.Pow(o.Beta2, Step)),
        };
        _pendingScale = 1f;
        RunOnPool(&UpdateWorker, &job);
    }

    void RunOnPool(delegate*<void*, int, int, void> work, void* context)
    {
        if (_pool == null) work(context, 0, 1);
        else _pool.Run(work, context);
    }

    struct NormJob { public NormChunkView* Chunks; public int ChunkCount; public double* Partials; }
    struct UpdateJob
    {
        public ParameterView* Parameters; public int ParameterCount;
        public float LearningRate, GradientScale, C1, C2, Beta1, Beta2, Epsilon, WeightDecay;
    }

    static void NormWorker(void* context, int thread, int threads)
    {
        ref var job = ref *(NormJob*)context;
        for (int c = thread; c < job.ChunkCount; c += threads)
            job.Partials[c] = RmsNorm.SumOfSquares(job.Chunks[c].Start, job.Chunks[c].Count);
    }

    /// <summary>Every thread updates its share of every parameter (elementwise, so the split changes no bits).</summary>
    static void UpdateWorker(void* context, int thread, int threads)
    {
        ref var job = ref *(UpdateJob*)context;
        for (int i = 0; i < job.ParameterCount; i++)
        {
            ref var p = ref job.Parameters[i];
            var (start, end) = WorkerPool.Balanced((int)p.Count, thread, threads, 16);
            if (start >= end) continue;
            float decay = p.WeightDecay ? 1f - job.LearningRate * job.WeightDecay : 1f;
            UpdateKernel(p.Value + start, p.Gradient + start, p.First + start, p.Second + start, end - start,
                job.LearningRate, decay, job.Beta1, job.Beta2, job.Epsilon, job.C1, job.C2, job.GradientScale);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void UpdateKernel(float* p, float* g, float* m, float* v, long n, float lr, float decay, float b1, float b2, float eps, float c1, float c2, float gradientScale)
    {
        long i = 0;
        var vb1 = Vector512.Create(b1); var vb1c = Vector512.Create(1 - b1);
        var vb2 = Vector512.Create(b2); var vb2c = Vector512.Create(1 - b2);
        var vc1 = Vector512.Create(c1); var vc2 = Vector512.Create(c2);
        var vlr = Vector512.Create(lr); var veps = Vector512.Create(eps); var vdecay = Vector512.Create(decay); var vscale = Vector512.Create(gradientScale);
        for (; i + 16 <= n; i += 16)
        {
            var gi = Vector512.Load(g + i) * vscale;
            var mi = vb1 * Vector512.Load(m + i) + vb1c * gi;
            var vi = vb2 * Vector512.Load(v + i) + vb2c * gi * gi;
            Vector512.Store(mi, m + i);
            Vector512.Store(vi, v + i);
            var pi = Vector512.Load(p + i) * vdecay;
            Vector512.Store(pi - vlr * (mi * vc1) / (Vector512.Sqrt(vi * vc2) + veps), p + i);
        }
        for (; i < n; i++)
        {
            float gi = g[i] * gradientScale;
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            p[i] = p[i] * decay - lr * (m[i] * c1) / (MathF.Sqrt(v[i] * c2) + eps);
        }
    }

    public void Dispose()
    {
        _moments.Dispose();
        _views.Dispose();
        _chunkViews.Dispose();
        _partials.Dispose();
    }
}

public enum LearningRateSchedule { Constant, Linear, Cosine }

/// <summary>Warm-up then constant, linear or cosine decay (transformers' get_*_schedule_with_warmup).</summary>
public static class LearningRate
{
    public static float At(LearningRateSchedule schedule, float peak, long step, long warmup, long total, float minRatio = 0)
    {
        if (warmup > 0 && step < warmup) return peak * (step + 1) / warmup;
        if (schedule == LearningRateSchedule.Constant || total <= warmup) return peak;
        double progress = Math.Clamp((double)(step - warmup) / Math.Max(1, total - warmup), 0, 1);
        double factor = schedule == LearningRateSchedule.Linear ? 1 - progress : 0.5 * (1 + Math.Cos(Math.PI * progress));
        return (float)(peak * (minRatio + (1 - minRatio) * factor));
    }
}
