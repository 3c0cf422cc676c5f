using System.Buffers.Binary;
using System.Text;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Hone.Transforms;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>hone imatrix: collection, llama.cpp's imatrix GGUF layout, merging, refusals; hone convert --imatrix and --type-for.</summary>
public unsafe class ImportanceMatrixTests
{
    static readonly WorkerPool Pool = new(2);
    static readonly int[] Tokens = [1, 5, 17, 33, 2, 90, 41, 8, 64, 12, 77, 3];

    static ImportanceMatrix Collect(string variant, int[] tokens, out LlamaWeights weights, out Checkpoint checkpoint)
    {
        checkpoint = Checkpoint.Open(ReferenceLogitsTests.FixturePath(variant));
        weights = LlamaWeights.Load(checkpoint);
        var matrix = new ImportanceMatrix();
        using var model = new LlamaModel(weights, Pool, maxContext: 32) { Precision = ComputePrecision.Exact };
        model.ActivationObserver = new ImportanceCollector(matrix, weights.Config.Experts);
        model.Forward(tokens, new float[weights.Config.VocabSize]);
        return matrix;
    }

    /// <summary>Records copies of every projection input, to check the collector's sums against.</summary>
    sealed class Recorder : IActivationObserver
    {
        public readonly List<(string Name, float[] Rows, int Count)> Seen = new();
        public void Observe(WeightMatrix weight, float* x, int rows, int ldx)
        {
            var copy = new float[rows * weight.Cols];
            for (int r = 0; r < rows; r++) new ReadOnlySpan<float>(x + (long)r * ldx, weight.Cols).CopyTo(copy.AsSpan(r * weight.Cols));
            Seen.Add((weight.Name, copy, rows));
        }
    }

    [Fact]
    public void Sums_equal_a_direct_computation_of_the_squared_activations()
    {
        var m = Collect("llama-gguf-f32", Tokens, out var weights, out var checkpoint);
        using var _ = checkpoint; using var __ = weights;
        var c = weights.Config;
        Assert.Equal(c.Layers * 7, m.Entries.Count); // q, k, v, output, gate, up, down per layer; no token_embd, no output head
        Assert.DoesNotContain("output.weight", m.Entries.Keys);

        // Layer 0's q/k/v input is the RMS-normed token embedding times attn_norm: computed here from the weights alone.
        var expected = new double[c.HiddenSize];
        var row = new float[c.HiddenSize];
        fixed (float* r = row)
            foreach (int t in Tokens)
            {
                weights.TokenEmbedding.ReadRow(t, r);
                double ms = row.Sum(v => (double)v * v) / c.HiddenSize;
                double scale = 1 / Math.Sqrt(ms + c.RmsNormEps);
                for (int j = 0; j < c.HiddenSize; j++) { double h = row[j] * scale * weights.Layers[0].AttentionNorm[j]; expected[j] += h * h; }
            }
        foreach (var name in new[] { "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight" })
        {
            var e = m.Entries[name];
            Assert.Equal(Tokens.Length, e.Counts.Single());
            for (int j = 0; j < c.HiddenSize; j++) Assert.Equal(expected[j], e.SumSquares[j], 1e-4 * Math.Max(1, expected[j]));
        }

        // Every other entry: the sums of the squared inputs the projections saw, column by column.
        var recorder = new Recorder();
        using (var model = new LlamaModel(weights, Pool, maxContext: 32) { Precision = ComputePrecision.Exact, ActivationObserver = recorder })
            model.Forward(Tokens, new float[c.VocabSize]);
        foreach (var (name, rows, count) in recorder.Seen.Where(s => s.Name.StartsWith("blk.")))
        {
            var e = m.Entries[name];
            Assert.Equal(count, e.Counts[0]);
            for (int j = 0; j < e.Columns; j++)
            {
                double s2 = 0, s1 = 0;
                for (int r = 0; r < count; r++) { double v = rows[r * e.Columns + j]; s2 += v * v; s1 += v; }
                Assert.Equal(s2, e.SumSquares[j], 1e-9 * Math.Max(1, s2));
                Assert.Equal(s1, e.Sums![j], 1e-9 * Math.Max(1, Math.Abs(s1)));
            }
        }
    }

