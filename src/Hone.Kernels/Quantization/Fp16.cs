using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Hone.Tensors.Quantization;

/// <summary>
/// IEEE half (fp16) to and from float, as ggml stores block scales. .NET exposes no vcvtph2ps, so the widening
/// is the classic bit trick: move the 15 magnitude bits up 13 places and multiply by 2^112, which rebases the
/// exponent exactly for normals and subnormals alike; infinities and NaNs get the float exponent set explicitly.
/// </summary>
internal static class Fp16
{
    const float ExponentRebase = 5.192296858534828e33f; // 2^112 = 2^(127-15)
    const int InfinityOrNaN = 0x7C00 << 13;            // half exponent all ones, after the shift

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits)
    {
        int magnitude = (bits & 0x7FFF) << 13;
        int value = BitConverter.SingleToInt32Bits(BitConverter.Int32BitsToSingle(magnitude) * ExponentRebase);
        if (magnitude >= InfinityOrNaN) value = magnitude | 0x7F800000;
        return BitConverter.Int32BitsToSingle(value | ((bits & 0x8000) << 16));
    }

    /// <summary>Round to nearest even, as F16C's vcvtps2ph and numpy's astype(float16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    /// <param name="bits">one half per int32 lane, in the low 16 bits (the high 16 bits are ignored)</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToSingle(Vector512<int> bits)
    {
        var magnitude = (bits & Vector512.Create(0x7FFF)) << 13;
        var rebased = (magnitude.AsSingle() * Vector512.Create(ExponentRebase)).AsInt32();
        var special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(InfinityOrNaN));
        var value = Vector512.ConditionalSelect(special, magnitude | Vector512.Create(0x7F800000), rebased);
        return (value | ((bits & Vector512.Create(0x8000)) << 16)).AsSingle();
    }

    /// <param name="bits">one half per int32 lane, in the low 16 bits (the high 16 bits are ignored)</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToSingle(Vector256<int> bits)
    {
        var magnitude = (bits & Vector256.Create(0x7FFF)) << 13;
        var rebased = (magnitude.AsSingle() * Vector256.Create(ExponentRebase)).AsInt32();
        var special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(InfinityOrNaN));
        var value = Vector256.ConditionalSelect(special, magnitude | Vector256.Create(0x7F800000), rebased);
        return (value | ((bits & Vector256.Create(0x8000)) << 16)).AsSingle();
    }

    /// <param name="bits">one half per int32 lane, in the low 16 bits (the high 16 bits are ignored)</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> ToSingle(Vector128<int> bits)
    {
        var magnitude = (bits & Vector128.Create(0x7FFF)) << 13;
        var rebased = (magnitude.AsSingle() * Vector128.Create(ExponentRebase)).AsInt32();
        var special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(InfinityOrNaN));
        var value = Vector128.ConditionalSelect(special, magnitude | Vector128.Create(0x7F800000), rebased);
        return (value | ((bits & Vector128.Create(0x8000)) << 16)).AsSingle();
    }
}
