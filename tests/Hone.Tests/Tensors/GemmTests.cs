using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Tensors;

// Wide instruction sets can be switched off to exercise the fallbacks:
//   DOTNET_EnableAVX512F=0 dotnet test --filter FullyQualifiedName~Hone.Tests.Tensors
public unsafe class GemmTests
{
    static readonly WorkerPool Two = new(2);
    static readonly WorkerPool One = new(1);
    static readonly WorkerPool Three = new(3);
    static readonly WorkerPool Skewed = new(2);

    static void Check(int m, int n, int k, bool transposeA, GemmBLayout layout, bool accumulate, WorkerPool pool, int seed)
    {
        int lda = transposeA ? m + 3 : k + 1, ldb = layout == GemmBLayout.KByN ? n + 2 : k + 5, ldc = n + 1;
        var a = TestData.Random((transposeA ? k : m) * lda + 1, seed);
        var b = TestData.Random((layout == GemmBLayout.KByN ? k : n) * ldb + 1, seed + 1);
        var c = TestData.Random(m * ldc + 1, seed + 2);
        var expected = (float[])c.Clone();
        var magnitude = new float[c.Length];
        fixed (float* pa = a, pb = b, pc = c, pe = expected, pm = magnitude)
        {
            Gemm.Multiply(pool, m, n, k, pa, lda, transposeA, pb, ldb, layout, pc, ldc, accumulate);
            Gemm.MultiplyReference(m, n, k, pa, lda, transposeA, pb, ldb, layout, pe, ldc, accumulate);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = accumulate ? Math.Abs(pe[i * ldc + j]) : 0;
                    for (int p = 0; p < k; p++)
                        s += Math.Abs(transposeA ? pa[p * lda + i] : pa[i * lda + p]) *
                             Math.Abs(layout == GemmBLayout.KByN ? pb[p * ldb + j] : pb[j * ldb + p]);
                    pm[i * ldc + j] = (float)s + 1e-6f;
                }
        }
        // Padding columns of C (index ldc-1 of each row) must stay untouched.
        for (int i = 0; i < m; i++) magnitude[i * ldc + n] = 0;
        TestData.AssertClose(expected, c, magnitude, 2e-6, 0, $"m={m} n={n} k={k} tA={transposeA} {layout} acc={accumulate}");
    }

    [Fact]
    public void Every_depth_from_0_to_256_matches_reference()
    {
        for (int k = 0; k <= 256; k++) Check(7, 65, k, false, GemmBLayout.NByK, k % 2 == 0, Two, k);
    }

    [Theory]
    [InlineData(1, 1, 1)] [InlineData(6, 64, 16)] [InlineData(13, 130, 257)] [InlineData(50, 200, 600)]
    [InlineData(5, 3, 4097)] [InlineData(129, 77, 33)] [InlineData(12, 700, 300)] [InlineData(64, 192, 576)]
    public void Shapes_layouts_and_thread_counts_match_reference(int m, int n, int k)
    {
        foreach (var pool in new[] { One, Two })
            foreach (var layout in new[] { GemmBLayout.NByK, GemmBLayout.KByN })
                foreach (var transposeA in new[] { false, true })
                    Check(m, n, k, transposeA, layout, accumulate: m % 2 == 1, pool, m + n + k);
    }

    [Fact]
    public void Odd_column_counts_match_reference()
    {
        for (int n = 1; n <= 140; n += 3) Check(9, n, 40, false, GemmBLayout.NByK, false, Two, n);
    }

    /// <summary>Uneven shares (a pool that learned thread 1 is slower) must give the same bits as one thread and match
    /// the reference, on both the split over rows and the split over columns.</summary>
    [Theory]
    [InlineData(96, 576, 192)]    // split over rows (9 slivers), B read in place (KByN) or packed (NByK)
    [InlineData(131, 77, 600)]    // a partial sliver; rows not a multiple of the tile
    [InlineData(25, 1024, 40)]    // split over columns (16 slivers)
    [InlineData(7, 8269, 33)]     // a wide product
    public void Uneven_shares_are_bit_identical_to_one_thread(int m, int n, int k)
    {
        WorkerPoolTests.Skew(Skewed);
        Assert.True(Skewed.Speeds[0] > 2 * Skewed.Speeds[1]);
        foreach (var layout in new[] { GemmBLayout.NByK, GemmBLayout.KByN })
            foreach (var transposeA in new[] { false, true })
            {
                int lda = transposeA ? m + 3 : k + 1, ldb = layout == GemmBLayout.KByN ? n + 2 : k + 5, ldc = n + 1;
                var a = TestData.Random((transposeA ? k : m) * lda, m + k);
                var b = TestData.Random((layout == GemmBLayout.KByN ? k : n) * ldb, n);
                var start = TestData.Random(m * ldc, 9);
                var one = (float[])start.Clone();
                fixed (float* pa = a, pb = b, po = one)
                    Gemm.Multiply(One, m, n, k, pa, lda, transposeA, pb, ldb, layout, po, ldc, accumulate: true);
                foreach (var pool in new[] { Two, Three, Skewed })
                {
                    var c = (float[])start.Clone();
                    fixed (float* pa = a, pb = b, pc = c)
                        Gemm.Multiply(pool, m, n, k, pa, lda, transposeA, pb, ldb, layout, pc, ldc, accumulate: true);
                    Assert.True(one.AsSpan().SequenceEqual(c), $"{pool.Threads} threads differ from one: m={m} n={n} k={k} {layout} tA={transposeA}");
                }
                if (m * n * k <= 2_000_000) Check(m, n, k, transposeA, layout, true, Three, m + n);
            }
    }

    [Fact]
    public void Transpose_matches_reference_for_all_small_shapes()
    {
        for (int rows = 0; rows <= 40; rows += 3)
            for (int cols = 0; cols <= 40; cols += 5)
            {
                var src = TestData.Random(rows * 41 + 1, rows * 100 + cols);
                var got = new float[cols * 43 + 1];
                var want = new float[cols * 43 + 1];
                fixed (float* s = src, g = got, w = want)
                {
                    Transpose.Block(s, 41, g, 43, rows, cols);
                    Transpose.BlockReference(s, 41, w, 43, rows, cols);
                }
                Assert.Equal(want, got);
            }
    }

    /// <summary>F32 weights packed once give the per-call GEMM's bits for every row count, edge sliver, depth past one
    /// block, thread count and accumulate; a product's row r equals the one-row product of x_r (the one-row kernel
    /// against row 0 of the six-row tile).</summary>
    [Fact]
    public void Packed_f32_weights_give_the_per_call_product_bit_for_bit()
    {
        int seed = 70;
        foreach (var (n, k) in new[] { (17, 1), (64, 37), (100, 576), (130, 1200) })
        {
            int ldw = k + 3;
            var w = TestData.Random(n * ldw, seed++);
            fixed (float* pw = w)
            {
                var packed = Gemm.TryPackWeights(Two, pw, ldw, n, k);
                Assert.NotNull(packed);
                foreach (int m in new[] { 1, 2, 5, 6, 7, 13, 16 })
                    foreach (bool accumulate in new[] { false, true })
                        foreach (var pool in new[] { One, Two, Three })
                        {
                            int ldx = k + 1, ldy = n + 2;
                            var x = TestData.Random(m * ldx, seed++);
                            var perCall = TestData.Random(m * ldy, seed++);
                            var fromPacked = (float[])perCall.Clone();
                            var rowByRow = (float[])perCall.Clone();
                            fixed (float* px = x, pc = perCall, pp = fromPacked, pr = rowByRow)
                            {
                                Gemm.MultiplyWeights(pool, m, n, k, px, ldx, TensorType.F32, (byte*)pw, ldw * 4L, pc, ldy, accumulate);
                                Gemm.MultiplyPacked(pool, m, px, ldx, packed!, pp, ldy, accumulate);
                                for (int r = 0; r < m; r++) Gemm.MultiplyPacked(pool, 1, px + r * ldx, ldx, packed!, pr + r * ldy, ldy, accumulate);
                            }
                            string at = $"n={n} k={k} m={m} acc={accumulate} threads={pool.Threads}";
                            Assert.True(perCall.AsSpan().SequenceEqual(fromPacked), at);
                            Assert.True(perCall.AsSpan().SequenceEqual(rowByRow), at + " row by row");
                        }
            }
        }
        fixed (float* p = new float[16 * 8]) Assert.Null(Gemm.TryPackWeights(Two, p, 8, 16, 8)); // the narrow kernel's
    }
}