    [Fact]
    public void Experts_get_one_matrix_each_and_count_their_routed_rows()
    {
        var m = Collect("mixtral-gguf-f32", Tokens, out var weights, out var checkpoint);
        using var _ = checkpoint; using var __ = weights;
        var c = weights.Config;
        var gate = m.Entries["blk.0.ffn_gate_exps.weight"];
        Assert.Equal(c.Experts, gate.Matrices);
        Assert.Equal(c.HiddenSize, gate.Columns);
        Assert.Equal((long)Tokens.Length * c.ExpertsPerToken, gate.Counts.Sum()); // each token's rows go to its k experts
        Assert.Equal(gate.Counts, m.Entries["blk.0.ffn_down_exps.weight"].Counts);
        Assert.Equal(c.ExpertFeedForwardSize, m.Entries["blk.0.ffn_down_exps.weight"].Columns);
        Assert.Equal(Tokens.Length, m.Entries["blk.0.ffn_gate_inp.weight"].Counts.Single()); // the router sees every row
        for (int e = 0; e < c.Experts; e++)
            if (gate.Counts[e] == 0) Assert.All(gate.SumSquares.Skip(e * gate.Columns).Take(gate.Columns), v => Assert.Equal(0, v));
    }

    [Fact]
    public void Gguf_layout_round_trips_as_llama_cpp_writes_it()
    {
        var m = Collect("mixtral-gguf-f32", Tokens, out var weights, out var checkpoint);
        using var _ = checkpoint; using var __ = weights;
        m.ChunkCount = 3; m.ChunkSize = 12; m.Datasets.Add("calibration.txt");
        using var dir = new TempDirectory();
        var path = dir.File("imatrix.gguf");
        m.Write(path);
        using (var g = GgufFile.Open(path))
        {
            Assert.Equal("imatrix", g.Get("general.type")!.AsString(path, "general.type"));
            Assert.Equal(3, g.GetInteger(ImportanceMatrix.ChunkCountKey));
            Assert.Equal(12, g.GetInteger(ImportanceMatrix.ChunkSizeKey));
            Assert.True(g.TryGetTensor("blk.0.attn_q.weight.in_sum2", out var dense));
            Assert.Equal(new long[] { 32 }, dense.Dimensions); // ggml drops trailing unit dimensions
            Assert.True(g.TryGetTensor("blk.0.attn_q.weight.counts", out var denseCounts));
            Assert.Equal(new long[] { 1 }, denseCounts.Dimensions);
            Assert.True(g.TryGetTensor("blk.0.ffn_up_exps.weight.in_sum2", out var experts));
            Assert.Equal(new long[] { 32, 4 }, experts.Dimensions);
            Assert.True(g.TryGetTensor("blk.0.ffn_up_exps.weight.counts", out var expertCounts));
            Assert.Equal(new long[] { 1, 4 }, expertCounts.Dimensions);
            Assert.True(g.TryGetTensor("blk.0.ffn_up_exps.weight.in_sum", out var plainSums));
            Assert.Equal(new long[] { 32, 4 }, plainSums.Dimensions);
        }
        var back = ImportanceMatrix.Read(path);
        Assert.Equal(["calibration.txt"], back.Datasets);
        Assert.Equal((3, 12), (back.ChunkCount, back.ChunkSize));
        Assert.Equal(m.Entries.Keys, back.Entries.Keys);
        foreach (var (name, e) in m.Entries)
        {
            var b = back.Entries[name];
            Assert.Equal((e.Columns, e.Matrices), (b.Columns, b.Matrices));
            Assert.Equal(e.Counts, b.Counts);
            for (int i = 0; i < e.SumSquares.Length; i++) Assert.Equal((float)e.SumSquares[i], (float)b.SumSquares[i]);
            for (int i = 0; i < e.Sums!.Length; i++) Assert.Equal((float)e.Sums[i], (float)b.Sums![i]);
        }
    }

    [Fact]
    public void Merging_two_files_adds_sums_and_counts()
    {
        using var dir = new TempDirectory();
        var a = Collect("llama-gguf-f32", Tokens[..6], out var w1, out var c1);
        var b = Collect("llama-gguf-f32", Tokens[6..], out var w2, out var c2);
        var whole = Collect("llama-gguf-f32", Tokens[..6], out var w3, out var c3);
        using var _ = c1; using var __ = w1; using var ___ = c2; using var ____ = w2; using var _____ = c3; using var ______ = w3;
        a.ChunkCount = 1; a.ChunkSize = 6; a.Datasets.Add("a.txt");
        b.ChunkCount = 2; b.ChunkSize = 6; b.Datasets.Add("b.txt");
        a.Write(dir.File("a.gguf"));
        b.Write(dir.File("b.gguf"));
        var report = ImportanceMatrixBuilder.Build(new ImatrixOptions(null, null, dir.File("ab.gguf"), InFiles: [dir.File("a.gguf"), dir.File("b.gguf")]));
        Assert.Equal(3, report.ChunkCount);
        var merged = ImportanceMatrix.Read(dir.File("ab.gguf"));
        Assert.Equal(["a.txt", "b.txt"], merged.Datasets);
        foreach (var (name, e) in merged.Entries)
        {
            Assert.Equal(a.Entries[name].Counts[0] + b.Entries[name].Counts[0], e.Counts[0]);
            for (int j = 0; j < e.Columns; j++)
                Assert.Equal((float)a.Entries[name].SumSquares[j] + (float)b.Entries[name].SumSquares[j], e.SumSquares[j], 1e-5 * Math.Max(1, e.SumSquares[j]));
        }
        // Entries of different shapes refuse to merge, naming the file and the tensor.
        var other = new ImportanceMatrix();
        other.Entries["blk.0.attn_q.weight"] = new ImportanceMatrix.Entry("blk.0.attn_q.weight", 16, 1);
        other.Write(dir.File("bad.gguf"));
        var error = Assert.Throws<ModelFormatException>(() => ImportanceMatrixBuilder.Build(new ImatrixOptions(null, null, dir.File("x.gguf"), InFiles: [dir.File("a.gguf"), dir.File("bad.gguf")])));
        Assert.Contains("bad.gguf", error.File);
        Assert.Contains("blk.0.attn_q.weight", error.Message);
    }

