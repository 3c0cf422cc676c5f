using System.Text.Json.Nodes;
using Hone.Inference;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms.Pruning;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>Depth pruning by block influence (ShortGPT): a layer that leaves the residual unchanged has influence 0,
/// is the one removed, and removing it leaves the logits exactly as they were; layers keep their kind in a mixture.</summary>
public unsafe class LayerPrunerTests
{
    /// <summary>TinyChatModel widened to 4 layers, with layer <paramref name="identity"/> made an identity (its attention
    /// output and down projections zero: it adds nothing to the residual).</summary>
    static string WithIdentityLayer(TempDirectory dir, int identity)
    {
        using var c = Checkpoint.Open(TinyChatModel.Path);
        var config = c.Config with { Layers = 4 };
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, seed: 3, std: 0.2f, embeddingStd: 1f);
        var l = w.Layers[identity];
        new Span<byte>(l.AttentionOutput.Data, (int)l.AttentionOutput.ByteLength).Clear();
        new Span<byte>(l.Down.Data, (int)l.Down.ByteLength).Clear();
        string path = dir.File("four");
        Hone.Transforms.ModelConverter.Write(w, c, path, TensorType.F32, []);
        return path;
    }

    static string Text(TempDirectory dir)
    {
        string text = dir.File("calibration.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 60).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        return text;
    }

    [Fact]
    public void The_layer_that_changes_nothing_has_no_influence_and_removing_it_changes_no_logit()
    {
        using var dir = new TempDirectory();
        string model = WithIdentityLayer(dir, 2), text = Text(dir);
        var report = LayerPruner.Prune(new LayerPruneOptions(model, text, dir.File("pruned"), Remove: 1, Context: 64));
        Assert.Equal([2], report.Removed);
        Assert.Equal(0, report.Influence[2], 12);
        Assert.All(new[] { 0, 1, 3 }, l => Assert.True(report.Influence[l] > 1e-3, $"layer {l}: {report.Influence[l]}"));
        Assert.Equal((4, 3), (report.LayersBefore, report.LayersAfter));

        using var before = LoadedModel.Open(model, precision: ComputePrecision.Exact);
        using var after = LoadedModel.Open(dir.File("pruned"), precision: ComputePrecision.Exact);
        Assert.Equal(3, after.Weights.Config.Layers);
        Assert.Equal(report.ParametersAfter, after.Weights.Config.ParameterCount);
        var tokens = before.Tokenizer.Encode("Order 7 ships in 3 days.");
        var expected = new float[tokens.Length * before.Weights.Config.VocabSize];
        var actual = new float[expected.Length];
        before.Model.Forward(tokens, expected, allLogits: true);
        after.Model.Forward(tokens, actual, allLogits: true);
        Assert.Equal(expected, actual);
        // Layer 3's weights moved to index 2.
        using var c = Checkpoint.Open(model);
        using var w = LlamaWeights.Load(c);
        Assert.Equal(w.Layers[3].Query.ToFloatArray(), after.Weights.Layers[2].Query.ToFloatArray());
    }

    [Fact]
    public void A_mixture_keeps_each_layers_kind_and_bad_requests_are_refused()
    {
        using var dir = new TempDirectory();
        string text = Text(dir);
        // A Qwen2-MoE with layers 0 and 2 sparse and 1 dense (mlp_only_layers): removing layer 0 leaves dense, sparse.
        string model = dir.File("qwen");
        using (var c = Checkpoint.Open(TinyMoeModel.QwenPath))
        using (var random = LlamaWeights.CreateRandom(c.Config with { Layers = 3, DenseLayers = [1] }, TensorType.F32, seed: 4, std: 0.2f))
            Hone.Transforms.ModelConverter.Write(random, c, model, TensorType.F32, []);
        var report = LayerPruner.Prune(new LayerPruneOptions(model, text, dir.File("pruned"), Layers: [0], Context: 32));
        using var pruned = Checkpoint.Open(dir.File("pruned"));
        Assert.Equal([false, true], Enumerable.Range(0, 2).Select(pruned.Config.IsSparseLayer));
        using var w = LlamaWeights.Load(pruned);
        Assert.Equal(report.ParametersAfter, pruned.Config.ParameterCount);

        Assert.Contains("--remove 3", Assert.Throws<ArgumentException>(() =>
            LayerPruner.Prune(new LayerPruneOptions(model, text, dir.File("x"), Remove: 3, Context: 32))).Message);
        Assert.Contains("outside the model", Assert.Throws<ArgumentException>(() =>
            LayerPruner.Prune(new LayerPruneOptions(model, text, dir.File("x"), Layers: [5], Context: 32))).Message);
        Assert.False(Directory.Exists(dir.File("x")));
    }

    [Fact]
    public void The_cli_ranks_removes_and_scores_before_and_after()
    {
        using var dir = new TempDirectory();
        string model = WithIdentityLayer(dir, 1), text = Text(dir);
        var r = HoneCli.Run("prune", "layers", model, "--data", text, "--remove", "1", "--out", dir.File("p.gguf"), "--eval", text, "--ctx", "64", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(1, (int)json["removed"]![0]!);
        double before = (double)json["perplexity_before"]!, after = (double)json["perplexity_after"]!;
        Assert.Equal(before, after, before * 1e-6); // the GGUF output's q/k rows are laid out for llama.cpp: same values, other rounding
        Assert.Equal(4, json["block_influence"]!.AsArray().Count);
        var bad = HoneCli.Run("prune", "layers", model, "--data", text, "--layers", "1,x", "--out", dir.File("q"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("'x' is not a layer number", bad.Stderr);
    }
}
