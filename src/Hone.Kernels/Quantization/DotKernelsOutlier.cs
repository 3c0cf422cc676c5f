using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Hone.Tensors.Quantization;

/// <summary>
/// AVX2 kernels for Hone's outlier-aware types hq3_o / hq4_o (<see cref="OutlierBlock"/>): the dot product of a weight
/// row with Q8_0 activations and dequantization, twins of <see cref="OutlierQuantization.DotRow"/> and
/// <see cref="OutlierQuantization.DequantizeRow"/>. A 32-element half of a block (groups 2h and 2h+1, one Q8_0
/// activation block) unpacks to 32 bytes in one register: hq4_o's nibbles by one shift, hq3_o's 2+1-bit planes by
/// per-qword variable shifts (vpsrlvq) of the broadcast planes. Σ q·x is exact int32 (vpmaddubsw, then vpmaddwd with
/// each group's 4-bit scale), Σ x the same with ones and the 4-bit mins, both with the slots' elements masked out (one
/// compare per slot); each used slot then adds value·dy·x, one scalar multiply-add. The AVX-512 level runs these
/// 256-bit loops (as the Q4_K dot does); the SSSE3 level runs the scalar twin.
/// </summary>
internal static unsafe class DotKernelsOutlier
{
    public static void Run(SimdLevel level, TensorType type, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        int blocks = n / OutlierBlock.Elements;
        if (level < SimdLevel.Vector256)
        {
            for (int r = 0; r < rows; r++) y[r] = OutlierQuantization.DotRow(type, weights + r * rowBytes, xq, blocks);
            return;
        }
        // The activation scales as floats once for all rows (each weight block reads two).
        int halves = 2 * blocks;
        float[]? heap = halves > 4096 ? new float[halves] : null;
        Span<float> dy = heap ?? stackalloc float[halves];
        for (int i = 0; i < halves; i++) dy[i] = Fp16.ToSingle(*(ushort*)(xq + i * Q8_0Block.Bytes + Q8_0Block.D));
        fixed (float* dys = dy)
            for (int r = 0; r < rows; r++)
            {
                byte* w = weights + r * rowBytes;
                long ahead = r + 1 < rows ? rowBytes : 0; // prefetch the next row while this one computes
                y[r] = type == TensorType.HQ4_O ? Row256Q4(w, ahead, xq, dys, blocks) : Row256Q3(w, ahead, xq, dys, blocks);
            }
    }

    /// <summary>Quants 32h .. 32h+31 of an hq4_o block, one per byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> QuantsQ4(byte* block, int h) =>
        (Vector256.Load(block + OutlierBlock.Qs).AsUInt16() >>> (4 * h)).AsByte() & Vector256.Create((byte)0x0F);

