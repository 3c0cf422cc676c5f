using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Hone.Transforms.Merging;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Transforms;

/// <summary>
/// `hone merge` end to end: mergekit YAML configurations through the library path the command takes, merging tiny
/// random checkpoints into a Hugging Face directory and a GGUF file that load back in Hone with the expected weights;
/// GGUF inputs (another rope layout) merge like their Hugging Face twins; bad configurations and mismatched models are
/// refused naming the key, the file, the model and the tensor; the merge streams (peak memory well under three models').
/// </summary>
public unsafe class ModelMergeTests(ITestOutputHelper output)
{
    static readonly string Tiny = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "llama-hf-f32");

    /// <summary>A random model of the tiny fixture's shape (or another config), written as a Hugging Face directory.</summary>
    static string RandomModel(TempDirectory dir, string name, int seed, Func<ModelConfig, ModelConfig>? reshape = null)
    {
        using var c = Checkpoint.Open(Tiny);
        var config = reshape?.Invoke(c.Config) ?? c.Config;
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, seed, std: 0.3f);
        string path = dir.File(name);
        ModelConverter.Write(w, c, path, TensorType.F32, []);
        return path;
    }

    /// <summary>Every tensor of a checkpoint as fp32, by canonical name, in the Hugging Face (halves) rope layout.</summary>
    static Dictionary<string, float[]> Tensors(string path)
    {
        using var c = Checkpoint.Open(path);
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var result = new Dictionary<string, float[]>();
        foreach (var (role, layer, bias, rows, cols, expert) in LlamaWeights.Expected(c.Config))
        {
            string name = TensorNames.Gguf(role, layer, bias, expert);
            var values = new float[rows * cols];
            if (rows == 1) new ReadOnlySpan<float>(w.Vector(role, layer, bias), cols).CopyTo(values);
            else
            {
                var m = w.Matrices().First(x => x.Name == name);
                bool permuted = c.Config.RopeLayout == RopeLayout.AdjacentPairs && role is TensorRole.AttentionQuery or TensorRole.AttentionKey;
                for (int r = 0; r < rows; r++)
                {
                    int from = permuted ? RopePermutation.AdjacentRowForHalvesRow(r, c.Config.HeadDim) : r;
                    new ReadOnlySpan<float>((float*)m.Data + (long)from * cols, cols).CopyTo(values.AsSpan(r * cols));
                }
            }
            result[name] = values;
        }
        return result;
    }

    static ModelMergeOptions Options(TempDirectory dir, string yaml, string outputName)
    {
        string config = dir.File("merge.yaml");
        File.WriteAllText(config, yaml);
        return ModelMergeOptions.FromConfig(YamlConfigTree.Read(config), dir.File(outputName));
    }

    static void AssertClose(float[] expected, float[] actual, string what, double tolerance = 1e-6)
    {
        double scale = Math.Max(1e-3, expected.Max(x => Math.Abs(x)));
        for (int k = 0; k < expected.Length; k++)
            Assert.True(Math.Abs(expected[k] - actual[k]) <= tolerance * scale, $"{what} element {k}: expected {expected[k]}, got {actual[k]}");
    }

    [Theory]
    [InlineData("merged")]
    [InlineData("merged.gguf")]
    public void Linear_merge_with_a_per_layer_gradient_gives_the_weighted_average(string outputName)
    {
        using var dir = new TempDirectory();
        string a = RandomModel(dir, "a", 1), b = RandomModel(dir, "b", 2);
        var options = Options(dir, """
            merge_method: linear
            models:
              - model: a
                parameters:
                  weight: [1.0, 0.0]
              - model: b
                parameters:
                  weight: 1.0
            dtype: float32
            """, outputName);
        var report = ModelMerger.Merge(options);
        Assert.Equal("linear", report.Method);
        var ta = Tensors(a);
        var tb = Tensors(b);
        var merged = Tensors(dir.File(outputName));
        Assert.Equal(ta.Count, merged.Count);
        using var c = Checkpoint.Open(a);
        foreach (var (role, layer, bias, _, _, expert) in LlamaWeights.Expected(c.Config))
        {
            string name = TensorNames.Gguf(role, layer, bias, expert);
            // Two layers: layer 0 at t = 0 (weight 1), layer 1 at t = 1 (weight 0); the embedding at 0, norm and head at 1.
            double t = MergeSetting.Position(layer, c.Config.Layers, afterLayers: role != TensorRole.TokenEmbedding);
            double wa = 1 - t;
            var expected = ta[name].Zip(tb[name], (x, y) => (float)((wa * x + y) / (wa + 1))).ToArray();
            AssertClose(expected, merged[name], name);
        }
    }

    [Fact]
    public void Slerp_with_filters_writes_the_same_model_to_both_formats_and_takes_gguf_inputs()
    {
        using var dir = new TempDirectory();
        string a = RandomModel(dir, "a", 3), b = RandomModel(dir, "b", 4);
        // b also as a GGUF file: its q/k rows are in llama.cpp's layout and must be matched row by row.
        ModelConverter.Convert(new ConvertOptions(b, dir.File("b.gguf"), Verify: false));
        string yaml(string other) => $"""
            merge_method: slerp
            base_model: a
            models:
              - model: a
              - model: {other}
            parameters:
              t:
                - filter: self_attn
                  value: [0, 1]
                - filter: mlp
                  value: 0.3
                - value: 0.5
            """;
        ModelMerger.Merge(Options(dir, yaml("b"), "hf"));
        ModelMerger.Merge(Options(dir, yaml("b.gguf"), "from-gguf"));
        ModelMerger.Merge(Options(dir, yaml("b"), "out.gguf"));
        var ta = Tensors(a);
        var tb = Tensors(b);
        var hf = Tensors(dir.File("hf"));
        var fromGguf = Tensors(dir.File("from-gguf"));
        var gguf = Tensors(dir.File("out.gguf"));
        foreach (var (name, values) in hf)
        {
            AssertClose(values, fromGguf[name], $"{name} (a GGUF input)");
            AssertClose(values, gguf[name], $"{name} (GGUF output)");
        }
        // Layer 0's attention at t = 0 is the base; layer 1's at t = 1 the other model; a norm (no filter matches) at 0.5.
        AssertClose(ta["blk.0.attn_q.weight"], hf["blk.0.attn_q.weight"], "attention at t = 0");
        AssertClose(tb["blk.1.attn_k.weight"], hf["blk.1.attn_k.weight"], "attention at t = 1");
        var v0 = ta["blk.0.ffn_up.weight"];
        var v1 = tb["blk.0.ffn_up.weight"];
        var expected = new float[v0.Length];
        new SlerpMerge().Merge(new TensorMerge
        {
            Name = "model.layers.0.mlp.up_proj.weight", Rows = 1, Cols = v0.Length, Base = v0, Models = [(float[])v1.Clone()],
            ModelParameters = [new Dictionary<string, double>()], Parameters = new Dictionary<string, double> { ["t"] = 0.3 }, Output = expected,
        });
        AssertClose(expected, hf["blk.0.ffn_up.weight"], "mlp at t = 0.3");
        // The logits agree too (the GGUF output runs with llama.cpp's layout).
        int[] tokens = [1, 5, 9, 13, 2, 40];
        var logitsHf = ModelLogits.Of(dir.File("hf"), tokens);
        var logitsGguf = ModelLogits.Of(dir.File("out.gguf"), tokens);
        Assert.True(logitsHf.Zip(logitsGguf, (x, y) => Math.Abs(x - y)).Max() < 1e-4);
    }

    [Fact]
    public void Ties_through_the_command_line_writes_a_quantized_gguf_that_loads()
    {
        using var dir = new TempDirectory();
        RandomModel(dir, "base", 5); RandomModel(dir, "a", 6); RandomModel(dir, "b", 7);
        File.WriteAllText(dir.File("ties.yaml"), """
            merge_method: ties
            base_model: base
            models:
              - model: a
                parameters: {weight: 0.6, density: 0.5}
              - model: b
                parameters: {weight: 0.4, density: 0.7}
            parameters:
              normalize: true
              int8_mask: true
            """);
        var result = HoneCli.Run("merge", dir.File("ties.yaml"), "--out", dir.File("ties.gguf"), "--type", "q8_0");
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("ties of 3 models", result.Stdout);
        using var c = Checkpoint.Open(dir.File("ties.gguf"));
        Assert.Equal("q8_0", c.Find(TensorRole.FeedForwardUp, 0)!.TypeName);
        // The same merge in f32 through the library, and the q8_0 file within quantization error of it.
        ModelMerger.Merge(Options(dir, File.ReadAllText(dir.File("ties.yaml")), "ties-f32"));
        var exact = Tensors(dir.File("ties-f32"));
        var quantized = Tensors(dir.File("ties.gguf"));
        foreach (var (name, values) in exact) AssertClose(values, quantized[name], name, tolerance: 1e-2);
    }

    [Fact]
    public void Unknown_keys_and_parameters_are_refused_naming_them_and_the_file()
    {
        using var dir = new TempDirectory();
        void Refused(string yaml, params string[] expected)
        {
            var e = Assert.ThrowsAny<Exception>(() => Options(dir, yaml, "out"));
            Assert.True(e is DataFormatException, e.ToString());
            foreach (var s in expected) Assert.Contains(s, e.Message);
            Assert.Contains("merge.yaml", e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
        Refused("merge_method: linear\nmodles:\n  - model: a\n", "unknown key 'modles'", "models");
        Refused("merge_method: linear\nmodels:\n  - model: a\n    parameters: {wieght: 1}\n", "unknown parameter 'wieght'", "weight");
        Refused("merge_method: ties\nbase_model: a\nmodels:\n  - model: b\n    parameters: {weight: 1, gamma: 0.1}\n", "unknown parameter 'gamma'");
        Refused("merge_method: average\nmodels:\n  - model: a\n", "merge_method 'average'", "linear");
        Refused("merge_method: ties\nmodels:\n  - model: a\n", "needs a base_model");
        Refused("merge_method: linear\nslices:\n  - sources: []\n", "slices");
        Refused("merge_method: linear\nmodels:\n  - model: a\ntokenizer_source:\n  source: union\n", "tokenizer mappings");
        Refused("merge_method: linear\nmodels:\n  - model: a\ndtype: float8\n", "dtype 'float8'");
        Refused("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight:\n        - filter: mlp\n          valeu: 1\n", "unknown key 'valeu'");
    }

    [Fact]
    public void Mismatched_shapes_and_missing_parameters_are_refused_naming_the_model_and_tensor()
    {
        using var dir = new TempDirectory();
        RandomModel(dir, "a", 1);
        string wide = RandomModel(dir, "wide", 2, c => c with { IntermediateSize = 64 });
        var e = Assert.Throws<ArgumentException>(() => ModelMerger.Merge(Options(dir, """
            merge_method: task_arithmetic
            base_model: a
            models:
              - model: wide
                parameters: {weight: 1}
            """, "out")));
        Assert.Contains(wide, e.Message);
        Assert.Contains("model.layers.0.mlp.gate_proj.weight", e.Message);
        Assert.Contains("[64, 32]", e.Message);
        Assert.Contains("[48, 32]", e.Message);
        Assert.False(Directory.Exists(dir.File("out")));

        RandomModel(dir, "b", 3);
        var missing = Assert.Throws<ArgumentException>(() => ModelMerger.Merge(Options(dir, """
            merge_method: linear
            models:
              - model: a
                parameters:
                  weight:
                    - filter: mlp
                      value: 1
              - model: b
                parameters: {weight: 1}
            """, "out")));
        Assert.Contains("'weight'", missing.Message);
        Assert.Contains("model.embed_tokens.weight", missing.Message);
        Assert.False(Directory.Exists(dir.File("out")));
    }

    /// <summary>
    /// The merge streams: two models of ~68 MB each (f32) merge in a child process whose peak resident memory stays
    /// under 1.5 × one model's (a hone process's own footprint, measured on `hone inspect`, plus the model's bytes).
    /// Holding the inputs whole, or keeping their mapped pages, would take it past 2 ×.
    /// </summary>
    [Fact]
    public void Peak_memory_of_a_merge_is_about_one_tensor_per_model()
    {
        Assert.True(OperatingSystem.IsLinux(), "peak resident memory is read from /proc (Hone is built and tested on Linux)");
        using var dir = new TempDirectory();
        Func<ModelConfig, ModelConfig> shape = c => c with
        {
            HiddenSize = 384, IntermediateSize = 1024, Layers = 8, Heads = 6, KvHeads = 2, HeadDim = 64, VocabSize = 8192, TiedEmbeddings = true,
            RotaryDims = 64,
        };
        string a = RandomModel(dir, "a", 1, shape), b = RandomModel(dir, "b", 2, shape);
        long modelBytes = new FileInfo(Path.Combine(a, "model.safetensors")).Length;
        File.WriteAllText(dir.File("slerp.yaml"), "merge_method: slerp\nbase_model: a\nmodels:\n  - model: b\nparameters:\n  t: 0.4\n");
        long runtime = PeakResidentBytes("inspect", a);
        long merge = PeakResidentBytes("merge", dir.File("slerp.yaml"), "--out", dir.File("merged"));
        double ratio = (double)merge / (runtime + modelBytes);
        output.WriteLine($"model {modelBytes / 1e6:F1} MB, hone inspect peak {runtime / 1e6:F1} MB, merge peak {merge / 1e6:F1} MB: {ratio:F2} × one model's resident memory");
        Assert.True(ratio < 1.5, $"the merge peaked at {merge / 1e6:F1} MB, {ratio:F2} × one model's {(runtime + modelBytes) / 1e6:F1} MB");
    }

    /// <summary>A child hone's VmHWM (its resident high-water mark), polled from /proc until it exits: the mark only
    /// rises, so the last reading is the peak up to the last few milliseconds of the run.</summary>
    static long PeakResidentBytes(params string[] args)
    {
        using var child = HoneCli.Start(null, args);
        long peak = 0;
        while (!child.HasExited)
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{child.Id}/status"))
                    if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                        peak = Math.Max(peak, long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024);
            }
            catch (IOException) { }
            Thread.Sleep(2);
        }
        var result = child.WaitForExit();
        Assert.True(result.ExitCode == 0, result.ToString());
        return peak;
    }
}
