using Hone.Model;
using Hone.Tensors;
using Hone.Tensors.Quantization;

namespace Hone.Transforms;

/// <param name="Damp">λ = Damp·mean(diag H) is added to H's diagonal before it is inverted (GPTQ's percdamp)</param>
/// <param name="BlockSize">columns per lazy batch: a column's error updates the rest of its batch at once and the
/// columns after the batch once per batch (same result up to rounding; it only orders the arithmetic)</param>
/// <param name="ActOrder">quantize columns in descending diag H (most active input first); the block formats' scales are
/// then fitted to the unchanged weights before any column moves ("static groups"), since a block's columns are no
/// longer quantized together</param>
public sealed record GptqOptions(double Damp = 0.01, int BlockSize = 128, bool ActOrder = false)
{
    public void Check()
    {
        if (!(Damp >= 0 && Damp <= 10)) throw new ArgumentException($"--gptq-damp must be between 0 and 10, found {Damp}");
        if (BlockSize < 1 || BlockSize > 65536) throw new ArgumentException($"--gptq-block must be between 1 and 65536, found {BlockSize}");
    }
}

/// <param name="Loss">tr((W−Q)·H·(W−Q)ᵀ) of the GPTQ output Q (H undamped)</param>
/// <param name="PlainLoss">the same for the type's own quantizer on the same rows (importance-weighted when given)</param>
/// <param name="Norm">tr(W·H·Wᵀ)</param>
/// <param name="Damping">the λ finally used (raised tenfold at a time when H + λI was not positive definite)</param>
public sealed record GptqResult(double Loss, double PlainLoss, double Norm, double Damping);

