using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>
/// SIMD Q8_0 and Q8_K quantizers (the activation formats of the dot products; Q8_0 is also a weight format). Each
/// performs the reference's float operations in the same order per element, so the bytes are identical to
/// <see cref="BlockQuantizationReference"/>: the block maximum is exact in any order, x·id is one rounding, and the
/// two roundings used (C roundf for Q8_0, ggml's nearest_int = half to even for Q8_K) are reproduced exactly.
/// </summary>
internal static unsafe class ActivationQuantizer
{
    /// <summary>Largest float below 0.5: trunc(v + copysign(this, v)) is C's roundf (half away from zero).</summary>
    const float JustBelowHalf = 0.49999997f;

    public static void QuantizeQ8_0(SimdLevel level, ReadOnlySpan<float> source, Span<byte> destination, int blocks)
    {
        fixed (float* x = source)
        fixed (byte* y = destination)
        {
            if (level >= SimdLevel.Vector512) QuantizeQ8_0_512(x, y, blocks);
            else QuantizeQ8_0_256(x, y, blocks);
        }
    }

    public static void QuantizeQ8_K(SimdLevel level, ReadOnlySpan<float> source, Span<byte> destination, int blocks)
    {
        fixed (float* x = source)
        fixed (byte* y = destination)
        {
            if (level >= SimdLevel.Vector512) QuantizeQ8_K512(x, y, blocks);
            else QuantizeQ8_K256(x, y, blocks);
        }
    }

