using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Hone.Training;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Training;

/// <summary>
/// Mixtures of LoRA experts: the routed forward equals its definition (uniform routing is the merged average of the
/// experts), training and inference agree, gradients of routers and experts (balancing loss included) pass finite
/// differences, and the mixture directory round-trips with each expert a plain PEFT adapter.
/// </summary>
public unsafe class LoraMixtureTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    /// <summary>A random LoRA adapter on every linear projection of the fixture model, saved in PEFT's layout.</summary>
    internal static string RandomExpert(TempDirectory dir, string name, LlamaWeights weights, int rank, float alpha, int seed)
    {
        var rng = new Random(seed);
        var adapters = new List<LoraAdapter>();
        for (int l = 0; l < weights.Config.Layers; l++)
            foreach (var w in TrainingPlan.LayerMatrices(weights.Layers[l]))
            {
                var a = new LoraAdapter(w.Name, rank, w.Cols, w.Rows, alpha);
                for (long i = 0; i < (long)rank * a.In; i++) a.A[i] = (float)(rng.NextDouble() - 0.5) * 0.4f;
                for (long i = 0; i < (long)a.Out * rank; i++) a.B[i] = (float)(rng.NextDouble() - 0.5) * 0.4f;
                adapters.Add(a);
            }
        string path = dir.File(name);
        PeftAdapter.Save(path, adapters, new PeftAdapterConfig(rank, alpha, 0, PeftTargets.Of(AdapterSettings.AllLinear), false, AdapterKinds.Lora, null));
        foreach (var a in adapters) a.Dispose();
        return path;
    }

    [Fact]
    public void Uniform_routing_equals_the_average_of_the_merged_experts()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var dir = new TempDirectory();
        string[] experts = [RandomExpert(dir, "a", weights, 2, 4, 1), RandomExpert(dir, "b", weights, 3, 3, 2), RandomExpert(dir, "c", weights, 2, 8, 3)];
        using var mixture = LoraMixture.Create(experts, weights, topK: 3, seed: 1);
        foreach (var r in mixture.Routers.OfType<LoraRouter>()) new Span<float>(r.Weight, r.Experts * r.In).Clear(); // equal logits: weights 1/3
        int[] tokens = [1, 5, 9, 13, 17, 21, 25, 29];
        int v = c.Config.VocabSize;
        var routed = new float[tokens.Length * v];
        using (var m = new LlamaModel(weights, Pool, maxContext: 16))
        {
            foreach (var (t, a) in mixture.Adapters) m.Adapters[t] = a;
            m.Forward(tokens, routed, allLogits: true, promptRows: true);
        }
        // The same model with W + (1/3)·Σ s_e·B_e·A_e folded into the weights.
        using var merged = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var byName = merged.Matrices().ToDictionary(m => m.Name);
        foreach (var path in experts)
            foreach (var (target, a) in PeftAdapter.Load(path, weights))
            {
                var delta = a.MergedDelta(byName[target]);
                float* data = (float*)byName[target].Data;
                for (int i = 0; i < delta.Length; i++) data[i] += delta[i] / 3;
                a.Dispose();
            }
        var want = new float[tokens.Length * v];
        using (var m = new LlamaModel(merged, Pool, maxContext: 16)) m.Forward(tokens, want, allLogits: true, promptRows: true);
        double worst = want.Zip(routed, (x, y) => Math.Abs(x - y)).Max();
        output.WriteLine($"max |logit difference| {worst:E2}");
        Assert.True(worst < 2e-4, $"routed and merged logits differ by {worst}");
    }

    [Fact]
    public void Finite_differences_agree_with_backward_for_routers_and_experts()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var dir = new TempDirectory();
        string[] experts = [RandomExpert(dir, "a", weights, 2, 4, 1), RandomExpert(dir, "b", weights, 2, 4, 2), RandomExpert(dir, "c", weights, 2, 4, 3)];
        var setup = new TrainingSetup(TrainingMethod.Lora, new AdapterSettings(Targets: ["all-linear"]), RouterAuxLossCoef: 0.05, RouterZLossCoef: 0.01,
            Mixture: new LoraMixtureSettings(experts, TopK: 2, TrainExperts: true));
        using var m = new TrainableLlama(weights, Pool, setup, 1, 8);
        foreach (var r in m.Mixture!.Routers.OfType<LoraRouter>())
            for (int i = 0; i < r.Experts * r.In; i++) r.Weight[i] *= 20; // routers far from uniform, so routing matters
        var rng = new Random(4);
        var tokens = Enumerable.Range(0, 8).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        m.ZeroGradients();
        m.ForwardBackward(tokens, targets, 1, 8, 1f);
        string Routing() => string.Join("|", m.Mixture.Routers.OfType<LoraRouter>().Select(r => string.Join(",", r.Chosen.ToArray())));
        double Loss() => m.Forward(tokens, targets, 1, 8) + 0.05 * m.LastBalanceLoss + 0.01 * m.LastZLoss;
        int checkedCount = 0, skipped = 0;
        foreach (var p in m.Parameters)
            for (int probe = 0; probe < 3; probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                const float h = 2e-3f;
                p.Value[i] = original + h; double plus = Loss(); var routingPlus = Routing();
                p.Value[i] = original - h; double minus = Loss(); var routingMinus = Routing();
                p.Value[i] = original;
                if (routingPlus != routingMinus) { skipped++; continue; }
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic), $"{p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
                checkedCount++;
            }
        output.WriteLine($"{checkedCount} probes checked over {m.Parameters.Count} parameters, {skipped} skipped for a routing change");
        Assert.Contains(m.Parameters, p => p.Name == "blk.0.lora_router.weight");
        Assert.True(checkedCount >= 2 * m.Parameters.Count);
    }

    [Fact]
    public void Frozen_experts_train_only_the_routers_and_the_training_forward_matches_inference()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-hf-f32"));
        using var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var dir = new TempDirectory();
        string[] experts = [RandomExpert(dir, "a", weights, 2, 4, 1), RandomExpert(dir, "b", weights, 2, 4, 2)];
        var setup = new TrainingSetup(TrainingMethod.Lora, Mixture: new LoraMixtureSettings(experts, TopK: 1));
        using var m = new TrainableLlama(weights, Pool, setup, 1, 10);
        Assert.All(m.Parameters, p => Assert.EndsWith("lora_router.weight", p.Name));
        var rng = new Random(8);
        var tokens = Enumerable.Range(0, 10).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        double trained = m.Forward(tokens, targets, 1, 10);
        using var inference = new LlamaModel(weights, Pool, maxContext: 16);
        foreach (var (t, a) in m.Mixture!.Adapters) inference.Adapters[t] = a;
        var logits = new float[10 * c.Config.VocabSize];
        inference.Forward(tokens, logits, allLogits: true, promptRows: true);
        Assert.Equal(MixtureOfExpertsTrainingTests.SummedNll(logits, targets, c.Config.VocabSize), trained, 3);
    }
}

