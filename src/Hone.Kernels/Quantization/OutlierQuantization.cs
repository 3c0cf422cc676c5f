using System.Buffers.Binary;

namespace Hone.Tensors.Quantization;

/// <summary>
/// The outlier-aware types hq3_o and hq4_o (<see cref="OutlierBlock"/>), in the spirit of SpQR (Dettmers et al. 2023):
/// each block of 64 weights is fitted as 4 groups of 16 at 3 or 4 bits (scale and min per group, themselves stored in
/// 4 bits against the block's fp16 d and dmin), and up to 2 weights per block whose importance-weighted rounding
/// error imp_j·(w_j − q_j)² is largest are kept exactly (fp16) in outlier slots, the block being refitted without each
/// one as it is taken out (so a removed extreme no longer stretches its group's range). Without importances every
/// weight counts 1. This file is the scalar definition: quantizer (written once per model file, so it is the
/// implementation), dequantizer and dot product that the SIMD kernels (<see cref="Dequantizer"/>,
/// <see cref="DotKernelsOutlier"/>) are tested against, and the block check run when a model is loaded.
/// </summary>
public static unsafe class OutlierQuantization
{
    const int N = OutlierBlock.Elements, G = OutlierBlock.GroupSize;
    const float MaxHalf = 65504f;

    /// <summary>One block's codes before the outlier slots are written.</summary>
    internal sealed class Codes
    {
        public float D, DMin;
        public readonly byte[] Scale = new byte[OutlierBlock.Groups], Min = new byte[OutlierBlock.Groups], Q = new byte[N];

        /// <summary>The dequantized value of element j without outlier slots, in the dequantizer's float operations.</summary>
        public float Value(int j) => D * Scale[j / G] * Q[j] - DMin * Min[j / G];
    }

    // ------------------------------------------------------------------ quantize

    /// <summary>Quantizes a row (a multiple of 64 elements); <paramref name="importance"/> is one weight per element, or
    /// empty for unit weights.</summary>
    public static void QuantizeRow(TensorType type, ReadOnlySpan<float> source, ReadOnlySpan<float> importance, Span<byte> destination)
    {
        int blockBytes = OutlierBlock.Bytes(type);
        if (!importance.IsEmpty && importance.Length != source.Length)
            throw new ArgumentException($"{importance.Length} importances for a row of {source.Length} elements");
        Span<float> unit = stackalloc float[N];
        unit.Fill(1f);
        for (int b = 0; b < source.Length / N; b++)
            QuantizeBlock(type, source.Slice(N * b, N), importance.IsEmpty ? unit : importance.Slice(N * b, N), destination.Slice(blockBytes * b, blockBytes));
    }

    /// <summary>Quantizes one block of 64; returns the elements put in outlier slots, in the order they were taken.</summary>
    internal static int[] QuantizeBlock(TensorType type, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> block)
    {
        Span<bool> excluded = stackalloc bool[N];
        var slots = new List<int>(OutlierBlock.Slots);
        var codes = Fit(type, x, weights, excluded);
        for (int s = 0; s < OutlierBlock.Slots; s++)
        {
            int worst = -1;
            double worstError = 0;
            for (int j = 0; j < N; j++)
            {
                if (excluded[j]) continue;
                double e = WeightedError(x[j], codes.Value(j), weights[j]);
                if (e > worstError) { worstError = e; worst = j; }
            }
            if (worst < 0) break; // every remaining weight is exact (or weighs nothing)
            excluded[worst] = true;
            slots.Add(worst);
            codes = Fit(type, x, weights, excluded);
        }
        Encode(type, codes, x, slots, block);
        return slots.ToArray();
    }

    /// <summary>imp·(w − q)² in double (the quantity outliers are chosen by).</summary>
    internal static double WeightedError(float w, float q, float importance)
    {
        double d = (double)w - q;
        return importance * d * d;
    }

