using Hone.Tensors;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

/// <summary>Importance-weighted quantization (llama-quantize --imatrix's quant_weights path).</summary>
public class WeightedQuantizationTests
{
    static float[] Row(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1) * (rng.Next(8) == 0 ? 3f : 1f);
        return x;
    }

    static float[] RoundTrip(TensorType type, float[] x, float[]? importance)
    {
        var q = new byte[type.Traits().BytesFor(x.Length)];
        if (importance == null) BlockQuantization.QuantizeRow(type, x, q);
        else WeightedQuantization.QuantizeRow(type, x, importance, q);
        var back = new float[x.Length];
        BlockQuantization.DequantizeRow(type, q, back);
        return back;
    }

    static byte[] Quantize(TensorType type, float[] x, float[] importance)
    {
        var q = new byte[type.Traits().BytesFor(x.Length)];
        WeightedQuantization.QuantizeRow(type, x, importance, q);
        return q;
    }

    [Fact]
    public void Q8_0_ignores_the_importance_as_ggml_does()
    {
        var rng = new Random(3);
        var x = Row(rng, 512);
        var w = Enumerable.Range(0, 512).Select(i => (float)rng.NextDouble() * 10).ToArray();
        var weighted = Quantize(TensorType.Q8_0, x, w);
        var plain = new byte[weighted.Length];
        BlockQuantization.QuantizeRow(TensorType.Q8_0, x, plain);
        Assert.Equal(plain, weighted);
    }

    /// <summary>Uniform importance does not reproduce the unweighted encoding: llama.cpp's weighted quantizers run a
    /// different search (make_qx_quants / make_qkx3_quants + make_qp_quants against √(σ²+x²)) from the reference ones
    /// (max/−8 for Q4_0, make_qkx2_quants for Q4_K, x²-weighted make_qx_quants for Q6_K). What does hold: the encoding
    /// depends only on the importances' ratios — scaling them all by a power of two (exact in float) changes nothing —
    /// and a uniform importance gives an error close to the unweighted one.</summary>
    [Theory]
    [InlineData("q4_0")]
    [InlineData("q4_k")]
    [InlineData("q6_k")]
    public void Only_the_ratios_of_the_importances_matter_and_uniform_importance_is_close_to_unweighted(string name)
    {
        var type = TensorTypes.Parse(name);
        var rng = new Random(5);
        double uniformError = 0, plainError = 0;
        for (int r = 0; r < 32; r++)
        {
            var x = Row(rng, 512);
            var w = Enumerable.Range(0, 512).Select(_ => (float)Math.Exp(rng.NextDouble() * 4 - 2)).ToArray();
            Assert.Equal(Quantize(type, x, w), Quantize(type, x, w.Select(v => v * 4f).ToArray()));
            var ones = Enumerable.Repeat(1f, 512).ToArray();
            Assert.Equal(Quantize(type, x, ones), Quantize(type, x, Enumerable.Repeat(0.125f, 512).ToArray()));
            var u = RoundTrip(type, x, ones);
            var p = RoundTrip(type, x, null);
            for (int i = 0; i < x.Length; i++) { uniformError += (x[i] - u[i]) * (x[i] - u[i]); plainError += (x[i] - p[i]) * (x[i] - p[i]); }
        }
        Assert.InRange(uniformError / plainError, 0.8, 1.2);
    }

    /// <summary>One column 1000× as important as the rest: its rounding error drops against the unweighted encoding
    /// (summed over many rows), and the importance-weighted error of the whole row drops too.</summary>
    [Theory]
    [InlineData("q4_0")]
    [InlineData("q4_k")]
    [InlineData("q6_k")]
    public void A_heavy_column_is_rounded_more_accurately(string name)
    {
        var type = TensorTypes.Parse(name);
        var rng = new Random(9);
        const int n = 512, heavy = 77;
        var w = Enumerable.Repeat(1f, n).ToArray();
        w[heavy] = 1000f;
        double heavyWeighted = 0, heavyPlain = 0, weightedTotal = 0, plainTotal = 0;
        for (int r = 0; r < 64; r++)
        {
            var x = Row(rng, n);
            var a = RoundTrip(type, x, w);
            var b = RoundTrip(type, x, null);
            heavyWeighted += Math.Abs(x[heavy] - a[heavy]);
            heavyPlain += Math.Abs(x[heavy] - b[heavy]);
            for (int i = 0; i < n; i++)
            {
                weightedTotal += w[i] * (x[i] - a[i]) * (x[i] - a[i]);
                plainTotal += w[i] * (x[i] - b[i]) * (x[i] - b[i]);
            }
        }
        Assert.True(heavyWeighted < 0.5 * heavyPlain, $"{name}: heavy column error {heavyWeighted:G4} weighted vs {heavyPlain:G4} unweighted");
        Assert.True(weightedTotal < plainTotal, $"{name}: importance-weighted error {weightedTotal:G4} vs {plainTotal:G4}");
    }

    [Fact]
    public void Refuses_importances_of_the_wrong_length_and_types_without_a_weighted_quantizer()
    {
        var x = new float[256];
        var q = new byte[TensorType.Q4_K.Traits().BytesFor(256)];
        Assert.Contains("255 importances", Assert.Throws<ArgumentException>(() => WeightedQuantization.QuantizeRow(TensorType.Q4_K, x, new float[255], q)).Message);
        Assert.Throws<NotSupportedException>(() => WeightedQuantization.QuantizeRow(TensorType.Q8_K, x, new float[256], new byte[TensorType.Q8_K.Traits().BytesFor(256)]));
    }
}