    /// <param name="x">blocks·32 floats</param>
    /// <param name="y">blocks Q8_0 blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void QuantizeQ8_0_512(float* x, byte* y, int blocks)
    {
        for (int b = 0; b < blocks; b++, x += Q8_0Block.Elements, y += Q8_0Block.Bytes)
        {
            var v0 = Vector512.Load(x);
            var v1 = Vector512.Load(x + 16);
            var m = Vector512.Max(Vector512.Abs(v0), Vector512.Abs(v1));
            float amax = HorizontalMax(Vector256.Max(m.GetLower(), m.GetUpper()));
            float d = amax / 127;
            float id = d != 0 ? 1f / d : 0f;
            *(ushort*)(y + Q8_0Block.D) = Fp16.FromSingle(d);
            var scale = Vector512.Create(id);
            Avx512F.ConvertToVector128SByte(RoundAway(v0 * scale)).Store((sbyte*)y + Q8_0Block.Qs);
            Avx512F.ConvertToVector128SByte(RoundAway(v1 * scale)).Store((sbyte*)y + Q8_0Block.Qs + 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> RoundAway(Vector512<float> v) =>
        Vector512.ConvertToInt32(Vector512.Truncate(v + Vector512.CopySign(Vector512.Create(JustBelowHalf), v)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> RoundAway(Vector256<float> v) =>
        Vector256.ConvertToInt32(Vector256.Truncate(v + Vector256.CopySign(Vector256.Create(JustBelowHalf), v)));

    /// <param name="x">blocks·32 floats</param>
    /// <param name="y">blocks Q8_0 blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void QuantizeQ8_0_256(float* x, byte* y, int blocks)
    {
        for (int b = 0; b < blocks; b++, x += Q8_0Block.Elements, y += Q8_0Block.Bytes)
        {
            var v0 = Vector256.Load(x);
            var v1 = Vector256.Load(x + 8);
            var v2 = Vector256.Load(x + 16);
            var v3 = Vector256.Load(x + 24);
            var m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
            float amax = HorizontalMax(m);
            float d = amax / 127;
            float id = d != 0 ? 1f / d : 0f;
            *(ushort*)(y + Q8_0Block.D) = Fp16.FromSingle(d);
            var scale = Vector256.Create(id);
            var lo = Vector256.Narrow(RoundAway(v0 * scale), RoundAway(v1 * scale));
            var hi = Vector256.Narrow(RoundAway(v2 * scale), RoundAway(v3 * scale));
            Vector256.Narrow(lo, hi).Store((sbyte*)y + Q8_0Block.Qs);
        }
    }

    /// <param name="x">blocks·256 floats</param>
    /// <param name="y">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void QuantizeQ8_K512(float* x, byte* y, int blocks)
    {
        for (int b = 0; b < blocks; b++, x += Q8_KBlock.Elements, y += Q8_KBlock.Bytes)
        {
            var m = Vector512<float>.Zero;
            for (int i = 0; i < Q8_KBlock.Elements; i += 16) m = Vector512.Max(m, Vector512.Abs(Vector512.Load(x + i)));
            float amax = HorizontalMax(Vector256.Max(m.GetLower(), m.GetUpper()));
            if (amax == 0)
            {
                new Span<byte>(y, Q8_KBlock.Bytes).Clear();
                continue;
            }
            float max = FirstWithMagnitude(x, amax); // the reference keeps the sign of the first maximum
            float iscale = -127f / max;
            var scale = Vector512.Create(iscale);
            for (int g = 0; g < Q8_KBlock.Elements / 16; g++)
            {
                // nearest_int(v) for |v| ≤ 127 is round half to even
                var q = Vector512.Min(Vector512.ConvertToInt32(Vector512.Round(Vector512.Load(x + 16 * g) * scale)), Vector512.Create(127));
                Avx512F.ConvertToVector128SByte(q).Store((sbyte*)y + Q8_KBlock.Qs + 16 * g);
                ((short*)(y + Q8_KBlock.BSums))[g] = (short)Vector512.Sum(q);
            }
            *(float*)(y + Q8_KBlock.D) = 1 / iscale;
        }
    }

    /// <param name="x">blocks·256 floats</param>
    /// <param name="y">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void QuantizeQ8_K256(float* x, byte* y, int blocks)
    {
        for (int b = 0; b < blocks; b++, x += Q8_KBlock.Elements, y += Q8_KBlock.Bytes)
        {
            var m = Vector256<float>.Zero;
            for (int i = 0; i < Q8_KBlock.Elements; i += 8) m = Vector256.Max(m, Vector256.Abs(Vector256.Load(x + i)));
            float amax = HorizontalMax(m);
            if (amax == 0)
            {
                new Span<byte>(y, Q8_KBlock.Bytes).Clear();
                continue;
            }
            float max = FirstWithMagnitude(x, amax);
            float iscale = -127f / max;
            var scale = Vector256.Create(iscale);
            var limit = Vector256.Create(127);
            for (int g = 0; g < Q8_KBlock.Elements / 16; g++)
            {
                var q0 = Vector256.Min(Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x + 16 * g) * scale)), limit);
                var q1 = Vector256.Min(Vector256.ConvertToInt32(Vector256.Round(Vector256.Load(x + 16 * g + 8) * scale)), limit);
                var words = Vector256.Narrow(q0, q1);
                Vector256.Narrow(words, words).GetLower().Store((sbyte*)y + Q8_KBlock.Qs + 16 * g);
                ((short*)(y + Q8_KBlock.BSums))[g] = (short)Vector256.Sum(q0 + q1);
            }
            *(float*)(y + Q8_KBlock.D) = 1 / iscale;
        }
    }

    /// <summary>The largest of 8 non-negative floats (exact in any order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float HorizontalMax(Vector256<float> v)
    {
        var m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    /// <summary>The first of 256 floats whose magnitude is <paramref name="amax"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float FirstWithMagnitude(float* x, float amax)
    {
        for (int i = 0; i < Q8_KBlock.Elements; i += 8)
        {
            uint hits = Vector256.Equals(Vector256.Abs(Vector256.Load(x + i)), Vector256.Create(amax)).ExtractMostSignificantBits();
            if (hits != 0) return x[i + BitOperations.TrailingZeroCount(hits)];
        }
        return amax; // unreachable for finite input: amax is one of the magnitudes
    }
}
