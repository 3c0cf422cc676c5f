using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors;

/// <summary>
/// Sums of the 16 lanes of fp32 vectors by one fixed tree, four vectors at a time: a vector's sum is the same whether it
/// is reduced alone or beside three others, so kernels that reduce several dot products together give each one the
/// bits a one-at-a-time kernel gives it. Cheaper than <see cref="Vector512.Sum{T}(Vector512{T})"/> per vector (seven
/// shuffles and adds for four sums instead of about twenty-five instructions for one).
/// </summary>
internal static class HorizontalSum
{
    /// <summary>[Σ a0, Σ a1, Σ a2, Σ a3]: per 128-bit lane the pair sums (x0 + x2, x1 + x3), then their sum, then the
    /// four lanes as (L0 + L2) + (L1 + L3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Four(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        var p01 = Avx512F.UnpackLow(a0, a1) + Avx512F.UnpackHigh(a0, a1);
        var p23 = Avx512F.UnpackLow(a2, a3) + Avx512F.UnpackHigh(a2, a3);
        var quad = Avx512F.Shuffle(p01, p23, 0x44) + Avx512F.Shuffle(p01, p23, 0xEE);
        var halves = quad.GetLower() + quad.GetUpper();
        return halves.GetLower() + halves.GetUpper();
    }
}
