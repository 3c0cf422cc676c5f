using System.Buffers.Binary;

namespace Hone.Tensors.Quantization;

/// <summary>
/// Quantization that weighs each element's rounding error by an importance per column (an importance matrix's mean
/// squared activation of that input column), as ggml's quantizers do when llama-quantize hands them quant_weights:
/// quantize_row_q4_0_impl (make_qx_quants against qw·√(σ² + x²)), quantize_row_q4_K_impl (make_qkx3_quants per
/// 32-element sub-block, then make_qp_quants for the 6-bit scales and mins, weighted by each sub-block's weight sum)
/// and quantize_row_q6_K_impl (make_qx_quants against qw). Q8_0 ignores the weights, as ggml's quantize_q8_0 does.
/// Same C float semantics as <see cref="BlockQuantizationReference"/>. These are different searches from the
/// unweighted reference quantizers (which stay the default, bit for bit): a constant importance gives a valid but
/// not identical encoding; scaling every importance by a power of two gives the identical one.
/// </summary>
public static class WeightedQuantization
{
    const float GroupMaxEps = 1e-15f;

    /// <summary>Quantizes one row of <paramref name="source"/> with one importance per element (a row of a weight
    /// matrix and its columns' importances, same length, a multiple of the block size).</summary>
    public static void QuantizeRow(TensorType type, ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<byte> destination)
    {
        int blocks = BlockQuantization.CheckQuantize(type, source.Length, destination.Length);
        if (importance.Length != source.Length)
            throw new ArgumentException($"{importance.Length} importances for a row of {source.Length} elements");
        switch (type)
        {
            case TensorType.Q8_0:
                BlockQuantizationReference.QuantizeRow(type, source, destination); break;
            case TensorType.Q4_0: QuantizeQ4_0(source, importance, destination, blocks); break;
            case TensorType.Q4_K: QuantizeQ4_K(source, importance, destination, blocks); break;
            case TensorType.Q6_K: QuantizeQ6_K(source, importance, destination, blocks); break;
            case TensorType.HQ3_O:
            case TensorType.HQ4_O: OutlierQuantization.QuantizeRow(type, source, importance, destination); break;
            default: throw new NotSupportedException($"no importance-weighted quantizer for {type.Name()}");
        }
    }