    /// <summary>Quants 32h .. 32h+31 of an hq3_o block, one per byte: low bits from ql[16] (element j at bits
    /// 2·(j/16) of byte j % 16), high bit from qh[8] (bit j/8 of byte j % 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<byte> QuantsQ3(byte* block, int h)
    {
        var planes = Vector128.Load(block + OutlierBlock.Qs).AsUInt64();
        ulong s = (ulong)(4 * h);
        var low = Avx2.ShiftRightLogicalVariable(Vector256.Create(planes, planes), Vector256.Create(s, s, s + 2, s + 2)).AsByte() & Vector256.Create((byte)3);
        var high = Avx2.ShiftRightLogicalVariable(Vector256.Create(*(ulong*)(block + OutlierBlock.Qs + 16)), Vector256.Create(s, s + 1, s + 2, s + 3)).AsByte()
                   & Vector256.Create((byte)1);
        return low | (high.AsUInt16() << 2).AsByte();
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row256Q4(byte* w, long ahead, byte* xq, float* dys, int blocks) => Row256(true, w, ahead, xq, dys, blocks);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row256Q3(byte* w, long ahead, byte* xq, float* dys, int blocks) => Row256(false, w, ahead, xq, dys, blocks);

    /// <param name="four">hq4_o (else hq3_o); a constant in each caller, so each gets its own loop</param>
    /// <param name="dys">the 2·blocks activation scales as floats</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Row256(bool four, byte* w, long ahead, byte* xq, float* dys, int blocks)
    {
        int blockBytes = four ? 46 : 38, index = four ? 40 : 32;
        var acc = Vector256<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        float corrections = 0;
        var lanes = Vector256.Create((byte)0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
        for (int b = 0; b < blocks; b++, w += blockBytes, xq += 2 * Q8_0Block.Bytes, dys += 2)
        {
            Sse.Prefetch0(w + ahead);
            // d and dmin in one conversion
            var scales = Fp16.ToSingle(Sse41.ConvertToVector128Int32(Vector128.CreateScalar(*(uint*)w).AsUInt16()));
            float d = scales.ToScalar(), dmin = scales.GetElement(1);
            int i0 = w[index], i1 = w[index + 1];
            for (int h = 0; h < 2; h++)
            {
                // the elements a used slot names drop out of both integer sums (255 and 64..254 match no lane)
                var outliers = Vector256.Equals(lanes, Vector256.Create((byte)(i0 - 32 * h))) | Vector256.Equals(lanes, Vector256.Create((byte)(i1 - 32 * h)));
                var q = Vector256.AndNot(four ? QuantsQ4(w, h) : QuantsQ3(w, h), outliers);
                var ones = Vector256.AndNot(Vector256.Create((byte)1), outliers);
                var x = Vector256.Load((sbyte*)(xq + h * Q8_0Block.Bytes + Q8_0Block.Qs));
                int s0 = w[OutlierBlock.Stats + 2 * h], s1 = w[OutlierBlock.Stats + 2 * h + 1];
                var groupScales = Vector256.Create(Vector128.Create((short)(s0 & 0xF)), Vector128.Create((short)(s1 & 0xF)));
                var groupMins = Vector256.Create(Vector128.Create((short)(s0 >> 4)), Vector128.Create((short)(s1 >> 4)));
                var products = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, x), groupScales);
                var sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(ones, x), groupMins);
                float dy = dys[h];
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), Vector256.Create(d * dy), acc);
                minAcc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(dmin * dy), minAcc);
            }
            if (i0 < OutlierBlock.Elements)
                corrections += Fp16.ToSingle(*(ushort*)(w + index + 2)) * (dys[i0 >> 5] * ((sbyte*)(xq + (i0 >> 5) * Q8_0Block.Bytes + Q8_0Block.Qs))[i0 & 31]);
            if (i1 < OutlierBlock.Elements)
                corrections += Fp16.ToSingle(*(ushort*)(w + index + 4)) * (dys[i1 >> 5] * ((sbyte*)(xq + (i1 >> 5) * Q8_0Block.Bytes + Q8_0Block.Qs))[i1 & 31]);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minAcc) + corrections;
    }

    /// <summary>Bit-identical to <see cref="OutlierQuantization.DequantizeRow"/>: (d·scale)·q − dmin·min per element in
    /// the same float operations (no FMA), then the used slots overwrite their elements.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    public static void Dequantize256(TensorType type, byte* x, float* y, int blocks)
    {
        byte* unpacked = stackalloc byte[32];
        int blockBytes = OutlierBlock.Bytes(type), index = OutlierBlock.Index(type), value = OutlierBlock.Value(type);
        bool four = type == TensorType.HQ4_O;
        for (int b = 0; b < blocks; b++, x += blockBytes, y += OutlierBlock.Elements)
        {
            float d = Fp16.ToSingle(*(ushort*)(x + OutlierBlock.D)), dmin = Fp16.ToSingle(*(ushort*)(x + OutlierBlock.DMin));
            for (int h = 0; h < 2; h++)
            {
                (four ? QuantsQ4(x, h) : QuantsQ3(x, h)).Store(unpacked);
                for (int k = 0; k < 2; k++)
                {
                    int stats = x[OutlierBlock.Stats + 2 * h + k];
                    var dd = Vector256.Create(d * (stats & 0xF));
                    var dm = Vector256.Create(dmin * (stats >> 4));
                    float* o = y + 32 * h + 16 * k;
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(unpacked + 16 * k)) * dd - dm).Store(o);
                    (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(unpacked + 16 * k + 8)) * dd - dm).Store(o + 8);
                }
            }
            for (int s = 0; s < OutlierBlock.Slots; s++)
                if (x[index + s] < OutlierBlock.Elements) y[x[index + s]] = Fp16.ToSingle(*(ushort*)(x + value + 2 * s));
        }
    }
}
