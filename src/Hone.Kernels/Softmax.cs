using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hone.Tensors;

/// <summary>Max-subtracted softmax over one row.</summary>
public static unsafe class Softmax
{
    /// <summary>x[0..n) ← softmax(x[0..n)) in place; n ≥ 1.</summary>
    public static void InPlace(float* x, int n) => ScaledInPlace(x, n, 1f); // × 1 is exact: same bits as unscaled

    /// <summary>x[0..n) ← softmax(scale·x) in place, returning log Σ exp(scale·x) (training attention keeps it to
    /// recompute the probabilities in backward). Three vector passes and one exp per element (<see cref="FastExp"/>;
    /// a scalar tail uses MathF.Exp): scale and max; exp and sum; normalize. n = 0 touches nothing and returns −∞.</summary>
    public static float ScaledInPlace(float* x, int n, float scale) => ScaledInPlace(x, n, scale, n);

    /// <summary>As <see cref="ScaledInPlace(float*, int, float)"/>, where x[n..capacity) is the caller's (a causal row's
    /// masked keys) and is set to 0: the ragged last part of the row then runs as one masked vector (its lanes past n
    /// scaled to −∞, so their exp is 0) instead of up to 15 scalar exps. capacity = n gives the plain softmax's bits.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static float ScaledInPlace(float* x, int n, float scale, int capacity)
    {
        int rounded = (n + 15) & ~15;
        int vectorEnd = capacity >= rounded ? rounded : n & ~15; // elements the vector passes cover
        int i = 0;
        float max = float.NegativeInfinity, sum = 0;
        if (vectorEnd > 0)
        {
            var vs = Vector512.Create(scale);
            var vmax = Vector512.Create(float.NegativeInfinity);
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(x + i) * vs;
                v.Store(x + i);
                vmax = Vector512.Max(vmax, v);
            }
            if (i < vectorEnd)
            {
                var inside = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(n - i)).AsSingle();
                var v = Vector512.ConditionalSelect(inside, Vector512.Load(x + i) * vs, Vector512.Create(float.NegativeInfinity));
                v.Store(x + i);
                vmax = Vector512.Max(vmax, v);
                i += 16;
            }
            for (int l = 0; l < 16; l++) max = MathF.Max(max, vmax.GetElement(l));
        }
        for (; i < n; i++) { x[i] *= scale; max = MathF.Max(max, x[i]); }
        var m = Vector512.Create(max);
        var acc = Vector512<float>.Zero;
        for (i = 0; i < vectorEnd; i += 16)
        {
            var e = FastExp.Exp(Vector512.Load(x + i) - m);
            Vector512.Store(e, x + i);
            acc += e;
        }
        sum = Vector512.Sum(acc);
        for (; i < n; i++) { float e = MathF.Exp(x[i] - max); x[i] = e; sum += e; }
        var inv = Vector512.Create(1f / sum);
        for (i = 0; i < vectorEnd; i += 16) Vector512.Store(Vector512.Load(x + i) * inv, x + i);
        for (; i < n; i++) x[i] *= 1f / sum;
        int written = Math.Max(n, vectorEnd); // the masked vector already left zeros up to vectorEnd
        if (capacity > written) new Span<float>(x + written, capacity - written).Clear();
        return (float)(max + Math.Log(sum));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(float* x, int n)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (n >= 16)
        {
            var mv = Vector512.Load(x);
            for (i = 16; i + 16 <= n; i += 16) mv = Vector512.Max(mv, Vector512.Load(x + i));
            for (int j = 0; j < 16; j++) max = MathF.Max(max, mv.GetElement(j));
        }
        for (; i < n; i++) max = MathF.Max(max, x[i]);
        return max;
    }

    public static void InPlaceReference(float* x, int n) => ScaledInPlaceReference(x, n, 1f);

    /// <summary>Reference twin of <see cref="ScaledInPlace"/>, in double.</summary>
    public static float ScaledInPlaceReference(float* x, int n, float scale)
    {
        double max = double.NegativeInfinity;
        for (int i = 0; i < n; i++) max = Math.Max(max, (double)x[i] * scale);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += Math.Exp((double)x[i] * scale - max);
        for (int i = 0; i < n; i++) x[i] = (float)(Math.Exp((double)x[i] * scale - max) / sum);
        return (float)(max + Math.Log(sum));
    }

    /// <summary>log Σ exp(x) over one row, accumulated in double (for log-likelihoods).</summary>
    public static double LogSumExp(float* x, int n)
    {
        float max = Max(x, n);
        double sum = 0;
        var m = Vector512.Create(max);
        int i = 0;
        var acc = Vector512<float>.Zero;
        for (; i + 16 <= n; i += 16) acc += Vector512.Exp(Vector512.Load(x + i) - m);
        sum = Vector512.Sum(acc);
        for (; i < n; i++) sum += Math.Exp(x[i] - max);
        return max + Math.Log(sum);
    }
}