    /// <summary>Writes <paramref name="codes"/> and the outlier slots (exact fp16 copies of x at those elements).</summary>
    internal static void Encode(TensorType type, Codes codes, ReadOnlySpan<float> x, IReadOnlyList<int> slots, Span<byte> block)
    {
        block[..OutlierBlock.Bytes(type)].Clear();
        WriteHalf(block, OutlierBlock.D, codes.D);
        WriteHalf(block, OutlierBlock.DMin, codes.DMin);
        for (int g = 0; g < OutlierBlock.Groups; g++) block[OutlierBlock.Stats + g] = (byte)(codes.Scale[g] | codes.Min[g] << 4);
        if (type == TensorType.HQ4_O)
            for (int j = 0; j < N; j++) block[OutlierBlock.Qs + j % 32] |= (byte)(codes.Q[j] << 4 * (j / 32));
        else
            for (int j = 0; j < N; j++)
            {
                block[OutlierBlock.Qs + j % 16] |= (byte)((codes.Q[j] & 3) << 2 * (j / 16));
                block[OutlierBlock.Qs + 16 + j % 8] |= (byte)((codes.Q[j] >> 2) << (j / 8));
            }
        int index = OutlierBlock.Index(type), value = OutlierBlock.Value(type);
        for (int s = 0; s < OutlierBlock.Slots; s++)
        {
            bool used = s < slots.Count;
            block[index + s] = used ? (byte)slots[s] : OutlierBlock.Unused;
            WriteHalf(block, value + 2 * s, used ? Math.Clamp(x[slots[s]], -MaxHalf, MaxHalf) : 0f);
        }
    }

    /// <summary>
    /// Fits the block's non-excluded elements: each group by weighted least squares over a small search of quant
    /// grids, then the group scales and mins to 4 bits against fp16 d and dmin, then, while the weighted error falls,
    /// a search of each group's 4-bit pair near the current one and a weighted least-squares refit of (d, dmin).
    /// </summary>
    internal static Codes Fit(TensorType type, ReadOnlySpan<float> x, ReadOnlySpan<float> weights, ReadOnlySpan<bool> excluded)
    {
        int nmax = (1 << OutlierBlock.Bits(type)) - 1;
        Span<float> scale = stackalloc float[OutlierBlock.Groups];
        Span<float> offset = stackalloc float[OutlierBlock.Groups];
        Span<float> w = stackalloc float[N];
        for (int g = 0; g < OutlierBlock.Groups; g++)
        {
            // A group whose remaining weights all weigh nothing is fitted with unit weights (its values still exist).
            double sum = 0;
            for (int l = 0; l < G; l++) if (!excluded[G * g + l]) sum += weights[G * g + l];
            for (int l = 0; l < G; l++) w[G * g + l] = excluded[G * g + l] ? 0 : sum > 0 ? weights[G * g + l] : 1;
            FitGroup(x.Slice(G * g, G), w.Slice(G * g, G), excluded.Slice(G * g, G), nmax, out scale[g], out offset[g]);
        }
        float maxScale = 0, maxMin = 0;
        for (int g = 0; g < OutlierBlock.Groups; g++) { maxScale = Math.Max(maxScale, scale[g]); maxMin = Math.Max(maxMin, -offset[g]); }
        var codes = new Codes { D = RoundHalf(maxScale / 15), DMin = RoundHalf(maxMin / 15) };
        for (int g = 0; g < OutlierBlock.Groups; g++)
        {
            codes.Scale[g] = codes.D > 0 ? (byte)Math.Clamp(BlockQuantizationReference.NearestInt(scale[g] / codes.D), 0, 15) : (byte)0;
            codes.Min[g] = codes.DMin > 0 ? (byte)Math.Clamp(BlockQuantizationReference.NearestInt(-offset[g] / codes.DMin), 0, 15) : (byte)0;
        }
        Requantize(codes, x, nmax);
        double error = Error(codes, x, w);
        for (int round = 0; round < 4; round++)
        {
            bool improved = SearchGroupStats(codes, x, w, nmax, ref error);
            if (RefitScales(ref codes, x, w, nmax, ref error)) improved = true;
            if (!improved) break;
        }
        return codes;
    }

