// Hone's outlier-aware types hq3_o / hq4_o: round-trip bounds, the outlier choice against a direct recomputation of
// the weighted errors, the dot product against dequantize + float dot, whole models, and damaged files. The SIMD twins
// are covered with the other types by KernelEquivalenceTests (QuantTestData.WeightTypes) and the GEMM / matrix-vector
// tests (GemmTests, MatVecTests, ExactPrecisionTests).
using System.Buffers.Binary;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tensors.Quantization;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Quantization;

public unsafe class OutlierQuantizationTests
{
    static readonly WorkerPool Pool = new(2);

    public static TheoryData<TensorType> Types => new() { TensorType.HQ3_O, TensorType.HQ4_O };

    [Fact]
    public void Traits_give_the_documented_block_geometry()
    {
        Assert.Equal(4.75, TensorType.HQ3_O.Traits().BitsPerWeight);
        Assert.Equal(5.75, TensorType.HQ4_O.Traits().BitsPerWeight);
        Assert.Equal((64, 38), (TensorType.HQ3_O.Traits().BlockSize, TensorType.HQ3_O.Traits().BlockBytes));
        Assert.Equal((64, 46), (TensorType.HQ4_O.Traits().BlockSize, TensorType.HQ4_O.Traits().BlockBytes));
        Assert.Equal(4003u, (uint)TensorType.HQ3_O);
        Assert.Equal(TensorType.HQ4_O, TensorTypes.Parse("hq4_o"));
    }

    /// <summary>Every non-outlier element inside its group's representable range is within half a quantization step
    /// (the codes are the nearest levels of the stored scales); outlier elements are their fp16 values exactly; and
    /// the RMS error stays small next to the data's spread.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Round_trip_is_within_half_a_step_and_outliers_are_exact(TensorType type)
    {
        var rng = new Random(5);
        const int n = 64 * 40;
        var x = QuantTestData.GaussianRow(rng, n);
        var bytes = new byte[type.Traits().BytesFor(n)];
        BlockQuantization.QuantizeRow(type, x, bytes);
        var y = new float[n];
        BlockQuantization.DequantizeRow(type, bytes, y);
        int top = type == TensorType.HQ3_O ? 7 : 15, index = type == TensorType.HQ3_O ? 32 : 40, blockBytes = type.Traits().BlockBytes;
        double squared = 0, squaredX = 0;
        int outliers = 0;
        for (int b = 0; b < n / 64; b++)
        {
            var block = bytes.AsSpan(b * blockBytes, blockBytes);
            float d = QuantTestData.ReadHalf(block, 0), dmin = QuantTestData.ReadHalf(block, 2);
            var slots = new HashSet<int>();
            for (int s = 0; s < 2; s++)
                if (block[index + s] != 255)
                {
                    int j = block[index + s];
                    Assert.InRange(j, 0, 63);
                    Assert.True(slots.Add(j));
                    Assert.Equal((float)(Half)x[64 * b + j], y[64 * b + j]);
                    outliers++;
                }
            for (int j = 0; j < 64; j++)
            {
                int i = 64 * b + j;
                squared += (x[i] - y[i]) * (double)(x[i] - y[i]);
                squaredX += x[i] * (double)x[i];
                if (slots.Contains(j)) continue;
                int stats = block[4 + j / 16];
                float step = d * (stats & 15), low = -(dmin * (stats >> 4)), high = step * top + low;
                if (x[i] >= low && x[i] <= high)
                    Assert.True(Math.Abs(x[i] - y[i]) <= step / 2 * (1 + 1e-5) + 1e-6 * Math.Abs(x[i]),
                        $"{type} block {b} element {j}: {x[i]} → {y[i]}, step {step}");
            }
        }
        Assert.Equal(2 * n / 64, outliers); // Gaussian data: every block has two weights worth keeping exactly
        double relativeRms = Math.Sqrt(squared / squaredX);
        Assert.InRange(relativeRms, 0, type == TensorType.HQ3_O ? 0.2 : 0.1);
    }

