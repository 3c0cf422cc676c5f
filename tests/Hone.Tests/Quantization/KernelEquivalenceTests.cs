// Every SIMD kernel against its scalar twin (BlockQuantizationReference), at every level this machine supports.
// The tests force each level directly; to check what the dispatch picks with instruction sets switched off, also run:
//
//   dotnet test tests/Hone.Tests -c Release --filter "FullyQualifiedName~Quantization"
//   DOTNET_EnableAVX512=0 dotnet test tests/Hone.Tests -c Release --filter "FullyQualifiedName~Quantization"    (AVX2 path)
//   DOTNET_EnableAVX2=0 dotnet test tests/Hone.Tests -c Release --filter "FullyQualifiedName~Quantization"      (SSSE3 path)
//
// .NET 10 renamed the AVX-512 switch: DOTNET_EnableAVX512F=0 (the .NET 8/9 name) is silently ignored by the .NET 10
// runtime and leaves AVX-512 on; Best_level_follows_the_instruction_sets_the_runtime_enables shows which level ran.
//
// Quantizers and dequantizers must match bit for bit; dot products may differ only by float summation order:
// each kernel sums exact int32 block products, then combines at most (blocks + 8) float terms per row in some order,
// so |fast − reference| ≤ 2·(blocks + 8)·2^-24·Σ_k |term_k| with the term magnitudes of QuantTestData.TermMagnitudes.
using Hone.Tensors;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

public unsafe class KernelEquivalenceTests
{
    [Theory]
    [MemberData(nameof(QuantTestData.WeightTypesAndSimdLevels), MemberType = typeof(QuantTestData))]
    public void DotRows_matches_the_scalar_twin_for_every_length_and_odd_row_counts(string typeName, string levelName)
    {
        var type = TensorTypes.Parse(typeName);
        var level = QuantTestData.Level(levelName);
        var t = type.Traits();
        var rng = new Random(1234 + (int)type);
        for (int blocks = 0; blocks <= 64; blocks++)
        {
            int n = blocks * t.BlockSize;
            int rows = blocks % 5 == 4 ? 0 : 1 + 2 * (blocks % 4); // 0, 1, 3, 5, 7
            bool randomBytes = blocks % 2 == 1;                    // any bit pattern, or what our quantizer writes
            int rowBytes = (int)t.BytesFor(n) + (blocks % 3) * 7;  // strides with padding too
            var weights = new byte[Math.Max(1, rows * rowBytes)];
            for (int r = 0; r < rows; r++)
            {
                var row = weights.AsSpan(r * rowBytes, (int)t.BytesFor(n));
                if (randomBytes) QuantTestData.RandomBlocks(rng, type, blocks).CopyTo(row);
                else BlockQuantizationReference.QuantizeRow(type, QuantTestData.GaussianRow(rng, n, 0.05f), row);
            }
            var x = QuantTestData.GaussianRow(rng, n);
            var xq = new byte[Math.Max(1, DotBytes(type, n))];
            BlockQuantizationReference.QuantizeForDot(type, x, xq.AsSpan(0, DotBytes(type, n)));
            var xDequantized = new float[n];
            BlockQuantizationReference.DequantizeRow(BlockQuantization.DotType(type), xq.AsSpan(0, DotBytes(type, n)), xDequantized);

            var expected = new float[Math.Max(1, rows)];
            var actual = new float[Math.Max(1, rows)];
            fixed (byte* w = weights)
            fixed (byte* a = xq)
            fixed (float* e = expected)
            fixed (float* f = actual)
            {
                BlockQuantizationReference.DotRows(type, w, rowBytes, rows, a, n, e);
                BlockQuantization.DotRows(level, type, w, rowBytes, rows, a, n, f);
            }
            for (int r = 0; r < rows; r++)
            {
                var magnitudes = QuantTestData.TermMagnitudes(type, weights.AsSpan(r * rowBytes, (int)t.BytesFor(n)), n);
                double magnitude = 0;
                for (int i = 0; i < n; i++) magnitude += magnitudes[i] * Math.Abs(xDequantized[i]);
                double tolerance = 2 * (blocks + 8) * Math.ScaleB(1.0, -24) * magnitude;
                Assert.True(Math.Abs(actual[r] - expected[r]) <= tolerance,
                    $"{typeName} {levelName}: {blocks} blocks, row {r}/{rows}{(randomBytes ? " (random bytes)" : "")}: {actual[r]} vs {expected[r]} (tolerance {tolerance:g3})");
            }
        }
    }