    /// <summary>Each group's 4-bit scale and min among the ±2 neighbours of the current ones (the elements requantized
    /// for each pair): rounding the fitted scales to 4 bits alone can miss the best pair by a step.</summary>
    static bool SearchGroupStats(Codes codes, ReadOnlySpan<float> x, ReadOnlySpan<float> w, int nmax, ref double error)
    {
        bool improved = false;
        for (int g = 0; g < OutlierBlock.Groups; g++)
        {
            int bestScale = codes.Scale[g], bestMin = codes.Min[g];
            double best = GroupError(codes.D, codes.DMin, bestScale, bestMin, x.Slice(G * g, G), w.Slice(G * g, G), nmax);
            double current = best;
            for (int sc = Math.Max(0, codes.Scale[g] - 2); sc <= Math.Min(15, codes.Scale[g] + 2); sc++)
                for (int m = Math.Max(0, codes.Min[g] - 2); m <= Math.Min(15, codes.Min[g] + 2); m++)
                {
                    double e = GroupError(codes.D, codes.DMin, sc, m, x.Slice(G * g, G), w.Slice(G * g, G), nmax);
                    if (e < best) { best = e; bestScale = sc; bestMin = m; }
                }
            if (best < current)
            {
                codes.Scale[g] = (byte)bestScale;
                codes.Min[g] = (byte)bestMin;
                improved = true;
            }
        }
        if (!improved) return false;
        Requantize(codes, x, nmax);
        error = Error(codes, x, w);
        return true;
    }

    static double GroupError(float d, float dmin, int scale, int min, ReadOnlySpan<float> x, ReadOnlySpan<float> w, int nmax)
    {
        float dd = d * scale, dm = dmin * min;
        double e = 0;
        for (int l = 0; l < G; l++)
        {
            int q = dd > 0 ? Math.Clamp(BlockQuantizationReference.NearestInt((x[l] + dm) / dd), 0, nmax) : 0;
            e += WeightedError(x[l], dd * q - dm, w[l]);
        }
        return e;
    }

    /// <summary>(d, dmin) by weighted least squares with the integer codes fixed, x ≈ d·(scale·q) − dmin·min, then the
    /// elements requantized; kept only when the weighted error falls.</summary>
    static bool RefitScales(ref Codes codes, ReadOnlySpan<float> x, ReadOnlySpan<float> w, int nmax, ref double error)
    {
        double A = 0, B = 0, C = 0, P = 0, R = 0;
        for (int j = 0; j < N; j++)
        {
            double a = codes.Scale[j / G] * codes.Q[j], bj = codes.Min[j / G];
            A += w[j] * a * a; B += w[j] * a * bj; C += w[j] * bj * bj; P += w[j] * x[j] * a; R += w[j] * x[j] * bj;
        }
        double det = A * C - B * B;
        if (!(det > 1e-30 * Math.Max(1, A * C))) return false;
        double d = (C * P - B * R) / det, dmin = (B * P - A * R) / det;
        if (!(d >= 0) || !(dmin >= 0)) return false;
        var trial = new Codes { D = RoundHalf((float)d), DMin = RoundHalf((float)dmin) };
        codes.Scale.CopyTo(trial.Scale, 0);
        codes.Min.CopyTo(trial.Min, 0);
        Requantize(trial, x, nmax);
        double trialError = Error(trial, x, w);
        if (!(trialError < error)) return false;
        codes = trial;
        error = trialError;
        return true;
    }

    static void Requantize(Codes codes, ReadOnlySpan<float> x, int nmax)
    {
        for (int j = 0; j < N; j++)
        {
            float dd = codes.D * codes.Scale[j / G], dm = codes.DMin * codes.Min[j / G];
            codes.Q[j] = dd > 0 ? (byte)Math.Clamp(BlockQuantizationReference.NearestInt((x[j] + dm) / dd), 0, nmax) : (byte)0;
        }
    }

    static double Error(Codes codes, ReadOnlySpan<float> x, ReadOnlySpan<float> w)
    {
        double e = 0;
        for (int j = 0; j < N; j++) e += WeightedError(x[j], codes.Value(j), w[j]);
        return e;
    }

