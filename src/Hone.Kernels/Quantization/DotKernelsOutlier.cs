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
/// each group's 4-bit scale), Σ x the same with ones and the 4-bit mins; the two outlier slots are scalar corrections.
/// The AVX-512 level runs these 256-bit loops (as the Q4_K dot does); the SSSE3 level runs the scalar twin.
/// </summary>
internal static unsafe class DotKernelsOutlier
{
    public static void Run(SimdLevel level, TensorType type, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        int blocks = n / OutlierBlock.Elements;
        for (int r = 0; r < rows; r++)
        {
            byte* w = weights + r * rowBytes;
            y[r] = level switch
            {
                >= SimdLevel.Vector256 => type == TensorType.HQ4_O ? Row256Q4(w, xq, blocks) : Row256Q3(w, xq, blocks),
                SimdLevel.Vector128 => OutlierQuantization.DotRow(type, w, xq, blocks),
                _ => throw new UnreachableException(),
            };
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
    static float Row256Q4(byte* w, byte* xq, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        float corrections = 0;
        for (int b = 0; b < blocks; b++, w += 46, xq += 2 * Q8_0Block.Bytes)
        {
            Half256(QuantsQ4(w, 0), w, 0, xq, ref acc, ref minAcc);
            Half256(QuantsQ4(w, 1), w, 1, xq, ref acc, ref minAcc);
            corrections += Corrections(TensorType.HQ4_O, w, xq);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minAcc) + corrections;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static float Row256Q3(byte* w, byte* xq, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var minAcc = Vector256<float>.Zero;
        float corrections = 0;
        for (int b = 0; b < blocks; b++, w += 38, xq += 2 * Q8_0Block.Bytes)
        {
            Half256(QuantsQ3(w, 0), w, 0, xq, ref acc, ref minAcc);
            Half256(QuantsQ3(w, 1), w, 1, xq, ref acc, ref minAcc);
            corrections += Corrections(TensorType.HQ3_O, w, xq);
        }
        return Vector256.Sum(acc) - Vector256.Sum(minAcc) + corrections;
    }

    /// <summary>Half h of a block against its Q8_0 activation block: acc += (d·dy)·Σ scale·q·x, minAcc += (dmin·dy)·Σ min·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Half256(Vector256<byte> q, byte* w, int h, byte* xq, ref Vector256<float> acc, ref Vector256<float> minAcc)
    {
        byte* xb = xq + h * Q8_0Block.Bytes;
        var x = Vector256.Load((sbyte*)(xb + Q8_0Block.Qs));
        float dy = Fp16.ToSingle(*(ushort*)(xb + Q8_0Block.D));
        int s0 = w[OutlierBlock.Stats + 2 * h], s1 = w[OutlierBlock.Stats + 2 * h + 1];
        var scales = Vector256.Create(Vector128.Create((short)(s0 & 0xF)), Vector128.Create((short)(s1 & 0xF)));
        var mins = Vector256.Create(Vector128.Create((short)(s0 >> 4)), Vector128.Create((short)(s1 >> 4)));
        var products = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, x), scales);
        var sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), x), mins);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), Vector256.Create(Fp16.ToSingle(*(ushort*)(w + OutlierBlock.D)) * dy), acc);
        minAcc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(Fp16.ToSingle(*(ushort*)(w + OutlierBlock.DMin)) * dy), minAcc);
    }

    /// <summary>Σ over used slots of (value − dequantized quant)·(dy·x) at the slot's element, as the scalar twin computes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Corrections(TensorType type, byte* w, byte* xq)
    {
        int index = OutlierBlock.Index(type), value = OutlierBlock.Value(type);
        float sum = 0;
        for (int s = 0; s < OutlierBlock.Slots; s++)
        {
            int j = w[index + s];
            if (j >= OutlierBlock.Elements) continue;
            float d = Fp16.ToSingle(*(ushort*)(w + OutlierBlock.D)), dmin = Fp16.ToSingle(*(ushort*)(w + OutlierBlock.DMin));
            int stats = w[OutlierBlock.Stats + j / OutlierBlock.GroupSize];
            float quantized = d * (stats & 0xF) * OutlierQuantization.Quant(type, w, j) - dmin * (stats >> 4);
            byte* xb = xq + j / 32 * Q8_0Block.Bytes;
            float dy = Fp16.ToSingle(*(ushort*)(xb + Q8_0Block.D));
            sum += (Fp16.ToSingle(*(ushort*)(w + value + 2 * s)) - quantized) * (dy * ((sbyte*)(xb + Q8_0Block.Qs))[j % 32]);
        }
        return sum;
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
