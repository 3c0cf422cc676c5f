using System.Diagnostics;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Hone.Tensors.Quantization;

/// <summary>
/// Plain scalar twins of <see cref="BlockQuantization"/>: the definition the SIMD kernels are tested against.
/// Quantizers follow ggml's reference algorithms (quantize_row_*_ref in ggml-quants.c) with C float semantics taken
/// literally: every operation rounds to float32 in source order, sums run left to right, nothing is fused into an FMA.
/// (That is what MSVC and clang builds of ggml compute; a GCC build with FMA contracts e.g. Q4_0's x·id + 8.5 into one
/// rounding, which can move a value sitting exactly on a rounding boundary — gguf-py notes the same.)
/// Dot products sum each block's integer products exactly and combine the blocks in float, as ggml's generic code does.
/// </summary>
public static unsafe class BlockQuantizationReference
{
    const float GroupMaxEps = 1e-15f; // ggml's GROUP_MAX_EPS: below it a group counts as all zero

    public static void QuantizeRow(TensorType type, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int blocks = BlockQuantization.CheckQuantize(type, source.Length, destination.Length);
        if (OutlierBlock.IsOutlierType(type)) { OutlierQuantization.QuantizeRow(type, source, default, destination); return; }
        for (int b = 0; b < blocks; b++)
        {
            var x = source.Slice(b * type.Traits().BlockSize, type.Traits().BlockSize);
            var y = destination.Slice(b * type.Traits().BlockBytes, type.Traits().BlockBytes);
            switch (type)
            {
                case TensorType.Q8_0: QuantizeQ8_0Block(x, y); break;
                case TensorType.Q4_0: QuantizeQ4_0Block(x, y); break;
                case TensorType.Q4_K: QuantizeQ4_KBlock(x, y); break;
                case TensorType.Q6_K: QuantizeQ6_KBlock(x, y); break;
                case TensorType.Q8_K: QuantizeQ8_KBlock(x, y); break;
                default: throw new UnreachableException();
            }
        }
    }

    public static void DequantizeRow(TensorType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int blocks = BlockQuantization.CheckDequantize(type, source.Length, destination.Length);
        if (OutlierBlock.IsOutlierType(type))
        {
            fixed (byte* x = source)
            fixed (float* y = destination)
                OutlierQuantization.DequantizeRow(type, x, y, blocks);
            return;
        }
        for (int b = 0; b < blocks; b++)
        {
            var x = source.Slice(b * type.Traits().BlockBytes, type.Traits().BlockBytes);
            var y = destination.Slice(b * type.Traits().BlockSize, type.Traits().BlockSize);
            switch (type)
            {
                case TensorType.Q8_0: DequantizeQ8_0Block(x, y); break;
                case TensorType.Q4_0: DequantizeQ4_0Block(x, y); break;
                case TensorType.Q4_K: DequantizeQ4_KBlock(x, y); break;
                case TensorType.Q6_K: DequantizeQ6_KBlock(x, y); break;
                case TensorType.Q8_K: DequantizeQ8_KBlock(x, y); break;
                default: throw new UnreachableException();
            }
        }
    }

    public static TensorType DotType(TensorType weightType) => BlockQuantization.DotType(weightType);

    public static void QuantizeForDot(TensorType weightType, ReadOnlySpan<float> x, Span<byte> destination) =>
        QuantizeRow(DotType(weightType), x, destination);

    /// <summary>y[r] = Σ_k W[r,k]·x[k]; see <see cref="BlockQuantization.DotRows"/>.</summary>
    public static void DotRows(TensorType weightType, byte* weights, long rowBytes, int rows, byte* xq, int n, float* y)
    {
        int blocks = BlockQuantization.CheckDot(weightType, rowBytes, rows, n);
        for (int r = 0; r < rows; r++)
        {
            byte* w = weights + r * rowBytes;
            y[r] = weightType switch
            {
                TensorType.Q8_0 => DotQ8_0(w, xq, blocks),
                TensorType.Q4_0 => DotQ4_0(w, xq, blocks),
                TensorType.Q4_K => DotQ4_K(w, xq, blocks),
                TensorType.Q6_K => DotQ6_K(w, xq, blocks),
                TensorType.HQ3_O or TensorType.HQ4_O => OutlierQuantization.DotRow(weightType, w, xq, blocks),
                _ => throw new UnreachableException(),
            };
        }
    }

