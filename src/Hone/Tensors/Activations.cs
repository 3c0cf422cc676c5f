using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hone.Tensors;

/// <summary>Element-wise activations of the SwiGLU MLP.</summary>
public static unsafe class Activations
{
    /// <summary>gate[i] = silu(gate[i]) · up[i] = gate·σ(gate)·up, over n elements (in place in gate).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void SwiGlu(float* gate, float* up, long n)
    {
        long i = 0;
        var one = Vector512<float>.One;
        for (; i + 16 <= n; i += 16)
        {
            var g = Vector512.Load(gate + i);
            Vector512.Store(g / (one + Vector512.Exp(-g)) * Vector512.Load(up + i), gate + i);
        }
        for (; i < n; i++) gate[i] = Silu(gate[i]) * up[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    public static void SwiGluReference(float* gate, float* up, long n)
    {
        for (long i = 0; i < n; i++) gate[i] = (float)(gate[i] / (1.0 + Math.Exp(-gate[i])) * up[i]);
    }
}