    /// <summary>x ≈ scale·q + offset (q in 0..nmax, scale ≥ 0, offset ≤ 0, the form the block stores) over the
    /// non-excluded elements, minimizing Σ w·(x − scale·q − offset)².</summary>
    static void FitGroup(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<bool> excluded, int nmax, out float scale, out float offset)
    {
        float lo = 0, hi = float.MinValue;
        bool any = false;
        for (int l = 0; l < G; l++)
            if (!excluded[l]) { lo = Math.Min(lo, x[l]); hi = Math.Max(hi, x[l]); any = true; }
        scale = 0; offset = lo;
        if (!any) { offset = 0; return; }
        if (!(hi - lo > 0)) return; // every value equals lo ≤ 0 (or all are 0): the offset alone represents them
        double best = double.MaxValue;
        Span<byte> q = stackalloc byte[G];
        for (int step = -6; step <= 6; step++)
        {
            float iscale = (nmax + 0.1f * step) / (hi - lo);
            double W = 0, Q = 0, QQ = 0, X = 0, XQ = 0;
            for (int l = 0; l < G; l++)
            {
                if (excluded[l]) continue;
                q[l] = (byte)Math.Clamp(BlockQuantizationReference.NearestInt((x[l] - lo) * iscale), 0, nmax);
                W += w[l]; Q += w[l] * q[l]; QQ += w[l] * q[l] * q[l]; X += w[l] * x[l]; XQ += w[l] * x[l] * q[l];
            }
            double det = W * QQ - Q * Q, s, o;
            if (det > 0) { s = (W * XQ - Q * X) / det; o = (X - s * Q) / W; }
            else { s = 1 / iscale; o = lo; }
            if (o > 0) { o = 0; s = QQ > 0 ? XQ / QQ : 0; }
            if (s < 0) { s = 0; o = Math.Min(0, W > 0 ? X / W : 0); }
            double e = 0;
            for (int l = 0; l < G; l++)
            {
                if (excluded[l]) continue;
                double r = x[l] - s * q[l] - o;
                e += w[l] * r * r;
            }
            if (e < best) { best = e; scale = (float)s; offset = (float)o; }
        }
    }

    static float RoundHalf(float v) => Fp16.ToSingle(Fp16.FromSingle(Math.Min(v, MaxHalf)));

    // ------------------------------------------------------------------ dequantize, dot

    /// <summary>Quant j (0 .. 2^bits − 1) of a block.</summary>
    internal static int Quant(TensorType type, byte* block, int j) => type == TensorType.HQ4_O
        ? block[OutlierBlock.Qs + j % 32] >> 4 * (j / 32) & 0xF
        : (block[OutlierBlock.Qs + j % 16] >> 2 * (j / 16) & 3) | (block[OutlierBlock.Qs + 16 + j % 8] >> (j / 8) & 1) << 2;

    internal static void DequantizeRow(TensorType type, byte* x, float* y, int blocks)
    {
        int blockBytes = OutlierBlock.Bytes(type), index = OutlierBlock.Index(type), value = OutlierBlock.Value(type);
        for (int b = 0; b < blocks; b++, x += blockBytes, y += N)
        {
            float d = Fp16.ToSingle(*(ushort*)(x + OutlierBlock.D)), dmin = Fp16.ToSingle(*(ushort*)(x + OutlierBlock.DMin));
            for (int g = 0; g < OutlierBlock.Groups; g++)
            {
                int stats = x[OutlierBlock.Stats + g];
                float dd = d * (stats & 0xF), dm = dmin * (stats >> 4);
                for (int l = 0; l < G; l++) y[G * g + l] = dd * Quant(type, x, G * g + l) - dm;
            }
            for (int s = 0; s < OutlierBlock.Slots; s++)
                if (x[index + s] < N) y[x[index + s]] = Fp16.ToSingle(*(ushort*)(x + value + 2 * s));
        }
    }

