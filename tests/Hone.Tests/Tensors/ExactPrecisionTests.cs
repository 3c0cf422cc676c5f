using Hone.Tensors;
using Hone.Tensors.Emitted;
using Hone.Tensors.Quantization;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

/// <summary>
/// ComputePrecision.Exact: weight products with bf16 or quantized weights keep the activations in fp32, so they are
/// bit-identical to the F32 product of the widened (dequantized) weights — over every SIMD tail of the GEMM (6×64 tiles,
/// 16-wide vectors, 576-deep blocks) and of the matrix-vector kernels (32/16-wide, scalar tail). Fast keeps llama.cpp's
/// rounding of the activations. Run also with wide instructions off:
///   DOTNET_EnableAVX512=0 dotnet test tests/Hone.Tests -c Release --filter "FullyQualifiedName~ExactPrecision"
/// </summary>
public unsafe class ExactPrecisionTests
{
    static readonly WorkerPool One = new(1);
    static readonly WorkerPool Two = new(2);

    /// <summary>W[n, k] stored in <paramref name="type"/> and the same values widened to fp32.</summary>
    static (byte[] Stored, float[] Widened, long RowBytes) Weights(TensorType type, int n, int k, int seed)
    {
        var w = TestData.Random(n * k, seed);
        long rowBytes = type.Traits().BytesFor(k);
        var stored = new byte[Math.Max(1, n * rowBytes)];
        var widened = new float[n * k];
        fixed (byte* ps = stored) fixed (float* pw = widened)
            for (int j = 0; j < n; j++)
            {
                var row = w.AsSpan(j * k, k);
                byte* dst = ps + j * rowBytes;
                switch (type)
                {
                    case TensorType.BF16: NumberConversion.SingleToBFloat16(row, new Span<ushort>(dst, k)); break;
                    case TensorType.F16: NumberConversion.SingleToHalf(row, new Span<ushort>(dst, k)); break;
                    default: BlockQuantization.QuantizeRow(type, row, new Span<byte>(dst, (int)rowBytes)); break;
                }
                WeightRows.DequantizeSegment(type, dst, 0, k, pw + (long)j * k);
            }
        return (stored, widened, rowBytes);
    }

    static float[] Product(WorkerPool pool, int m, int n, int k, float[] x, TensorType type, byte[] w, long rowBytes, float[] y0,
        bool accumulate, ComputePrecision precision)
    {
        var y = (float[])y0.Clone();
        fixed (byte* pw = w) fixed (float* px = x, py = y)
            Gemm.MultiplyWeights(pool, m, n, k, px, k, type, pw, rowBytes, py, n, accumulate, precision);
        return y;
    }

    static float[] ProductF32(WorkerPool pool, int m, int n, int k, float[] x, float[] w, float[] y0, bool accumulate)
    {
        var y = (float[])y0.Clone();
        fixed (float* pw = w, px = x, py = y)
            Gemm.MultiplyWeights(pool, m, n, k, px, k, TensorType.F32, (byte*)pw, 4L * k, py, n, accumulate);
        return y;
    }

