using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tensors;
using Hone.Tensors.Quantization;
using Hone.Tests.Infrastructure;
using Hone.Tests.Quantization;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>GPTQ: the element codecs against each type's quantizer, the walk against a PyTorch float64 reference, and
/// what it is for (a lower ‖(W − Q)·X‖² than plain rounding).</summary>
public unsafe class GptqTests
{
    static readonly GptqOptions Sequential = new(), ActOrder = new(ActOrder: true), SmallBatches = new(BlockSize: 48);

    /// <summary>W[rows, cols] with the cases the quantizers treat specially: an all-zero row segment, an all-positive
    /// segment (a k-quant min of 0), a sub-block of tiny values, and ordinary Gaussian rows.</summary>
    static float[] Weights(Random rng, int rows, int cols)
    {
        var w = new float[rows * cols];
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextDouble() * 2 - 1) * (1 + 3 * (i % 7 == 0 ? 1 : 0));
        Array.Clear(w, 0, 256); // a whole super-block of zeros in row 0
        for (int j = 256; j < 320; j++) w[j] = MathF.Abs(w[j]) + 0.5f; // all positive
        for (int j = cols; j < cols + 32; j++) w[j] *= 1e-20f; // a sub-block far below the rest
        return w;
    }

    static float[] Importance(Random rng, int cols) => Enumerable.Range(0, cols).Select(_ => (float)(0.1 + rng.NextDouble() * 4)).ToArray();

    public static TheoryData<string> Types() => new(ElementCodecs.Types.Select(t => t.Name()));

    [Theory]
    [MemberData(nameof(Types))]
    public void Without_feedback_the_output_is_the_quantizers_byte_for_byte(string typeName)
    {
        var type = ElementCodecs.Types.Single(t => t.Name() == typeName);
        var codec = ElementCodecs.For(type);
        const int rows = 4, cols = 512;
        var rng = new Random(7);
        var w = Weights(rng, rows, cols);
        long rowBytes = type.Traits().BytesFor(cols);
        // A diagonal H feeds nothing forward (H⁻¹ is diagonal); unequal entries make act-order permute the walk.
        var identity = new double[cols * cols];
        var diagonal = new double[cols * cols];
        for (int i = 0; i < cols; i++) { identity[i * cols + i] = 1; diagonal[i * cols + i] = 0.5 + rng.NextDouble(); }
        foreach (var importance in new[] { null, Importance(rng, cols) })
        {
            var expected = new byte[rows * rowBytes];
            for (int r = 0; r < rows; r++)
            {
                var destination = expected.AsSpan((int)(r * rowBytes), (int)rowBytes);
                if (importance == null) BlockQuantization.QuantizeRow(type, w.AsSpan(r * cols, cols), destination);
                else WeightedQuantization.QuantizeRow(type, w.AsSpan(r * cols, cols), importance, destination);
            }
            foreach (var h in new[] { identity, diagonal })
                foreach (var options in new[] { Sequential, ActOrder, SmallBatches, new GptqOptions(Damp: 0) })
                {
                    var actual = new byte[rows * rowBytes];
                    var result = Gptq.Quantize(codec, w, rows, cols, h, importance, options, actual, threads: 2);
                    Assert.True(expected.AsSpan().SequenceEqual(actual), $"{typeName}, importance {importance != null}, act-order {options.ActOrder}, batch {options.BlockSize}");
                    Assert.Equal(result.PlainLoss, result.Loss, 12);
                }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Codec_dequantized_values_are_what_the_stored_block_reads_back(string typeName)
    {
        var type = ElementCodecs.Types.Single(t => t.Name() == typeName);
        var codec = ElementCodecs.For(type);
        var rng = new Random(11);
        int n = codec.BlockSize;
        var values = Weights(rng, 2, 512).AsSpan(512, n).ToArray(); // row 1 starts with the sub-block of tiny values
        foreach (var importance in new[] { null, Importance(rng, n) })
        {
            var fit = new BlockFit(type);
            codec.Fit(values, importance, codec.RowStatistic(values, importance != null), fit);
            var predicted = new float[n];
            for (int i = 0; i < n; i++)
            {
                // values the fit never saw, some beyond its range: the codec clamps and still says what is stored
                float moved = values[i] * (i % 3 == 0 ? 3f : 0.7f) + 0.01f * i;
                codec.Store(fit, i, codec.Quantize(fit, i, moved, out predicted[i]));
            }
            var read = new float[n];
            BlockQuantizationReference.DequantizeRow(type, fit.Bytes, read);
            Assert.Equal(predicted, read);
        }
    }

    [Fact]
    public void Matches_the_PyTorch_float64_reference_with_Q4_0()
    {
        var data = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "gptq", "gptq_q4_0.json")))!;
        int rows = (int)data["rows"]!, cols = (int)data["cols"]!, tokens = (int)data["tokens"]!;
        var w = data["weights"]!.AsArray().Select(v => (float)(double)v!).ToArray();
        var x = data["activations"]!.AsArray().Select(v => (float)(double)v!).ToArray();
        // H through the collector's accumulation, checked against a direct sum
        var h = new double[cols * cols];
        fixed (float* px = x) HessianCollector.Accumulate(h, cols, px, tokens, cols);
        HessianCollector.Symmetrize(h, cols, 2.0 / tokens);
        for (int i = 0; i < cols; i += 7)
            for (int j = 0; j < cols; j += 5)
            {
                double direct = 0;
                for (int t = 0; t < tokens; t++) direct += (double)x[t * cols + i] * x[t * cols + j];
                Assert.Equal(2 * direct / tokens, h[i * cols + j], 1e-9 * Math.Max(1, Math.Abs(direct)));
            }
        var codec = ElementCodecs.For(TensorType.Q4_0);
        foreach (var c in data["cases"]!.AsArray())
        {
            var options = new GptqOptions((double)c!["damp"]!, (int)c["block"]!, (bool)c["act_order"]!);
            var expected = c["expected"]!.AsArray().Select(v => (double)v!).ToArray();
            var bytes = new byte[rows * TensorType.Q4_0.Traits().BytesFor(cols)];
            var result = Gptq.Quantize(codec, w, rows, cols, h, null, options, bytes);
            var q = new float[rows * cols];
            BlockQuantization.DequantizeRow(TensorType.Q4_0, bytes, q);
            for (int i = 0; i < q.Length; i++)
                Assert.True(Math.Abs(q[i] - expected[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected[i])),
                    $"{c["name"]}: element [{i / cols}, {i % cols}] is {q[i]}, PyTorch {expected[i]}");
            Assert.Equal((double)c["loss"]!, result.Loss, 1e-6 * (double)c["loss"]!);
            Assert.Equal((double)c["plain_loss"]!, result.PlainLoss, 1e-6 * (double)c["plain_loss"]!);
            Assert.True(result.Loss < 0.5 * result.PlainLoss); // strongly correlated inputs: GPTQ more than halves the loss
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Lowers_the_output_error_on_correlated_activations(string typeName)
    {
        var type = ElementCodecs.Types.Single(t => t.Name() == typeName);
        var codec = ElementCodecs.For(type);
        const int rows = 8, cols = 256, tokens = 512;
        var rng = new Random(3);
        var w = Enumerable.Range(0, rows * cols).Select(_ => QuantTestData.Gaussian(rng)).ToArray();
        // X = Z·A: each input mixes a few latent ones, so neighbouring columns are correlated
        var x = new float[tokens * cols];
        for (int t = 0; t < tokens; t++)
        {
            var z = Enumerable.Range(0, 16).Select(_ => QuantTestData.Gaussian(rng)).ToArray();
            for (int j = 0; j < cols; j++) x[t * cols + j] = z[j % 16] + 0.5f * z[(j / 16) % 16] + 0.1f * QuantTestData.Gaussian(rng);
        }
        var h = new double[cols * cols];
        fixed (float* px = x) HessianCollector.Accumulate(h, cols, px, tokens, cols);
        HessianCollector.Symmetrize(h, cols, 2.0 / tokens);
        long rowBytes = type.Traits().BytesFor(cols);
        foreach (var importance in new[] { null, Importance(rng, cols) })
        {
            var plain = new byte[rows * rowBytes];
            for (int r = 0; r < rows; r++)
            {
                var destination = plain.AsSpan((int)(r * rowBytes), (int)rowBytes);
                if (importance == null) BlockQuantization.QuantizeRow(type, w.AsSpan(r * cols, cols), destination);
                else WeightedQuantization.QuantizeRow(type, w.AsSpan(r * cols, cols), importance, destination);
            }
            foreach (var options in new[] { Sequential, ActOrder })
            {
                var bytes = new byte[rows * rowBytes];
                var result = Gptq.Quantize(codec, w, rows, cols, h, importance, options, bytes);
                double with = OutputError(type, w, bytes, x, rows, cols, tokens), without = OutputError(type, w, plain, x, rows, cols, tokens);
                Assert.True(with < 0.9 * without, $"{typeName} importance {importance != null} act-order {options.ActOrder}: ‖(W−Q)X‖² {with} against {without} without GPTQ");
                // the proxy loss is that error (over 2/N, plus H's damping-free form): same ratio
                Assert.Equal(with / without, result.Loss / result.PlainLoss, 1e-6);
            }
        }
    }

    static double OutputError(TensorType type, float[] w, byte[] bytes, float[] x, int rows, int cols, int tokens)
    {
        var q = new float[rows * cols];
        BlockQuantization.DequantizeRow(type, bytes, q);
        double total = 0;
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < tokens; t++)
            {
                double y = 0;
                for (int j = 0; j < cols; j++) y += ((double)w[r * cols + j] - q[r * cols + j]) * x[t * cols + j];
                total += y * y;
            }
        return total;
    }

    [Fact]
    public void Inverse_Cholesky_factor_times_its_transpose_inverts_the_damped_permuted_Hessian()
    {
        const int n = 24;
        var rng = new Random(5);
        var a = new double[n * n];
        var m = Enumerable.Range(0, n * n).Select(_ => rng.NextDouble() - 0.5).ToArray();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < n; k++) a[i * n + j] += m[i * n + k] * m[j * n + k];
        var diagonal = Enumerable.Range(0, n).Select(i => a[i * n + i]).ToArray();
        var perm = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
        const double damping = 0.3;
        var u = Gptq.InverseCholeskyUpper(a, diagonal, perm, damping)!;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) Assert.Equal(0, u[i * n + j]); // upper
        // (UᵀU)·(P·A·Pᵀ + λI) = I
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++)
                {
                    double inv = 0;
                    for (int l = 0; l < n; l++) inv += u[l * n + i] * u[l * n + k];
                    s += inv * (a[perm[k] * n + perm[j]] + (k == j ? damping : 0));
                }
                Assert.Equal(i == j ? 1 : 0, s, 1e-9);
            }
        // not positive definite: null, not an exception
        Assert.Null(Gptq.InverseCholeskyUpper(new double[4], [0, 0], [0, 1], -1));
    }

    [Fact]
    public void Convert_with_gptq_reports_the_proxy_loss_and_refuses_its_options_alone()
    {
        using var dir = new TempDirectory();
        var model = TinyChatModel.Path;
        var text = string.Join(" ", Enumerable.Range(0, 200).Select(i => $"Order {i} ships in {i % 5 + 1} days and the customer is told so."));
        File.WriteAllText(dir.File("calib.txt"), text);
        var r = HoneCli.Run("convert", model, "--out", dir.File("q.gguf"), "--type", "q4_0", "--type-for", "ffn_down=q8_0", "--gptq", dir.File("calib.txt"),
            "--gptq-tokens", "256", "--gptq-ctx", "64", "--gptq-act-order", "--threads", "2");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("gptq proxy loss", r.Stdout);
        Assert.Contains($"gptq: {TinyChatModel.Layers * 7} tensors with error feedback", r.Stdout);
        using (var g = GgufFile.Open(dir.File("q.gguf")))
            Assert.Equal(TensorType.Q8_0, g.Tensors.Single(t => t.Name == "blk.0.ffn_down.weight").Type);

        r = HoneCli.Run("convert", model, "--out", dir.File("never.gguf"), "--type", "q4_0", "--gptq-act-order");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("need --gptq", r.Stderr);
        r = HoneCli.Run("convert", model, "--out", dir.File("never.gguf"), "--type", "q4_0", "--gptq", dir.File("missing.txt"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("missing.txt", r.Stderr);
        Assert.False(File.Exists(dir.File("never.gguf")));
    }
}
