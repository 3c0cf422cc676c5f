using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hone.Tensors;

/// <summary>Element-wise activations of the SwiGLU MLP.</summary>
public static unsafe class Activations
{
    /// <summary>gate[i] = silu(gate[i]) · up[i] = gate·σ(gate)·up, over n elements (in place in gate).</summary>
    public static void SwiGlu(float* gate, float* up, long n) => SwiGlu(gate, up, gate, n);

    /// <summary>output[i] = silu(gate[i]) · up[i]; output may be gate itself (training keeps gate and writes elsewhere,
    /// which saves copying it first). The tail goes through the same vector math, padded, so an element's value does
    /// not depend on where it sits: a mixture-of-experts layer runs an expert over however many rows were routed to it,
    /// and a row must come out the same whichever they are.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void SwiGlu(float* gate, float* up, float* output, long n)
    {
        long i = 0;
        for (; i + 16 <= n; i += 16) Vector512.Store(SwiGlu(Vector512.Load(gate + i), Vector512.Load(up + i)), output + i);
        if (i == n) return;
        int rest = (int)(n - i);
        float* g = stackalloc float[16], u = stackalloc float[16], o = stackalloc float[16];
        for (int j = 0; j < 16; j++) { g[j] = j < rest ? gate[i + j] : 0f; u[j] = j < rest ? up[i + j] : 0f; }
        Vector512.Store(SwiGlu(Vector512.Load(g), Vector512.Load(u)), o);
        for (int j = 0; j < rest; j++) output[i + j] = o[j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> SwiGlu(Vector512<float> g, Vector512<float> u) => g / (Vector512<float>.One + Vector512.Exp(-g)) * u;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    public static void SwiGluReference(float* gate, float* up, long n)
    {
        for (long i = 0; i < n; i++) gate[i] = (float)(gate[i] / (1.0 + Math.Exp(-gate[i])) * up[i]);
    }
}

/// <summary>Backward of the SwiGLU product a = silu(g)·u.</summary>
public static unsafe class SwiGluBackward
{
    /// <summary>Given gate g[n], up u[n] and da[n]: dGate[n] = da·u·silu'(g), dUp[n] = da·silu(g).
    /// silu'(g) = σ(g)·(1 + g·(1 − σ(g))). dGate/dUp may alias g/u (each element is read before it is written).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining | System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Compute(float* gate, float* up, float* da, float* dGate, float* dUp, long n)
    {
        long i = 0;
        var one = Vector512<float>.One;
        for (; i + 16 <= n; i += 16)
        {
            var g = Vector512.Load(gate + i);
            var u = Vector512.Load(up + i);
            var d = Vector512.Load(da + i);
            var s = one / (one + Vector512.Exp(-g));
            Vector512.Store(d * u * s * (one + g * (one - s)), dGate + i);
            Vector512.Store(d * g * s, dUp + i);
        }
        for (; i < n; i++)
        {
            float g = gate[i], u = up[i], d = da[i];
            float s = 1f / (1f + MathF.Exp(-g));
            dGate[i] = d * u * s * (1 + g * (1 - s));
            dUp[i] = d * g * s;
        }
    }
}
