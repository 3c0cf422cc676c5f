using System.Security.Cryptography;
using System.Text.Json;
using Hone.Tensors;
using Hone.Tensors.Quantization;
using Xunit;

namespace Hone.Tests.Quantization;

/// <summary>
/// Byte-for-byte agreement with tools/reference/quant_fixtures.py, an independent numpy implementation of ggml's
/// reference quantizers: the committed fixture holds input rows (zeros, tiny values, outliers, ties …), the expected
/// blocks and the expected dequantized floats.
/// </summary>
public class FixtureTests
{
    static readonly Lazy<(float[] Input, int Rows, int RowLength, string[] Kinds)> Fixture = new(() =>
    {
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(QuantTestData.FixtureDirectory, "manifest.json"))).RootElement;
        int rows = manifest.GetProperty("rows").GetInt32();
        int rowLength = manifest.GetProperty("row_length").GetInt32();
        var kinds = manifest.GetProperty("row_kinds").EnumerateArray().Select(k => k.GetString()!).ToArray();
        var input = QuantTestData.ReadFloats(Path.Combine(QuantTestData.FixtureDirectory, "input.f32"));
        Assert.Equal(rows * rowLength, input.Length);
        return (input, rows, rowLength, kinds);
    });

    public static IEnumerable<object[]> Formats => new[] { "q8_0", "q4_0", "q4_k", "q6_k", "q8_k" }.Select(f => new object[] { f });

    [Theory]
    [MemberData(nameof(Formats))]
    public void Quantize_matches_the_numpy_reference_byte_for_byte(string format)
    {
        var (input, rows, n, kinds) = Fixture.Value;
        var type = TensorTypes.Parse(format);
        var expected = File.ReadAllBytes(Path.Combine(QuantTestData.FixtureDirectory, $"{format}.blocks"));
        long rowBytes = type.Traits().BytesFor(n);
        Assert.Equal(rows * rowBytes, expected.Length);
        var reference = new byte[rowBytes];
        var fast = new byte[rowBytes];
        for (int r = 0; r < rows; r++)
        {
            var x = input.AsSpan(r * n, n);
            var want = expected.AsSpan((int)(r * rowBytes), (int)rowBytes);
            BlockQuantizationReference.QuantizeRow(type, x, reference);
            BlockQuantization.QuantizeRow(type, x, fast);
            AssertSameBytes(want, reference, $"{format} reference, row {r} ({kinds[r]})");
            AssertSameBytes(want, fast, $"{format} BlockQuantization, row {r} ({kinds[r]})");
        }
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Dequantize_matches_the_numpy_reference_bit_for_bit(string format)
    {
        var (_, rows, n, kinds) = Fixture.Value;
        var type = TensorTypes.Parse(format);
        var blocks = File.ReadAllBytes(Path.Combine(QuantTestData.FixtureDirectory, $"{format}.blocks"));
        var expected = QuantTestData.ReadFloats(Path.Combine(QuantTestData.FixtureDirectory, $"{format}.dequant.f32"));
        int rowBytes = (int)type.Traits().BytesFor(n);
        var reference = new float[n];
        var fast = new float[n];
        for (int r = 0; r < rows; r++)
        {
            var source = blocks.AsSpan(r * rowBytes, rowBytes);
            BlockQuantizationReference.DequantizeRow(type, source, reference);
            BlockQuantization.DequantizeRow(type, source, fast);
            for (int i = 0; i < n; i++)
            {
                float want = expected[r * n + i];
                Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(reference[i]),
                    $"{format} reference row {r} ({kinds[r]}) element {i}: {reference[i]:R} != {want:R}");
                Assert.True(BitConverter.SingleToInt32Bits(want) == BitConverter.SingleToInt32Bits(fast[i]),
                    $"{format} BlockQuantization row {r} ({kinds[r]}) element {i}: {fast[i]:R} != {want:R}");
            }
        }
    }

    [Fact]
    public void Fixture_files_are_the_ones_the_generator_wrote()
    {
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(QuantTestData.FixtureDirectory, "manifest.json"))).RootElement;
        foreach (var file in manifest.GetProperty("sha256").EnumerateObject())
        {
            var hash = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(QuantTestData.FixtureDirectory, file.Name))));
            Assert.True(hash == file.Value.GetString(), $"{file.Name} changed since tools/reference/quant_fixtures.py wrote it");
        }
    }

    [Fact]
    public void Fixture_covers_the_edge_cases_it_claims()
    {
        var (input, rows, n, kinds) = Fixture.Value;
        Assert.Contains(kinds, k => k.Contains("zeros"));
        Assert.Contains(kinds, k => k.Contains("tiny"));
        Assert.Contains(kinds, k => k.Contains("outliers"));
        Assert.True(Enumerable.Range(0, rows).Any(r => input.AsSpan(r * n, n).ToArray().All(v => v == 0)), "an all-zero row");
    }

    static void AssertSameBytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        int mismatch = expected.CommonPrefixLength(actual);
        Assert.True(mismatch == expected.Length,
            mismatch == expected.Length ? "" : $"{what}: first difference at byte {mismatch}: expected 0x{expected[mismatch]:x2}, got 0x{actual[mismatch]:x2}");
    }
}
