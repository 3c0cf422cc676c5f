using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Formats;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms.Pruning;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>Width slicing: folding the norms and rotating the residual stream without deleting anything leaves the
/// model's logits as they were (dense and mixture of experts with a shared expert); deleting directions shrinks every
/// matrix that touches the stream and keeps the eigen-energy it reports.</summary>
public class WidthSlicerTests
{
    static string Text(TempDirectory dir)
    {
        string text = dir.File("calibration.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 60).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        return text;
    }

    /// <summary>A model whose norms are not all ones (so folding them matters), from the tiny model's config and tokenizer.</summary>
    static unsafe string WithNorms(TempDirectory dir, string basePath, string name)
    {
        using var c = Checkpoint.Open(basePath);
        using var w = LlamaWeights.CreateRandom(c.Config, TensorType.F32, seed: 9, std: 0.2f, embeddingStd: 1f);
        var rng = new Random(3);
        foreach (var (role, layer, bias, rows, cols, _) in LlamaWeights.Expected(c.Config))
            if (rows == 1 && !bias && role is TensorRole.AttentionNorm or TensorRole.FeedForwardNorm or TensorRole.OutputNorm)
            {
                float* v = w.Vector(role, layer, false);
                for (int i = 0; i < cols; i++) v[i] = 0.5f + (float)rng.NextDouble();
            }
        string path = dir.File(name);
        Hone.Transforms.ModelConverter.Write(w, c, path, TensorType.F32, []);
        return path;
    }

    static float[] Logits(string model, string text)
    {
        using var loaded = LoadedModel.Open(model, precision: ComputePrecision.Exact);
        var tokens = loaded.Tokenizer.Encode(text);
        var logits = new float[tokens.Length * loaded.Weights.Config.VocabSize];
        loaded.Model.Forward(tokens, logits, allLogits: true);
        return logits;
    }

    [Theory]
    [InlineData("dense", WidthRotation.Single)]
    [InlineData("qwen-moe", WidthRotation.Single)]
    [InlineData("dense", WidthRotation.PerLayer)]
    [InlineData("qwen-moe", WidthRotation.PerLayer)]
    public void Rotating_without_deleting_changes_no_logit(string kind, WidthRotation rotation)
    {
        using var dir = new TempDirectory();
        string model = WithNorms(dir, kind == "dense" ? TinyChatModel.Path : TinyMoeModel.QwenPath, "m"), text = Text(dir);
        var report = WidthSlicer.Slice(new WidthSliceOptions(model, text, dir.File("rotated"), Fraction: 0, Context: 64, Rotation: rotation));
        Assert.Equal(report.WidthBefore, report.WidthAfter);
        Assert.Equal(1.0, report.Kept, 9);
        using (var rotated = Checkpoint.Open(dir.File("rotated")))
        {
            Assert.Equal(rotation == WidthRotation.PerLayer, rotated.Config.ResidualShortcuts);
            Assert.Equal(rotation == WidthRotation.PerLayer, rotated.TryGet("blk.1.ffn_shortcut.weight", out _));
        }
        var expected = Logits(model, "Order 7 ships in 3 days.");
        var actual = Logits(dir.File("rotated"), "Order 7 ships in 3 days.");
        float scale = expected.Max(MathF.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(MathF.Abs(expected[i] - actual[i]) <= 1e-4f * scale, $"logit {i}: {expected[i]} vs {actual[i]}");
    }

    [Fact]
    public void Slicing_shrinks_the_stream_and_the_cli_scores_before_and_after()
    {
        using var dir = new TempDirectory();
        string model = WithNorms(dir, TinyChatModel.Path, "m"), text = Text(dir);
        var r = HoneCli.Run("prune", "width", model, "--data", text, "--fraction", "0.25", "--multiple", "8", "--out", dir.File("s.gguf"),
            "--eval", text, "--ctx", "64", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal((32, 24), ((int)json["width_before"]!, (int)json["width_after"]!));
        Assert.InRange((double)json["energy_kept"]!, 0.5, 1.0);
        Assert.True(double.IsFinite((double)json["perplexity_after"]!));
        using var sliced = Checkpoint.Open(dir.File("s.gguf"));
        Assert.Equal(24, sliced.Config.HiddenSize);
        Assert.False(sliced.Config.TiedEmbeddings);
        using var w = LlamaWeights.Load(sliced);
        Assert.Equal((64, 24), (w.Layers[0].Gate.Rows, w.Layers[0].Gate.Cols));
        Assert.Equal((24, 64), (w.Layers[1].Down.Rows, w.Layers[1].Down.Cols));
        unsafe { Assert.Equal(MathF.Sqrt(32f / 24), w.Layers[0].AttentionNorm[5], 6); }

        var bad = HoneCli.Run("prune", "width", model, "--data", text, "--fraction", "0.99", "--out", dir.File("x"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("leaves 0 dimensions", bad.Stderr);
    }

    /// <summary>A model sliced with per-layer rotations (25%), written as a Hugging Face directory.</summary>
    static string PerLayerSliced(TempDirectory dir, out string text)
    {
        string model = WithNorms(dir, TinyChatModel.Path, "m");
        text = Text(dir);
        var report = WidthSlicer.Slice(new WidthSliceOptions(model, text, dir.File("pl"), Fraction: 0.25, Multiple: 8, Context: 64, Rotation: WidthRotation.PerLayer));
        Assert.Equal(24, report.WidthAfter);
        return dir.File("pl");
    }

    [Fact]
    public unsafe void Shortcuts_survive_a_round_trip_through_gguf_and_back_and_the_config_declares_them()
    {
        using var dir = new TempDirectory();
        string sliced = PerLayerSliced(dir, out _);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(sliced, "config.json")))!;
        Assert.Equal(ModelConfig.ResidualShortcutsVersion, (int)config[ModelConfig.ResidualShortcutsKey]!);
        Assert.Equal(0, HoneCli.Run("convert", sliced, "--out", dir.File("pl.gguf")).ExitCode);
        Assert.Equal(0, HoneCli.Run("convert", dir.File("pl.gguf"), "--out", dir.File("back")).ExitCode);
        using (var gguf = GgufFile.Open(dir.File("pl.gguf")))
        {
            Assert.Equal(ModelConfig.ResidualShortcutsVersion, gguf.GetInteger(ModelConfig.ResidualShortcutsGgufKey));
            Assert.Contains(gguf.Tensors, t => t.Name == "blk.0.attn_shortcut.weight" && t.Shape.SequenceEqual(new long[] { 24, 24 }));
        }
        using var original = Checkpoint.Open(sliced);
        using var originalWeights = LlamaWeights.Load(original);
        foreach (var path in new[] { dir.File("pl.gguf"), dir.File("back") })
        {
            using var c = Checkpoint.Open(path);
            Assert.True(c.Config.ResidualShortcuts);
            using var w = LlamaWeights.Load(c);
            for (int l = 0; l < c.Config.Layers; l++)
                foreach (var (a, b) in new[] { (originalWeights.Layers[l].AttentionShortcut!, w.Layers[l].AttentionShortcut!), (originalWeights.Layers[l].FeedForwardShortcut!, w.Layers[l].FeedForwardShortcut!) })
                {
                    Assert.Equal((24, 24), (b.Rows, b.Cols));
                    Assert.Equal(new ReadOnlySpan<float>(a.Data, 24 * 24).ToArray(), new ReadOnlySpan<float>(b.Data, 24 * 24).ToArray());
                }
            int[] tokens = [1, 57, 60, 9, 33, 101, 7];
            var expected = ModelLogits.Of(sliced, tokens);
            var actual = ModelLogits.Of(path, tokens);
            for (int i = 0; i < expected.Length; i++) Assert.True(MathF.Abs(expected[i] - actual[i]) <= 1e-4f, $"{path}: logit {i}: {expected[i]} vs {actual[i]}");
        }
    }

    [Fact]
    public void Per_layer_shortcuts_change_the_basis_and_one_rotation_slices_to_the_same_width()
    {
        using var dir = new TempDirectory();
        string sliced = PerLayerSliced(dir, out string text);
        var single = WidthSlicer.Slice(new WidthSliceOptions(dir.File("m"), text, dir.File("single"), Fraction: 0.25, Multiple: 8, Context: 64));
        Assert.Equal(24, single.WidthAfter);
        // The shortcuts are not identities: a sliced model's bases differ from boundary to boundary.
        using var c = Checkpoint.Open(sliced);
        using var w = LlamaWeights.Load(c);
        unsafe
        {
            float* s = (float*)w.Layers[0].AttentionShortcut!.Data;
            double offIdentity = 0;
            for (int i = 0; i < 24; i++)
                for (int j = 0; j < 24; j++) offIdentity += Math.Abs(s[i * 24 + j] - (i == j ? 1 : 0));
            Assert.True(offIdentity > 0.1, $"shortcut within {offIdentity} of the identity");
        }
    }

    [Fact]
    public async Task The_batched_engine_applies_the_shortcuts_as_generation_does()
    {
        using var dir = new TempDirectory();
        string sliced = PerLayerSliced(dir, out _);
        int[] prompt;
        GenerationResult expected;
        using (var loaded = LoadedModel.Open(sliced))
        {
            prompt = loaded.Tokenizer.Encode("Order 3 ships in", addSpecialTokens: true, parseSpecialTokens: true);
            expected = new Generator(loaded.Model, loaded.Tokenizer).Generate(prompt, new GenerationOptions(12, SamplerOptions.Greedy, null, StopAtEndOfTurn: false));
        }
        using var engine = BatchEngine.Open(sliced, [], new EngineOptions { Parallel = 2, StepTokens = 8 });
        var request = new SequenceRequest { Prompt = prompt, MaxTokens = 12, StopAtEndOfTurn = false, Sampler = SamplerOptions.Greedy };
        var other = engine.Submit(request with { Prompt = prompt[..^1] });
        var got = await engine.Submit(request).CompleteAsync();
        await other.CompleteAsync();
        Assert.Equal(expected.Ids, got.Ids);
    }

    [Theory]
    [InlineData("model.layers.1.attn_shortcut.weight", new long[] { 24, 16 })]
    [InlineData("model.layers.0.mlp_shortcut.weight", new long[] { 24 * 24 })]
    public unsafe void A_damaged_shortcut_gives_one_line_naming_the_tensor(string tensor, long[] shape)
    {
        using var dir = new TempDirectory();
        string sliced = PerLayerSliced(dir, out _);
        string damaged = dir.File("damaged");
        Directory.CreateDirectory(damaged);
        File.Copy(Path.Combine(sliced, "config.json"), Path.Combine(damaged, "config.json"));
        using (var st = SafetensorsFile.Open(Path.Combine(sliced, "model.safetensors")))
        {
            var writer = new SafetensorsWriter();
            foreach (var t in st.Tensors)
            {
                var bytes = new ReadOnlySpan<byte>(st.TensorData(t), (int)(t.End - t.Begin)).ToArray();
                long[] written = t.Shape;
                if (t.Name == tensor)
                {
                    written = shape;
                    bytes = bytes[..(int)(shape.Aggregate(1L, (a, b) => a * b) * 4)];
                }
                writer.Add(new SafetensorsWriter.Tensor(t.Name, t.Type!.Value, written, s => s.Write(bytes)));
            }
            writer.Write(Path.Combine(damaged, "model.safetensors"));
        }
        using var c = Checkpoint.Open(damaged);
        var e = Assert.Throws<ModelFormatException>(() => LlamaWeights.Load(c).Dispose());
        Assert.Contains(tensor, e.Message);
        Assert.Contains("expected [24, 24]", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        // The config that declares no shortcuts (or an unknown version) over weights that have them is refused too.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(sliced, "config.json")))!.AsObject();
        config[ModelConfig.ResidualShortcutsKey] = 2;
        File.WriteAllText(Path.Combine(damaged, "config.json"), config.ToJsonString());
        var version = Assert.Throws<ModelFormatException>(() => Checkpoint.Open(damaged).Dispose());
        Assert.Contains("hone_residual_shortcuts", version.Message);
        config.Remove(ModelConfig.ResidualShortcutsKey);
        File.WriteAllText(Path.Combine(sliced, "config.json"), config.ToJsonString());
        using var plain = Checkpoint.Open(sliced);
        var unexpected = Assert.Throws<ModelFormatException>(() => LlamaWeights.Load(plain).Dispose());
        Assert.Contains("shortcut", unexpected.Message);
    }

    [Fact]
    public void Training_and_layer_pruning_refuse_a_model_with_shortcuts()
    {
        using var dir = new TempDirectory();
        string sliced = PerLayerSliced(dir, out string text);
        var layers = HoneCli.Run("prune", "layers", sliced, "--data", text, "--remove", "1", "--out", dir.File("x"));
        Assert.NotEqual(0, layers.ExitCode);
        Assert.Contains("residual shortcuts", layers.Stderr);
        using var c = Checkpoint.Open(sliced);
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var pool = new WorkerPool(1);
        var e = Assert.Throws<NotSupportedException>(() => new Hone.Training.TrainableLlama(w, pool, new Hone.Training.TrainingSetup(Hone.Training.TrainingMethod.Full), 1, 16));
        Assert.Contains("cannot train", e.Message);
    }
}