    /// <summary>The slots hold, in order, the element with the largest importance-weighted error imp·(w − q)² under
    /// the fit without outliers, then the largest under the fit with that one taken out: recomputed here from the
    /// dequantized fits, in double.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Outliers_are_the_largest_weighted_errors_of_each_refit(TensorType type)
    {
        var rng = new Random(17);
        int blockBytes = type.Traits().BlockBytes;
        for (int trial = 0; trial < 200; trial++)
        {
            var x = QuantTestData.GaussianRow(rng, 64, 0.02f);
            var importance = new float[64];
            for (int j = 0; j < 64; j++) importance[j] = trial % 3 == 0 ? 1 : (float)Math.Exp(3 * QuantTestData.Gaussian(rng));
            var block = new byte[blockBytes];
            var slots = OutlierQuantization.QuantizeBlock(type, x, importance, block);
            Assert.Equal(2, slots.Length);

            var excluded = new bool[64];
            for (int s = 0; s < slots.Length; s++)
            {
                var fitted = new byte[blockBytes];
                OutlierQuantization.Encode(type, OutlierQuantization.Fit(type, x, importance, excluded), x, [], fitted);
                var q = new float[64];
                BlockQuantization.DequantizeRow(type, fitted, q);
                int expected = -1;
                double largest = -1;
                for (int j = 0; j < 64; j++)
                {
                    if (excluded[j]) continue;
                    double e = importance[j] * ((double)x[j] - q[j]) * ((double)x[j] - q[j]);
                    if (e > largest) { largest = e; expected = j; }
                }
                Assert.Equal(expected, slots[s]);
                excluded[slots[s]] = true;
            }

            // What is stored: the last fit's codes, the slots naming the elements in order, with their fp16 values.
            var final = new byte[blockBytes];
            OutlierQuantization.Encode(type, OutlierQuantization.Fit(type, x, importance, excluded), x, slots, final);
            Assert.Equal(final, block);
            var y = new float[64];
            BlockQuantization.DequantizeRow(type, block, y);
            foreach (int j in slots) Assert.Equal((float)(Half)x[j], y[j]);
        }
    }

    /// <summary>Outliers lower the weighted error the importances ask for: taking them never costs, and weighting by
    /// importance lowers Σ imp·(w − q)² against the unit-weight encoding of the same rows.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Importance_weighting_lowers_the_weighted_error(TensorType type)
    {
        var rng = new Random(3);
        const int n = 64 * 64;
        var x = QuantTestData.GaussianRow(rng, n);
        var importance = new float[n];
        for (int j = 0; j < n; j++) importance[j] = (float)Math.Exp(2 * QuantTestData.Gaussian(rng));
        var weighted = new byte[type.Traits().BytesFor(n)];
        var plain = new byte[weighted.Length];
        WeightedQuantization.QuantizeRow(type, x, importance, weighted);
        BlockQuantization.QuantizeRow(type, x, plain);
        double withImportance = WeightedError(type, weighted, x, importance), without = WeightedError(type, plain, x, importance);
        Assert.True(withImportance < without, $"{type}: Σ imp·(w − q)² {withImportance} with importance, {without} without");
    }

    static double WeightedError(TensorType type, byte[] bytes, float[] x, float[] importance)
    {
        var y = new float[x.Length];
        BlockQuantization.DequantizeRow(type, bytes, y);
        double e = 0;
        for (int j = 0; j < x.Length; j++) e += importance[j] * ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
        return e;
    }

