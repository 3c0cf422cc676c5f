using Hone.Tensors;
using Hone.Tensors.Emitted;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Emitted;

// Every kernel choice (emitted, managed AVX-512, managed AVX2) against an independent reference written here.
// Choices the machine lacks are skipped; run also with DOTNET_EnableAVX512=0 to exercise the AVX2 kernels alone:
//   DOTNET_EnableAVX512=0 dotnet test tests/Hone.Tests -c Release --filter "FullyQualifiedName~Emitted"
public unsafe class WeightGemmTests
{
    static readonly WorkerPool Two = new(2);
    static readonly WorkerPool One = new(1);

    public static TheoryData<WeightGemmKernel, TensorType> KernelsAndTypes()
    {
        var data = new TheoryData<WeightGemmKernel, TensorType>();
        foreach (var kernel in new[] { WeightGemmKernel.Emitted, WeightGemmKernel.Avx512, WeightGemmKernel.Avx2 })
            foreach (var type in new[] { TensorType.BF16, TensorType.Q8_0, TensorType.Q4_0 })
                data.Add(kernel, type);
        return data;
    }

    // ---- test weights and the reference -----------------------------------------------------------

    /// <summary>W[N, K] in <paramref name="type"/> with rows of rowBytes (≥ the packed size) and its exact values.</summary>
    sealed class Weights
    {
        public required byte[] Bytes;
        public required long RowBytes;
        public required int BlockSize;       // 1 for bf16
        public required int[,]? Quants;      // [N, K] integer weight values (q, or nibble − 8), quantized types only
        public required float[,] Scales;     // [N, K / BlockSize] block scales; bf16: [N, K] the values
    }

    static Weights MakeWeights(TensorType type, int n, int k, int seed, int extraRowBytes)
    {
        var rng = new Random(seed);
        if (type == TensorType.BF16)
        {
            long rowBytes = 2L * k + extraRowBytes;
            var bytes = new byte[n * rowBytes + 1];
            var values = new float[n, k];
            for (int j = 0; j < n; j++)
                for (int t = 0; t < k; t++)
                {
                    ushort bits = NumberConversion.SingleToBFloat16((float)(rng.NextDouble() * 2 - 1) * (1 + j % 3));
                    BitConverter.TryWriteBytes(bytes.AsSpan((int)(j * rowBytes + 2 * t)), bits);
                    values[j, t] = NumberConversion.BFloat16ToSingle(bits);
                }
            return new Weights { Bytes = bytes, RowBytes = rowBytes, BlockSize = 1, Quants = null, Scales = values };
        }
        int blockBytes = type == TensorType.Q8_0 ? 34 : 18, blocks = k / 32;
        long qRowBytes = (long)blocks * blockBytes + extraRowBytes;
        var data = new byte[n * qRowBytes + 1];
        var quants = new int[n, k];
        var scales = new float[n, blocks];
        for (int j = 0; j < n; j++)
            for (int b = 0; b < blocks; b++)
            {
                int offset = (int)(j * qRowBytes + b * blockBytes);
                ushort d = NumberConversion.SingleToHalf((float)(0.001 + 0.02 * rng.NextDouble()));
                BitConverter.TryWriteBytes(data.AsSpan(offset), d);
                scales[j, b] = NumberConversion.HalfToSingle(d);
                for (int t = 0; t < 32; t++)
                {
                    if (type == TensorType.Q8_0)
                    {
                        // Full int8 range, −128 included (ggml never writes it, but a file may hold it).
                        int q = rng.Next(-128, 128);
                        data[offset + 2 + t] = (byte)(sbyte)q;
                        quants[j, b * 32 + t] = q;
                    }
                    else if (t < 16)
                    {
                        data[offset + 2 + t] = (byte)rng.Next(256);
                    }
                }
                if (type == TensorType.Q4_0)
                    for (int t = 0; t < 16; t++)
                    {
                        quants[j, b * 32 + t] = (data[offset + 2 + t] & 0xF) - 8;
                        quants[j, b * 32 + 16 + t] = (data[offset + 2 + t] >> 4) - 8;
                    }
            }
        return new Weights { Bytes = data, RowBytes = qRowBytes, BlockSize = 32, Quants = quants, Scales = scales };
    }

    /// <summary>ggml's quantize_row_q8_0 for one block, written out independently of the library.</summary>
    static (int[] Quants, float Scale) QuantizeReference(ReadOnlySpan<float> x)
    {
        float amax = 0;
        foreach (var v in x) amax = MathF.Max(amax, MathF.Abs(v));
        float d = amax / 127f, id = d != 0 ? 1f / d : 0f;
        var q = new int[32];
        for (int t = 0; t < 32; t++) q[t] = (int)MathF.Round(x[t] * id, MidpointRounding.ToEven);
        return (q, (float)(Half)d);
    }

