using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>
/// SIMD dequantization to fp32 (weight panels for the GEMM). Every element is computed with the reference's float
/// operations in the reference's order — no FMA, where fusing would change a rounding — so results are bit-identical
/// to <see cref="BlockQuantizationReference.DequantizeRow"/>.
/// </summary>
internal static unsafe class Dequantizer
{
    /// <summary>Bytes ahead of the block being dequantized to prefetch: rows stream from DRAM (beyond the row is harmless).</summary>
    const int PrefetchDistance = 1536;

    /// <param name="x">blocks blocks of <paramref name="type"/></param>
    /// <param name="y">blocks·blockSize floats</param>
    public static void Run(SimdLevel level, TensorType type, byte* x, float* y, int blocks)
    {
        bool wide = level >= SimdLevel.Vector512;
        switch (type)
        {
            case TensorType.Q8_0: if (wide) Q8_0_512(x, y, blocks); else Q8_0_256(x, y, blocks); break;
            case TensorType.Q4_0: if (wide) Q4_0_512(x, y, blocks); else Q4_0_256(x, y, blocks); break;
            case TensorType.Q4_K: if (wide) Q4_K512(x, y, blocks); else Q4_K256(x, y, blocks); break;
            case TensorType.Q6_K: if (wide) Q6_K512(x, y, blocks); else Q6_K256(x, y, blocks); break;
            // 64-weight blocks: the AVX2 loop serves the AVX-512 level too (a group of 16 is one 512-bit vector, but
            // the unpacking is the same 256-bit work as the dot product's)
            case TensorType.HQ3_O:
            case TensorType.HQ4_O: DotKernelsOutlier.Dequantize256(type, x, y, blocks); break;
            default: throw new UnreachableException();
        }
    }

    /// <summary>The eight 6-bit scales and eight 6-bit mins of a Q4_K block, one per byte (get_scale_min_k4 on 32-bit words).</summary>
    /// <param name="packed">the 12 packed bytes</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Scales, ulong Mins) UnpackQ4_KScales(byte* packed)
    {
        uint a0 = *(uint*)packed, a1 = *(uint*)(packed + 4), a2 = *(uint*)(packed + 8);
        // sub-blocks 0..3: low 6 bits of bytes 0..3 (scales) and 4..7 (mins); 4..7: a nibble from bytes 8..11
        // plus the top two bits of bytes 0..3 (scales) or 4..7 (mins) as bits 4..5
        uint scalesLow = a0 & 0x3F3F3F3F, minsLow = a1 & 0x3F3F3F3F;
        uint scalesHigh = (a2 & 0x0F0F0F0F) | ((a0 >> 2) & 0x30303030);
        uint minsHigh = ((a2 >> 4) & 0x0F0F0F0F) | ((a1 >> 2) & 0x30303030);
        return (scalesLow | (ulong)scalesHigh << 32, minsLow | (ulong)minsHigh << 32);
    }

