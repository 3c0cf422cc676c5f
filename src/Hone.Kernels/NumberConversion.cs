using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors;

/// <summary>
/// fp32 ↔ bf16 / fp16 conversion kernels (SIMD) and their scalar reference twins.
/// bf16 and fp16 values are carried as their raw ushort bit patterns.
/// </summary>
public static unsafe class NumberConversion
{
    // ---- scalar reference -------------------------------------------------------------------------

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>Round to nearest even, as PyTorch and ggml do; NaN stays a quiet NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFFFFFF) > 0x7F800000) return (ushort)((bits >> 16) | 0x40);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HalfToSingle(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort SingleToHalf(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    public static void BFloat16ToSingleReference(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = BFloat16ToSingle(source[i]);
    }

    public static void HalfToSingleReference(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = HalfToSingle(source[i]);
    }

    public static void SingleToBFloat16Reference(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = SingleToBFloat16(source[i]);
    }

    // ---- SIMD -------------------------------------------------------------------------------------

    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short");
        fixed (ushort* s = source) fixed (float* d = destination) BFloat16ToSingle(s, d, source.Length);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void BFloat16ToSingle(ushort* source, float* destination, int count)
    {
        int i = 0;
        if (Avx512F.IsSupported)
            for (; i + 16 <= count; i += 16)
                Vector512.Store(WidenBFloat16(Vector256.Load(source + i)), destination + i);
        else if (Vector256.IsHardwareAccelerated && Avx2.IsSupported)
            for (; i + 8 <= count; i += 8)
                Vector256.Store(Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Vector128.Load(source + i)), 16).AsSingle(), destination + i);
        for (; i < count; i++) destination[i] = BFloat16ToSingle(source[i]);
    }

    /// <summary>16 bf16 values (bit patterns) → 16 floats: zero-extend, shift into the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenBFloat16(Vector256<ushort> v) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(v), 16).AsSingle();

    public static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short");
        fixed (float* s = source) fixed (ushort* d = destination) SingleToBFloat16(s, d, source.Length);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void SingleToBFloat16(float* source, ushort* destination, int count)
    {
        int i = 0;
        if (Avx512F.IsSupported)
        {
            var bias = Vector512.Create(0x7FFFu);
            var one = Vector512.Create(1u);
            var absMask = Vector512.Create(0x7FFFFFFFu);
            var inf = Vector512.Create(0x7F800000u);
            var quiet = Vector512.Create(0x40u);
            for (; i + 16 <= count; i += 16)
            {
                var bits = Vector512.Load(source + i).AsUInt32();
                var rounded = (bits + bias + ((bits >> 16) & one)) >> 16;
                var nan = Vector512.GreaterThan(bits & absMask, inf);
                var result = Vector512.ConditionalSelect(nan, (bits >> 16) | quiet, rounded);
                Vector256.Store(Avx512F.ConvertToVector256UInt16(result), destination + i);
            }
        }
        for (; i < count; i++) destination[i] = SingleToBFloat16(source[i]);
    }

    public static void HalfToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short");
        fixed (ushort* s = source) fixed (float* d = destination) HalfToSingle(s, d, source.Length);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void HalfToSingle(ushort* source, float* destination, int count)
    {
        int i = 0;
        if (Avx512F.IsSupported)
            for (; i + 16 <= count; i += 16)
                Vector512.Store(WidenHalf(Vector256.Load(source + i)), destination + i);
        for (; i < count; i++) destination[i] = HalfToSingle(source[i]);
    }

    /// <summary>
    /// 16 fp16 values → 16 floats without F16C: move exponent+mantissa into float position and scale by 2^112,
    /// which is exact for normals and subnormals; infinities and NaNs get the all-ones exponent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> WidenHalf(Vector256<ushort> v)
    {
        var h = Avx512F.ConvertToVector512UInt32(v);
        var sign = (h & Vector512.Create(0x8000u)) << 16;
        var magnitude = h & Vector512.Create(0x7FFFu);
        var shifted = magnitude << 13;
        var finite = shifted.AsSingle() * Vector512.Create(5.192296858534828e33f); // 2^112
        var special = (shifted | Vector512.Create(0x70000000u)).AsSingle();
        var isSpecial = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u)).AsSingle();
        return (Vector512.ConditionalSelect(isSpecial, special, finite).AsUInt32() | sign).AsSingle();
    }

    public static void SingleToHalf(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        for (int i = 0; i < source.Length; i++) destination[i] = SingleToHalf(source[i]);
    }
}