    /// <summary>expected = (accumulate ? y : 0) + reference product, and the magnitude Σ|terms| that scales the tolerance.</summary>
    static void Reference(TensorType type, int m, int n, int k, float[] x, int ldx, Weights w, float[] y, int ldy, bool accumulate,
        float[] expected, float[] magnitude)
    {
        for (int i = 0; i < m; i++)
        {
            var row = x.AsSpan(i * ldx, k);
            if (type == TensorType.BF16)
            {
                var rounded = new double[k];
                for (int t = 0; t < k; t++) rounded[t] = NumberConversion.BFloat16ToSingle(NumberConversion.SingleToBFloat16(row[t]));
                for (int j = 0; j < n; j++)
                {
                    double s = accumulate ? y[i * ldy + j] : 0, mag = Math.Abs(s);
                    for (int t = 0; t < k; t++) { double p = rounded[t] * w.Scales[j, t]; s += p; mag += Math.Abs(p); }
                    expected[i * ldy + j] = (float)s; magnitude[i * ldy + j] = (float)mag;
                }
                continue;
            }
            int blocks = k / 32;
            var quants = new int[blocks][]; var scales = new float[blocks];
            for (int b = 0; b < blocks; b++) (quants[b], scales[b]) = QuantizeReference(row.Slice(b * 32, 32));
            for (int j = 0; j < n; j++)
            {
                double s = accumulate ? y[i * ldy + j] : 0, mag = Math.Abs(s);
                for (int b = 0; b < blocks; b++)
                {
                    long dot = 0;
                    for (int t = 0; t < 32; t++) dot += (long)quants[b][t] * w.Quants![j, b * 32 + t];
                    double term = dot * (double)(scales[b] * w.Scales[j, b]);
                    s += term; mag += Math.Abs(term);
                }
                expected[i * ldy + j] = (float)s; magnitude[i * ldy + j] = (float)mag;
            }
        }
    }

    /// <summary>Run one product with <paramref name="kernel"/> and compare with the reference; returns Y.</summary>
    /// <param name="rowScale">multiplies row i of X (tiny, zero and huge rows reach fp16's subnormal scales, d = 0…)</param>
    static float[] Check(WeightGemmKernel kernel, TensorType type, int m, int n, int k, bool accumulate, WorkerPool pool, int seed,
        int extraRowBytes = 0, Func<int, float>? rowScale = null)
    {
        int ldx = k + 3, ldy = n + 1;
        var x = TestData.Random(m * ldx + 1, seed, 2f);
        for (int i = 0; i < m; i++) x[i * ldx] *= 50; // one outlier per row: blocks with a large amax
        if (rowScale != null)
            for (int i = 0; i < m; i++)
                for (int t = 0; t < k; t++) x[i * ldx + t] *= rowScale(i);
        var w = MakeWeights(type, n, k, seed + 1, extraRowBytes);
        var y = TestData.Random(m * ldy + 1, seed + 2);
        var expected = (float[])y.Clone();
        var magnitude = new float[y.Length];
        Reference(type, m, n, k, x, ldx, w, y, ldy, accumulate, expected, magnitude);
        bool handled;
        fixed (float* px = x, py = y) fixed (byte* pw = w.Bytes)
            handled = WeightGemm.TryMultiplyWeights(pool, m, n, k, px, ldx, type, pw, w.RowBytes, py, ldy, accumulate, kernel);
        Assert.True(handled, $"{kernel} {type} m={m} n={n} k={k} was not handled");
        // fp32 accumulation: each partial sum is rounded, so the error is a small multiple of 2⁻²⁴·Σ|terms|.
        for (int i = 0; i < magnitude.Length; i++) magnitude[i] += 1e-30f;
        for (int i = 0; i < m; i++) magnitude[i * ldy + n] = 0; // Y's padding column must stay untouched
        TestData.AssertClose(expected, y, magnitude, 4e-6, 0, $"{kernel} {type} m={m} n={n} k={k} acc={accumulate} threads={pool.Threads}");
        return y;
    }

    static void SkipUnlessAvailable(WeightGemmKernel kernel, TensorType type) =>
        Skip.IfNot(WeightGemm.IsAvailable(kernel, type), $"{kernel} kernels for {type.Name()} are not available here");

    // ---- coverage ----------------------------------------------------------------------------------