public unsafe class GemmNarrowAndLowRankTests
{
    static readonly WorkerPool Two = new(2);

    [Theory]
    [InlineData(1)] [InlineData(5)] [InlineData(12)] [InlineData(16)]
    public void Narrow_products_match_reference_for_all_layouts_and_depths(int n)
    {
        foreach (int m in new[] { 1, 11, 12, 13, 37, 100 })
            foreach (int k in new[] { 1, 7, 64, 1023, 1025, 2100 })
                foreach (var layout in new[] { GemmBLayout.NByK, GemmBLayout.KByN })
                    foreach (var transposeA in new[] { false, true })
                        foreach (var accumulate in new[] { false, true })
                        {
                            int lda = transposeA ? m + 1 : k + 2, ldb = layout == GemmBLayout.KByN ? n + 3 : k + 1, ldc = n + 2;
                            var a = TestData.Random((transposeA ? k : m) * lda, m + k);
                            var b = TestData.Random((layout == GemmBLayout.KByN ? k : n) * ldb, n + k);
                            var c = TestData.Random(m * ldc, 3);
                            var want = (float[])c.Clone();
                            fixed (float* pa = a, pb = b, pc = c, pw = want)
                            {
                                Gemm.Multiply(Two, m, n, k, pa, lda, transposeA, pb, ldb, layout, pc, ldc, accumulate);
                                Gemm.MultiplyReference(m, n, k, pa, lda, transposeA, pb, ldb, layout, pw, ldc, accumulate);
                            }
                            TestData.AssertClose(want, c, 1e-4 * Math.Sqrt(k), $"m={m} n={n} k={k} {layout} tA={transposeA} acc={accumulate}");
                        }
    }