    /// <summary>The quantized dot product (Q8_0 activations) against the float dot of the dequantized row with the
    /// dequantized activations: they differ only by float rounding, and against the fp32 activations by the 8-bit
    /// rounding of the activations.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Dot_product_matches_dequantize_and_float_dot(TensorType type)
    {
        var rng = new Random(8);
        foreach (int blocks in new[] { 1, 2, 3, 7, 16, 33 })
        {
            int n = 64 * blocks;
            const int rows = 5;
            long rowBytes = type.Traits().BytesFor(n);
            var weights = new byte[rows * rowBytes];
            var w = new float[rows * n];
            for (int r = 0; r < rows; r++)
            {
                var row = QuantTestData.GaussianRow(rng, n, 0.05f);
                BlockQuantization.QuantizeRow(type, row, weights.AsSpan((int)(r * rowBytes), (int)rowBytes));
                BlockQuantization.DequantizeRow(type, weights.AsSpan((int)(r * rowBytes), (int)rowBytes), w.AsSpan(r * n, n));
            }
            var x = QuantTestData.GaussianRow(rng, n);
            var xq = new byte[TensorType.Q8_0.Traits().BytesFor(n)];
            BlockQuantization.QuantizeForDot(type, x, xq);
            var xd = new float[n];
            BlockQuantization.DequantizeRow(TensorType.Q8_0, xq, xd);
            var y = new float[rows];
            fixed (byte* pw = weights, px = xq) fixed (float* py = y)
                BlockQuantization.DotRows(type, pw, rowBytes, rows, px, n, py);
            for (int r = 0; r < rows; r++)
            {
                double exact = 0, magnitude = 0, fp32 = 0, xMagnitude = 0;
                for (int k = 0; k < n; k++)
                {
                    exact += (double)w[r * n + k] * xd[k];
                    magnitude += Math.Abs((double)w[r * n + k] * xd[k]);
                    fp32 += (double)w[r * n + k] * x[k];
                    xMagnitude += Math.Abs((double)w[r * n + k]) * Math.Abs(x[k]);
                }
                Assert.True(Math.Abs(y[r] - exact) <= 1e-5 * magnitude + 1e-7, $"{type} n={n} row {r}: {y[r]} vs {exact}");
                Assert.True(Math.Abs(y[r] - fp32) <= 2e-2 * xMagnitude, $"{type} n={n} row {r}: {y[r]} vs fp32 {fp32}");
            }
        }
    }

    // ------------------------------------------------------------------ files

    static ModelConfig SmallConfig => new()
    {
        Architecture = "llama", VocabSize = 64, HiddenSize = 64, IntermediateSize = 128, Layers = 2, Heads = 4, KvHeads = 2,
        HeadDim = 16, RotaryDims = 16, MaxPositions = 32,
    };

    static string WriteSmallModel(TempDirectory dir, TensorType type)
    {
        var source = dir.File("f32.gguf");
        using (var w = LlamaWeights.CreateRandom(SmallConfig, TensorType.F32, 7, std: 0.05f, embeddingStd: 0.5f))
            ModelConverter.Write(w, null, source, TensorType.F32, new List<string>());
        var output = dir.File($"{type.Name()}.gguf");
        var report = ModelConverter.Convert(new ConvertOptions(source, output, type));
        Assert.Contains(report.Notes, n => n.Contains("llama.cpp cannot load this file"));
        Assert.Contains(report.Notes, n => n.StartsWith($"{type.Name()}: {type.Traits().BitsPerWeight:0.###} bits per weight"));
        return output;
    }

    /// <summary>A 64-wide model written as the type names it in the file (type id and version key) and loads back.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void A_64_wide_model_is_written_with_the_type_id_and_version_key_and_loads(TensorType type)
    {
        using var dir = new TempDirectory();
        var path = WriteSmallModel(dir, type);
        using (var g = GgufFile.Open(path))
        {
            Assert.Equal((long)OutlierFormat.Version, g.GetInteger(OutlierFormat.VersionKey));
            Assert.Null(g.Get("general.file_type"));
            Assert.All(g.Tensors.Where(t => t.Dimensions.Length == 2), t => Assert.Equal(type, t.Type));
        }
        using var c = Checkpoint.Open(path);
        using var weights = LlamaWeights.Load(c);
        Assert.Equal(type, weights.Layers[0].Query.Type);
    }