    /// <summary>Σ_k W[k]·x[k] for one row against Q8_0 activations (two Q8_0 blocks per weight block). Each
    /// 32-element half sums exact int32 products over the elements no used slot names, scaled
    /// (d·dy)·Σ scale·q·x − (dmin·dy)·Σ min·x; each used slot then adds value·(dy·x) at its element.</summary>
    internal static float DotRow(TensorType type, byte* w, byte* xq, int blocks)
    {
        int blockBytes = OutlierBlock.Bytes(type), index = OutlierBlock.Index(type), value = OutlierBlock.Value(type);
        float sum = 0;
        for (int b = 0; b < blocks; b++, w += blockBytes, xq += 2 * Q8_0Block.Bytes)
        {
            float d = Fp16.ToSingle(*(ushort*)(w + OutlierBlock.D)), dmin = Fp16.ToSingle(*(ushort*)(w + OutlierBlock.DMin));
            for (int h = 0; h < 2; h++)
            {
                byte* xb = xq + h * Q8_0Block.Bytes;
                sbyte* xs = (sbyte*)(xb + Q8_0Block.Qs);
                float dy = Fp16.ToSingle(*(ushort*)(xb + Q8_0Block.D));
                int scaled = 0, minTerm = 0;
                for (int g = 2 * h; g < 2 * h + 2; g++)
                {
                    int products = 0, sums = 0;
                    for (int l = 0; l < G; l++)
                    {
                        int j = G * g + l;
                        if (w[index] == j || w[index + 1] == j) continue; // an outlier's element: its slot supplies it
                        int xv = xs[G * (g - 2 * h) + l];
                        products += Quant(type, w, j) * xv;
                        sums += xv;
                    }
                    int stats = w[OutlierBlock.Stats + g];
                    scaled += (stats & 0xF) * products;
                    minTerm += (stats >> 4) * sums;
                }
                sum += d * dy * scaled - dmin * dy * minTerm;
            }
            for (int s = 0; s < OutlierBlock.Slots; s++)
            {
                int j = w[index + s];
                if (j >= N) continue;
                byte* xb = xq + j / 32 * Q8_0Block.Bytes;
                float dy = Fp16.ToSingle(*(ushort*)(xb + Q8_0Block.D));
                sum += Fp16.ToSingle(*(ushort*)(w + value + 2 * s)) * (dy * ((sbyte*)(xb + Q8_0Block.Qs))[j % 32]);
            }
        }
        return sum;
    }

    // ------------------------------------------------------------------ validation

    /// <summary>Checks every block of a row: finite d and dmin, each slot unused (255) or naming an element 0..63, no
    /// element named twice, used slots' values finite. Null when sound, else what is wrong (block and field).</summary>
    public static string? ValidateRow(TensorType type, ReadOnlySpan<byte> row, int elements)
    {
        int blockBytes = OutlierBlock.Bytes(type), index = OutlierBlock.Index(type), value = OutlierBlock.Value(type);
        for (int b = 0; b < elements / N; b++)
        {
            var block = row.Slice(b * blockBytes, blockBytes);
            float d = Half(block, OutlierBlock.D), dmin = Half(block, OutlierBlock.DMin);
            if (!float.IsFinite(d)) return $"block {b} (elements {N * b}..{N * b + N - 1}): scale d is {d}";
            if (!float.IsFinite(dmin)) return $"block {b} (elements {N * b}..{N * b + N - 1}): scale dmin is {dmin}";
            for (int s = 0; s < OutlierBlock.Slots; s++)
            {
                int j = block[index + s];
                if (j == OutlierBlock.Unused) continue;
                if (j >= N) return $"block {b} (elements {N * b}..{N * b + N - 1}): outlier slot {s} names element {j}, outside the block (0..{N - 1}, or {OutlierBlock.Unused} for unused)";
                for (int t = 0; t < s; t++)
                    if (block[index + t] == j) return $"block {b} (elements {N * b}..{N * b + N - 1}): outlier slots {t} and {s} both name element {j}";
                float v = Half(block, value + 2 * s);
                if (!float.IsFinite(v)) return $"block {b} (elements {N * b}..{N * b + N - 1}): outlier slot {s} holds {v}";
            }
        }
        return null;
    }

    static float Half(ReadOnlySpan<byte> bytes, int offset) => Fp16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[offset..]));

    static void WriteHalf(Span<byte> bytes, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(bytes[offset..], Fp16.FromSingle(value));
}