    /// <summary>Typed weights W[n, k] through the packed path at depths that take one, several and unequal deep blocks
    /// (k = 2304 is four blocks of 576, cut to whole 256-element quantization blocks for the K-quants).</summary>
    /// <summary>Random W[n, k] quantized row by row to <paramref name="type"/>.</summary>
    static byte[] QuantizedWeights(TensorType type, int n, int k, int seed, out long rowBytes)
    {
        rowBytes = type.Traits().BytesFor(k);
        var w = TestData.Random(n * k, seed);
        var bytes = new byte[n * rowBytes];
        for (int j = 0; j < n; j++)
            Hone.Tensors.Quantization.BlockQuantization.QuantizeRow(type, w.AsSpan(j * k, k), bytes.AsSpan((int)(j * rowBytes), (int)rowBytes));
        return bytes;
    }

    [Theory]
    [InlineData(TensorType.Q4_0)] [InlineData(TensorType.Q4_K)] [InlineData(TensorType.Q6_K)] [InlineData(TensorType.Q8_0)]
    [InlineData(TensorType.HQ3_O)] [InlineData(TensorType.HQ4_O)]
    public void Typed_weights_in_deep_blocks_match_the_dequantized_product(TensorType type)
    {
        foreach (int k in new[] { 256, 1280, 2304 })
            foreach (int m in new[] { 1, 13 })
            {
                const int n = 70;
                if (type is TensorType.Q8_0 or TensorType.Q4_0 && m >= Hone.Tensors.Emitted.WeightGemm.MinimumRows) continue; // the emitted GEMM's
                var wBytes = QuantizedWeights(type, n, k, k + m, out long rowBytes);
                var x = TestData.Random(m * k, 3);
                var y = TestData.Random(m * n, 4);
                var want = (float[])y.Clone();
                var wFloat = new float[n * k];
                fixed (byte* pw = wBytes) fixed (float* pf = wFloat, px = x, py = y, pe = want)
                {
                    for (int j = 0; j < n; j++) WeightRows.DequantizeSegment(type, pw + j * rowBytes, 0, k, pf + j * k);
                    Gemm.MultiplyWeights(Two, m, n, k, px, k, type, pw, rowBytes, py, n, accumulate: true, ComputePrecision.Exact);
                    Gemm.MultiplyReference(m, n, k, px, k, false, pf, k, GemmBLayout.NByK, pe, n, true);
                }
                TestData.AssertClose(want, y, 1e-4 * Math.Sqrt(k), $"{type} m={m} k={k}");
            }
    }

