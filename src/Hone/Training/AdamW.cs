using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Hone.Tensors;

namespace Hone.Training;

/// <summary>AdamW hyper-parameters (PyTorch's defaults).</summary>
public sealed record AdamWOptions(float Beta1 = 0.9f, float Beta2 = 0.999f, float Epsilon = 1e-8f, float WeightDecay = 0.01f);

/// <summary>
/// AdamW with fp32 moments and decoupled weight decay, exactly as torch.optim.AdamW updates:
/// p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε).
/// Moments live in one buffer (two floats per parameter), allocated once.
/// </summary>
public sealed unsafe class AdamW : IDisposable
{
    readonly IReadOnlyList<Parameter> _parameters;
    readonly NativeBuffer _moments;
    readonly long[] _offsets;

    public AdamWOptions Options { get; }
    public long Step { get; set; }

    public AdamW(IReadOnlyList<Parameter> parameters, AdamWOptions options)
    {
        _parameters = parameters;
        Options = options;
        _offsets = new long[parameters.Count];
        long total = 0;
        for (int i = 0; i < parameters.Count; i++) { _offsets[i] = total; total += NativeBuffer.Align(parameters[i].Count * 4) / 4; }
        _moments = new NativeBuffer(total * 2 * 4);
        MomentFloats = total;
    }

    public long MomentFloats { get; }
    public float* FirstMoment(int parameter) => _moments.AsFloats + _offsets[parameter];
    public float* SecondMoment(int parameter) => _moments.AsFloats + MomentFloats + _offsets[parameter];

    /// <summary>Global L2 norm of all gradients (double accumulation).</summary>
    public double GradientNorm()
    {
        double sum = 0;
        foreach (var p in _parameters) sum += SumOfSquares(p.Gradient, p.Count);
        return Math.Sqrt(sum);
    }

    /// <summary>Scale gradients so their global norm is at most <paramref name="maxNorm"/> (torch.nn.utils.clip_grad_norm_).
    /// Returns the norm before clipping.</summary>
    public double ClipGradients(double maxNorm)
    {
        double norm = GradientNorm();
        if (maxNorm > 0 && norm > maxNorm)
        {
            float scale = (float)(maxNorm / (norm + 1e-6));
            foreach (var p in _parameters) Scale(p.Gradient, p.Count, scale);
        }
        return norm;
    }

    public void Update(float learningRate)
    {
        Step++;
        var o = Options;
        float c1 = 1f / (1f - MathF.Pow(o.Beta1, Step)), c2 = 1f / (1f - MathF.Pow(o.Beta2, Step));
        for (int i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i];
            float decay = p.WeightDecay ? 1f - learningRate * o.WeightDecay : 1f;
            UpdateKernel(p.Value, p.Gradient, FirstMoment(i), SecondMoment(i), p.Count, learningRate, decay, o.Beta1, o.Beta2, o.Epsilon, c1, c2);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void UpdateKernel(float* p, float* g, float* m, float* v, long n, float lr, float decay, float b1, float b2, float eps, float c1, float c2)
    {
        long i = 0;
        var vb1 = Vector512.Create(b1); var vb1c = Vector512.Create(1 - b1);
        var vb2 = Vector512.Create(b2); var vb2c = Vector512.Create(1 - b2);
        var vc1 = Vector512.Create(c1); var vc2 = Vector512.Create(c2);
        var vlr = Vector512.Create(lr); var veps = Vector512.Create(eps); var vdecay = Vector512.Create(decay);
        for (; i + 16 <= n; i += 16)
        {
            var gi = Vector512.Load(g + i);
            var mi = vb1 * Vector512.Load(m + i) + vb1c * gi;
            var vi = vb2 * Vector512.Load(v + i) + vb2c * gi * gi;
            Vector512.Store(mi, m + i);
            Vector512.Store(vi, v + i);
            var pi = Vector512.Load(p + i) * vdecay;
            Vector512.Store(pi - vlr * (mi * vc1) / (Vector512.Sqrt(vi * vc2) + veps), p + i);
        }
        for (; i < n; i++)
        {
            float gi = g[i];
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            p[i] = p[i] * decay - lr * (m[i] * c1) / (MathF.Sqrt(v[i] * c2) + eps);
        }
    }

    static double SumOfSquares(float* x, long n)
    {
        double total = 0;
        for (long start = 0; start < n; start += 1 << 20)
        {
            int count = (int)Math.Min(1 << 20, n - start);
            total += RmsNorm.SumOfSquares(x + start, count);
        }
        return total;
    }

    static void Scale(float* x, long n, float s)
    {
        for (long i = 0; i < n; i++) x[i] *= s;
    }

    public void Dispose() => _moments.Dispose();
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
