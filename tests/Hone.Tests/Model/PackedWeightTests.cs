using Hone.Model;
using Hone.Tensors;
using Hone.Tensors.Emitted;
using Hone.Tensors.Quantization;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>Q8_0 weights packed once for the int8 GEMM, as <see cref="Linear"/> uses them: built on the first
/// fast-precision product, never for exact precision or when the caller (training) declines, and every row of a
/// product the same function of that row whether one row or many are computed.</summary>
public unsafe class PackedWeightTests
{
    static readonly WorkerPool Pool = new(2);

    sealed class Fixture : IDisposable
    {
        public readonly NativeBuffer Data;
        public readonly WeightMatrix Weight;
        public Fixture(int rows, int cols, int seed)
        {
            long rowBytes = TensorType.Q8_0.Traits().BytesFor(cols);
            Data = new NativeBuffer(rowBytes * rows);
            var values = TestData.Random(rows * cols, seed, 0.1f);
            for (int r = 0; r < rows; r++)
                BlockQuantization.QuantizeRow(TensorType.Q8_0, values.AsSpan(r * cols, cols), new Span<byte>(Data.Pointer + r * rowBytes, (int)rowBytes));
            Weight = new WeightMatrix("blk.0.ffn_up.weight", TensorType.Q8_0, rows, cols, Data.Pointer);
        }
        public void Dispose() => Data.Dispose();
    }

    static float[] Run(WeightMatrix w, float[] x, int tokens, bool packedWeights, ComputePrecision precision = ComputePrecision.Fast)
    {
        var y = new float[tokens * w.Rows];
        fixed (float* px = x, py = y)
            Linear.Forward(Pool, w, null, px, tokens, w.Cols, py, w.Rows, false, precision: precision, packedWeights: packedWeights);
        return y;
    }

    [SkippableFact]
    public void Fast_products_pack_once_and_match_the_per_call_gemm_bit_for_bit()
    {
        Skip.If(WeightGemm.BestKernel(TensorType.Q8_0) == WeightGemmKernel.None, "no int8 GEMM kernel here");
        using var f = new Fixture(100, 96, 5);
        var x = TestData.Random(5 * 96, 6, 1f);
        var unpacked = Run(f.Weight, x, 5, packedWeights: false);
        Assert.False(f.Weight.IsPacked);
        var packed = Run(f.Weight, x, 5, packedWeights: true);
        Assert.True(f.Weight.IsPacked);
        Assert.True(unpacked.AsSpan().SequenceEqual(packed), "packed and per-call GEMM differ");
        // One row alone (decode) gives that row's bits from the five-row product.
        for (int t = 0; t < 5; t++)
        {
            var one = Run(f.Weight, x.AsSpan(t * 96, 96).ToArray(), 1, packedWeights: true);
            Assert.True(one.AsSpan().SequenceEqual(packed.AsSpan(t * 100, 100)), $"row {t} alone differs");
        }
    }

    [Fact]
    public void Exact_precision_and_declining_callers_leave_the_weight_unpacked()
    {
        using var f = new Fixture(48, 64, 7);
        var x = TestData.Random(2 * 64, 8, 1f);
        Run(f.Weight, x, 2, packedWeights: true, precision: ComputePrecision.Exact);
        Run(f.Weight, x, 1, packedWeights: true, precision: ComputePrecision.Exact);
        Run(f.Weight, x, 2, packedWeights: false);
        Run(f.Weight, x, 1, packedWeights: false);
        Assert.False(f.Weight.IsPacked);
    }

    [Fact]
    public void Other_types_are_never_packed()
    {
        using var data = new NativeBuffer(48L * 64 * 4);
        var w = new WeightMatrix("w", TensorType.F32, 48, 64, data.Pointer);
        Assert.Null(w.PackedForGemm(Pool));
        Assert.False(w.IsPacked);
    }
}
