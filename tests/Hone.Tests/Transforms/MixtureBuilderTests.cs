using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms;
using Hone.Transforms.Merging;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>
/// `hone moe build` (mergekit-moe): the built Mixtral holds the base's attention, norms and embeddings, each expert's
/// MLP (an adapter folded in first with "model+adapter"), routers as the gate mode defines them; identical experts give
/// the base's logits exactly; bad configurations fail naming the file and line.
/// </summary>
public unsafe class MixtureBuilderTests
{
    static readonly WorkerPool Pool = new(2);

    /// <summary>A copy of the tiny chat model whose MLPs differ (scaled down projection, perturbed gate).</summary>
    static string Variant(TempDirectory dir, string name, float downScale)
    {
        using var c = Checkpoint.Open(TinyChatModel.Path);
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var rng = new Random(name.Length);
        foreach (var layer in w.Layers)
        {
            float* down = (float*)layer.Down.Data, gate = (float*)layer.Gate.Data;
            for (long i = 0; i < (long)layer.Down.Rows * layer.Down.Cols; i++) down[i] *= downScale;
            for (long i = 0; i < (long)layer.Gate.Rows * layer.Gate.Cols; i++) gate[i] += (float)(rng.NextDouble() - 0.5) * 0.1f;
        }
        string path = dir.File(name);
        ModelConverter.Write(w, c, path, TensorType.F32, []);
        foreach (var f in Directory.GetFiles(TinyChatModel.Path).Where(f => Path.GetFileName(f).StartsWith("tokenizer") || f.EndsWith("generation_config.json")))
            if (!File.Exists(Path.Combine(path, Path.GetFileName(f)))) File.Copy(f, Path.Combine(path, Path.GetFileName(f)));
        return path;
    }

    static float[] Logits(string model, int[] tokens)
    {
        using var c = Checkpoint.Open(model);
        using var w = LlamaWeights.Load(c);
        using var m = new LlamaModel(w, Pool, maxContext: 32);
        var logits = new float[tokens.Length * c.Config.VocabSize];
        m.Forward(tokens, logits, allLogits: true, promptRows: true);
        return logits;
    }

