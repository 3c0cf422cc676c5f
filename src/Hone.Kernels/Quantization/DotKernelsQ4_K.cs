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
            long ahead = r + 1 < rows ? rowBytes : 0; // prefetch the next row while this one computes
            y[r] = level switch
            {
                >= SimdLevel.Vector256 => Row256(w, ahead, xq, blocks),
                SimdLevel.Vector128 => Row128(w, ahead, xq, blocks),
                _ => throw new UnreachableException(),
            };
        }
    }

    /// <summary>Σ_s min_s·(bsums[2s] + bsums[2s+1]) as 8 int32 lanes.</summary>
    /// <param name="mins">the 8 6-bit mins, one per byte</param>
    /// <param name="bsums">16 int16 sums of 16 activations</param>
    /// <param name="minPairs">vpshufb control making words [m0, m0, m1, m1, …, m7, m7] of the mins in both lanes</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> MinProducts(ulong mins, short* bsums, Vector256<byte> minPairs)
    {
        var bytes = Vector128.CreateScalar(mins).AsByte();
        var words = Avx2.Shuffle(Vector256.Create(bytes, bytes), minPairs).AsInt16();
        return Avx2.MultiplyAddAdjacent(words, Vector256.Load(bsums));
    }

    // A 256-bit main loop on both levels: a 64-element chunk is one 32-byte load whose low and high nibbles are two
    // sub-blocks; the 512-bit variant (duplicate the 32 bytes, variable shift, vpermw for the scales) was slower on
    // Zen 4, which executes 512-bit ops in two halves.

    /// <param name="w">blocks Q4_K blocks (144 bytes each)</param>
    /// <param name="ahead">bytes from w to the next row, prefetched meanwhile (0: none)</param>
    /// <param name="xq">blocks Q8_K blocks (292 bytes each)</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row256(byte* w, long ahead, byte* xq, int blocks)
    {
        // the 8 sub-block scales, each as the int16 pair (s, s) vpmaddwd multiplies by: broadcast straight from memory
        int* scalePairs = stackalloc int[8];
        var acc = Vector256<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        var mask = Vector256.Create((byte)0x0F);
        var minPairs = Vector256.Create(
            (byte)0, 0x80, 0, 0x80, 1, 0x80, 1, 0x80, 2, 0x80, 2, 0x80, 3, 0x80, 3, 0x80,
            4, 0x80, 4, 0x80, 5, 0x80, 5, 0x80, 6, 0x80, 6, 0x80, 7, 0x80, 7, 0x80);
        for (int b = 0; b < blocks; b++, w += Q4_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            Sse.Prefetch0(w + ahead + 128);
            // d and dmin side by side, times dy, in one fp16 conversion
            var dAndMin = Fp16.ToSingle(Sse41.ConvertToVector128Int32(Vector128.CreateScalar(*(uint*)w).AsUInt16()))
                          * Vector128.Create(*(float*)(xq + Q8_KBlock.D));
            var (scales, mins) = Dequantizer.UnpackQ4_KScales(w + Q4_KBlock.Scales);
            var scaleDwords = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(scales).AsByte());
            (scaleDwords | (scaleDwords << 16)).Store(scalePairs);
            byte* q = w + Q4_KBlock.Qs;
            sbyte* x = (sbyte*)(xq + Q8_KBlock.Qs);
            var sums = Chunk256(q, x, scalePairs, mask) + Chunk256(q + 32, x + 64, scalePairs + 2, mask)
                     + (Chunk256(q + 64, x + 128, scalePairs + 4, mask) + Chunk256(q + 96, x + 192, scalePairs + 6, mask));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Avx2.BroadcastScalarToVector256(dAndMin), acc);
            var minProducts = Avx.ConvertToVector256Single(MinProducts(mins, (short*)(xq + Q8_KBlock.BSums), minPairs));
            minAcc = Fma.MultiplyAdd(minProducts, Avx2.BroadcastScalarToVector256(Sse.Shuffle(dAndMin, dAndMin, 0b01_01_01_01)), minAcc);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minAcc);
    }

    /// <summary>One 64-element chunk: two sub-blocks times their scales, as 8 int32 partial sums.</summary>
    /// <param name="q">32 bytes: low nibbles = the first sub-block, high nibbles = the second</param>
    /// <param name="x">64 int8 activations</param>
    /// <param name="scalePairs">2 dwords: each sub-block's scale as the int16 pair (s, s)</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<int> Chunk256(byte* q, sbyte* x, int* scalePairs, Vector256<byte> mask)
    {
        var packed = Vector256.Load(q);
        var low = packed & mask;
        var high = (packed.AsUInt16() >>> 4).AsByte() & mask;
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Vector256.Load(x)), Vector256.Create(scalePairs[0]).AsInt16())
             + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Vector256.Load(x + 32)), Vector256.Create(scalePairs[1]).AsInt16());
    }

    /// <param name="w">blocks Q4_K blocks</param>
    /// <param name="ahead">bytes from w to the next row, prefetched meanwhile (0: none)</param>
    /// <param name="xq">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row128(byte* w, long ahead, byte* xq, int blocks)
    {
        var acc = Vector128<float>.Zero;
        float minSum = 0;
        var mask = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++, w += Q4_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            Sse.Prefetch0(w + ahead + 128);
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