public class LoraMixtureCliTests
{
    [Fact]
    public void Train_a_mixture_of_two_trained_adapters_save_it_and_generate_with_it()
    {
        using var dir = new TempDirectory();
        string text = dir.File("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 60).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        string[] Common(string output) => ["--stage", "cpt", "--data", text, "--out", output, "--seq-len", "32", "--batch-size", "2",
            "--eval-every", "0", "--val-split", "0", "--save-every", "0"];
        foreach (var (name, targets) in new[] { ("orders", "q_proj,v_proj,gate_proj"), ("policies", "q_proj,o_proj,down_proj") })
        {
            var t = HoneCli.Run(["train", TinyChatModel.Path, .. Common(dir.File(name)), "--max-steps", "3", "--lora-targets", targets]);
            Assert.True(t.ExitCode == 0, t.ToString());
        }
        var train = HoneCli.Run(["train", TinyChatModel.Path, .. Common(dir.File("mix")), "--max-steps", "4", "--lr", "1e-2",
            "--lora-experts", $"{dir.File("orders")},{dir.File("policies")}", "--lora-experts-top-k", "1"]);
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("LoRA mixture of 2 experts (orders, policies), 1 per token", train.Stdout + train.Stderr);
        Assert.True(File.Exists(dir.File("mix/lora_mixture.json")));
        Assert.True(File.Exists(dir.File("mix/router.safetensors")));
        var metrics = File.ReadAllLines(dir.File("mix/metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.All(metrics, m => Assert.Equal(2, m["routing"]!.AsArray().Count));
        // Each expert is a plain PEFT adapter: the frozen experts come back unchanged.
        foreach (var name in new[] { "orders", "policies" })
        {
            var original = File.ReadAllBytes(dir.File($"{name}/adapter_model.safetensors"));
            var saved = Hone.Formats.SafetensorsFile.Open(dir.File($"mix/experts/{name}/adapter_model.safetensors"));
            using var want = Hone.Formats.SafetensorsFile.Open(dir.File($"{name}/adapter_model.safetensors"));
            foreach (var tensor in want.Tensors)
            {
                Assert.True(saved.TryGetTensor(tensor.Name, out var got), tensor.Name);
                unsafe
                {
                    Assert.True(new ReadOnlySpan<byte>(want.TensorData(tensor), (int)tensor.ElementCount * 4).SequenceEqual(new ReadOnlySpan<byte>(saved.TensorData(got), (int)got.ElementCount * 4)), tensor.Name);
                }
            }
            saved.Dispose();
            var alone = HoneCli.Run("generate", TinyChatModel.Path, "--adapter", dir.File($"mix/experts/{name}"), "-p", "Order 3", "-n", "4", "--temperature", "0");
            Assert.True(alone.ExitCode == 0, alone.ToString());
        }
        var generate = HoneCli.Run("generate", TinyChatModel.Path, "--adapter", dir.File("mix"), "-p", "Order 3", "-n", "6", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
        var perplexity = HoneCli.Run("perplexity", TinyChatModel.Path, "--adapter", dir.File("mix"), "-f", text, "--ctx", "32", "--json");
        Assert.True(perplexity.ExitCode == 0, perplexity.ToString());
        var merge = HoneCli.Run("merge-adapter", TinyChatModel.Path, "--adapter", dir.File("mix"), "--out", dir.File("merged"));
        Assert.NotEqual(0, merge.ExitCode);
        Assert.Contains("cannot be folded into the weights", merge.Stderr);
        Assert.DoesNotContain("   at ", merge.Stderr);
    }
}