    /// <summary>Rows past 16384 elements prepare their activations in native memory instead of on the stack.</summary>
    [Theory]
    [MemberData(nameof(QuantTestData.WeightTypesAndSimdLevels), MemberType = typeof(QuantTestData))]
    public void DotRows_matches_the_scalar_twin_for_long_rows(string typeName, string levelName)
    {
        var type = TensorTypes.Parse(typeName);
        var level = QuantTestData.Level(levelName);
        const int n = 20480, rows = 6;
        var rng = new Random(77);
        int rowBytes = (int)type.Traits().BytesFor(n);
        var weights = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++) QuantTestData.RandomBlocks(rng, type, n / type.Traits().BlockSize).CopyTo(weights, r * rowBytes);
        var x = QuantTestData.GaussianRow(rng, n);
        var xq = new byte[DotBytes(type, n)];
        BlockQuantizationReference.QuantizeForDot(type, x, xq);
        var xDequantized = new float[n];
        BlockQuantizationReference.DequantizeRow(BlockQuantization.DotType(type), xq, xDequantized);
        var expected = new float[rows];
        var actual = new float[rows];
        fixed (byte* w = weights)
        fixed (byte* a = xq)
        fixed (float* e = expected)
        fixed (float* f = actual)
        {
            BlockQuantizationReference.DotRows(type, w, rowBytes, rows, a, n, e);
            BlockQuantization.DotRows(level, type, w, rowBytes, rows, a, n, f);
        }
        for (int r = 0; r < rows; r++)
        {
            var magnitudes = QuantTestData.TermMagnitudes(type, weights.AsSpan(r * rowBytes, rowBytes), n);
            double magnitude = 0;
            for (int i = 0; i < n; i++) magnitude += magnitudes[i] * Math.Abs(xDequantized[i]);
            double tolerance = 2 * (n / type.Traits().BlockSize + 8) * Math.ScaleB(1.0, -24) * magnitude;
            Assert.True(Math.Abs(actual[r] - expected[r]) <= tolerance, $"{typeName} {levelName} row {r}: {actual[r]} vs {expected[r]} (tolerance {tolerance:g3})");
        }
    }

    static int DotBytes(TensorType weightType, int n) => (int)BlockQuantization.DotType(weightType).Traits().BytesFor(n);

    [Theory]
    [MemberData(nameof(QuantTestData.WeightTypesAndSimdLevels), MemberType = typeof(QuantTestData))]
    public void DequantizeRow_matches_the_scalar_twin_bit_for_bit(string typeName, string levelName)
    {
        var type = TensorTypes.Parse(typeName);
        var level = QuantTestData.Level(levelName);
        var t = type.Traits();
        var rng = new Random(99 + (int)type);
        for (int blocks = 0; blocks <= 64; blocks++)
        {
            int n = blocks * t.BlockSize;
            var source = new byte[t.BytesFor(n)];
            if (blocks % 2 == 1) QuantTestData.RandomBlocks(rng, type, blocks).CopyTo(source, 0);
            else BlockQuantizationReference.QuantizeRow(type, QuantTestData.GaussianRow(rng, n), source);
            var expected = new float[n];
            var actual = new float[n];
            BlockQuantizationReference.DequantizeRow(type, source, expected);
            BlockQuantization.DequantizeRow(level, type, source, actual);
            for (int i = 0; i < n; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{typeName} {levelName}: {blocks} blocks, element {i}: {actual[i]:R} vs {expected[i]:R}");
        }
    }

    public static IEnumerable<object[]> ActivationTypesAndSimdLevels =>
        from t in new[] { "q8_0", "q8_k" } from l in QuantTestData.SimdLevels select new object[] { t, l[0] };

    [Theory]
    [MemberData(nameof(ActivationTypesAndSimdLevels))]
    public void QuantizeRow_matches_the_scalar_twin_byte_for_byte(string typeName, string levelName)
    {
        var type = TensorTypes.Parse(typeName);
        var level = QuantTestData.Level(levelName);
        var t = type.Traits();
        var rng = new Random(7 + (int)type);
        for (int blocks = 0; blocks <= 64; blocks++)
        {
            int n = blocks * t.BlockSize;
            var x = QuantTestData.GaussianRow(rng, n, MathF.ScaleB(1, rng.Next(-20, 20)));
            // zero blocks, exact halves (rounding ties), and a block whose largest magnitudes have both signs
            if (blocks > 2)
            {
                x.AsSpan(0, t.BlockSize).Clear();
                for (int i = t.BlockSize; i < 2 * t.BlockSize; i++) x[i] = (i % 17 - 8) * 0.5f;
                x[2 * t.BlockSize + 3] = -1000;
                x[2 * t.BlockSize + 5] = 1000;
            }
            var expected = new byte[t.BytesFor(n)];
            var actual = new byte[t.BytesFor(n)];
            BlockQuantizationReference.QuantizeRow(type, x, expected);
            BlockQuantization.QuantizeRow(level, type, x, actual);
            int same = expected.AsSpan().CommonPrefixLength(actual);
            Assert.True(same == expected.Length, $"{typeName} {levelName}: {blocks} blocks differ first at byte {same}");
        }
    }
}