/// <summary>
/// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"):
/// quantizes a weight matrix W[out, in] column by column and pushes each column's rounding error onto the columns not
/// yet quantized through the inverse Hessian of the layer's input, H = 2·Σ x·xᵀ / N, minimising ‖(W − Q)·X‖² greedily.
/// With U the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), column i's error e = (w_i − q_i)/U[i,i] updates column k > i by
/// −e·U[i,k]. Block formats share parameters within a block: when the walk reaches a block's first column, the block
/// is fitted to the current (error-updated) values exactly as the type's quantizer would fit them (an
/// <see cref="ElementCodec"/>), and its columns are then rounded with those fixed parameters one by one. Rows are
/// independent given H, so they run in parallel. Inputs never seen (diag H = 0) get H[i,i] = 1 and keep their weights.
/// With H = I nothing is fed back, and the output is the type's quantizer's, byte for byte.
/// </summary>
public static class Gptq
{
    /// <summary>Quantizes W into <paramref name="destination"/> (rows × the type's row bytes, rows in order).</summary>
    /// <param name="weights">W[rows, cols] row-major</param>
    /// <param name="hessian">H[cols, cols] row-major, symmetric (not modified)</param>
    /// <param name="importance">[cols] importance weights for the weighted quantizers, or null</param>
    public static GptqResult Quantize(ElementCodec codec, float[] weights, int rows, int cols, double[] hessian, float[]? importance,
        GptqOptions options, byte[] destination, int threads = 0, string name = "tensor")
    {
        options.Check();
        int bs = codec.BlockSize;
        if (rows < 1 || cols < 1 || cols % bs != 0) throw new ArgumentException($"{name}: [{rows}, {cols}] rows are not a multiple of the {codec.Type.Name()} block size {bs}");
        long cells = checked((long)cols * cols);
        if (hessian.LongLength != cells) throw new ArgumentException($"{name}: a Hessian of {hessian.LongLength} values for {cols} input columns");
        if (weights.LongLength < checked((long)rows * cols)) throw new ArgumentException($"{name}: {weights.LongLength} weights for [{rows}, {cols}]");
        if (importance != null && importance.Length != cols) throw new ArgumentException($"{name}: {importance.Length} importances for {cols} columns");
        long rowBytes = codec.Type.Traits().BytesFor(cols);
        if (destination.LongLength < checked(rows * rowBytes)) throw new ArgumentException($"{name}: output of {destination.LongLength} bytes for {rows} rows of {rowBytes}");

        int n = cols;
        var diagonal = new double[n];
        for (int i = 0; i < n; i++) diagonal[i] = hessian[(long)i * n + i] > 0 ? hessian[(long)i * n + i] : 1; // dead inputs: H[i,i] = 1
        int[] perm = Enumerable.Range(0, n).ToArray();
        if (options.ActOrder) perm = perm.OrderByDescending(i => diagonal[i]).ToArray(); // stable: ties keep column order
        double mean = diagonal.Average();
        double damping = options.Damp * mean;
        double[] u;
        for (int attempt = 0; ; attempt++)
        {
            if (InverseCholeskyUpper(hessian, diagonal, perm, damping) is { } factor) { u = factor; break; }
            if (attempt == 6) throw new InvalidOperationException($"{name}: the Hessian is not positive definite even with damping {damping:G3} (check the calibration text)");
            damping = damping > 0 ? damping * 10 : 1e-6 * mean;
        }

        bool weighted = importance != null;
        int blocks = n / bs;
        var lossWith = new double[rows];
        var lossPlain = new double[rows];
        var norms = new double[rows];
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount };
        Parallel.For(0, rows, parallel, () => new RowScratch(n, Math.Min(options.BlockSize, n), blocks, codec.Type),
            (r, _, s) =>
            {
                var original = new ReadOnlySpan<float>(weights, r * n, n);
                float statistic = codec.RowStatistic(original, weighted);
                for (int i = 0; i < n; i++) s.Current[i] = original[perm[i]]; // W row in walk order
                if (options.ActOrder)
                    for (int b = 0; b < blocks; b++) Fit(codec, original.Slice(b * bs, bs), importance, b, statistic, s);
                int batch = Math.Min(options.BlockSize, n);
                for (int i1 = 0, i2; i1 < n; i1 = i2)
                {
                    i2 = Math.Min(i1 + batch, n);
                    if (!options.ActOrder)
                        for (int start = (i1 / bs + 1) * bs; start < i2; start += bs)
                            if (start + bs > i2) { i2 = start; break; } // a block starting in the batch must end in it: its fit sees final values
                    for (int i = i1; i < i2; i++)
                    {
                        int column = perm[i];
                        if (!options.ActOrder && column % bs == 0)
                        {
                            for (int t = 0; t < bs; t++) s.Values[t] = (float)s.Current[i + t];
                            Fit(codec, s.Values.AsSpan(0, bs), importance, column / bs, statistic, s);
                        }
                        var fit = s.Fits[column / bs];
                        int code = codec.Quantize(fit, column % bs, (float)s.Current[i], out float dequantized);
                        codec.Store(fit, column % bs, code);
                        s.Quantized[column] = dequantized;
                        double error = (s.Current[i] - dequantized) / u[(long)i * n + i];
                        s.Errors[i - i1] = error;
                        long uRow = (long)i * n;
                        for (int k = i + 1; k < i2; k++) s.Current[k] -= error * u[uRow + k];
                    }
                    for (int i = i1; i < i2; i++)
                    {
                        double error = s.Errors[i - i1];
                        long uRow = (long)i * n;
                        for (int k = i2; k < n; k++) s.Current[k] -= error * u[uRow + k];
                    }
                }
                var output = destination.AsSpan((int)(r * rowBytes), (int)rowBytes);
                int blockBytes = codec.Type.Traits().BlockBytes;
                for (int b = 0; b < blocks; b++) s.Fits[b].Bytes.CopyTo(output.Slice(b * blockBytes, blockBytes));

                // The proxy loss of this row, and of the type's quantizer (fits to the original values, no feedback).
                for (int b = 0; b < blocks; b++)
                {
                    Fit(codec, original.Slice(b * bs, bs), importance, b, statistic, s);
                    for (int t = 0; t < bs; t++) codec.Quantize(s.Fits[b], t, original[b * bs + t], out s.Plain[b * bs + t]);
                }
                lossWith[r] = QuadraticForm(hessian, n, original, s.Quantized, s.Difference);
                lossPlain[r] = QuadraticForm(hessian, n, original, s.Plain, s.Difference);
                norms[r] = QuadraticForm(hessian, n, original, null, s.Difference);
                return s;
            }, _ => { });
        return new GptqResult(lossWith.Sum(), lossPlain.Sum(), norms.Sum(), damping);
    }

    sealed class RowScratch(int n, int batch, int blocks, TensorType type)
    {
        public readonly double[] Current = new double[n];      // [n] the row in walk order, error-updated
        public readonly double[] Errors = new double[Math.Max(batch, 1)];
        public readonly float[] Values = new float[n];
        public readonly float[] Quantized = new float[n];      // [n] stored order
        public readonly float[] Plain = new float[n];
        public readonly double[] Difference = new double[n];
        public readonly BlockFit[] Fits = Enumerable.Range(0, blocks).Select(_ => new BlockFit(type)).ToArray();
    }

    static void Fit(ElementCodec codec, ReadOnlySpan<float> values, float[]? importance, int block, float statistic, RowScratch s) =>
        codec.Fit(values, importance == null ? default : importance.AsSpan(block * codec.BlockSize, codec.BlockSize), statistic, s.Fits[block]);

    /// <summary>(w − q)·H·(w − q)ᵀ for one row (q null: w·H·wᵀ).</summary>
    static double QuadraticForm(double[] h, int n, ReadOnlySpan<float> w, float[]? q, double[] d)
    {
        for (int j = 0; j < n; j++) d[j] = q == null ? w[j] : (double)w[j] - q[j];
        double total = 0;
        for (int i = 0; i < n; i++)
        {
            if (d[i] == 0) continue;
            double row = 0;
            long offset = (long)i * n;
            for (int j = 0; j < n; j++) row += h[offset + j] * d[j];
            total += d[i] * row;
        }
        return total;
    }

    /// <summary>
    /// U, upper triangular with UᵀU = (P·H·Pᵀ + λI)⁻¹ (P the walk order, dead inputs' diagonal already replaced by
    /// <paramref name="diagonal"/>), or null when that matrix is not positive definite. Computed without forming the
    /// inverse: with J the order reversal, chol(J·A·J) = L gives A = V·Vᵀ with V = J·L·J upper, and U = V⁻¹.
    /// </summary>
    internal static double[]? InverseCholeskyUpper(double[] hessian, double[] diagonal, int[] perm, double damping)
    {
        int n = perm.Length;
        // a[i, j] = A[n−1−i, n−1−j], A = P·H·Pᵀ + λI
        var a = new double[(long)n * n];
        for (int i = 0; i < n; i++)
        {
            int pi = perm[n - 1 - i];
            for (int j = 0; j <= i; j++)
            {
                int pj = perm[n - 1 - j];
                a[(long)i * n + j] = pi == pj ? diagonal[pi] + damping : hessian[(long)pi * n + pj];
            }
        }
        // in-place lower Cholesky of a (lower triangle)
        for (int j = 0; j < n; j++)
        {
            long rj = (long)j * n;
            double sum = a[rj + j];
            for (int k = 0; k < j; k++) sum -= a[rj + k] * a[rj + k];
            if (!(sum > 0)) return null;
            double pivot = Math.Sqrt(sum);
            a[rj + j] = pivot;
            for (int i = j + 1; i < n; i++)
            {
                long ri = (long)i * n;
                double s = a[ri + j];
                for (int k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
                a[ri + j] = s / pivot;
            }
        }
        // V[i, j] = L[n−1−i, n−1−j] (upper); U = V⁻¹, upper, solved a row at a time from the bottom:
        // U[i, j] = −(Σ_{k=i+1..j} V[i,k]·U[k,j]) / V[i,i], reading rows of U (contiguous).
        var u = new double[(long)n * n];
        var partial = new double[n];
        for (int i = n - 1; i >= 0; i--)
        {
            long vRow = (long)(n - 1 - i) * n; // V[i, k] = a[vRow + n−1−k]
            Array.Clear(partial);
            for (int k = i + 1; k < n; k++)
            {
                double v = a[vRow + (n - 1 - k)];
                if (v == 0) continue;
                long uRow = (long)k * n;
                for (int j = k; j < n; j++) partial[j] += v * u[uRow + j];
            }
            double pivot = a[vRow + (n - 1 - i)];
            long row = (long)i * n;
            u[row + i] = 1 / pivot;
            for (int j = i + 1; j < n; j++) u[row + j] = -partial[j] / pivot;
        }
        return u;
    }
}

