using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>
/// Dot products of Q6_K weight rows with Q8_K activations. Per super-block: Σ = d·dy·Σ_g scale_g·Σ_l (q − 32)·y.
/// The 6-bit quants are multiplied unsigned (0..63: vpmaddubsw cannot saturate, 2·63·127 &lt; 2^15), then weighted by
/// the int8 group scales with vpmaddwd; the −32 comes off at the end as 32·Σ_g scale_g·bsums_g.
/// </summary>
internal static unsafe class DotKernelsQ6_K
{
    public static void Run(SimdLevel level, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        int blocks = n / Q6_KBlock.Elements;
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

    // A 256-bit main loop on both levels: the 512-bit variant (vpermw hands each 16-quant lane its group scale) was
    // slower on Zen 4, which executes 512-bit ops in two halves.

    /// <param name="w">blocks Q6_K blocks</param>
    /// <param name="ahead">bytes from w to the next row, prefetched meanwhile (0: none)</param>
    /// <param name="xq">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row256(byte* w, long ahead, byte* xq, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var nibble = Vector256.Create((byte)0x0F);
        var bits45 = Vector256.Create((byte)0x30);
        for (int b = 0; b < blocks; b++, w += Q6_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            Sse.Prefetch0(w + ahead + 128);
            Sse.Prefetch0(w + ahead + 192);
            float d = Fp16.ToSingle(*(ushort*)(w + Q6_KBlock.D)) * *(float*)(xq + Q8_KBlock.D);
            sbyte* groupScales = (sbyte*)(w + Q6_KBlock.Scales);
            var scales = Avx2.ConvertToVector256Int16(Vector128.Load(groupScales));
            sbyte* x = (sbyte*)(xq + Q8_KBlock.Qs);
            var sums = Vector256<int>.Zero;
            for (int h = 0; h < 2; h++, x += 128)
            {
                // dword g = scale of group 8h + g in both words, so vpermd can hand two groups to the two lanes
                var wide = Avx2.ConvertToVector256Int32(groupScales + 8 * h);
                var scalePairs = ((wide & Vector256.Create(0xFFFF)) | (wide << 16)).AsInt16();
                var ql0 = Vector256.Load(w + Q6_KBlock.Ql + 64 * h);
                var ql1 = Vector256.Load(w + Q6_KBlock.Ql + 64 * h + 32);
                var qh = Vector256.Load(w + Q6_KBlock.Qh + 32 * h).AsUInt16();
                var q1 = (ql0 & nibble) | ((qh << 4).AsByte() & bits45);
                var q2 = (ql1 & nibble) | ((qh << 2).AsByte() & bits45);
                var q3 = ((ql0.AsUInt16() >>> 4).AsByte() & nibble) | (qh.AsByte() & bits45);
                var q4 = ((ql1.AsUInt16() >>> 4).AsByte() & nibble) | ((qh >>> 2).AsByte() & bits45);
                sums += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.Load(x)), Avx2.PermuteVar8x32(scalePairs.AsInt32(), Vector256.Create(0, 0, 0, 0, 1, 1, 1, 1)).AsInt16());
                sums += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.Load(x + 32)), Avx2.PermuteVar8x32(scalePairs.AsInt32(), Vector256.Create(2, 2, 2, 2, 3, 3, 3, 3)).AsInt16());
                sums += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.Load(x + 64)), Avx2.PermuteVar8x32(scalePairs.AsInt32(), Vector256.Create(4, 4, 4, 4, 5, 5, 5, 5)).AsInt16());
                sums += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4, Vector256.Load(x + 96)), Avx2.PermuteVar8x32(scalePairs.AsInt32(), Vector256.Create(6, 6, 6, 6, 7, 7, 7, 7)).AsInt16());
            }
            var offset = Avx2.MultiplyAddAdjacent(scales, Vector256.Load((short*)(xq + Q8_KBlock.BSums)));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums - (offset << 5)), Vector256.Create(d), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <param name="w">blocks Q6_K blocks</param>
    /// <param name="ahead">bytes from w to the next row, prefetched meanwhile (0: none)</param>
    /// <param name="xq">blocks Q8_K blocks</param>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row128(byte* w, long ahead, byte* xq, int blocks)
    {
        var acc = Vector128<float>.Zero;
        var nibble = Vector128.Create((byte)0x0F);
        var bits45 = Vector128.Create((byte)0x30);
        for (int b = 0; b < blocks; b++, w += Q6_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            Sse.Prefetch0(w + ahead + 128);
            Sse.Prefetch0(w + ahead + 192);
            float d = Fp16.ToSingle(*(ushort*)(w + Q6_KBlock.D)) * *(float*)(xq + Q8_KBlock.D);
            sbyte* sc = (sbyte*)(w + Q6_KBlock.Scales);
            short* bsums = (short*)(xq + Q8_KBlock.BSums);
            var offset = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Vector128.Load(sc)), Vector128.Load(bsums))
                       + Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Vector128.Load(sc + 8)), Vector128.Load(bsums + 8));
            var sums = Vector128<int>.Zero;
            for (int h = 0; h < 2; h++)
            {
                for (int l = 0; l < 32; l += 16)
                {
                    var a = Vector128.Load(w + Q6_KBlock.Ql + 64 * h + l);
                    var c = Vector128.Load(w + Q6_KBlock.Ql + 64 * h + 32 + l);
                    var qh = Vector128.Load(w + Q6_KBlock.Qh + 32 * h + l).AsUInt16();
                    var q1 = (a & nibble) | ((qh << 4).AsByte() & bits45);
                    var q2 = (c & nibble) | ((qh << 2).AsByte() & bits45);
                    var q3 = ((a.AsUInt16() >>> 4).AsByte() & nibble) | (qh.AsByte() & bits45);
                    var q4 = ((c.AsUInt16() >>> 4).AsByte() & nibble) | ((qh >>> 2).AsByte() & bits45);
                    int g = 8 * h + l / 16;
                    sbyte* x = (sbyte*)(xq + Q8_KBlock.Qs) + 128 * h + l;
                    sums += Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(q1, Vector128.Load(x)), Vector128.Create((short)sc[g]));
                    sums += Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(q2, Vector128.Load(x + 32)), Vector128.Create((short)sc[g + 2]));
                    sums += Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(q3, Vector128.Load(x + 64)), Vector128.Create((short)sc[g + 4]));
                    sums += Sse2.MultiplyAddAdjacent(Ssse3.MultiplyAddAdjacent(q4, Vector128.Load(x + 96)), Vector128.Create((short)sc[g + 6]));
                }
            }
            acc += Sse2.ConvertToVector128Single(sums - (offset << 5)) * Vector128.Create(d);
        }
        return Vector128.Sum(acc);
    }
}
