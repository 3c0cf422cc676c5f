using System.Text.Json.Nodes;
using Hone.Experts;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Transforms.Pruning;
using Xunit;

namespace Hone.Tests.Transforms;

/// <summary>Expert pruning by routing frequency and dynamic expert skipping.</summary>
public unsafe class LeanMixtureTests
{
    static readonly WorkerPool Pool = new(2);

    [Fact]
    public void Skipping_drops_light_experts_after_the_first_and_renormalizes()
    {
        float[] weights = [0.7f, 0.2f, 0.1f, 0.5f, 0.3f, 0.2f];
        int skipped = ExpertRouting.Skip(weights, rows: 2, k: 3, threshold: 0.25f, normalize: true);
        Assert.Equal(3, skipped);
        Assert.Equal([1f, 0f, 0f], weights[..3]);
        Assert.Equal(0.625f, weights[3], 6);
        Assert.Equal(0.375f, weights[4], 6);
        Assert.Equal(0f, weights[5]);
        float[] first = [0.1f, 0.05f];
        Assert.Equal(1, ExpertRouting.Skip(first, 1, 2, 0.5f, normalize: false));
        Assert.Equal([0.1f, 0f], first); // the first expert always runs; unnormalized weights stay
        Span<int> starts = stackalloc int[5], order = stackalloc int[6];
        ExpertRouting.GroupByExpert([0, 1, 2, 3, 1, 0], 2, 4, 3, starts, order, weights);
        Assert.Equal(3, starts[4]); // three slots left to run
    }

    [Fact]
    public void A_threshold_above_every_second_weight_gives_top_1_routing()
    {
        using var c = Checkpoint.Open(TinyMoeModel.Path);
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        int[] tokens = [1, 20, 21, 22, 23, 24, 25, 26];
        int v = c.Config.VocabSize;
        var skipped = new float[tokens.Length * v];
        using (var m = new LlamaModel(w, Pool, maxContext: 16) { ExpertSkipThreshold = 0.51f })
        {
            m.Forward(tokens, skipped, allLogits: true, promptRows: true);
            Assert.Equal(m.RoutedExpertRuns / 2, m.SkippedExpertRuns); // top 2, normalized: the second weight is at most 0.5
        }
        // The same weights routed top-1 (Mixtral normalizes: the chosen expert's weight is 1).
        var want = new float[tokens.Length * v];
        using (var rerouted = Rerouted(w, 1))
        using (var m = new LlamaModel(rerouted, Pool, maxContext: 16)) m.Forward(tokens, want, allLogits: true, promptRows: true);
        // The kept weight is rescaled to w·(1/w), 1 up to rounding: equal within float rounding.
        double worst = want.Zip(skipped, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst < 1e-4, $"logits differ by {worst}");
    }

    /// <summary>The same weights under a config routing k experts per token.</summary>
    static LlamaWeights Rerouted(LlamaWeights w, int k)
    {
        string dir = Path.Combine(Path.GetTempPath(), $"hone-reroute-{Guid.NewGuid():N}");
        Hone.Transforms.ModelConverter.Write(w, null, dir, TensorType.F32, []);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;
        json["num_experts_per_tok"] = k;
        File.WriteAllText(Path.Combine(dir, "config.json"), json.ToJsonString());
        try
        {
            using var c = Checkpoint.Open(dir);
            return LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Pruning_keeps_the_most_routed_experts_with_their_router_rows()
    {
        using var dir = new TempDirectory();
        string text = dir.File("calibration.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 40).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        var (statistics, _, _) = Hone.Inference.RoutingProbe.Run(TinyMoeModel.Path, text, 128, 8192, 2);
        var report = ExpertPruner.Prune(new ExpertPruneOptions(TinyMoeModel.Path, text, 3, dir.File("pruned"), Context: 128));
        Assert.Equal(3, report.ExpertsAfter);
        using var before = LlamaWeights.Load(Checkpoint.Open(TinyMoeModel.Path), new WeightLoadOptions(TensorType.F32));
        using var pc = Checkpoint.Open(dir.File("pruned"));
        using var after = LlamaWeights.Load(pc, new WeightLoadOptions(TensorType.F32));
        Assert.Equal(3, pc.Config.Experts);
        Assert.Equal(2, pc.Config.ExpertsPerToken);
        foreach (var (layer, kept, share) in report.Kept)
        {
            var load = statistics.Layer(layer)!.Load;
            int dropped = Enumerable.Range(0, 4).Except(kept).Single();
            Assert.All(kept, e => Assert.True(load[e] >= load[dropped]));
            Assert.Equal(kept.Sum(e => load[e]), share, 9);
            for (int i = 0; i < kept.Length; i++)
            {
                Same(before.Layers[layer].ExpertDown![kept[i]], after.Layers[layer].ExpertDown![i]);
                Same(before.Layers[layer].ExpertGate![kept[i]], after.Layers[layer].ExpertGate![i]);
                var r0 = new ReadOnlySpan<byte>(before.Layers[layer].Router!.Data + (long)kept[i] * before.Layers[layer].Router!.RowBytes, (int)before.Layers[layer].Router!.RowBytes);
                var r1 = new ReadOnlySpan<byte>(after.Layers[layer].Router!.Data + (long)i * after.Layers[layer].Router!.RowBytes, (int)after.Layers[layer].Router!.RowBytes);
                Assert.True(r0.SequenceEqual(r1));
            }
            Same(before.Layers[layer].Query, after.Layers[layer].Query);
        }
        var ppl = HoneCli.Run("perplexity", dir.File("pruned"), "-f", text, "--ctx", "64", "--moe-skip-threshold", "0.3", "--json");
        Assert.True(ppl.ExitCode == 0, ppl.ToString());
        Assert.NotNull(JsonNode.Parse(ppl.Stdout)!["skipped_expert_share"]);
        var cli = HoneCli.Run("moe", "prune", TinyMoeModel.Path, "--data", text, "--keep", "4", "--out", dir.File("x"));
        Assert.NotEqual(0, cli.ExitCode);
        Assert.Contains("keep between 1 and 3", cli.Stderr);
    }

    static void Same(WeightMatrix a, WeightMatrix b) =>
        Assert.True(new ReadOnlySpan<byte>(a.Data, (int)a.ByteLength).SequenceEqual(new ReadOnlySpan<byte>(b.Data, (int)b.ByteLength)), $"{a.Name} vs {b.Name}");
}
