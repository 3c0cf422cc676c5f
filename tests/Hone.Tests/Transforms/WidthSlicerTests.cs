using System.Text.Json.Nodes;
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
    [InlineData("dense")]
    [InlineData("qwen-moe")]
    public void Rotating_without_deleting_changes_no_logit(string kind)
    {
        using var dir = new TempDirectory();
        string model = WithNorms(dir, kind == "dense" ? TinyChatModel.Path : TinyMoeModel.QwenPath, "m"), text = Text(dir);
        var report = WidthSlicer.Slice(new WidthSliceOptions(model, text, dir.File("rotated"), Fraction: 0, Context: 64));
        Assert.Equal(report.WidthBefore, report.WidthAfter);
        Assert.Equal(1.0, report.Kept, 9);
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
}
