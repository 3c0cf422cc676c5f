using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Hone.Tensors;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

/// <summary>The public surface: dot semantics, activation types, argument checks and instruction-set dispatch.</summary>
public unsafe class BlockQuantizationApiTests
{
    [Theory]
    [InlineData("q8_0", "q8_0")]
    [InlineData("q4_0", "q8_0")]
    [InlineData("q4_k", "q8_k")]
    [InlineData("q6_k", "q8_k")]
    public void DotType_is_Q8_0_for_32_blocks_and_Q8_K_for_K_quants(string weights, string activations) =>
        Assert.Equal(TensorTypes.Parse(activations), BlockQuantization.DotType(TensorTypes.Parse(weights)));

    [Fact]
    public void DotType_rejects_types_without_a_dot_product() =>
        Assert.Throws<NotSupportedException>(() => BlockQuantization.DotType(TensorType.F32));

    /// <summary>
    /// DotRows is the dot product of the dequantized rows with the dequantized activations: the integer block sums are
    /// exact, so the only differences are float roundings, bounded like the kernel comparison (plus one rounding per
    /// dequantized value).
    /// </summary>
    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    [InlineData("q4_k")]
    [InlineData("q6_k")]
    public void DotRows_equals_the_dot_of_the_dequantized_operands(string format)
    {
        var type = TensorTypes.Parse(format);
        const int n = 2048, rows = 9;
        var rng = new Random(11);
        long rowBytes = type.Traits().BytesFor(n);
        var weights = new byte[rowBytes * rows];
        for (int r = 0; r < rows; r++)
            BlockQuantization.QuantizeRow(type, QuantTestData.GaussianRow(rng, n, 0.1f), weights.AsSpan((int)(r * rowBytes), (int)rowBytes));
        var x = QuantTestData.GaussianRow(rng, n);
        var dotType = BlockQuantization.DotType(type);
        var xq = new byte[dotType.Traits().BytesFor(n)];
        BlockQuantization.QuantizeForDot(type, x, xq);
        var expectedBlocks = new byte[xq.Length];
        BlockQuantization.QuantizeRow(dotType, x, expectedBlocks);
        Assert.Equal(expectedBlocks, xq);

        var xd = new float[n];
        BlockQuantization.DequantizeRow(dotType, xq, xd);
        var results = new float[rows];
        fixed (byte* w = weights)
        fixed (byte* a = xq)
        fixed (float* y = results)
            BlockQuantization.DotRows(type, w, rowBytes, rows, a, n, y);
        var wd = new float[n];
        for (int r = 0; r < rows; r++)
        {
            var row = weights.AsSpan((int)(r * rowBytes), (int)rowBytes);
            BlockQuantization.DequantizeRow(type, row, wd);
            var magnitudes = QuantTestData.TermMagnitudes(type, row, n);
            double exact = 0, magnitude = 0;
            for (int i = 0; i < n; i++)
            {
                exact += (double)wd[i] * xd[i];
                magnitude += magnitudes[i] * Math.Abs(xd[i]);
            }
            double tolerance = 4 * (n / type.Traits().BlockSize + 8) * Math.ScaleB(1.0, -24) * magnitude;
            Assert.True(Math.Abs(results[r] - exact) <= tolerance, $"{format} row {r}: {results[r]} vs {exact} (tolerance {tolerance:g3})");
        }
    }

    [Fact]
    public void DotRows_of_empty_rows_is_zero_and_no_rows_touch_nothing()
    {
        var y = new float[] { 1, 2, 3 };
        fixed (float* p = y)
        {
            BlockQuantization.DotRows(TensorType.Q4_0, null, 0, 3, null, 0, p);
            Assert.Equal(new float[3], y);
            y[0] = 5;
            BlockQuantization.DotRows(TensorType.Q4_K, null, 144, 0, null, 256, p);
            Assert.Equal(5, y[0]);
        }
    }

    [Fact]
    public void Arguments_are_checked()
    {
        Assert.Throws<NotSupportedException>(() => BlockQuantization.QuantizeRow(TensorType.Q5_K, new float[256], new byte[176]));
        Assert.Throws<NotSupportedException>(() => BlockQuantization.DequantizeRow(TensorType.IQ4_XS, new byte[136], new float[256]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeRow(TensorType.Q8_0, new float[33], new byte[68]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeRow(TensorType.Q4_K, new float[256], new byte[143]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.DequantizeRow(TensorType.Q6_K, new byte[209], new float[256]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.DequantizeRow(TensorType.Q4_0, new byte[18], new float[48]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeForDot(TensorType.Q6_K, new float[256], new byte[291]));
        Assert.Throws<ArgumentException>(() => DotRowsNowhere(TensorType.Q4_0, 17, 1, 32));           // stride shorter than a row
        Assert.Throws<ArgumentException>(() => DotRowsNowhere(TensorType.Q6_K, 210, 1, 128));          // n not whole super-blocks
        Assert.Throws<ArgumentOutOfRangeException>(() => DotRowsNowhere(TensorType.Q8_0, 34, -1, 32));
    }

    /// <summary>DotRows with null buffers: only the argument checks can run.</summary>
    static void DotRowsNowhere(TensorType type, long rowBytes, int rows, int n) =>
        BlockQuantization.DotRows(type, null, rowBytes, rows, null, n, null);

    /// <summary>What the DOTNET_EnableAVX512=0 / DOTNET_EnableAVX2=0 runs (see KernelEquivalenceTests) switch between.</summary>
    [Fact]
    public void Best_level_follows_the_instruction_sets_the_runtime_enables()
    {
        var expected = Avx512BW.IsSupported && Avx512BW.VL.IsSupported && Vector512.IsHardwareAccelerated ? SimdLevel.Vector512
            : Avx2.IsSupported && Fma.IsSupported ? SimdLevel.Vector256
            : Ssse3.IsSupported && Sse41.IsSupported ? SimdLevel.Vector128
            : SimdLevel.Scalar;
        Assert.Equal(expected, BlockQuantization.Best);
        Assert.Equal(BlockQuantization.Best, BlockQuantization.SupportedLevels.Max());
    }
}
