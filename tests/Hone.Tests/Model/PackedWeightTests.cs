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
    public void Q8_0_packing_passes_other_types_by()
    {
        using var data = new NativeBuffer(48L * 64 * 4);
        var w = new WeightMatrix("w", TensorType.F32, 48, 64, data.Pointer);
        Assert.Null(w.PackedForGemm(Pool));
        Assert.False(w.IsPacked);
        var bf16 = new WeightMatrix("w", TensorType.BF16, 48, 64, data.Pointer);
        Assert.Null(bf16.PackedF32ForGemm(Pool));
        Assert.Null(bf16.PackedForGemm(Pool));
        Assert.False(bf16.IsPacked);
    }

    /// <summary>F32 weights likewise: packed on the first fast product (not under exact precision, not for training),
    /// the per-call GEMM's bits for prompt rows, and one decode row alone the bits it gets among others.</summary>
    [Fact]
    public void F32_fast_products_pack_once_and_match_the_per_call_gemm_bit_for_bit()
    {
        const int rows = 130, cols = 600; // an edge sliver, two depth blocks
        using var data = new NativeBuffer((long)rows * cols * 4);
        TestData.Random(rows * cols, 9, 0.1f).AsSpan().CopyTo(new Span<float>(data.Pointer, rows * cols));
        var w = new WeightMatrix("blk.0.attn_q.weight", TensorType.F32, rows, cols, data.Pointer);
        var x = TestData.Random(7 * cols, 10, 1f);
        Run(w, x, 7, packedWeights: true, precision: ComputePrecision.Exact);
        var unpacked = Run(w, x, 7, packedWeights: false);
        Assert.False(w.IsPacked);
        var packed = Run(w, x, 7, packedWeights: true);
        Assert.True(w.IsPacked);
        Assert.NotNull(w.PackedF32ForGemm(Pool));
        Assert.True(unpacked.AsSpan().SequenceEqual(packed), "packed and per-call GEMM differ");
        for (int t = 0; t < 7; t++)
        {
            var one = Run(w, x.AsSpan(t * cols, cols).ToArray(), 1, packedWeights: true);
            Assert.True(one.AsSpan().SequenceEqual(packed.AsSpan(t * rows, rows)), $"row {t} alone differs");
        }
    }
}