    // ------------------------------------------------------------------ helpers

    /// <summary>ggml's nearest_int: adding 1.5·2^23 leaves round-half-to-even of the value in the low mantissa bits.</summary>
    internal static int NearestInt(float value)
    {
        int bits = BitConverter.SingleToInt32Bits(value + 12582912f);
        return (bits & 0x007FFFFF) - 0x00400000;
    }

    static float Half(ReadOnlySpan<byte> bytes, int offset) => Fp16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[offset..]));

    static void WriteHalf(Span<byte> bytes, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[offset..], Fp16.FromSingle(value));

    /// <summary>ggml's get_scale_min_k4: 6-bit scale and min of sub-block <paramref name="j"/> from the 12 packed bytes.</summary>
    internal static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    // ------------------------------------------------------------------ Q8_0

    static void QuantizeQ8_0Block(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0;
        for (int j = 0; j < Q8_0Block.Elements; j++)
        {
            float a = MathF.Abs(x[j]);
            amax = amax > a ? amax : a;
        }
        float d = amax / 127;
        float id = d != 0 ? 1f / d : 0f;
        WriteHalf(y, Q8_0Block.D, d);
        for (int j = 0; j < Q8_0Block.Elements; j++)
            y[Q8_0Block.Qs + j] = (byte)(sbyte)(int)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero); // C roundf
    }

    static void DequantizeQ8_0Block(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, Q8_0Block.D);
        for (int j = 0; j < Q8_0Block.Elements; j++) y[j] = (sbyte)x[Q8_0Block.Qs + j] * d;
    }

    static float DotQ8_0(byte* w, byte* xq, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, w += Q8_0Block.Bytes, xq += Q8_0Block.Bytes)
        {
            int products = 0;
            for (int j = 0; j < Q8_0Block.Elements; j++)
                products += (sbyte)w[Q8_0Block.Qs + j] * (sbyte)xq[Q8_0Block.Qs + j];
            sum += products * (Fp16.ToSingle(*(ushort*)(w + Q8_0Block.D)) * Fp16.ToSingle(*(ushort*)(xq + Q8_0Block.D)));
        }
        return sum;
    }

    // ------------------------------------------------------------------ Q4_0

    static void QuantizeQ4_0Block(ReadOnlySpan<float> x, Span<byte> y)
    {
        // the signed value of largest magnitude (first one on ties) maps to −8, so the full range −8..7 is used
        float amax = 0, max = 0;
        for (int j = 0; j < Q4_0Block.Elements; j++)
        {
            if (amax < MathF.Abs(x[j])) { amax = MathF.Abs(x[j]); max = x[j]; }
        }
        float d = max / -8;
        float id = d != 0 ? 1f / d : 0f;
        WriteHalf(y, Q4_0Block.D, d);
        for (int j = 0; j < Q4_0Block.Elements / 2; j++)
        {
            float x0 = x[j] * id;
            float x1 = x[Q4_0Block.Elements / 2 + j] * id;
            int q0 = Math.Min(15, (int)(x0 + 8.5f)); // C: MIN(15, (int8_t)(x0 + 8.5f)), truncation toward zero
            int q1 = Math.Min(15, (int)(x1 + 8.5f));
            y[Q4_0Block.Qs + j] = (byte)(q0 | (q1 << 4));
        }
    }

    static void DequantizeQ4_0Block(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, Q4_0Block.D);
        for (int j = 0; j < Q4_0Block.Elements / 2; j++)
        {
            y[j] = ((x[Q4_0Block.Qs + j] & 0xF) - 8) * d;
            y[j + Q4_0Block.Elements / 2] = ((x[Q4_0Block.Qs + j] >> 4) - 8) * d;
        }
    }

    static float DotQ4_0(byte* w, byte* xq, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, w += Q4_0Block.Bytes, xq += Q8_0Block.Bytes)
        {
            int products = 0;
            for (int j = 0; j < Q4_0Block.Elements / 2; j++)
            {
                int q = w[Q4_0Block.Qs + j];
                products += ((q & 0xF) - 8) * (sbyte)xq[Q8_0Block.Qs + j];
                products += ((q >> 4) - 8) * (sbyte)xq[Q8_0Block.Qs + j + 16];
            }
            sum += products * (Fp16.ToSingle(*(ushort*)(w + Q4_0Block.D)) * Fp16.ToSingle(*(ushort*)(xq + Q8_0Block.D)));
        }
        return sum;
    }

    // ------------------------------------------------------------------ Q8_K

    static void QuantizeQ8_KBlock(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0, max = 0;
        for (int j = 0; j < Q8_KBlock.Elements; j++)
        {
            float a = MathF.Abs(x[j]);
            if (a > amax) { amax = a; max = x[j]; }
        }
        y.Slice(0, Q8_KBlock.Bytes).Clear();
        if (amax == 0) return; // d = 0, quants and sums 0
        float iscale = -127f / max;
        for (int j = 0; j < Q8_KBlock.Elements; j++)
            y[Q8_KBlock.Qs + j] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * x[j]));
        for (int g = 0; g < Q8_KBlock.Elements / 16; g++)
        {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += (sbyte)y[Q8_KBlock.Qs + 16 * g + j];
            BinaryPrimitives.WriteInt16LittleEndian(y[(Q8_KBlock.BSums + 2 * g)..], (short)sum);
        }
        BinaryPrimitives.WriteSingleLittleEndian(y[Q8_KBlock.D..], 1 / iscale);
    }

    static void DequantizeQ8_KBlock(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = BinaryPrimitives.ReadSingleLittleEndian(x[Q8_KBlock.D..]);
        for (int j = 0; j < Q8_KBlock.Elements; j++) y[j] = (sbyte)x[Q8_KBlock.Qs + j] * d;
    }

    // ------------------------------------------------------------------ Q4_K

    /// <summary>
    /// ggml's make_qkx2_quants: fits x ≈ scale·L − theMin (L in 0..nmax, theMin ≥ 0) minimising the weighted squared
    /// error over nstep+1 trial inverse scales (rmin + rdelta·i + nmax)/(max − min), refining scale and min by least
    /// squares at each trial. Returns the scale; L holds the chosen levels.
    /// </summary>
    internal static float MakeQkx2Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> L,
        out float theMin, Span<byte> laux, float rmin, float rdelta, int nstep)
    {
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0) min = 0;
        if (max == min)
        {
            L.Slice(0, n).Clear();
            theMin = -min;
            return 0;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            L[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * L[i] + min - x[i];
            diff *= diff;
            bestError += weights[i] * diff;
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(0, Math.Min(nmax, NearestInt(iscale * (x[i] - min))));
                laux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / D;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / D;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * laux[i] + thisMin - x[i];
                    diff *= diff;
                    error += weights[i] * diff;
                }
                if (error < bestError)
                {
                    laux.Slice(0, n).CopyTo(L);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    static void QuantizeQ4_KBlock(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> L = stackalloc byte[Q4_KBlock.Elements];
        Span<byte> laux = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> mins = stackalloc float[Q4_KBlock.SubBlocks];
        Span<float> scales = stackalloc float[Q4_KBlock.SubBlocks];
        float maxScale = 0, maxMin = 0; // deducting the min keeps scales positive
        for (int j = 0; j < Q4_KBlock.SubBlocks; j++)
        {
            var xs = x.Slice(32 * j, 32);
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += xs[l] * xs[l];
            float avX = MathF.Sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + MathF.Abs(xs[l]);
            scales[j] = MakeQkx2Quants(32, 15, xs, weights, L.Slice(32 * j, 32), out mins[j], laux, -1f, 0.1f, 20);
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }

        float invScale = maxScale > 0 ? 63f / maxScale : 0f;
        float invMin = maxMin > 0 ? 63f / maxMin : 0f;
        var packed = y.Slice(Q4_KBlock.Scales, 12);
        packed.Clear();
        for (int j = 0; j < Q4_KBlock.SubBlocks; j++)
        {
            byte ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j])); // C: uint8_t wraps, then MIN(63, .)
            byte lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                packed[j] = ls;
                packed[j + 4] = lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }
        WriteHalf(y, Q4_KBlock.D, maxScale / 63f);
        WriteHalf(y, Q4_KBlock.DMin, maxMin / 63f);

        // requantize against the scales as stored (fp16 d, 6-bit factors)
        float dAll = Half(y, Q4_KBlock.D), dMinAll = Half(y, Q4_KBlock.DMin);
        for (int j = 0; j < Q4_KBlock.SubBlocks; j++)
        {
            var (sc, m) = ScaleMinK4(j, packed);
            float d = dAll * sc;
            if (d == 0) continue;
            float dm = dMinAll * m;
            for (int i = 0; i < 32; i++)
                L[32 * j + i] = (byte)Math.Max(0, Math.Min(15, NearestInt((x[32 * j + i] + dm) / d)));
        }

        var qs = y.Slice(Q4_KBlock.Qs, 128);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                qs[32 * c + l] = (byte)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }

    static void DequantizeQ4_KBlock(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, Q4_KBlock.D), dmin = Half(x, Q4_KBlock.DMin);
        var packed = x.Slice(Q4_KBlock.Scales, 12);
        for (int c = 0; c < 4; c++)
        {
            var (sc0, m0) = ScaleMinK4(2 * c, packed);
            var (sc1, m1) = ScaleMinK4(2 * c + 1, packed);
            float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
            for (int l = 0; l < 32; l++)
            {
                int q = x[Q4_KBlock.Qs + 32 * c + l];
                y[64 * c + l] = d0 * (q & 0xF) - min0;
                y[64 * c + 32 + l] = d1 * (q >> 4) - min1;
            }
        }
    }

    static float DotQ4_K(byte* w, byte* xq, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, w += Q4_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            var packed = new ReadOnlySpan<byte>(w + Q4_KBlock.Scales, 12);
            sbyte* yq = (sbyte*)(xq + Q8_KBlock.Qs);
            short* bsums = (short*)(xq + Q8_KBlock.BSums);
            int scaled = 0, minTerm = 0;
            for (int s = 0; s < Q4_KBlock.SubBlocks; s++)
            {
                var (sc, m) = ScaleMinK4(s, packed);
                int products = 0;
                byte* q = w + Q4_KBlock.Qs + 32 * (s / 2);
                int shift = 4 * (s & 1);
                for (int l = 0; l < 32; l++) products += ((q[l] >> shift) & 0xF) * yq[32 * s + l];
                scaled += sc * products;
                minTerm += m * (bsums[2 * s] + bsums[2 * s + 1]);
            }
            float dy = *(float*)(xq + Q8_KBlock.D);
            float d = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.D)) * dy;
            float dmin = Fp16.ToSingle(*(ushort*)(w + Q4_KBlock.DMin)) * dy;
            sum += d * scaled - dmin * minTerm;
        }
        return sum;
    }

    // ------------------------------------------------------------------ Q6_K

    /// <summary>
    /// ggml's make_qx_quants with rmse_type 1 and no importance weights: a symmetric fit x ≈ scale·(L − nmax) with
    /// weights x², trying inverse scales −(nmax + 0.1·i)/max for i in −9..9. L holds levels in 0 .. 2·nmax−1.
    /// </summary>
    internal static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<byte> L)
    {
        float max = 0, amax = 0;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax) { amax = ax; max = x[i]; }
        }
        if (amax < GroupMaxEps)
        {
            L.Slice(0, n).Clear();
            return 0;
        }
        float iscale = -nmax / max;
        float sumLX = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            L[i] = (byte)(l + nmax);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0 ? sumLX / sumL2 : 0f;
        float best = scale * sumLX;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0) continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = sumL2 = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
                float w = x[i] * x[i];
                sumLX += w * x[i] * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                    L[i] = (byte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i]))));
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }

    static void QuantizeQ6_KBlock(ReadOnlySpan<float> x, Span<byte> y)
    {
        Span<byte> L = stackalloc byte[Q6_KBlock.Elements];
        Span<float> scales = stackalloc float[Q6_KBlock.Groups];
        for (int g = 0; g < Q6_KBlock.Groups; g++)
            scales[g] = MakeQxQuants(16, 32, x.Slice(16 * g, 16), L.Slice(16 * g, 16));
        PackQ6_KBlock(x, scales, L, y);
    }

    /// <summary>
    /// The rest of a Q6_K block once each group of 16 has its scale (from make_qx_quants, plain or importance-weighted):
    /// the super-block scale from the largest group scale, the 8-bit group scales, each element requantized against its
    /// group's rounded scale (a group whose scale rounds to 0 keeps the quants in <paramref name="L"/>), all packed.
    /// </summary>
    /// <param name="x">[256] the block's values</param>
    /// <param name="scales">[16] the groups' scales</param>
    /// <param name="L">[256] the quants make_qx_quants left (0..63), overwritten where requantized</param>
    internal static void PackQ6_KBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> scales, Span<byte> L, Span<byte> y)
    {
        float maxScale = 0, maxAbsScale = 0;
        for (int g = 0; g < Q6_KBlock.Groups; g++)
        {
            float a = MathF.Abs(scales[g]);
            if (a > maxAbsScale) { maxAbsScale = a; maxScale = scales[g]; }
        }
        y.Slice(0, Q6_KBlock.Bytes).Clear();
        if (maxAbsScale < GroupMaxEps) return; // all-zero block, d = 0

        float iscale = -128f / maxScale;
        WriteHalf(y, Q6_KBlock.D, 1 / iscale);
        for (int g = 0; g < Q6_KBlock.Groups; g++)
            y[Q6_KBlock.Scales + g] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[g]));

        float dAll = Half(y, Q6_KBlock.D);
        for (int g = 0; g < Q6_KBlock.Groups; g++)
        {
            float d = dAll * (sbyte)y[Q6_KBlock.Scales + g];
            if (d == 0) continue;
            for (int i = 0; i < 16; i++)
                L[16 * g + i] = (byte)(Math.Max(-32, Math.Min(31, NearestInt(x[16 * g + i] / d))) + 32);
        }

        for (int h = 0; h < 2; h++)
        {
            var ql = y.Slice(Q6_KBlock.Ql + 64 * h, 64);
            var qh = y.Slice(Q6_KBlock.Qh + 32 * h, 32);
            var Lh = L.Slice(128 * h, 128);
            for (int l = 0; l < 32; l++)
            {
                ql[l] = (byte)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (byte)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (byte)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
    }

    /// <summary>The 6-bit quant (0..63) of element <paramref name="i"/> of a Q6_K block.</summary>
    internal static int Q6_KQuant(ReadOnlySpan<byte> block, int i)
    {
        int h = i / 128, k = i % 128 / 32, l = i % 32;
        int low = block[Q6_KBlock.Ql + 64 * h + l + 32 * (k & 1)] >> (4 * (k >> 1)) & 0xF;
        int high = block[Q6_KBlock.Qh + 32 * h + l] >> (2 * k) & 3;
        return low | (high << 4);
    }

    static void DequantizeQ6_KBlock(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = Half(x, Q6_KBlock.D);
        for (int i = 0; i < Q6_KBlock.Elements; i++)
            y[i] = d * (sbyte)x[Q6_KBlock.Scales + i / 16] * (Q6_KQuant(x, i) - 32); // C: d * sc * q, left to right
    }

    static float DotQ6_K(byte* w, byte* xq, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, w += Q6_KBlock.Bytes, xq += Q8_KBlock.Bytes)
        {
            var block = new ReadOnlySpan<byte>(w, Q6_KBlock.Bytes);
            sbyte* yq = (sbyte*)(xq + Q8_KBlock.Qs);
            int scaled = 0;
            for (int g = 0; g < Q6_KBlock.Groups; g++)
            {
                int products = 0;
                for (int l = 0; l < 16; l++) products += (Q6_KQuant(block, 16 * g + l) - 32) * yq[16 * g + l];
                scaled += (sbyte)w[Q6_KBlock.Scales + g] * products;
            }
            float d = Fp16.ToSingle(*(ushort*)(w + Q6_KBlock.D)) * *(float*)(xq + Q8_KBlock.D);
            sum += d * scaled;
        }
        return sum;
    }
}