/// <summary>One conversion's GPTQ: the Hessian source, and the proxy losses and tensors to report.</summary>
internal sealed unsafe class GptqState(GptqCalibration calibration, HessianSource hessians, int threads)
{
    public HessianSource Hessians { get; } = hessians;
    double _loss, _plain, _norm;
    readonly List<string> _quantized = [], _skipped = [];

    /// <summary>GPTQ's bytes for the tensor [rows × row bytes, source row order], or null where it does not apply
    /// (not a layer projection, or a type without an element codec): that tensor is quantized as usual.</summary>
    public byte[]? Quantize(string name, int rows, int cols, TensorType type, TensorType sourceType, Func<int, nint> row, float[]? importance, Action<string> log)
    {
        if (!TensorNames.TryParseGguf(name, out var part) || HessianSource.Owner(part.Role) == null) return null;
        if (!ElementCodecs.TryGet(type, out var codec))
        {
            if (type is not (TensorType.F32 or TensorType.F16 or TensorType.BF16)) _skipped.Add($"{name} ({type.Name()})"); // float types are not rounded to a grid
            return null;
        }
        long cells = checked((long)rows * cols);
        long bytes = checked(rows * type.Traits().BytesFor(cols));
        if (cells > Array.MaxLength || bytes > Array.MaxLength) throw new ArgumentException($"--gptq: {name} [{rows}, {cols}] is too large to quantize in one piece");
        var hessian = Hessians.For(part.Role, part.Layer) ?? throw new InvalidOperationException($"--gptq: the calibration pass never reached {name}'s input");
        if (hessian.LongLength != (long)cols * cols) throw new InvalidOperationException($"--gptq: {name} has {cols} inputs but its Hessian is for {(int)Math.Sqrt(hessian.Length)}");
        var w = new float[cells]; // W[rows, cols]
        fixed (float* p = w)
            for (int r = 0; r < rows; r++) WeightRows.DequantizeSegment(sourceType, (byte*)row(r), 0, cols, p + (long)r * cols);
        var output = new byte[bytes];
        var result = Gptq.Quantize(codec, w, rows, cols, hessian, importance, calibration.Options, output, threads, name);
        _loss += result.Loss; _plain += result.PlainLoss; _norm += result.Norm;
        _quantized.Add(name);
        log($"gptq {name} [{rows}, {cols}] {type.Name()}: proxy loss {result.Loss / result.Norm:G4} (without GPTQ {result.PlainLoss / result.Norm:G4})");
        return output;
    }

    public ImportanceError? ProxyLoss => _norm > 0 ? new(_loss / _norm, _plain / _norm) : null;

    public void Finish(List<string> notes, bool weighted)
    {
        var o = calibration.Options;
        notes.Add($"gptq: {_quantized.Count} tensors with error feedback (damp {o.Damp}, batches of {o.BlockSize} columns{(o.ActOrder ? ", act-order with static block fits" : "")}), " +
                  $"Hessians from {Hessians.Tokens} tokens of {calibration.Text} in windows of {calibration.Context} ({Hessians.Passes} calibration pass{(Hessians.Passes == 1 ? "" : "es")})");
        if (ProxyLoss is { With: var with, Without: var without })
            notes.Add($"gptq proxy loss of those tensors, tr((W−Q)·H·(W−Q)ᵀ) / tr(W·H·Wᵀ): {with:G4} (the {(weighted ? "importance-weighted " : "")}quantizer alone: {without:G4}, {(1 - with / without) * 100:F1}% lower)");
        if (_skipped.Count > 0)
            notes.Add($"gptq: no element codec for {_skipped.Count} tensors, quantized without error feedback: {string.Join(", ", _skipped.Take(6))}{(_skipped.Count > 6 ? ", ..." : "")}");
    }
}