    static void Patch(string path, string tensor, int offsetInTensor, byte[] bytes)
    {
        long position;
        using (var g = GgufFile.Open(path))
        {
            var t = g.Tensors.Single(x => x.Name == tensor);
            position = g.DataOffset + t.Offset + offsetInTensor;
        }
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Position = position;
        f.Write(bytes);
    }

    static string LoadError(string path)
    {
        using var c = Checkpoint.Open(path);
        var e = Assert.Throws<ModelFormatException>(() => LlamaWeights.Load(c).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Damaged_blocks_are_refused_at_load_naming_the_tensor(TensorType type)
    {
        int blockBytes = type.Traits().BlockBytes, index = type == TensorType.HQ3_O ? 32 : 40;
        using var dir = new TempDirectory();
        var good = WriteSmallModel(dir, type);
        string Damaged(string name, string tensor, int offset, byte[] bytes)
        {
            var path = dir.File(name);
            File.Copy(good, path, true);
            Patch(path, tensor, offset, bytes);
            return path;
        }
        // an outlier index outside the block, in row 1's second block of blk.1.attn_v
        var message = LoadError(Damaged("index.gguf", "blk.1.attn_v.weight", blockBytes * 1 + index, [77])); // rows of 64: one block each
        Assert.Contains("tensor 'blk.1.attn_v.weight'", message);
        Assert.Contains("row 1", message);
        Assert.Contains("outlier slot 0 names element 77", message);
        // a NaN block scale
        message = LoadError(Damaged("nan.gguf", "blk.0.ffn_up.weight", 0, [0x00, 0x7E]));
        Assert.Contains("tensor 'blk.0.ffn_up.weight'", message);
        Assert.Contains("scale d is NaN", message);
        // two slots naming one element
        message = LoadError(Damaged("twice.gguf", "token_embd.weight", index, [5, 5]));
        Assert.Contains("tensor 'token_embd.weight'", message);
        Assert.Contains("both name element 5", message);
        // an infinite outlier value in a used slot
        message = LoadError(Damaged("inf.gguf", "blk.0.attn_q.weight", index, [3, 255, 0x00, 0x7C]));
        Assert.Contains("outlier slot 0 holds", message);
    }

    [Fact]
    public void A_file_without_the_version_key_is_refused()
    {
        using var dir = new TempDirectory();
        var good = WriteSmallModel(dir, TensorType.HQ3_O);
        var stripped = dir.File("stripped.gguf");
        using (var g = GgufFile.Open(good))
        {
            var w = new GgufWriter();
            foreach (var (key, value) in g.MetadataInOrder)
                if (key != OutlierFormat.VersionKey && key != "general.alignment") w.Set(key, value);
            foreach (var t in g.Tensors)
            {
                var data = new ReadOnlySpan<byte>(g.TensorData(t), (int)t.ByteLength).ToArray();
                w.Add(new GgufWriter.Tensor(t.Name, t.Type, t.Dimensions.Reverse().ToArray(), s => s.Write(data)));
            }
            w.Write(stripped);
        }
        var message = LoadError(stripped);
        Assert.Contains(OutlierFormat.VersionKey, message);
    }

    /// <summary>stories260K (width 64) converted to each type, with verification: logits stay close to f32.</summary>
    [SkippableTheory]
    [InlineData("hq3_o", 6.0)]
    [InlineData("hq4_o", 3.0)]
    public void Stories260K_converted_stays_close_to_f32(string typeName, double tolerance)
    {
        var model = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.gguf");
        using var dir = new TempDirectory();
        var output = dir.File("out.gguf");
        var type = TensorTypes.Parse(typeName);
        var report = ModelConverter.Convert(new ConvertOptions(model, output, type));
        Assert.InRange(report.MaxLogitDifference!.Value, 1e-4, tolerance);
        using var c = Checkpoint.Open(output);
        Assert.Equal(type, c.Tensors.Single(t => t.Name == "blk.0.attn_q.weight").Type);
    }
}