    /// <summary>Σ|x·w| per output: the scale fp32 rounding errors are measured against.</summary>
    static float[] Magnitude(int m, int n, int k, float[] x, float[] w, float[]? y0)
    {
        var mag = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = y0 == null ? 0 : Math.Abs(y0[i * n + j]);
                for (int p = 0; p < k; p++) s += Math.Abs((double)x[i * k + p] * w[j * k + p]);
                mag[i * n + j] = (float)s + 1e-30f;
            }
        return mag;
    }

    static float[] Reference(int m, int n, int k, float[] x, float[] w, float[] y0, bool accumulate)
    {
        var y = (float[])y0.Clone();
        fixed (float* px = x, pw = w, py = y) Gemm.MultiplyReference(m, n, k, px, k, false, pw, k, GemmBLayout.NByK, py, n, accumulate);
        return y;
    }

    // Rows: 2 (the smallest GEMM), 5, 6 (one tile), 7, 13, 50; columns around the 16-wide vectors and the 64-wide tile,
    // one past the 48-wide bf16 kernel tile; depths around 16 and 32, and past one (576) and two 576-deep blocks.
    public static TheoryData<int, int, int> GemmShapes()
    {
        var data = new TheoryData<int, int, int>();
        foreach (var (m, n, k) in new[]
                 {
                     (2, 1, 1), (2, 17, 7), (5, 15, 16), (6, 16, 17), (7, 63, 31), (13, 64, 32), (13, 65, 33), (6, 49, 575),
                     (7, 130, 577), (50, 200, 600), (3, 33, 1153), (12, 640, 64),
                 })
            data.Add(m, n, k);
        return data;
    }

    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Exact_bf16_gemm_is_bit_identical_to_the_f32_gemm_of_the_widened_weights(int m, int n, int k)
    {
        var (stored, widened, rowBytes) = Weights(TensorType.BF16, n, k, m * 1000 + n + k);
        var x = TestData.Random(m * k, k + 1);
        var y0 = TestData.Random(m * n, n + 2);
        foreach (var pool in new[] { One, Two })
            foreach (bool accumulate in new[] { false, true })
            {
                var exact = Product(pool, m, n, k, x, TensorType.BF16, stored, rowBytes, y0, accumulate, ComputePrecision.Exact);
                Assert.Equal(ProductF32(pool, m, n, k, x, widened, y0, accumulate), exact);
                // And against the product in double: fp32 rounding only.
                TestData.AssertClose(Reference(m, n, k, x, widened, y0, accumulate), exact,
                    Magnitude(m, n, k, x, widened, accumulate ? y0 : null), 4e-6, 0, $"exact m={m} n={n} k={k}");
            }
    }

    /// <summary>Fast rounds X to bf16 where the bf16 GEMM kernels run: within 2⁻⁸·Σ|x·w| of the exact product
    /// (2⁻⁹ per element, plus fp32 rounding), and measurably different from it on random data.</summary>
    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Fast_bf16_gemm_rounds_the_activations_within_the_bf16_bound(int m, int n, int k)
    {
        var (stored, widened, rowBytes) = Weights(TensorType.BF16, n, k, m * 1000 + n + k);
        var x = TestData.Random(m * k, k + 1);
        var y0 = new float[m * n];
        var fast = Product(Two, m, n, k, x, TensorType.BF16, stored, rowBytes, y0, false, ComputePrecision.Fast);
        var exact = Product(Two, m, n, k, x, TensorType.BF16, stored, rowBytes, y0, false, ComputePrecision.Exact);
        TestData.AssertClose(Reference(m, n, k, x, widened, y0, false), fast, Magnitude(m, n, k, x, widened, null), 1.0 / 256, 0, $"fast m={m} n={n} k={k}");
        if (WeightGemm.BestKernel(TensorType.BF16) != WeightGemmKernel.None && k > 1)
            Assert.NotEqual(exact, fast);
    }

    /// <summary>Exact GEMMs with quantized weights (which Fast sends to the int8 kernels for Q8_0/Q4_0) are the F32 GEMM
    /// of the dequantized weights, bit for bit.</summary>
    [Theory]
    [InlineData(TensorType.Q8_0)] [InlineData(TensorType.Q4_0)] [InlineData(TensorType.Q4_K)] [InlineData(TensorType.Q6_K)] [InlineData(TensorType.F16)]
    [InlineData(TensorType.HQ3_O)] [InlineData(TensorType.HQ4_O)]
    public void Exact_gemm_with_typed_weights_is_bit_identical_to_the_f32_gemm_of_the_dequantized_weights(TensorType type)
    {
        int block = type.Traits().BlockSize;
        foreach (var (m, n, k) in new[] { (2, 17, 1 * block), (7, 65, 3 * block), (13, 70, 2304 / block * block), (6, 64, 20 * block) })
        {
            var (stored, widened, rowBytes) = Weights(type, n, k, m + n + k);
            var x = TestData.Random(m * k, k);
            var y0 = TestData.Random(m * n, m);
            var exact = Product(Two, m, n, k, x, type, stored, rowBytes, y0, true, ComputePrecision.Exact);
            Assert.Equal(ProductF32(Two, m, n, k, x, widened, y0, true), exact);
        }
    }

    static float[] MatVecProduct(WorkerPool pool, TensorType type, byte[] w, long rowBytes, int n, int k, float[] x, ComputePrecision precision,
        float[]? accumulateInto = null)
    {
        var y = accumulateInto == null ? new float[n] : (float[])accumulateInto.Clone();
        fixed (byte* pw = w) fixed (float* px = x, py = y)
            MatVec.Multiply(pool, type, pw, rowBytes, n, k, px, py, accumulateInto != null, precision);
        return y;
    }

    /// <summary>Every depth 0..300 (the 32- and 16-wide loops and the scalar tail): bf16 and f16 rows meet fp32 x in
    /// both precisions, bit-identical to the F32 kernel on the widened rows.</summary>
    [Theory]
    [InlineData(TensorType.BF16)] [InlineData(TensorType.F16)]
    public void Matrix_vector_products_with_bf16_and_f16_weights_equal_the_f32_ones_in_both_precisions(TensorType type)
    {
        for (int k = 0; k <= 300; k++)
        {
            int n = 5 + k % 19;
            var (stored, widened, rowBytes) = Weights(type, n, k, k);
            var x = TestData.Random(k, k + 7);
            var f32 = MatVecProduct(Two, TensorType.F32, ToBytes(widened), 4L * k, n, k, x, ComputePrecision.Exact);
            Assert.Equal(f32, MatVecProduct(Two, type, stored, rowBytes, n, k, x, ComputePrecision.Exact));
            Assert.Equal(f32, MatVecProduct(Two, type, stored, rowBytes, n, k, x, ComputePrecision.Fast));
        }
    }

    /// <summary>Quantized rows in Exact are dequantized and dotted with fp32 x by the F32 kernel: bit-identical to the
    /// F32 product of the dequantized weights (also accumulating, and in the shared and gated regions); Fast quantizes x.</summary>
    [Theory]
    [InlineData(TensorType.Q8_0)] [InlineData(TensorType.Q4_0)] [InlineData(TensorType.Q4_K)] [InlineData(TensorType.Q6_K)]
    [InlineData(TensorType.HQ3_O)] [InlineData(TensorType.HQ4_O)]
    public void Exact_matrix_vector_products_with_quantized_weights_equal_the_f32_ones(TensorType type)
    {
        int block = type.Traits().BlockSize;
        foreach (var (n, k) in new[] { (1, block), (37, 3 * block), (100, 8 * block), (16, block == 32 ? 36 * 32 : 5 * 256) })
        {
            var (stored, widened, rowBytes) = Weights(type, n, k, n + k);
            var f32Bytes = ToBytes(widened);
            var x = TestData.Random(k, k + 3);
            var bias = TestData.Random(n, n);
            foreach (var pool in new[] { One, Two })
            {
                var f32 = MatVecProduct(pool, TensorType.F32, f32Bytes, 4L * k, n, k, x, ComputePrecision.Exact);
                var exact = MatVecProduct(pool, type, stored, rowBytes, n, k, x, ComputePrecision.Exact);
                Assert.Equal(f32, exact);
                Assert.Equal(MatVecProduct(pool, TensorType.F32, f32Bytes, 4L * k, n, k, x, ComputePrecision.Exact, bias),
                    MatVecProduct(pool, type, stored, rowBytes, n, k, x, ComputePrecision.Exact, bias));
                var fast = MatVecProduct(pool, type, stored, rowBytes, n, k, x, ComputePrecision.Fast);
                var magnitude = Magnitude(1, n, k, x, widened, null);
                TestData.AssertClose(f32, fast, magnitude, 2e-2, 0, $"{type} fast n={n} k={k}");
                Assert.NotEqual(exact, fast);

                // Shared (q, k, v) and gated (gate, up, SwiGLU) regions, exact.
                var shared = new float[n];
                var gate = new float[n];
                var up = new float[n];
                var expectedGate = (float[])f32.Clone();
                var expectedUp = (float[])f32.Clone();
                fixed (float* pe = expectedGate, pu = expectedUp) Activations.SwiGlu(pe, pu, n);
                fixed (byte* pw = stored) fixed (float* px = x, ps = shared, pg = gate, pup = up)
                {
                    MatVec.MultiplyShared(pool, type, rowBytes, k, px, pw, n, ps, pw, n, pg, precision: ComputePrecision.Exact);
                    Assert.Equal(f32, shared);
                    Assert.Equal(f32, gate);
                    MatVec.MultiplyGated(pool, type, rowBytes, n, k, px, pw, pw, pg, pup, ComputePrecision.Exact);
                }
                Assert.Equal(expectedGate, gate);
            }
        }
    }

    static byte[] ToBytes(float[] values)
    {
        var bytes = new byte[Math.Max(1, values.Length * 4)];
        Buffer.BlockCopy(values, 0, bytes, 0, values.Length * 4);
        return bytes;
    }
}