    /// <summary>Under fast precision X meets K-quant weights rounded to Q8_K, as in llama.cpp and in the one-row
    /// (int8 dot) path: every row of a many-row product equals the matrix-vector product of that row alone up to fp32
    /// summation order, accumulating or not.</summary>
    [Theory]
    [InlineData(TensorType.Q4_K)] [InlineData(TensorType.Q6_K)]
    public void Fast_k_quant_products_round_the_rows_to_q8_k_as_the_dot_products_do(TensorType type)
    {
        const int n = 70, k = 512;
        foreach (int m in new[] { 2, 13, 40 })
            foreach (bool accumulate in new[] { false, true })
            {
                var wBytes = QuantizedWeights(type, n, k, k + m, out long rowBytes);
                var x = TestData.Random(m * k, 3);
                var y = TestData.Random(m * n, 4);
                var rowByRow = (float[])y.Clone();
                var exact = (float[])y.Clone();
                fixed (byte* pw = wBytes) fixed (float* px = x, py = y, pr = rowByRow, pe = exact)
                {
                    Gemm.MultiplyWeights(Two, m, n, k, px, k, type, pw, rowBytes, py, n, accumulate, ComputePrecision.Fast);
                    for (int r = 0; r < m; r++) MatVec.Multiply(Two, type, pw, rowBytes, n, k, px + r * k, pr + r * n, accumulate, ComputePrecision.Fast);
                    Gemm.MultiplyWeights(Two, m, n, k, px, k, type, pw, rowBytes, pe, n, accumulate, ComputePrecision.Exact);
                }
                TestData.AssertClose(rowByRow, y, 2e-6 * Math.Sqrt(k), $"{type} m={m} accumulate={accumulate}");
                // and the rounding is really there: the exact product differs from both by more than summation order
                Assert.True(rowByRow.Zip(exact).Max(p => Math.Abs(p.First - p.Second)) > 1e-4, $"{type} m={m}: Q8_K rounding not visible");
            }
    }

    [Theory]
    [InlineData(TensorType.F32)] [InlineData(TensorType.BF16)]
    public void Low_rank_term_is_added_in_the_same_pass(TensorType type)
    {
        const int m = 29, n = 70, k = 300, r = 8;
        var x = TestData.Random(m * k, 1);
        var w = TestData.Random(n * k, 2);
        var left = TestData.Random(m * r, 3);
        var rightNByK = TestData.Random(n * r, 4);
        var rightKByN = TestData.Random(r * k, 5);
        var y = TestData.Random(m * n, 6);
        var wBytes = type == TensorType.F32 ? w.SelectMany(BitConverter.GetBytes).ToArray()
            : w.Select(NumberConversion.SingleToBFloat16).SelectMany(BitConverter.GetBytes).ToArray();
        var wFloat = new float[n * k];
        // Forward: Y += X·Wᵀ + L·Rᵀ
        var want = (float[])y.Clone();
        fixed (byte* pw = wBytes) fixed (float* pf = wFloat, px = x, pl = left, pr = rightNByK, py = y, pe = want)
        {
            for (int j = 0; j < n; j++) WeightRows.DequantizeSegment(type, pw + j * type.Traits().BytesFor(k), 0, k, pf + j * k);
            Gemm.MultiplyWeights(Two, m, n, k, px, k, type, pw, type.Traits().BytesFor(k), py, n, true, new Gemm.LowRankTerm((nint)pl, r, (nint)pr, r, r));
            Gemm.MultiplyReference(m, n, k, px, k, false, pf, k, GemmBLayout.NByK, pe, n, true);
            Gemm.MultiplyReference(m, n, r, pl, r, false, pr, r, GemmBLayout.NByK, pe, n, true);
        }
        TestData.AssertClose(want, y, 1e-4, "forward with low-rank term");
        // Backward input gradient: C = G·W + L·R with G [m, n], W [n, k], R [r, k]
        var g = TestData.Random(m * n, 7);
        var c = new float[m * k];
        var cWant = new float[m * k];
        fixed (byte* pw = wBytes) fixed (float* pf = wFloat, pg = g, pl = left, pr = rightKByN, pc = c, pe = cWant)
        {
            Gemm.MultiplyByWeights(Two, m, k, n, pg, n, type, pw, type.Traits().BytesFor(k), pc, k, false, new Gemm.LowRankTerm((nint)pl, r, (nint)pr, k, r));
            Gemm.MultiplyReference(m, k, n, pg, n, false, pf, k, GemmBLayout.KByN, pe, k, false);
            Gemm.MultiplyReference(m, k, r, pl, r, false, pr, k, GemmBLayout.KByN, pe, k, true);
        }
        TestData.AssertClose(cWant, c, 1e-4, "input gradient with low-rank term");
    }
}