    [SkippableTheory]
    [MemberData(nameof(KernelsAndTypes))]
    public void Every_depth_up_to_4096_matches_reference(WeightGemmKernel kernel, TensorType type)
    {
        SkipUnlessAvailable(kernel, type);
        // Every whole number of blocks up to 4096 (every K for bf16, whose block is one element), odd counts included;
        // bf16 crosses its 2048-element depth block. Alternating accumulate and thread counts.
        int step = type == TensorType.BF16 ? 1 : 32;
        for (int k = step; k <= 4096; k += step)
            Check(kernel, type, 3, 5, k, accumulate: k / step % 2 == 0, k / step % 3 == 0 ? One : Two, k);
    }

    [SkippableTheory]
    [MemberData(nameof(KernelsAndTypes))]
    public void Depths_past_the_packing_block_match_reference(WeightGemmKernel kernel, TensorType type)
    {
        SkipUnlessAvailable(kernel, type);
        foreach (int k in new[] { 4096 + 32, 4096 + 96, 8192 + 32 })
            Check(kernel, type, 9, 50, k, accumulate: k % 64 == 0, Two, k);
    }

    [SkippableTheory]
    [MemberData(nameof(KernelsAndTypes))]
    public void Every_micro_tile_edge_matches_reference(WeightGemmKernel kernel, TensorType type)
    {
        SkipUnlessAvailable(kernel, type);
        int rows = type == TensorType.BF16 ? BFloat16Kernels.Rows : Int8Kernels.Rows;
        int columns = type == TensorType.BF16 ? BFloat16Kernels.Columns : Int8Kernels.Columns;
        int k = type == TensorType.BF16 ? 37 : 96;
        for (int m = 1; m <= 2 * rows + 1; m++)
            for (int n = 1; n <= 2 * columns + 1; n++)
                Check(kernel, type, m, n, k, accumulate: (m + n) % 2 == 0, (m * n) % 3 == 0 ? One : Two, m * 1000 + n);
    }

    [SkippableTheory]
    [MemberData(nameof(KernelsAndTypes))]
    public void Model_shapes_match_reference_with_both_thread_counts_and_accumulate(WeightGemmKernel kernel, TensorType type)
    {
        SkipUnlessAvailable(kernel, type);
        foreach (var (m, n, k) in new[] { (40, 192, 576), (33, 576, 1536), (17, 144, 64), (70, 1536, 576) })
            foreach (var pool in new[] { One, Two })
                foreach (bool accumulate in new[] { false, true })
                    Check(kernel, type, m, n, k, accumulate, pool, m + n + k);
    }

    [SkippableTheory]
    [MemberData(nameof(KernelsAndTypes))]
    public void Padded_weight_rows_match_reference(WeightGemmKernel kernel, TensorType type)
    {
        SkipUnlessAvailable(kernel, type);
        // Rows longer than their data; for bf16 a 2-byte pad also makes rows not a whole number of dwords.
        foreach (int extra in new[] { 2, 4, 64 })
        {
            Check(kernel, type, 11, 60, 320, accumulate: false, Two, extra, extra);
            if (type == TensorType.BF16) Check(kernel, type, 11, 60, 321, accumulate: true, Two, extra + 1, extra);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(KernelsAndTypes))]
    public void Rows_of_very_different_magnitudes_match_reference(WeightGemmKernel kernel, TensorType type)
    {
        SkipUnlessAvailable(kernel, type);
        // Zero rows (d = 0), rows whose block scales are fp16 subnormals (amax/127 < 2⁻¹⁴), and large rows, in full
        // and partial row panels.
        float[] scales = [1f, 0f, 3e-5f, 1e-7f, 1e3f, 2e-3f, 1f, 0f, 5e-6f, 60f, 1f];
        foreach (int m in new[] { 4, 8, 11 })
            Check(kernel, type, m, 70, 160, accumulate: m == 8, Two, m, rowScale: i => scales[i]);
    }

    [SkippableTheory]
    [InlineData(TensorType.BF16)] [InlineData(TensorType.Q8_0)] [InlineData(TensorType.Q4_0)]
    public void Emitted_and_managed_kernels_agree(TensorType type)
    {
        SkipUnlessAvailable(WeightGemmKernel.Emitted, type);
        foreach (var other in new[] { WeightGemmKernel.Avx512, WeightGemmKernel.Avx2 })
        {
            if (!WeightGemm.IsAvailable(other, type)) continue;
            var emitted = Check(WeightGemmKernel.Emitted, type, 21, 100, 512, false, Two, 7);
            var managed = Check(other, type, 21, 100, 512, false, Two, 7);
            // Same quantized/rounded operands; only the fp32 accumulation order differs.
            for (int i = 0; i < emitted.Length; i++)
                Assert.True(Math.Abs(emitted[i] - managed[i]) <= 1e-4 * (1 + Math.Abs(managed[i])), $"{other} element {i}: {emitted[i]} vs {managed[i]}");
        }
    }

