using Hone.Tensors;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

/// <summary>
/// dequantize(quantize(x)) stays within each format's error, derived from how the quantizer rounds. fp16 rounds a
/// scale d to d16 with |d − d16| ≤ max(|d|·2^-11, 2^-25) (half an ulp, normal or subnormal).
/// </summary>
public class RoundTripTests
{
    const int Elements = 1 << 16;

    static double HalfError(double d) => Math.Max(Math.Abs(d) * Math.ScaleB(1.0, -11), Math.ScaleB(1.0, -25));

    static float[] Inputs(int seed, float sigma) => QuantTestData.GaussianRow(new Random(seed), Elements, sigma);

    static (float[] X, float[] Y, byte[] Blocks) RoundTrip(TensorType type, float[] x)
    {
        var blocks = new byte[type.Traits().BytesFor(x.Length)];
        BlockQuantization.QuantizeRow(type, x, blocks);
        var y = new float[x.Length];
        BlockQuantization.DequantizeRow(type, blocks, y);
        return (x, y, blocks);
    }

    static double RelativeRms(float[] x, float[] y)
    {
        double error = 0, signal = 0;
        for (int i = 0; i < x.Length; i++)
        {
            error += (x[i] - (double)y[i]) * (x[i] - (double)y[i]);
            signal += (double)x[i] * x[i];
        }
        return Math.Sqrt(error / signal);
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(1e-3f)]
    [InlineData(1e-5f)] // scales in fp16's subnormal range
    public void Q8_0_error_is_at_most_half_a_step(float sigma)
    {
        var (x, y, _) = RoundTrip(TensorType.Q8_0, Inputs(1, sigma));
        for (int b = 0; b < Elements / 32; b++)
        {
            double amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.Max(amax, Math.Abs(x[32 * b + j]));
            double d = amax / 127;
            // q = round(x/d) → |x − q·d| ≤ d/2; storing d16 adds |q|·|d − d16| ≤ 127·|d − d16|
            double bound = d / 2 + 127 * HalfError(d) + 1e-6 * amax;
            for (int j = 0; j < 32; j++)
                Assert.True(Math.Abs(x[32 * b + j] - y[32 * b + j]) <= bound, $"block {b} element {j}: {x[32 * b + j]} → {y[32 * b + j]} (bound {bound:g3})");
        }
    }

    [Fact]
    public void Q4_0_error_is_at_most_half_a_step_except_at_the_clamped_end()
    {
        var (x, y, _) = RoundTrip(TensorType.Q4_0, Inputs(2, 1));
        for (int b = 0; b < Elements / 32; b++)
        {
            float max = 0, amax = 0;
            for (int j = 0; j < 32; j++)
                if (amax < Math.Abs(x[32 * b + j])) { amax = Math.Abs(x[32 * b + j]); max = x[32 * b + j]; }
            double d = max / -8.0;
            for (int j = 0; j < 32; j++)
            {
                // level = trunc(x/d + 8.5) clamped to 15: rounding to the nearest of −8 … 7 steps, except that values
                // beyond 7.5 steps (towards −max) clamp to 7, at most one step away (x/d ≤ 8)
                double steps = x[32 * b + j] / d;
                double bound = (steps > 7.5 ? 1 : 0.5) * Math.Abs(d) + 8 * HalfError(d) + 1e-6 * amax;
                Assert.True(Math.Abs(x[32 * b + j] - y[32 * b + j]) <= bound, $"block {b} element {j}: {x[32 * b + j]} → {y[32 * b + j]} (bound {bound:g3})");
            }
        }
    }

    [Fact]
    public void Q8_K_error_is_at_most_half_a_step()
    {
        var (x, y, blocks) = RoundTrip(TensorType.Q8_K, Inputs(3, 1));
        for (int b = 0; b < Elements / 256; b++)
        {
            double d = Math.Abs(BitConverter.ToSingle(blocks, 292 * b)); // kept as float: no fp16 rounding
            for (int j = 0; j < 256; j++)
                Assert.True(Math.Abs(x[256 * b + j] - y[256 * b + j]) <= d / 2 * (1 + 1e-5), $"block {b} element {j}");
        }
    }