    [Fact]
    public void Reads_the_legacy_dat_layout()
    {
        using var dir = new TempDirectory();
        var path = dir.File("old.dat");
        using (var s = File.Create(path))
        using (var w = new BinaryWriter(s))
        {
            w.Write(1);
            var name = Encoding.UTF8.GetBytes("blk.0.ffn_down.weight");
            w.Write(name.Length); w.Write(name);
            w.Write(10); // ncall
            w.Write(3);  // values
            w.Write(2f); w.Write(4f); w.Write(6f);
            w.Write(10); // chunk count
            var ds = Encoding.UTF8.GetBytes("wiki.txt");
            w.Write(ds.Length); w.Write(ds);
        }
        var m = ImportanceMatrix.Read(path);
        var e = m.Entries["blk.0.ffn_down.weight"];
        Assert.Equal(10, e.Counts[0]);
        Assert.Equal(new[] { 0.2f, 0.4f, 0.6f }, m.ColumnWeights("blk.0.ffn_down.weight", 0, 3, path));
        Assert.Equal(["wiki.txt"], m.Datasets);
        Assert.Equal(10, m.ChunkCount);
    }

    [Fact]
    public void Damaged_and_foreign_files_are_refused_naming_the_file()
    {
        using var dir = new TempDirectory();
        var text = dir.File("notes.txt");
        File.WriteAllText(text, "this is not an importance matrix at all");
        Assert.Contains("not an importance matrix", Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Read(text)).Message);
        // A model GGUF is a GGUF but not an importance matrix.
        var modelPath = ReferenceLogitsTests.FixturePath("llama-gguf-f32");
        var foreign = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Read(modelPath));
        Assert.Equal(modelPath, foreign.File);
        Assert.Contains("not an importance matrix", foreign.Message);
        // A truncated imatrix GGUF.
        var m = new ImportanceMatrix { ChunkCount = 1, ChunkSize = 4 };
        m.Entries["blk.0.attn_q.weight"] = new ImportanceMatrix.Entry("blk.0.attn_q.weight", 32, 1);
        var good = dir.File("good.gguf");
        m.Write(good);
        var bytes = File.ReadAllBytes(good);
        var cut = dir.File("cut.gguf");
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 40)]);
        Assert.Equal(cut, Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Read(cut)).File);
        // A sums tensor without its counts.
        var half = new GgufWriter();
        half.Set("general.type", GgufValue.Of("imatrix"));
        half.Add(new GgufWriter.Tensor("blk.0.attn_q.weight.in_sum2", TensorType.F32, [4], s => s.Write(new byte[16])));
        var lonely = dir.File("lonely.gguf");
        half.Write(lonely);
        var missing = Assert.Throws<ModelFormatException>(() => ImportanceMatrix.Read(lonely));
        Assert.Contains("blk.0.attn_q.weight has no .counts", missing.Message);
    }

    static byte[] TensorBytes(string ggufPath, string name, out TensorType type)
    {
        using var g = GgufFile.Open(ggufPath);
        var t = g.Tensors.Single(x => x.Name == name);
        type = t.Type;
        return new ReadOnlySpan<byte>(g.TensorData(t), (int)t.ByteLength).ToArray();
    }

    [Fact]
    public void Convert_weighs_q4_0_by_the_imatrix_and_refuses_a_wrong_width()
    {
        using var dir = new TempDirectory();
        var source = ReferenceLogitsTests.FixturePath("llama-gguf-f32");
        var m = Collect("llama-gguf-f32", Tokens, out var weights, out var checkpoint);
        checkpoint.Dispose(); weights.Dispose();
        m.ChunkCount = 1; m.ChunkSize = Tokens.Length; m.Datasets.Add("tokens");
        // Make one column of attn_q dominant so the weighted encoding must differ from the plain one.
        m.Entries["blk.0.attn_q.weight"].SumSquares[3] *= 1e4;
        m.Entries.Remove("blk.1.attn_q.weight"); // a missing entry: that tensor is quantized unweighted, and named
        var imatrix = dir.File("imatrix.gguf");
        m.Write(imatrix);
        var plain = ModelConverter.Convert(new ConvertOptions(source, dir.File("plain.gguf"), TensorType.Q4_0, Verify: false));
        var weighted = ModelConverter.Convert(new ConvertOptions(source, dir.File("weighted.gguf"), TensorType.Q4_0, Verify: false, Imatrix: imatrix));
        Assert.NotEqual(TensorBytes(dir.File("plain.gguf"), "blk.0.attn_q.weight", out _), TensorBytes(dir.File("weighted.gguf"), "blk.0.attn_q.weight", out _));
        Assert.Equal(TensorBytes(dir.File("plain.gguf"), "blk.1.attn_q.weight", out _), TensorBytes(dir.File("weighted.gguf"), "blk.1.attn_q.weight", out _));
        Assert.Equal(TensorBytes(dir.File("plain.gguf"), "token_embd.weight", out _), TensorBytes(dir.File("weighted.gguf"), "token_embd.weight", out _));
        Assert.Contains(weighted.Notes, n => n.Contains("no entry") && n.Contains("blk.1.attn_q.weight") && n.Contains("token_embd.weight"));
        Assert.DoesNotContain(plain.Notes, n => n.Contains("importance"));
        Assert.Null(plain.ImportanceWeightedError);
        // The report measures what the importance bought: a lower importance-weighted error than unweighted rounding.
        Assert.True(weighted.ImportanceWeightedError!.With < weighted.ImportanceWeightedError.Without, $"{weighted.ImportanceWeightedError}");

        // An entry of the wrong width: refused, naming the file and the tensor; nothing written.
        var wrong = new ImportanceMatrix { ChunkCount = 1, ChunkSize = 4 };
        wrong.Entries["blk.0.attn_k.weight"] = new ImportanceMatrix.Entry("blk.0.attn_k.weight", 48, 1);
        var wrongPath = dir.File("wrong.gguf");
        wrong.Write(wrongPath);
        var error = Assert.Throws<ModelFormatException>(() =>
            ModelConverter.Convert(new ConvertOptions(source, dir.File("never.gguf"), TensorType.Q4_0, Imatrix: wrongPath)));
        Assert.Equal(wrongPath, error.File);
        Assert.Contains("blk.0.attn_k.weight has 48 columns", error.Message);
        Assert.False(File.Exists(dir.File("never.gguf")));
    }

    [Fact]
    public void Type_for_picks_types_per_tensor_and_refuses_a_pattern_that_matches_nothing()
    {
        using var dir = new TempDirectory();
        var source = ReferenceLogitsTests.FixturePath("llama-gguf-f32");
        var output = dir.File("mixed.gguf");
        var report = ModelConverter.Convert(new ConvertOptions(source, output, TensorType.Q8_0, Verify: true,
            TypeFor: [TypeRule.Parse("attn_v=q4_0"), TypeRule.Parse(@"blk\.1\.attn_q=f16"), TypeRule.Parse("attn_q=q4_0")]));
        using (var g = GgufFile.Open(output))
        {
            TensorType TypeOf(string name) => g.Tensors.Single(t => t.Name == name).Type;
            Assert.Equal(TensorType.Q4_0, TypeOf("blk.0.attn_v.weight"));
            Assert.Equal(TensorType.Q4_0, TypeOf("blk.1.attn_v.weight"));
            Assert.Equal(TensorType.Q4_0, TypeOf("blk.0.attn_q.weight"));
            Assert.Equal(TensorType.F16, TypeOf("blk.1.attn_q.weight")); // the first matching rule wins
            Assert.Equal(TensorType.Q8_0, TypeOf("blk.0.attn_k.weight"));
            Assert.Equal(TensorType.F32, TypeOf("blk.0.attn_norm.weight")); // vectors stay f32
        }
        Assert.Contains(report.Notes, n => n == "--type-for attn_v=q4_0: 2 tensors");
        var error = Assert.Throws<ArgumentException>(() =>
            ModelConverter.Convert(new ConvertOptions(source, dir.File("never.gguf"), TensorType.Q8_0, TypeFor: [TypeRule.Parse("ffn_dwn=q4_0")])));
        Assert.Contains("'ffn_dwn=q4_0' matches no 2D weight", error.Message);
        Assert.False(File.Exists(dir.File("never.gguf")));
        Assert.Contains("PATTERN=TYPE", Assert.Throws<ArgumentException>(() => TypeRule.Parse("ffn_down")).Message);
        Assert.Throws<ArgumentException>(() => TypeRule.Parse("ffn_down=q3_k"));
    }
}