    /// <summary>Weights packed once give the stored-weight GEMM's bits for every row count (one included), sliver
    /// edge, depth past the packing block, thread count and accumulate.</summary>
    [SkippableTheory]
    [InlineData(WeightGemmKernel.Emitted)] [InlineData(WeightGemmKernel.Avx512)] [InlineData(WeightGemmKernel.Avx2)]
    public void Packed_weights_give_the_stored_weight_product_bit_for_bit(WeightGemmKernel kernel)
    {
        SkipUnlessAvailable(kernel, TensorType.Q8_0);
        int seed = 40;
        foreach (var (n, k) in new[] { (1, 32), (47, 96), (48, 608), (100, 576), (53, 4160) })
        {
            var w = MakeWeights(TensorType.Q8_0, n, k, seed++, 0);
            fixed (byte* pw = w.Bytes)
            {
                var packed = WeightGemm.TryPack(Two, TensorType.Q8_0, pw, w.RowBytes, n, k, kernel);
                Assert.NotNull(packed);
                Assert.Equal(kernel, packed!.Kernel);
                foreach (int m in new[] { 1, 2, 3, 4, 5, 9, 16, 17 })
                    foreach (bool accumulate in new[] { false, true })
                        foreach (var pool in new[] { One, Two })
                        {
                            int ldx = k + 3, ldy = n + 1;
                            var x = TestData.Random(m * ldx, seed++, 2f);
                            var stored = TestData.Random(m * ldy, seed++);
                            var fromPacked = (float[])stored.Clone();
                            fixed (float* px = x, ps = stored, pp = fromPacked)
                            {
                                Assert.True(WeightGemm.TryMultiplyWeights(pool, m, n, k, px, ldx, TensorType.Q8_0, pw, w.RowBytes, ps, ldy, accumulate, kernel));
                                WeightGemm.MultiplyPacked(pool, m, px, ldx, packed, pp, ldy, accumulate);
                            }
                            for (int i = 0; i < stored.Length; i++)
                                Assert.True(BitConverter.SingleToInt32Bits(stored[i]) == BitConverter.SingleToInt32Bits(fromPacked[i]),
                                    $"{kernel} n={n} k={k} m={m} acc={accumulate} threads={pool.Threads} element {i}: {stored[i]} vs {fromPacked[i]}");
                        }
            }
        }
    }

    /// <summary>Two or three packed weights over one X in a shared call give each one's own product bit for bit.</summary>
    [SkippableFact]
    public void Shared_packed_products_equal_separate_ones()
    {
        var kernel = WeightGemm.BestKernel(TensorType.Q8_0);
        Skip.If(kernel == WeightGemmKernel.None, "no int8 GEMM kernel here");
        const int k = 608;
        var shapes = new[] { 100, 48, 7 };
        var weights = shapes.Select((n, i) => MakeWeights(TensorType.Q8_0, n, k, 70 + i, 0)).ToArray();
        fixed (byte* w0 = weights[0].Bytes, w1 = weights[1].Bytes, w2 = weights[2].Bytes)
        {
            var packed = new[]
            {
                WeightGemm.TryPack(Two, TensorType.Q8_0, w0, weights[0].RowBytes, shapes[0], k)!,
                WeightGemm.TryPack(Two, TensorType.Q8_0, w1, weights[1].RowBytes, shapes[1], k)!,
                WeightGemm.TryPack(Two, TensorType.Q8_0, w2, weights[2].RowBytes, shapes[2], k)!,
            };
            foreach (int m in new[] { 1, 3, 16, 21 })
                foreach (var pool in new[] { One, Two })
                    foreach (int parts in new[] { 2, 3 })
                    {
                        var x = TestData.Random(m * k, m + parts, 2f);
                        var separate = shapes.Select(n => new float[m * (n + 2)]).ToArray();
                        var together = shapes.Select(n => new float[m * (n + 2)]).ToArray();
                        fixed (float* px = x, s0 = separate[0], s1 = separate[1], s2 = separate[2], t0 = together[0], t1 = together[1], t2 = together[2])
                        {
                            WeightGemm.MultiplyPacked(pool, m, px, k, packed[0], s0, shapes[0] + 2, false);
                            WeightGemm.MultiplyPacked(pool, m, px, k, packed[1], s1, shapes[1] + 2, false);
                            if (parts == 3) WeightGemm.MultiplyPacked(pool, m, px, k, packed[2], s2, shapes[2] + 2, false);
                            WeightGemm.MultiplyPackedShared(pool, m, px, k, packed[0], t0, shapes[0] + 2, packed[1], t1, shapes[1] + 2,
                                parts == 3 ? packed[2] : null, parts == 3 ? t2 : null, shapes[2] + 2);
                        }
                        for (int p = 0; p < parts; p++)
                            Assert.True(separate[p].AsSpan().SequenceEqual(together[p]), $"part {p} m={m} threads={pool.Threads} parts={parts}");
                    }
        }
    }