    /// <summary>
    /// K-quants search their scales, so there is no simple a-priori bound on one element; what is fixed is the last
    /// step: each element takes the nearest level of its sub-block's stored grid (or the grid's end when beyond it).
    /// </summary>
    [Fact]
    public void Q4_K_elements_take_the_nearest_level_of_their_stored_grid()
    {
        var (x, y, blocks) = RoundTrip(TensorType.Q4_K, Inputs(4, 1));
        for (int b = 0; b < Elements / 256; b++)
        {
            var block = blocks.AsSpan(144 * b, 144);
            double d = QuantTestData.ReadHalf(block, 0), dmin = QuantTestData.ReadHalf(block, 2);
            for (int s = 0; s < 8; s++)
            {
                var (sc, m) = BlockQuantizationReference.ScaleMinK4(s, block.Slice(4, 12));
                double step = d * sc, offset = dmin * m;
                if (step == 0) continue; // the reference keeps the search's levels when the stored scale is zero
                for (int l = 0; l < 32; l++)
                {
                    int i = 256 * b + 32 * s + l;
                    double level = (x[i] + offset) / step; // in grid units; the grid is 0..15
                    double expectedError = level < 0 ? -level * step : level > 15 ? (level - 15) * step : 0;
                    double bound = Math.Max(expectedError, step / 2) * (1 + 1e-5) + 1e-6 * Math.Abs(x[i]);
                    Assert.True(Math.Abs(x[i] - y[i]) <= bound, $"block {b} sub-block {s} element {l}: {x[i]} → {y[i]} (bound {bound:g3})");
                }
            }
        }
    }

    [Fact]
    public void Q6_K_elements_take_the_nearest_level_of_their_stored_grid()
    {
        var (x, y, blocks) = RoundTrip(TensorType.Q6_K, Inputs(5, 1));
        for (int b = 0; b < Elements / 256; b++)
        {
            var block = blocks.AsSpan(210 * b, 210);
            double d = QuantTestData.ReadHalf(block, 208);
            for (int g = 0; g < 16; g++)
            {
                double step = d * (sbyte)block[192 + g];
                if (step == 0) continue;
                for (int l = 0; l < 16; l++)
                {
                    int i = 256 * b + 16 * g + l;
                    double level = x[i] / step; // the grid is −32..31
                    double expectedError = level < -32 ? (-32 - level) * Math.Abs(step) : level > 31 ? (level - 31) * Math.Abs(step) : 0;
                    double bound = Math.Max(expectedError, Math.Abs(step) / 2) * (1 + 1e-5) + 1e-6 * Math.Abs(x[i]);
                    Assert.True(Math.Abs(x[i] - y[i]) <= bound, $"block {b} group {g} element {l}: {x[i]} → {y[i]} (bound {bound:g3})");
                }
            }
        }
    }

    /// <summary>
    /// Noise of a uniform quantizer is step/√12. For Gaussian data (with the 20σ outliers of GaussianRow) the steps are:
    /// Q8_0 amax/127 with amax ≈ 2.5σ over 32 → 0.006σ; Q4_0 amax/8 → 0.09σ; Q4_K (max − min)/15 over 32 with
    /// range ≈ 4.2σ → 0.08σ before the scale search (which lowers it); Q6_K amax/32 over 16 (≈ 2σ) → 0.018σ.
    /// Bounds are those estimates plus 30 %.
    /// </summary>
    [Theory]
    [InlineData("q8_0", 0.0075)]
    [InlineData("q4_0", 0.12)]
    [InlineData("q4_k", 0.105)]
    [InlineData("q6_k", 0.024)]
    public void Relative_rms_error_on_gaussian_data_is_what_the_step_size_predicts(string format, double bound)
    {
        // outliers inflate the signal more than the error, so measure on plain Gaussian data
        var rng = new Random(6);
        var x = new float[Elements];
        for (int i = 0; i < Elements; i++) x[i] = QuantTestData.Gaussian(rng);
        var (_, y, _) = RoundTrip(TensorTypes.Parse(format), x);
        double rms = RelativeRms(x, y);
        Assert.True(rms <= bound, $"{format}: relative RMS error {rms:F4} > {bound}");
        Assert.True(rms >= bound / 4, $"{format}: relative RMS error {rms:F4} is implausibly small — is dequantize returning the input?");
    }
}
