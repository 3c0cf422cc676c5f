using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>
/// Dot products of Q4_K weight rows with Q8_K activations. Per super-block of 256:
/// Σ = dy·(d·Σ_s scale_s·Σ_l q·y − dmin·Σ_s min_s·Σ_l y); the inner sums are exact int32 (vpmaddubsw of the unsigned
/// nibbles, then vpmaddwd with the 6-bit scales), and Σ_l y comes from the activation block's bsums.
/// </summary>
internal static unsafe class DotKernelsQ4_K
{
    public static void Run(SimdLevel level, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        int blocks = n / Q4_KBlock.Elements;
        for (int r = 0; r < rows; r++)
        {
            byte* w = weights + r * rowBytes;
            y[r] = level switch
            {
                SimdLevel.Vector512 => Row512(w, xq, blocks),
                SimdLevel.Vector256 => Row256(w, xq, blocks),
                SimdLevel.Vector128 => Row128(w, xq, blocks),
                _ => throw new UnreachableException(),
            };
        }
    }

    /// <summary>16 words [m0, m0, m1, m1, …, m7, m7] from the 8 min bytes present in both 128-bit lanes: pairs each min with its two bsums.</summary>
    static Vector256<byte> MinPairs => Vector256.Create(
        (byte)0, 0x80, 0, 0x80, 1, 0x80, 1, 0x80, 2, 0x80, 2, 0x80, 3, 0x80, 3, 0x80,
        4, 0x80, 4, 0x80, 5, 0x80, 5, 0x80, 6, 0x80, 6, 0x80, 7, 0x80, 7, 0x80);

    /// <summary>Σ_s min_s·(bsums[2s] + bsums[2s+1]) as 8 int32 lanes.</summary>
    /// <param name="mins">the 8 6-bit mins, one per byte</param>
    /// <param name="bsums">16 int16 sums of 16 activations</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> MinProducts(ulong mins, short* bsums)
    {
        var bytes = Vector128.CreateScalar(mins).AsByte();
        var words = Avx2.Shuffle(Vector256.Create(bytes, bytes), MinPairs).AsInt16();
        return Avx2.MultiplyAddAdjacent(words, Vector256.Load(bsums));
    }

    /// <summary>
    /// The 32 bytes at <paramref name="p"/> in both halves of a 512-bit vector. Not Avx512F.BroadcastVector256ToVector512:
    /// the .NET 10.0 JIT encodes that load's displacement with the wrong disp8 scale (16 instead of 32 bytes), so
    /// [p + 128] reads p + 256.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<byte> Duplicate256(byte* p)
    {
        var half = Vector256.Load(p);
        return Vector512.Create(half, half);
    }