    /// <summary>Only Q8_0 with whole blocks is packed; everything else is left to the stored-weight paths.</summary>
    [Fact]
    public void Packing_refuses_other_types_and_partial_blocks()
    {
        var data = new byte[64 * 1024];
        fixed (byte* p = data)
        {
            Assert.Null(WeightGemm.TryPack(Two, TensorType.Q4_0, p, 18, 4, 32));
            Assert.Null(WeightGemm.TryPack(Two, TensorType.BF16, p, 64, 4, 32));
            Assert.Null(WeightGemm.TryPack(Two, TensorType.F32, p, 128, 4, 32));
            Assert.Null(WeightGemm.TryPack(Two, TensorType.Q8_0, p, 34, 4, 48));
            Assert.Null(WeightGemm.TryPack(Two, TensorType.Q8_0, p, 34, 0, 32));
        }
    }

    [Fact]
    public void Unhandled_types_and_depths_are_refused_without_writing()
    {
        var y = new float[4];
        fixed (float* py = y)
        {
            float* x = stackalloc float[64];
            byte* w = stackalloc byte[256];
            Assert.False(WeightGemm.TryMultiplyWeights(One, 1, 1, 64, x, 64, TensorType.F32, w, 256, py, 1, false));
            Assert.False(WeightGemm.TryMultiplyWeights(One, 1, 1, 64, x, 64, TensorType.Q4_K, w, 256, py, 1, false));
            if (WeightGemm.BestKernel(TensorType.Q8_0) != WeightGemmKernel.None)
                Assert.False(WeightGemm.TryMultiplyWeights(One, 1, 1, 48, x, 48, TensorType.Q8_0, w, 51, py, 1, false));
        }
        Assert.All(y, v => Assert.Equal(0f, v));
        Assert.Equal(WeightGemmKernel.None, WeightGemm.BestKernel(TensorType.F16));
    }

    [Fact]
    public void Fast_fp16_rounding_matches_the_library_conversion()
    {
        var rng = new Random(4);
        var values = new List<float> { 0f, float.Epsilon, 65504f, 65519.99f, 65520f, 1e6f, float.PositiveInfinity, float.NaN,
            6.1035156e-5f, 6.1035152e-5f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 8.940697e-8f, 1f + 1f / 2048, 1f + 3f / 2048 };
        for (int i = 0; i < 200_000; i++)
            values.Add(BitConverter.UInt32BitsToSingle((uint)rng.Next(0x30000000, 0x48000000))); // 2⁻³¹ .. 2¹⁷
        foreach (float d in values)
            Assert.Equal(BitConverter.SingleToUInt32Bits((float)(Half)d), BitConverter.SingleToUInt32Bits(WeightGemm.RoundToHalf(d)));
    }

    [Fact]
    public void Activation_quantization_matches_ggml_formula()
    {
        var rng = new Random(3);
        var q = new sbyte[32];
        for (int trial = 0; trial < 2000; trial++)
        {
            var x = new float[32];
            float scale = trial % 10 == 0 ? 0 : (float)Math.Pow(10, rng.Next(-6, 4));
            for (int t = 0; t < 32; t++) x[t] = (float)(rng.NextDouble() * 2 - 1) * scale;
            if (trial % 7 == 0) x[rng.Next(32)] = 127.5f * scale / 127f; // ties of x/d at .5 after rounding d
            var (expected, expectedScale) = QuantizeReference(x);
            int sum;
            float got;
            fixed (float* px = x) fixed (sbyte* pq = q) sum = WeightGemm.QuantizeBlock(px, pq, out got);
            Assert.Equal(expectedScale, got);
            Assert.Equal(expected, q.Select(v => (int)v).ToArray());
            Assert.Equal(expected.Sum(), sum);
        }
    }
}