    [Theory]
    [InlineData("out-hf")]
    [InlineData("out.gguf")]
    public void Identical_experts_give_the_base_models_logits(string output)
    {
        using var dir = new TempDirectory();
        var expert = new ExpertSource(TinyChatModel.Path, PositivePrompts: ["Where is my order?"]);
        var report = MixtureBuilder.Build(new MixtureBuildOptions(TinyChatModel.Path,
            [expert, expert with { PositivePrompts = ["What is the return policy?"] }], dir.File(output), AllowIdenticalExperts: true));
        Assert.Equal(2, report.Experts);
        int[] tokens = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48];
        var want = Logits(TinyChatModel.Path, tokens);
        var got = Logits(dir.File(output), tokens);
        double worst = want.Zip(got, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst < 1e-4, $"logits differ by {worst}");
        using var c = Checkpoint.Open(dir.File(output));
        Assert.Equal("mixtral", c.Config.Architecture);
        Assert.Equal(2, c.Config.Experts);
    }

    [Fact]
    public void Experts_hold_their_models_mlps_and_hidden_routers_follow_the_prompts()
    {
        using var dir = new TempDirectory();
        string a = Variant(dir, "a", 0.5f), b = Variant(dir, "b", 2f);
        string[] positiveA = ["Where is my order?", "Track my package"], negativeA = ["What is the return policy?"], positiveB = ["Can I return shoes?"];
        var options = new MixtureBuildOptions(TinyChatModel.Path,
            [new ExpertSource(a, PositivePrompts: positiveA, NegativePrompts: negativeA), new ExpertSource(b, PositivePrompts: positiveB)],
            dir.File("moe"), GateMode.Hidden, ExpertsPerToken: 1);
        MixtureBuilder.Build(options);
        using var moeCheckpoint = Checkpoint.Open(dir.File("moe"));
        using var moe = LlamaWeights.Load(moeCheckpoint);
        using var baseCheckpoint = Checkpoint.Open(TinyChatModel.Path);
        using var baseWeights = LlamaWeights.Load(baseCheckpoint);
        Assert.Equal(1, moe.Config.ExpertsPerToken);
        int d = moe.Config.HiddenSize;
        foreach (var (path, e) in new[] { (a, 0), (b, 1) })
        {
            using var c = Checkpoint.Open(path);
            using var w = LlamaWeights.Load(c);
            for (int l = 0; l < moe.Config.Layers; l++)
            {
                AssertSame(w.Layers[l].Gate, moe.Layers[l].ExpertGate![e]);
                AssertSame(w.Layers[l].Up, moe.Layers[l].ExpertUp![e]);
                AssertSame(w.Layers[l].Down, moe.Layers[l].ExpertDown![e]);
                AssertSame(baseWeights.Layers[l].Query, moe.Layers[l].Query);
            }
        }
        // Layer 0's router rows: the residual entering layer 0 is the token embedding, so a row is the unit-length mean
        // embedding of the positive prompts' last tokens minus that of the negatives'.
        var tokenizer = baseCheckpoint.LoadTokenizer();
        double[] MeanLast(string[] prompts)
        {
            var sum = new double[d];
            var row = new float[d];
            foreach (var p in prompts)
            {
                var ids = tokenizer.Encode(p, addSpecialTokens: false);
                fixed (float* r = row) baseWeights.TokenEmbedding.ReadRow(ids[^1], r);
                for (int i = 0; i < d; i++) sum[i] += row[i] / prompts.Length;
            }
            return sum;
        }
        var expectA = MeanLast(positiveA).Zip(MeanLast(negativeA), (x, y) => x - y).ToArray();
        var expectB = MeanLast(positiveB);
        float* router = (float*)moe.Layers[0].Router!.Data;
        foreach (var (expect, e) in new[] { (expectA, 0), (expectB, 1) })
        {
            double norm = Math.Sqrt(expect.Sum(x => x * x));
            for (int i = 0; i < d; i++) Assert.Equal(expect[i] / norm, router[e * d + i], 4);
        }
    }

    static void AssertSame(WeightMatrix want, WeightMatrix got)
    {
        Assert.Equal(want.Rows, got.Rows);
        Assert.Equal(want.Cols, got.Cols);
        Assert.True(new ReadOnlySpan<byte>(want.Data, (int)want.ByteLength).SequenceEqual(new ReadOnlySpan<byte>(got.Data, (int)got.ByteLength)), $"{got.Name} differs from {want.Name}");
    }

    [Fact]
    public void A_model_plus_adapter_expert_folds_the_adapters_mlp_part_in()
    {
        using var dir = new TempDirectory();
        string adapterDir = dir.File("adapter");
        var rng = new Random(3);
        var adapters = new List<LoraAdapter>
        {
            new("blk.0.ffn_up.weight", 2, 32, 64, 4), new("blk.0.attn_q.weight", 2, 32, 32, 4),
            new("blk.1.ffn_up.weight", 2, 32, 64, 4), new("blk.1.attn_q.weight", 2, 32, 32, 4),
        };
        foreach (var x in adapters)
        {
            for (long i = 0; i < (long)x.Rank * x.In; i++) x.A[i] = (float)(rng.NextDouble() - 0.5);
            for (long i = 0; i < (long)x.Out * x.Rank; i++) x.B[i] = (float)(rng.NextDouble() - 0.5);
        }
        PeftAdapter.Save(adapterDir, adapters, new PeftAdapterConfig(2, 4, 0, PeftTargets.Of(["up_proj", "q_proj"]), false, AdapterKinds.Lora, null));
        string config = dir.File("moe.yaml");
        File.WriteAllText(config, $"""
            base_model: {TinyChatModel.Path}
            gate_mode: cheap_embed
            experts:
              - source_model: {TinyChatModel.Path}
                positive_prompts: ["orders"]
              - source_model: {TinyChatModel.Path}+{adapterDir}
                positive_prompts: ["returns"]
            """);
        var report = MixtureBuilder.Build(MixtureBuildOptions.FromConfig(Hone.Formats.YamlConfigTree.Read(config), dir.File("moe")));
        Assert.Contains(report.Notes, n => n.Contains("2 of the adapter's 4 projections are outside the MLP"));
        using var moeCheckpoint = Checkpoint.Open(dir.File("moe"));
        using var moe = LlamaWeights.Load(moeCheckpoint);
        using var c = Checkpoint.Open(TinyChatModel.Path);
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var up = (float*)w.Layers[0].Up.Data;
        var delta = adapters[0].MergedDelta(w.Layers[0].Up);
        var got = (float*)moe.Layers[0].ExpertUp![1].Data;
        for (int i = 0; i < delta.Length; i++) Assert.Equal(up[i] + delta[i], got[i]);
        AssertSame(w.Layers[0].Up, moe.Layers[0].ExpertUp![0]);
        AssertSame(w.Layers[0].Query, moe.Layers[0].Query); // attention from the base, not the adapter
        // cheap_embed: the same router in every layer.
        int n = 2 * moe.Config.HiddenSize;
        Assert.True(new ReadOnlySpan<float>(moe.Layers[0].Router!.Data, n).SequenceEqual(new ReadOnlySpan<float>(moe.Layers[1].Router!.Data, n)));
        foreach (var x in adapters) x.Dispose();
    }

    [Theory]
    [InlineData("base_model: M\nexperts:\n  - source_model: M\n    positiv_prompts: [a]\n", "4", "unknown key 'positiv_prompts'")]
    [InlineData("base_model: M\ngate_mode: smart\nexperts:\n  - source_model: M\n", "2", "gate_mode 'smart'")]
    [InlineData("base_model: M\nexperts: []\nshared_experts:\n  - source_model: M\n", "4", "shared_experts")]
    [InlineData("experts: []\n", "1", "base_model is required")]
    public void A_bad_configuration_names_the_file_and_line(string yaml, string line, string message)
    {
        using var dir = new TempDirectory();
        string config = dir.File("moe.yaml");
        File.WriteAllText(config, yaml.Replace("M", TinyChatModel.Path));
        var e = Assert.Throws<DataFormatException>(() => MixtureBuildOptions.FromConfig(YamlConfigTree.Read(config), dir.File("out")));
        Assert.Contains($"{config}:{line}", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void What_cannot_make_a_useful_mixture_is_refused_before_anything_is_written()
    {
        using var dir = new TempDirectory();
        var same = new ExpertSource(TinyChatModel.Path, PositivePrompts: ["a"]);
        var identical = Assert.Throws<ArgumentException>(() => MixtureBuilder.Build(new MixtureBuildOptions(TinyChatModel.Path,
            [same, same with { PositivePrompts = ["b"] }], dir.File("o1"))));
        Assert.Contains("every expert is the same model", identical.Message);
        var prompts = Assert.Throws<ArgumentException>(() => MixtureBuilder.Build(new MixtureBuildOptions(TinyChatModel.Path,
            [same, same], dir.File("o2"), AllowIdenticalExperts: true)));
        Assert.Contains("the same prompts", prompts.Message);
        var noPrompts = Assert.Throws<ArgumentException>(() => MixtureBuilder.Build(new MixtureBuildOptions(TinyChatModel.Path,
            [same, new ExpertSource(TinyChatModel.Path)], dir.File("o3"), AllowIdenticalExperts: true)));
        Assert.Contains("has no positive_prompts", noPrompts.Message);
        var shape = Assert.Throws<ArgumentException>(() => MixtureBuilder.Build(new MixtureBuildOptions(TinyChatModel.Path,
            [same, new ExpertSource(Hone.Tests.Model.ReferenceLogitsTests.FixturePath("llama-hf-f32"), PositivePrompts: ["b"])], dir.File("o4"))));
        Assert.Contains("experts must have the base's shape", shape.Message);
        Assert.False(Directory.Exists(dir.File("o4")));
    }

    [Fact]
    public void Condition_number_of_router_rows()
    {
        float[] orthogonal = [1, 0, 0, 0, 1, 0];
        Assert.Equal(1, MixtureBuilder.ConditionNumber(orthogonal, 2, 3), 9);
        float[] parallel = [1, 0, 0, 0.99f, 0.01f, 0];
        Assert.True(MixtureBuilder.ConditionNumber(parallel, 2, 3) > 5);
    }

    [Fact]
    public void The_cli_upcycles_a_dense_model_into_a_mixture_that_trains()
    {
        using var dir = new TempDirectory();
        var build = HoneCli.Run("moe", "build", "--upcycle", TinyChatModel.Path, "--experts", "4", "-k", "2", "--out", dir.File("moe.gguf"), "--json");
        Assert.True(build.ExitCode == 0, build.ToString());
        var report = JsonNode.Parse(build.Stdout)!;
        Assert.Equal(4, (int)report["experts"]!);
        var inspect = HoneCli.Run("inspect", dir.File("moe.gguf"));
        Assert.Contains("experts      4 per layer, 2 per token", inspect.Stdout);
        string text = dir.File("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 40).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        var hf = HoneCli.Run("moe", "build", "--upcycle", TinyChatModel.Path, "--experts", "4", "--out", dir.File("moe-hf"));
        Assert.True(hf.ExitCode == 0, hf.ToString());
        var train = HoneCli.Run("train", dir.File("moe-hf"), "--stage", "cpt", "--method", "full", "--data", text, "--out", dir.File("run"),
            "--max-steps", "2", "--seq-len", "32", "--batch-size", "2", "--eval-every", "0", "--val-split", "0", "--save-every", "0");
        Assert.True(train.ExitCode == 0, train.ToString());
        var missing = HoneCli.Run("moe", "build", "--out", dir.File("x"));
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("a configuration file is required", missing.Stderr);
    }
}