    /// <param name="w">blocks Q4_K blocks (144 bytes each)</param>
    /// <param name="xq">blocks Q8_K blocks (292 bytes each)</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row512(byte* w, byte* xq, int blocks)
    {
        var acc = Vector512<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, w += Q4_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            float dy = *(float*)(xq + Q8_KBlock.D);
            float d = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.D)) * dy;
            float dmin = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.DMin)) * dy;
            var (scales, mins) = Dequantizer.UnpackQ4_KScales(w + Q4_KBlock.Scales);
            // words 0..7 = the 8 scales; vpermw spreads two of them over the two 256-bit halves of a chunk
            var scaleWords = Avx2.ConvertToVector256Int16(Vector128.CreateScalar(scales).AsByte()).ToVector512Unsafe();
            byte* q = w + Q4_KBlock.Qs;
            sbyte* x = (sbyte*)(xq + Q8_KBlock.Qs);
            var sums = Chunk512(q, x, scaleWords, Vector512.Create((short)0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1))
                     + Chunk512(q + 32, x + 64, scaleWords, Vector512.Create((short)2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3));
            sums += Chunk512(q + 64, x + 128, scaleWords, Vector512.Create((short)4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5))
                  + Chunk512(q + 96, x + 192, scaleWords, Vector512.Create((short)6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7));
            acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), Vector512.Create(d), acc);
            minAcc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MinProducts(mins, (short*)(xq + Q8_KBlock.BSums))), Vector256.Create(dmin), minAcc);
        }
        return Vector512.Sum(acc) - Vector256.Sum(minAcc);
    }

    /// <summary>One 64-element chunk: two sub-blocks, scale-weighted, as 16 int32 partial sums.</summary>
    /// <param name="q">32 packed bytes: low nibbles = first sub-block, high nibbles = second</param>
    /// <param name="x">64 int8 activations</param>
    /// <param name="scaleWords">the 8 scales in words 0..7</param>
    /// <param name="scaleIndex">vpermw index: the chunk's first scale in the low 16 words, its second in the high 16</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<int> Chunk512(byte* q, sbyte* x, Vector512<short> scaleWords, Vector512<short> scaleIndex)
    {
        var packed = Duplicate256(q).AsUInt64();
        var nibbles = Avx512F.ShiftRightLogicalVariable(packed, Vector512.Create(0ul, 0, 0, 0, 4, 4, 4, 4)).AsByte()
                      & Vector512.Create((byte)0x0F);
        var pairs = Avx512BW.MultiplyAddAdjacent(nibbles, Vector512.Load(x));
        return Avx512BW.MultiplyAddAdjacent(pairs, Avx512BW.PermuteVar32x16(scaleWords, scaleIndex));
    }

    /// <param name="w">blocks Q4_K blocks</param>
    /// <param name="xq">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row256(byte* w, byte* xq, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        var mask = Vector256.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, w += Q4_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            float dy = *(float*)(xq + Q8_KBlock.D);
            float d = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.D)) * dy;
            float dmin = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.DMin)) * dy;
            var (scales, mins) = Dequantizer.UnpackQ4_KScales(w + Q4_KBlock.Scales);
            var scaleWords128 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()).AsByte();
            var scaleWords = Vector256.Create(scaleWords128, scaleWords128);
            byte* q = w + Q4_KBlock.Qs;
            sbyte* x = (sbyte*)(xq + Q8_KBlock.Qs);
            var sums = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++, q += 32, x += 64)
            {
                var packed = Vector256.Load(q);
                var low = packed & mask;
                var high = (packed.AsUInt16() >>> 4).AsByte() & mask;
                // broadcast word 2c / 2c+1 (the sub-block scales) to all 16 words
                var lowScale = Avx2.Shuffle(scaleWords, Vector256.Create((ushort)(0x0100 * (4 * c + 1) + 4 * c)).AsByte()).AsInt16();
                var highScale = Avx2.Shuffle(scaleWords, Vector256.Create((ushort)(0x0100 * (4 * c + 3) + 4 * c + 2)).AsByte()).AsInt16();
                sums += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Vector256.Load(x)), lowScale);
                sums += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Vector256.Load(x + 32)), highScale);
            }
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(d), acc);
            minAcc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(MinProducts(mins, (short*)(xq + Q8_KBlock.BSums))), Vector256.Create(dmin), minAcc);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minAcc);
    }

    /// <param name="w">blocks Q4_K blocks</param>
    /// <param name="xq">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row128(byte* w, byte* xq, int blocks)
    {
        var acc = Vector128<float>.Zero;
        float minSum = 0;
        var mask = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, w += Q4_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            float dy = *(float*)(xq + Q8_KBlock.D);
            float d = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.D)) * dy;
            float dmin = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.DMin)) * dy;
            var (scales, mins) = Dequantizer.UnpackQ4_KScales(w + Q4_KBlock.Scales);
            short* bsums = (short*)(xq + Q8_KBlock.BSums);
            int minTerm = 0;
            for (int s = 0; s < Q4_KBlock.SubBlocks; s++)
                minTerm += (int)(mins >> (8 * s) & 0xFF) * (bsums[2 * s] + bsums[2 * s + 1]);
            byte* q = w + Q4_KBlock.Qs;
            sbyte* x = (sbyte*)(xq + Q8_KBlock.Qs);
            var sums = Vector128<int>.Zero;
            for (int c = 0; c < 4; c++, q += 32, x += 64, scales >>= 16)
            {
                var lowScale = Vector128.Create((short)(scales & 0xFF));
                var highScale = Vector128.Create((short)(scales >> 8 & 0xFF));
                for (int half = 0; half < 32; half += 16)
                {
                    var packed = Vector128.Load(q + half);
                    var low = packed & mask;
                    var high = (packed.AsUInt16() >>> 4).AsByte() & mask;
                    sums += Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(low, Vector128.Load(x + half)), lowScale);
                    sums += Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(high, Vector128.Load(x + 32 + half)), highScale);
                }
            }
            acc += Sse2.ConvertToVector128Single(sums) * Vector128.Create(d);
            minSum += dmin * minTerm;
        }
        return Vector128.Sum(acc) - minSum;
    }
}
