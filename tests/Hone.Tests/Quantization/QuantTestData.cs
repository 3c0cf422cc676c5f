using System.Buffers.Binary;
using Hone.Tensors;
using Hone.Tensors.Quantization;

namespace Hone.Tests.Quantization;

/// <summary>Random inputs, fixture files and error magnitudes shared by the quantization tests.</summary>
internal static class QuantTestData
{
    public static readonly TensorType[] WeightTypes = [TensorType.Q8_0, TensorType.Q4_0, TensorType.Q4_K, TensorType.Q6_K, TensorType.HQ3_O, TensorType.HQ4_O];

    public static string FixtureDirectory => Path.Combine(AppContext.BaseDirectory, "Fixtures", "quant");

    /// <summary>The SIMD levels this process can run, by name (SimdLevel is internal to Hone.Core).</summary>
    public static IEnumerable<object[]> SimdLevels =>
        BlockQuantization.SupportedLevels.Where(l => l != SimdLevel.Scalar).Select(l => new object[] { l.ToString() });

    public static IEnumerable<object[]> WeightTypesAndSimdLevels =>
        from t in WeightTypes from l in SimdLevels select new object[] { t.Name(), l[0] };

    public static SimdLevel Level(string name) => Enum.Parse<SimdLevel>(name);

    public static float Gaussian(Random rng) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));

    /// <summary>Gaussian floats of standard deviation <paramref name="sigma"/>, every 61st one a 20σ outlier.</summary>
    public static float[] GaussianRow(Random rng, int n, float sigma = 1)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = Gaussian(rng) * sigma * (i % 61 == 60 ? 20 : 1);
        return x;
    }

    /// <summary>Random block bytes whose fp16 scales are finite: any quant bit pattern, scales of magnitude 2^-12 .. 2.</summary>
    public static byte[] RandomBlocks(Random rng, TensorType type, int blocks)
    {
        var t = type.Traits();
        var bytes = new byte[blocks * t.BlockBytes];
        rng.NextBytes(bytes);
        int[] halfOffsets = type switch
        {
            TensorType.Q8_0 or TensorType.Q4_0 => [0],
            TensorType.Q4_K => [0, 2],
            TensorType.Q6_K => [208],
            TensorType.HQ3_O => [0, 2, 34, 36],  // d, dmin and the two outlier values (indices stay random: mostly unused)
            TensorType.HQ4_O => [0, 2, 42, 44],
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        for (int b = 0; b < blocks; b++)
            foreach (int offset in halfOffsets)
            {
                float scale = MathF.ScaleB(1 + (float)rng.NextDouble(), rng.Next(-12, 1)) * (rng.Next(2) == 0 ? 1 : -1);
                BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(b * t.BlockBytes + offset), BitConverter.HalfToUInt16Bits((Half)scale));
            }
        return bytes;
    }

    public static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var floats = new float[bytes.Length / 4];
        for (int i = 0; i < floats.Length; i++) floats[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(4 * i));
        return floats;
    }

    /// <summary>
    /// Per element, a bound on the magnitude of the terms a dot kernel adds up for it: the unsigned quant times its
    /// scale plus the offset term (Q4_0's 8, Q4_K's min, Q6_K's 32), since kernels split these before summing.
    /// </summary>
    public static double[] TermMagnitudes(TensorType type, ReadOnlySpan<byte> row, int n)
    {
        var m = new double[n];
        var t = type.Traits();
        for (int b = 0; b < n / t.BlockSize; b++)
        {
            var block = row.Slice(b * t.BlockBytes, t.BlockBytes);
            for (int j = 0; j < t.BlockSize; j++)
            {
                int i = b * t.BlockSize + j;
                switch (type)
                {
                    case TensorType.Q8_0:
                        m[i] = Math.Abs((double)ReadHalf(block, 0) * (sbyte)block[2 + j]);
                        break;
                    case TensorType.Q4_0:
                        m[i] = Math.Abs((double)ReadHalf(block, 0)) * 16;
                        break;
                    case TensorType.Q4_K:
                        var (sc, mn) = BlockQuantizationReference.ScaleMinK4(j / 32, block.Slice(4, 12));
                        m[i] = Math.Abs((double)ReadHalf(block, 0)) * sc * 15 + Math.Abs((double)ReadHalf(block, 2)) * mn;
                        break;
                    case TensorType.Q6_K:
                        m[i] = Math.Abs((double)ReadHalf(block, 208) * (sbyte)block[192 + j / 16]) * 64;
                        break;
                    case TensorType.HQ3_O or TensorType.HQ4_O:
                        // Two Q8_0 halves and two outlier corrections per block: up to three times the float terms
                        // of a 32-element block, so three times the bound; a slot adds |value| + |quantized value|.
                        int stats = block[4 + j / 16], top = type == TensorType.HQ3_O ? 7 : 15, index = type == TensorType.HQ3_O ? 32 : 40;
                        double d = Math.Abs((double)ReadHalf(block, 0)), dmin = Math.Abs((double)ReadHalf(block, 2));
                        m[i] = 3 * (d * (stats & 15) * top + dmin * (stats >> 4));
                        for (int s = 0; s < 2; s++)
                            if (block[index + s] == j) m[i] += 3 * (Math.Abs((double)ReadHalf(block, index + 2 + 2 * s)) + d * (stats & 15) * top + dmin * (stats >> 4));
                        break;
                }
            }
        }
        return m;
    }

    public static float ReadHalf(ReadOnlySpan<byte> bytes, int offset) =>
        (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes[offset..]));
}