    // ------------------------------------------------------------------ AVX-512

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q8_0_512(byte* x, float* y, int blocks)
    {
        for (int b = 0; b < blocks; b++, x += Q8_0Block.Bytes, y += Q8_0Block.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            var d = Vector512.Create(Fp16.ToSingle(*(ushort*)x));
            var q0 = Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)x + Q8_0Block.Qs));
            var q1 = Avx512F.ConvertToVector512Int32(Vector128.Load((sbyte*)x + Q8_0Block.Qs + 16));
            (Avx512F.ConvertToVector512Single(q0) * d).Store(y);
            (Avx512F.ConvertToVector512Single(q1) * d).Store(y + 16);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q4_0_512(byte* x, float* y, int blocks)
    {
        var eight = Vector512.Create(8);
        var nibble = Vector512.Create(0xF);
        for (int b = 0; b < blocks; b++, x += Q4_0Block.Bytes, y += Q4_0Block.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            var d = Vector512.Create(Fp16.ToSingle(*(ushort*)x));
            var packed = Avx512F.ConvertToVector512Int32(Vector128.Load(x + Q4_0Block.Qs));
            (Avx512F.ConvertToVector512Single((packed & nibble) - eight) * d).Store(y);
            (Avx512F.ConvertToVector512Single((packed >>> 4) - eight) * d).Store(y + 16);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q4_K512(byte* x, float* y, int blocks)
    {
        var nibble = Vector512.Create(0xF);
        for (int b = 0; b < blocks; b++, x += Q4_KBlock.Bytes, y += Q4_KBlock.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            Sse.Prefetch0(x + PrefetchDistance + 64);
            Sse.Prefetch0(x + PrefetchDistance + 128);
            float d = Fp16.ToSingle(*(ushort*)(x + Q4_KBlock.D)), dmin = Fp16.ToSingle(*(ushort*)(x + Q4_KBlock.DMin));
            var (scales, mins) = UnpackQ4_KScales(x + Q4_KBlock.Scales);
            for (int c = 0; c < 4; c++, scales >>= 16, mins >>= 16)
            {
                var d0 = Vector512.Create(d * (byte)scales);
                var d1 = Vector512.Create(d * (byte)(scales >> 8));
                var m0 = Vector512.Create(dmin * (byte)mins);
                var m1 = Vector512.Create(dmin * (byte)(mins >> 8));
                var p0 = Avx512F.ConvertToVector512Int32(Vector128.Load(x + Q4_KBlock.Qs + 32 * c));
                var p1 = Avx512F.ConvertToVector512Int32(Vector128.Load(x + Q4_KBlock.Qs + 32 * c + 16));
                float* o = y + 64 * c;
                (Avx512F.ConvertToVector512Single(p0 & nibble) * d0 - m0).Store(o);
                (Avx512F.ConvertToVector512Single(p1 & nibble) * d0 - m0).Store(o + 16);
                (Avx512F.ConvertToVector512Single(p0 >>> 4) * d1 - m1).Store(o + 32);
                (Avx512F.ConvertToVector512Single(p1 >>> 4) * d1 - m1).Store(o + 48);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q6_K512(byte* x, float* y, int blocks)
    {
        var nibble = Vector512.Create(0xF);
        var lowTwoBits = Vector512.Create(3);
        var offset = Vector512.Create(32);
        for (int b = 0; b < blocks; b++, x += Q6_KBlock.Bytes, y += Q6_KBlock.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            Sse.Prefetch0(x + PrefetchDistance + 64);
            Sse.Prefetch0(x + PrefetchDistance + 128);
            Sse.Prefetch0(x + PrefetchDistance + 192);
            float d = Fp16.ToSingle(*(ushort*)(x + Q6_KBlock.D));
            sbyte* sc = (sbyte*)(x + Q6_KBlock.Scales);
            for (int h = 0; h < 2; h++)
            {
                for (int l = 0; l < 32; l += 16)
                {
                    var a = Avx512F.ConvertToVector512Int32(Vector128.Load(x + Q6_KBlock.Ql + 64 * h + l));
                    var c = Avx512F.ConvertToVector512Int32(Vector128.Load(x + Q6_KBlock.Ql + 64 * h + 32 + l));
                    var high = Avx512F.ConvertToVector512Int32(Vector128.Load(x + Q6_KBlock.Qh + 32 * h + l));
                    int g = 8 * h + l / 16;
                    float* o = y + 128 * h + l;
                    var q1 = ((a & nibble) | ((high & lowTwoBits) << 4)) - offset;
                    var q2 = ((c & nibble) | (((high >>> 2) & lowTwoBits) << 4)) - offset;
                    var q3 = ((a >>> 4) | (((high >>> 4) & lowTwoBits) << 4)) - offset;
                    var q4 = ((c >>> 4) | ((high >>> 6) << 4)) - offset;
                    (Vector512.Create(d * sc[g]) * Avx512F.ConvertToVector512Single(q1)).Store(o);
                    (Vector512.Create(d * sc[g + 2]) * Avx512F.ConvertToVector512Single(q2)).Store(o + 32);
                    (Vector512.Create(d * sc[g + 4]) * Avx512F.ConvertToVector512Single(q3)).Store(o + 64);
                    (Vector512.Create(d * sc[g + 6]) * Avx512F.ConvertToVector512Single(q4)).Store(o + 96);
                }
            }
        }
    }

    // ------------------------------------------------------------------ AVX2

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q8_0_256(byte* x, float* y, int blocks)
    {
        for (int b = 0; b < blocks; b++, x += Q8_0Block.Bytes, y += Q8_0Block.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            var d = Vector256.Create(Fp16.ToSingle(*(ushort*)x));
            sbyte* q = (sbyte*)x + Q8_0Block.Qs;
            for (int i = 0; i < 32; i += 8)
                (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + i)) * d).Store(y + i);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q4_0_256(byte* x, float* y, int blocks)
    {
        var eight = Vector256.Create(8);
        var nibble = Vector256.Create(0xF);
        for (int b = 0; b < blocks; b++, x += Q4_0Block.Bytes, y += Q4_0Block.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            var d = Vector256.Create(Fp16.ToSingle(*(ushort*)x));
            for (int i = 0; i < 16; i += 8)
            {
                var packed = Avx2.ConvertToVector256Int32(x + Q4_0Block.Qs + i);
                (Avx.ConvertToVector256Single((packed & nibble) - eight) * d).Store(y + i);
                (Avx.ConvertToVector256Single((packed >>> 4) - eight) * d).Store(y + 16 + i);
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q4_K256(byte* x, float* y, int blocks)
    {
        var nibble = Vector256.Create(0xF);
        for (int b = 0; b < blocks; b++, x += Q4_KBlock.Bytes, y += Q4_KBlock.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            Sse.Prefetch0(x + PrefetchDistance + 64);
            Sse.Prefetch0(x + PrefetchDistance + 128);
            float d = Fp16.ToSingle(*(ushort*)(x + Q4_KBlock.D)), dmin = Fp16.ToSingle(*(ushort*)(x + Q4_KBlock.DMin));
            var (scales, mins) = UnpackQ4_KScales(x + Q4_KBlock.Scales);
            for (int c = 0; c < 4; c++, scales >>= 16, mins >>= 16)
            {
                var d0 = Vector256.Create(d * (byte)scales);
                var d1 = Vector256.Create(d * (byte)(scales >> 8));
                var m0 = Vector256.Create(dmin * (byte)mins);
                var m1 = Vector256.Create(dmin * (byte)(mins >> 8));
                for (int i = 0; i < 32; i += 8)
                {
                    var p = Avx2.ConvertToVector256Int32(x + Q4_KBlock.Qs + 32 * c + i);
                    (Avx.ConvertToVector256Single(p & nibble) * d0 - m0).Store(y + 64 * c + i);
                    (Avx.ConvertToVector256Single(p >>> 4) * d1 - m1).Store(y + 64 * c + 32 + i);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void Q6_K256(byte* x, float* y, int blocks)
    {
        var nibble = Vector256.Create(0xF);
        var lowTwoBits = Vector256.Create(3);
        var offset = Vector256.Create(32);
        for (int b = 0; b < blocks; b++, x += Q6_KBlock.Bytes, y += Q6_KBlock.Elements)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            Sse.Prefetch0(x + PrefetchDistance + 64);
            Sse.Prefetch0(x + PrefetchDistance + 128);
            Sse.Prefetch0(x + PrefetchDistance + 192);
            float d = Fp16.ToSingle(*(ushort*)(x + Q6_KBlock.D));
            sbyte* sc = (sbyte*)(x + Q6_KBlock.Scales);
            for (int h = 0; h < 2; h++)
            {
                for (int l = 0; l < 32; l += 8)
                {
                    var a = Avx2.ConvertToVector256Int32(x + Q6_KBlock.Ql + 64 * h + l);
                    var c = Avx2.ConvertToVector256Int32(x + Q6_KBlock.Ql + 64 * h + 32 + l);
                    var high = Avx2.ConvertToVector256Int32(x + Q6_KBlock.Qh + 32 * h + l);
                    int g = 8 * h + l / 16;
                    float* o = y + 128 * h + l;
                    var q1 = ((a & nibble) | ((high & lowTwoBits) << 4)) - offset;
                    var q2 = ((c & nibble) | (((high >>> 2) & lowTwoBits) << 4)) - offset;
                    var q3 = ((a >>> 4) | (((high >>> 4) & lowTwoBits) << 4)) - offset;
                    var q4 = ((c >>> 4) | ((high >>> 6) << 4)) - offset;
                    (Vector256.Create(d * sc[g]) * Avx.ConvertToVector256Single(q1)).Store(o);
                    (Vector256.Create(d * sc[g + 2]) * Avx.ConvertToVector256Single(q2)).Store(o + 32);
                    (Vector256.Create(d * sc[g + 4]) * Avx.ConvertToVector256Single(q3)).Store(o + 64);
                    (Vector256.Create(d * sc[g + 6]) * Avx.ConvertToVector256Single(q4)).Store(o + 96);
                }
            }
        }
    }
}