    static int NearestInt(float v) => BlockQuantizationReference.NearestInt(v);
    static float Half(ReadOnlySpan<byte> bytes, int offset) => Fp16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[offset..]));
    static void WriteHalf(Span<byte> bytes, int offset, float value) => BinaryPrimitives.WriteUInt16LittleEndian(bytes[offset..], Fp16.FromSingle(value));

    // ------------------------------------------------------------------ Q4_0

    static void QuantizeQ4_0(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, int blocks)
    {
        float sigma2 = RowSigma2(x);
        for (int b = 0; b < blocks; b++)
            QuantizeQ4_0Block(x.Slice(32 * b, 32), qw.Slice(32 * b, 32), sigma2, y.Slice(Q4_0Block.Bytes * b, Q4_0Block.Bytes), out _);
    }

    /// <summary>Weighted Q4_0's row statistic σ² = Σx²/n over the whole row (each element's weight is qw·√(σ² + x²)).</summary>
    internal static float RowSigma2(ReadOnlySpan<float> x)
    {
        float sumX2 = 0;
        for (int j = 0; j < x.Length; j++) sumX2 += x[j] * x[j];
        return sumX2 / x.Length;
    }

    /// <summary>One weighted Q4_0 block given its row's σ²; <paramref name="iscale"/> is the inverse scale its quants
    /// were rounded with (code = 8 + clamp(nearest(iscale·x), −8, 7)), 0 for an all-zero block (codes 0).</summary>
    internal static void QuantizeQ4_0Block(ReadOnlySpan<float> xb, ReadOnlySpan<float> wb, float sigma2, Span<byte> block, out float iscale)
    {
        Span<float> weight = stackalloc float[32];
        Span<byte> L = stackalloc byte[32];
        for (int j = 0; j < 32; j++) weight[j] = wb[j] * MathF.Sqrt(sigma2 + xb[j] * xb[j]);
        float d = MakeQxQuants(32, 8, xb, L, weight, out iscale);
        WriteHalf(block, Q4_0Block.D, d);
        for (int j = 0; j < 16; j++) block[Q4_0Block.Qs + j] = (byte)(L[j] | (L[j + 16] << 4));
    }

    // ------------------------------------------------------------------ Q6_K

    static void QuantizeQ6_K(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<byte> destination, int blocks)
    {
        for (int b = 0; b < blocks; b++)
            QuantizeQ6_KBlock(source.Slice(Q6_KBlock.Elements * b, Q6_KBlock.Elements), importance.Slice(Q6_KBlock.Elements * b, Q6_KBlock.Elements),
                destination.Slice(Q6_KBlock.Bytes * b, Q6_KBlock.Bytes));
    }

    /// <summary>One weighted Q6_K block: x[256], qw[256].</summary>
    internal static void QuantizeQ6_KBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y)
    {
        Span<byte> L = stackalloc byte[Q6_KBlock.Elements];
        Span<float> scales = stackalloc float[Q6_KBlock.Groups];
        for (int g = 0; g < Q6_KBlock.Groups; g++)
            scales[g] = MakeQxQuants(16, 32, x.Slice(16 * g, 16), L.Slice(16 * g, 16), qw.Slice(16 * g, 16));
        BlockQuantizationReference.PackQ6_KBlock(x, scales, L, y);
    }

    // ------------------------------------------------------------------ Q4_K

    static void QuantizeQ4_K(ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<byte> destination, int blocks)
    {
        for (int b = 0; b < blocks; b++)
            QuantizeQ4_KBlock(source.Slice(Q4_KBlock.Elements * b, Q4_KBlock.Elements), importance.Slice(Q4_KBlock.Elements * b, Q4_KBlock.Elements),
                destination.Slice(Q4_KBlock.Bytes * b, Q4_KBlock.Bytes));
    }

    /// <summary>One weighted Q4_K block: x[256], qw[256].</summary>
    internal static void QuantizeQ4_KBlock(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y)
    {
        Span<byte> L = stackalloc byte[Q4_KBlock.Elements];
        Span<byte> laux = stackalloc byte[32];
        Span<byte> ls = stackalloc byte[Q4_KBlock.SubBlocks];
        Span<byte> lm = stackalloc byte[Q4_KBlock.SubBlocks];
        Span<float> weights = stackalloc float[32];
        Span<float> sw = stackalloc float[Q4_KBlock.SubBlocks];
        Span<float> mins = stackalloc float[Q4_KBlock.SubBlocks];
        Span<float> scales = stackalloc float[Q4_KBlock.SubBlocks];
        float sumX2 = 0;
        for (int l = 0; l < Q4_KBlock.Elements; l++) sumX2 += x[l] * x[l];
        float sigma2 = 2 * sumX2 / Q4_KBlock.Elements;
        for (int j = 0; j < Q4_KBlock.SubBlocks; j++)
        {
            for (int l = 0; l < 32; l++) weights[l] = qw[32 * j + l] * MathF.Sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float sumW = 0;
            for (int l = 0; l < 32; l++) sumW += weights[l];
            sw[j] = sumW;
            scales[j] = MakeQkx3Quants(32, 15, x.Slice(32 * j, 32), weights, L.Slice(32 * j, 32), out mins[j], laux, -0.9f, 0.05f, 36);
        }
        float dBlock = MakeQpQuants(Q4_KBlock.SubBlocks, 63, scales, ls, sw);
        float mBlock = MakeQpQuants(Q4_KBlock.SubBlocks, 63, mins, lm, sw);
        var packed = y.Slice(Q4_KBlock.Scales, 12);
        packed.Clear();
        for (int j = 0; j < Q4_KBlock.SubBlocks; j++)
        {
            if (j < 4)
            {
                packed[j] = ls[j];
                packed[j + 4] = lm[j];
            }
            else
            {
                packed[j + 4] = (byte)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
                packed[j - 4] |= (byte)((ls[j] >> 4) << 6);
                packed[j] |= (byte)((lm[j] >> 4) << 6);
            }
        }
        WriteHalf(y, Q4_KBlock.D, dBlock);
        WriteHalf(y, Q4_KBlock.DMin, mBlock);
        float dAll = Half(y, Q4_KBlock.D), dMinAll = Half(y, Q4_KBlock.DMin);
        for (int j = 0; j < Q4_KBlock.SubBlocks; j++)
        {
            var (sc, m) = BlockQuantizationReference.ScaleMinK4(j, packed);
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

    // ------------------------------------------------------------------ ggml's search helpers, weighted

    /// <summary>ggml's make_qx_quants with rmse_type 1 and importance weights <paramref name="w"/>: a symmetric fit
    /// x ≈ scale·(L − nmax), trying inverse scales −(nmax + 0.1·i)/max for i in −9..9.</summary>
    internal static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<byte> L, ReadOnlySpan<float> w) =>
        MakeQxQuants(n, nmax, x, L, w, out _);

    /// <param name="bestIscale">the inverse scale the returned quants were rounded with: L = nmax + clamp(nearest(bestIscale·x),
    /// −nmax, nmax−1); 0 for an all-zero group (L all 0)</param>
    internal static float MakeQxQuants(int n, int nmax, ReadOnlySpan<float> x, Span<byte> L, ReadOnlySpan<float> w, out float bestIscale)
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
            bestIscale = 0;
            return 0;
        }
        float iscale = -nmax / max;
        bestIscale = iscale;
        float sumLX = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            L[i] = (byte)(l + nmax);
            sumLX += w[i] * x[i] * l;
            sumL2 += w[i] * l * l;
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
                sumLX += w[i] * x[i] * l;
                sumL2 += w[i] * l * l;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                    L[i] = (byte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i]))));
                bestIscale = iscale;
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }

    /// <summary>ggml's make_qkx3_quants (squared error, weights given): an asymmetric fit x ≈ scale·L − theMin.</summary>
    internal static float MakeQkx3Quants(int n, int nmax, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> L,
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
        if (max <= min)
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
            bestError += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < n; i++)
            {
                float v = iscale * (x[i] - min);
                int l = v > 0 ? NearestInt(MathF.Min(v, nmax)) : 0;
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
                    error += weights[i] * (diff * diff);
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

    /// <summary>ggml's make_qp_quants: non-negative values x ≈ scale·L (L in 0..nmax), weighted, with a few rounds of
    /// coordinate descent on L. Used for a K-quant super-block's scales and mins.</summary>
    internal static float MakeQpQuants(int n, int nmax, ReadOnlySpan<float> x, Span<byte> L, ReadOnlySpan<float> w)
    {
        float max = 0;
        for (int i = 0; i < n; i++) max = Math.Max(max, x[i]);
        if (max < GroupMaxEps)
        {
            L.Slice(0, n).Clear();
            return 0;
        }
        float iscale = nmax / max;
        for (int i = 0; i < n; i++) L[i] = unchecked((byte)NearestInt(iscale * x[i]));
        float scale = 1 / iscale;
        float bestMse = 0;
        for (int i = 0; i < n; i++)
        {
            float diff = x[i] - scale * L[i];
            bestMse += w[i] * diff * diff;
        }
        for (int step = -4; step <= 4; step++)
        {
            if (step == 0) continue;
            float iscaleStep = (0.1f * step + nmax) / max;
            float scaleStep = 1 / iscaleStep;
            float mse = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Min(nmax, NearestInt(iscaleStep * x[i]));
                float diff = x[i] - scaleStep * l;
                mse += w[i] * diff * diff;
            }
            if (mse < bestMse)
            {
                bestMse = mse;
                iscale = iscaleStep;
            }
        }
        float sumLX = 0, sumL2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Min(nmax, NearestInt(iscale * x[i]));
            L[i] = unchecked((byte)l);
            sumLX += w[i] * x[i] * l;
            sumL2 += w[i] * l * l;
        }
        for (int attempt = 0; attempt < 5; attempt++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float slx = sumLX - w[i] * x[i] * L[i];
                float sl2 = sumL2 - w[i] * L[i] * L[i];
                if (slx > 0 && sl2 > 0)
                {
                    int newL = Math.Min(nmax, NearestInt(x[i] * sl2 / slx));
                    if (newL != L[i])
                    {
                        slx += w[i] * x[i] * newL;
                        sl2 += w[i] * newL * newL;
                        if (slx * slx * sumL2 > sumLX * sumLX * sl2)
                        {
                            L[i] = unchecked((byte)newL);
                            sumLX = slx;
                            sumL2 = sl2;
                            changed++;
                        }
                    }
                }
            }
            if (changed == 0) break;
        }
        return sumL2 > 0 ? sumLX / sumL2 : 0f;
    }
}
