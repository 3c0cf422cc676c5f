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
/// Training a mixture of experts: every gradient (experts, routers, shared expert and its gate, attention, norms,
/// embeddings) of the NLL plus the load-balancing loss and the z-loss against float64 PyTorch autograd
/// (tools/reference/make_gradient_fixtures.py, cases *-moe), finite differences through the routing, checkpointed
/// activations, and the router losses being computed whenever their coefficients are set.
/// </summary>
public unsafe class MixtureOfExpertsTrainingTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    static Dictionary<string, float[]> ReadFixture(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gradients", name + ".safetensors");
        using var st = SafetensorsFile.Open(path);
        return st.Tensors.ToDictionary(t => t.Name, t => new ReadOnlySpan<float>(st.TensorData(t), (int)t.ElementCount).ToArray());
    }

    [Theory]
    [InlineData("mixtral-hf-f32")]
    [InlineData("qwen2moe-hf-f32")]      // shared expert, unnormalized top-3 of 6, a dense layer between sparse ones
    [InlineData("qwen2moe-norm-hf-f32")] // norm_topk_prob, sparse every second layer
    [InlineData("qwen3moe-hf-f32")]      // per-head QK-norm, a dense layer
    [InlineData("olmoe-hf-f32")]         // QK-norm over the whole projection, 8 experts
    public void Gradients_with_router_losses_match_pytorch(string variant)
    {
        var f = ReadFixture($"{variant}-moe");
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath(variant));
        using var weights = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var setup = new TrainingSetup(TrainingMethod.Full, RouterAuxLossCoef: f["coef.aux"][0], RouterZLossCoef: f["coef.z"][0]);
        using var model = new TrainableLlama(weights, Pool, setup, maxBatch: 2, maxSequence: 12);
        var tokens = f["input.tokens"].Select(v => (int)v).ToArray();
        var targets = f["input.targets"].Select(v => (int)v).ToArray();
        var lengths = f["input.lengths"].Select(v => (int)v).ToArray();
        int count = targets.Count(t => t >= 0);
        model.ZeroGradients();
        double nll = model.ForwardBackward(tokens, targets, 2, 12, 1f / count, 1f, lengths) / count;
        output.WriteLine($"nll {nll:F6} (want {f["loss.nll"][0]:F6}), balance {model.LastBalanceLoss:F6} ({f["loss.balance"][0]:F6}), z {model.LastZLoss:F4} ({f["loss.z"][0]:F4})");
        Assert.Equal(f["loss.nll"][0], nll, 4);
        Assert.Equal(f["loss.balance"][0], model.LastBalanceLoss, 4);
        Assert.Equal(1, model.LastZLoss / f["loss.z"][0], 4);
        var failures = new List<string>();
        string family = c.Config.Architecture;
        foreach (var p in model.Parameters)
        {
            string hf = TensorNames.GgufToHuggingFace(p.Name, family) ?? throw new InvalidOperationException(p.Name);
            GradientTests.CompareGradient(output, hf, f["grad." + hf], p.Gradients, failures);
        }
        Assert.Equal(f.Keys.Count(k => k.StartsWith("grad.", StringComparison.Ordinal)), model.Parameters.Count);
        Assert.Empty(failures);
        // The router losses move the router's gradient well beyond the tolerance: they were computed.
        foreach (var router in f.Keys.Where(k => k.StartsWith("ce_grad.", StringComparison.Ordinal)))
        {
            var ce = f[router];
            var full = f["grad." + router["ce_grad.".Length..]];
            double difference = ce.Zip(full, (a, b) => Math.Abs(a - b)).Max(), scale = full.Max(Math.Abs);
            Assert.True(difference > 1e-2 * scale, $"{router}: the router losses change its gradient by only {difference:E2} of {scale:E2}");
        }
    }

    static string Routing(TrainableLlama m) =>
        string.Join("|", Enumerable.Range(0, m.Config.Layers).Where(m.Config.IsSparseLayer).Select(l => string.Join(",", m.RoutedExperts(l).ToArray())));

    [Fact]
    public void Finite_differences_agree_with_backward_through_routing_and_router_losses()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-norm-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var setup = new TrainingSetup(TrainingMethod.Full, RouterAuxLossCoef: 0.05, RouterZLossCoef: 0.002);
        using var m = new TrainableLlama(w, Pool, setup, 1, 8);
        var rng = new Random(11);
        var tokens = Enumerable.Range(0, 8).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        m.ZeroGradients();
        m.ForwardBackward(tokens, targets, 1, 8, 1f);
        double Loss()
        {
            double nll = m.Forward(tokens, targets, 1, 8);
            return nll + 0.05 * m.LastBalanceLoss + 0.002 * m.LastZLoss;
        }
        int checkedCount = 0, skipped = 0;
        foreach (var p in m.Parameters.Where(p => p.Name.Contains("exps") || p.Name.Contains("ffn_gate_inp") || p.Name.Contains("shexp")))
            for (int probe = 0; probe < 3; probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                const float h = 2e-3f;
                p.Value[i] = original + h; double plus = Loss(); var routingPlus = Routing(m);
                p.Value[i] = original - h; double minus = Loss(); var routingMinus = Routing(m);
                p.Value[i] = original;
                // A step that changes which experts a row takes has no derivative there; such probes are not counted.
                if (routingPlus != routingMinus) { skipped++; continue; }
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic),
                    $"{p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
                checkedCount++;
            }
        output.WriteLine($"{checkedCount} probes checked, {skipped} skipped for a routing change");
        Assert.True(checkedCount >= 30, $"only {checkedCount} probes checked");
    }

    [Theory]
    [InlineData("lora")]
    [InlineData("dora")]
    public void Finite_differences_agree_with_backward_for_adapters_on_experts_router_and_shared_expert(string kind)
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        var setup = new TrainingSetup(kind == "dora" ? TrainingMethod.Dora : TrainingMethod.Lora,
            new AdapterSettings(2, 4, 0, ["q_proj", "experts", "router", "shared_expert"]), RouterAuxLossCoef: 0.05, RouterZLossCoef: 0.002, Seed: 5);
        using var m = new TrainableLlama(w, Pool, setup, 1, 8);
        // Every expert, router and shared-expert projection of the sparse layers has an adapter; the dense layer's MLP none.
        Assert.Equal(2 * (1 + 6 * 3 + 3) + 3, m.Adapters.Count);
        Assert.DoesNotContain("blk.1.ffn_gate.weight", m.Adapters.Keys);
        var rng = new Random(13);
        // B starts at zero: give every adapter a random B so A's gradients and the adapters' effect on routing are not zero.
        foreach (var p in m.Parameters.Where(p => p.Name.EndsWith(":lora_B", StringComparison.Ordinal)))
            for (long i = 0; i < p.Count; i++) p.Value[i] = (float)(rng.NextDouble() - 0.5) * 0.4f;
        m.AfterStep();
        var tokens = Enumerable.Range(0, 8).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        m.ZeroGradients();
        m.ForwardBackward(tokens, targets, 1, 8, 1f);
        double Loss() => m.Forward(tokens, targets, 1, 8) + 0.05 * m.LastBalanceLoss + 0.002 * m.LastZLoss;
        int checkedCount = 0, skipped = 0;
        var probed = new HashSet<string>();
        // DoRA's backward treats the row norm as a constant (as PEFT does), so only its magnitudes' gradients are exact.
        bool Exact(string name) => kind == "lora" || !(name.EndsWith(":lora_A", StringComparison.Ordinal) || name.EndsWith(":lora_B", StringComparison.Ordinal));
        foreach (var p in m.Parameters.Where(p => (p.Name.Contains("exps") || p.Name.Contains("ffn_gate_inp") || p.Name.Contains("shexp")) && Exact(p.Name)))
            for (int probe = 0; probe < (kind == "lora" ? 2 : 6); probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                const float h = 1e-2f; // the adapted model's loss is large enough that fp32 round-off swamps smaller steps
                p.Value[i] = original + h; m.AfterStep(); double plus = Loss(); var routingPlus = Routing(m);
                p.Value[i] = original - h; m.AfterStep(); double minus = Loss(); var routingMinus = Routing(m);
                p.Value[i] = original; m.AfterStep();
                if (routingPlus != routingMinus) { skipped++; continue; }
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic),
                    $"{p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
                checkedCount++;
                probed.Add(p.Name.Split(':')[0].Split('.')[2]);
            }
        output.WriteLine($"{checkedCount} probes checked, {skipped} skipped for a routing change; parts: {string.Join(", ", probed)}");
        Assert.True(checkedCount >= 60, $"only {checkedCount} probes checked");
        Assert.Superset(new HashSet<string> { "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_shexp", "ffn_down_shexp" }, probed);
    }

    [Theory]
    [InlineData("qwen2moe-hf-f32")]
    [InlineData("qwen3moe-hf-f32")]
    public void Checkpointed_activations_give_bit_identical_gradients(string variant)
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath(variant));
        var rng = new Random(5);
        var tokens = Enumerable.Range(0, 2 * 16).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        int[] lengths = [16, 11];
        float[][] Gradients(bool checkpoint)
        {
            using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
            var setup = new TrainingSetup(TrainingMethod.Full, CheckpointActivations: checkpoint, RouterZLossCoef: 0.001);
            using var m = new TrainableLlama(w, Pool, setup, 2, 16);
            m.ForwardBackward(tokens, targets, 2, 16, 0.1f, 1f, lengths);
            return m.Parameters.Select(p => p.Gradients.ToArray()).ToArray();
        }
        var plain = Gradients(false);
        var checkpointed = Gradients(true);
        Assert.Equal(plain.Length, checkpointed.Length);
        for (int i = 0; i < plain.Length; i++) Assert.Equal(plain[i], checkpointed[i]);
    }

    /// <summary>Σ −log softmax(logits)[target] over the rows whose target is ≥ 0, in double.</summary>
    internal static double SummedNll(float[] logits, int[] targets, int vocab)
    {
        double nll = 0;
        for (int t = 0; t < targets.Length; t++)
        {
            if (targets[t] < 0) continue;
            var row = logits.AsSpan(t * vocab, vocab);
            float max = float.NegativeInfinity;
            foreach (var v in row) max = Math.Max(max, v);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - max);
            nll += max + Math.Log(sum) - row[targets[t]];
        }
        return nll;
    }

    [Fact]
    public void Training_forward_gives_the_inference_logits_loss()
    {
        // The training forward (grouped experts, shared expert) and the inference forward score a sequence alike.
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var m = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), 1, 10);
        var rng = new Random(2);
        var tokens = Enumerable.Range(0, 10).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        double trained = m.Forward(tokens, targets, 1, 10);
        using var inference = new LlamaModel(w, Pool, maxContext: 16);
        var logits = new float[10 * c.Config.VocabSize];
        inference.Forward(tokens, logits, allLogits: true, promptRows: true);
        Assert.Equal(SummedNll(logits, targets, c.Config.VocabSize), trained, 3);
    }
}

public class MixtureOfExpertsTrainingCliTests
{
    static string Text(TempDirectory dir)
    {
        string text = dir.File("text.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Range(0, 60).Select(i => $"Order {i} ships in {i % 4 + 2} days. ")));
        return text;
    }

    [Fact]
    public void Full_fine_tuning_logs_router_losses_and_routing_and_writes_a_mixture_that_loads()
    {
        using var dir = new TempDirectory();
        string text = Text(dir), run = dir.File("run");
        var train = HoneCli.Run("train", TinyMoeModel.Path, "--stage", "cpt", "--method", "full", "--data", text, "--out", run, "--max-steps", "6",
            "--seq-len", "32", "--batch-size", "2", "--lr", "3e-3", "--warmup-steps", "0", "--router-z-loss-coef", "0.001", "--eval-every", "0",
            "--val-split", "0", "--save-every", "0");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("router_aux_loss_coef 0.02", train.Stdout + train.Stderr); // the checkpoint's (Mixtral's default)
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(6, lines.Count);
        foreach (var line in lines)
        {
            Assert.InRange((double)line["router_aux_loss"]!, 2.0 - 1e-6, 8.0); // k = 2 at perfect balance, k·E when one expert takes all
            Assert.True((double)line["router_z_loss"]! > 0);
            var layers = line["routing"]!.AsArray();
            Assert.Equal(2, layers.Count);
            foreach (var layer in layers)
            {
                Assert.Equal(64, (long)layer!["tokens"]!);
                Assert.Equal(1.0, layer["load"]!.AsArray().Sum(v => (double)v!), 3);
                Assert.InRange((double)layer["entropy"]!, 0, Math.Log(4) + 1e-4);
            }
        }
        Assert.True((double)lines[^1]["loss"]! < (double)lines[0]["loss"]!, "six steps on repeated text lower the loss");
        var inspect = HoneCli.Run("inspect", run);
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Contains("experts      4 per layer, 2 per token", inspect.Stdout);
        var generate = HoneCli.Run("generate", run, "-p", "Order 3", "-n", "4", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
        var report = HoneCli.Run("report", run, "--out", dir.File("report.html"));
        Assert.True(report.ExitCode == 0, report.ToString());
        string html = File.ReadAllText(dir.File("report.html"));
        Assert.Contains("Load-balancing loss", html);
        Assert.Contains("routing entropy", html);
        Assert.Contains("<th>expert 3</th>", html);
    }

    [Fact]
    public void Lora_on_a_mixture_adapts_attention_and_the_adapter_serves_with_the_base()
    {
        using var dir = new TempDirectory();
        string text = Text(dir), run = dir.File("lora");
        var train = HoneCli.Run("train", TinyMoeModel.Path, "--stage", "cpt", "--method", "lora", "--data", text, "--out", run, "--max-steps", "3",
            "--seq-len", "32", "--batch-size", "2", "--eval-every", "0", "--val-split", "0", "--save-every", "0");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("the experts and routers stay frozen", train.Stdout + train.Stderr);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "adapter_config.json")))!;
        Assert.Equal("lora", ((string?)config["peft_type"])?.ToLowerInvariant());
        var generate = HoneCli.Run("generate", TinyMoeModel.Path, "--adapter", run, "-p", "Order 3", "-n", "4", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
    }

    [Theory]
    [InlineData("tiny")]
    [InlineData("qwen")]
    public async Task Lora_on_experts_and_routers_saves_exact_peft_targets_and_serves_and_merges_like_the_trained_model(string model)
    {
        using var dir = new TempDirectory();
        string path = model == "tiny" ? TinyMoeModel.Path : TinyMoeModel.QwenPath;
        string text = Text(dir), run = dir.File("lora");
        var train = HoneCli.Run("train", path, "--stage", "cpt", "--method", "lora", "--data", text, "--out", run, "--max-steps", "4",
            "--seq-len", "32", "--batch-size", "2", "--eval-every", "0", "--val-split", "0", "--save-every", "0", "--lr", "1e-2",
            "--lora-target", "all-linear,experts,router");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("adapters also sit on the experts and router", train.Stdout + train.Stderr);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "adapter_config.json")))!;
        string pattern = (string)config["target_modules"]!;
        using var checkpoint = Checkpoint.Open(path);
        using var weights = LlamaWeights.Load(checkpoint);
        var adapters = PeftAdapter.Load(run, weights);
        var c = checkpoint.Config;
        int sparse = Enumerable.Range(0, c.Layers).Count(c.IsSparseLayer), dense = c.Layers - sparse;
        // Attention everywhere, dense layers' MLPs, and in sparse layers the router and every expert (not a shared expert).
        Assert.Equal(4 * c.Layers + 3 * dense + sparse * (1 + 3 * c.Experts), adapters.Count);
        string router = model == "tiny" ? "model.layers.0.block_sparse_moe.gate" : "model.layers.0.mlp.gate";
        string expert = model == "tiny" ? "model.layers.1.block_sparse_moe.experts.3.w2" : "model.layers.0.mlp.experts.3.down_proj";
        Assert.Matches(@"\A(?:" + pattern + @")\z", router);
        Assert.Matches(@"\A(?:" + pattern + @")\z", expert);
        if (model == "qwen") Assert.DoesNotMatch(@"\A(?:" + pattern + @")\z", "model.layers.0.mlp.shared_expert.gate_proj");
        using (var st = SafetensorsFile.Open(Path.Combine(run, "adapter_model.safetensors")))
            Assert.Contains(st.Tensors, t => t.Name == $"base_model.model.{expert}.lora_B.weight");
        foreach (var a in adapters.Values) a.Dispose();

        // The adapter served with the base gives the same tokens as the base with the adapter folded in.
        var generate = HoneCli.Run("generate", path, "--adapter", run, "-p", "Order 3", "-n", "12", "--temperature", "0", "--json");
        Assert.True(generate.ExitCode == 0, generate.ToString());
        var plain = HoneCli.Run("generate", path, "-p", "Order 3", "-n", "12", "--temperature", "0", "--json");
        var merged = HoneCli.Run("merge-adapter", path, "--adapter", run, "--out", dir.File("merged"));
        Assert.True(merged.ExitCode == 0, merged.ToString());
        var fromMerged = HoneCli.Run("generate", dir.File("merged"), "-p", "Order 3", "-n", "12", "--temperature", "0", "--json");
        Assert.Equal(JsonNode.Parse(generate.Stdout)!["ids"]!.ToJsonString(), JsonNode.Parse(fromMerged.Stdout)!["ids"]!.ToJsonString());
        Assert.NotEqual(JsonNode.Parse(generate.Stdout)!["ids"]!.ToJsonString(), JsonNode.Parse(plain.Stdout)!["ids"]!.ToJsonString());
        // With the experts left in the file and a small cache, the adapter still sits on the resident experts.
        var cached = HoneCli.Run("generate", path, "--adapter", run, "-p", "Order 3", "-n", "12", "--temperature", "0", "--json", "--expert-cache", "30%");
        Assert.True(cached.ExitCode == 0, cached.ToString());
        Assert.Equal(JsonNode.Parse(generate.Stdout)!["ids"]!.ToJsonString(), JsonNode.Parse(cached.Stdout)!["ids"]!.ToJsonString());

        var export = HoneCli.Run("convert", run, "--base", path, "--out", dir.File("adapter.gguf"));
        Assert.NotEqual(0, export.ExitCode);
        Assert.Contains("hone merge-adapter", export.Stderr);
        Assert.False(File.Exists(dir.File("adapter.gguf")));

        // The batched engine (serve) applies the adapter on the experts and the router to its own rows only.
        using (var engine = Hone.Batching.BatchEngine.Open(path, [("a", run)], new Hone.Batching.EngineOptions { Parallel = 4, StepTokens = 32 }))
        using (var loaded = Hone.Inference.LoadedModel.Open(path, run))
        {
            var prompt = loaded.EncodePrompt("Order 3");
            var options = new Hone.Inference.GenerationOptions(12, Hone.Inference.SamplerOptions.Greedy, null, StopAtEndOfTurn: false);
            var expected = new Hone.Inference.Generator(loaded.Model, loaded.Tokenizer).Generate(prompt, options).Ids;
            Hone.Batching.SequenceRequest Request(string? adapter) => new() { Prompt = prompt, Adapter = adapter, MaxTokens = 12, StopAtEndOfTurn = false };
            var adapted = engine.Submit(Request("a"));
            var baseOnly = engine.Submit(Request(null));
            var adaptedAgain = engine.Submit(Request("a"));
            Assert.Equal(expected, (await adapted.CompleteAsync()).Ids);
            Assert.Equal(expected, (await adaptedAgain.CompleteAsync()).Ids);
            Assert.Equal(JsonNode.Parse(plain.Stdout)!["ids"]!.AsArray().Select(i => (int)i!).ToArray(), (await baseOnly.CompleteAsync()).Ids);
        }

        var nothing = HoneCli.Run("train", TinyChatModel.Path, "--stage", "cpt", "--method", "lora", "--data", text, "--out", dir.File("x"), "--max-steps", "1",
            "--seq-len", "32", "--lora-target", "q_proj,experts");
        Assert.NotEqual(0, nothing.ExitCode);
        Assert.Contains("experts matches nothing in this model (it is dense", nothing.Stderr);
    }

    [Fact]
    public void Expert_choice_training_logs_dropped_tokens_and_the_report_shows_them()
    {
        using var dir = new TempDirectory();
        string text = Text(dir), run = dir.File("ec");
        var train = HoneCli.Run("train", TinyMoeModel.Path, "--stage", "cpt", "--method", "full", "--data", text, "--out", run, "--max-steps", "3",
            "--seq-len", "32", "--batch-size", "2", "--expert-choice-capacity", "1", "--eval-every", "0", "--val-split", "0", "--save-every", "0");
        Assert.True(train.ExitCode == 0, train.ToString());
        Assert.Contains("expert-choice routing (capacity factor 1; generation routes top 2)", train.Stdout + train.Stderr);
        var layers = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!["routing"]!.AsArray()).Last();
        foreach (var layer in layers)
        {
            Assert.All(layer!["load"]!.AsArray(), x => Assert.Equal(0.25, (double)x!, 3)); // each of 4 experts took 16 of 64 rows
            Assert.InRange((double)layer["dropped"]!, 0, 1);
        }
        Assert.True(layers.Any(l => (double)l!["dropped"]! > 0), "capacity 1: some rows no expert took");
        var report = HoneCli.Run("report", run, "--out", dir.File("report.html"));
        Assert.True(report.ExitCode == 0, report.ToString());
        Assert.Contains("tokens dropped", File.ReadAllText(dir.File("report.html")));
        var dense = HoneCli.Run("train", TinyChatModel.Path, "--stage", "cpt", "--data", text, "--out", dir.File("d"), "--max-steps", "1",
            "--expert-choice-capacity", "1");
        Assert.NotEqual(0, dense.ExitCode);
        Assert.Contains("expert_choice_capacity applies to mixture-of-experts models", dense.Stderr);
    }

    [Fact]
    public void Router_loss_coefficients_on_a_dense_model_are_refused()
    {
        using var dir = new TempDirectory();
        string text = Text(dir);
        var train = HoneCli.Run("train", TinyChatModel.Path, "--stage", "cpt", "--data", text, "--out", dir.File("run"), "--max-steps", "1",
            "--router-aux-loss-coef", "0.01");
        Assert.NotEqual(0, train.ExitCode);
        Assert.Contains("apply to mixture-of-experts models", train.Stderr);
        Assert.DoesNotContain("   at ", train.Stderr);
    }
}

public unsafe class ExpertChoiceTrainingTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    [Fact]
    public void Each_expert_takes_its_capacity_of_highest_scoring_rows()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("mixtral-hf-f32"));
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        using var m = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full, ExpertChoiceCapacity: 1.5), 2, 8);
        var rng = new Random(3);
        var tokens = Enumerable.Range(0, 16).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        m.Routing = new Hone.Experts.RoutingStatistics(c.Config.Layers, c.Config.Experts, c.Config.ExpertsPerToken);
        m.Forward(tokens, targets, 2, 8);
        int e = c.Config.Experts, capacity = (int)Math.Ceiling(16 * 1.5 / e); // 6 of 16 rows per expert
        for (int l = 0; l < c.Config.Layers; l++)
        {
            var weights = m.RoutedWeights(l).ToArray();
            for (int j = 0; j < e; j++)
            {
                var taken = Enumerable.Range(0, 16).Where(t => weights[t * e + j] != 0).ToList();
                Assert.Equal(capacity, taken.Count);
                float lowestTaken = taken.Min(t => weights[t * e + j]);
                Assert.All(Enumerable.Range(0, 16).Except(taken), t => Assert.True(weights[t * e + j] == 0));
                Assert.True(lowestTaken > 0);
            }
            var stats = m.Routing.Layer(l)!;
            Assert.All(stats.Load, x => Assert.Equal(1.0 / e, x, 9)); // every expert took the same number of rows
            int dropped = Enumerable.Range(0, 16).Count(t => Enumerable.Range(0, e).All(j => weights[t * e + j] == 0));
            Assert.Equal(dropped / 16.0, stats.Dropped, 9);
        }
    }

    [Fact]
    public void Finite_differences_agree_with_backward_under_expert_choice()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("qwen2moe-hf-f32")); // shared expert, a dense layer
        using var w = LlamaWeights.Load(c, new WeightLoadOptions(TensorType.F32));
        // The z-loss is smooth; the load-balancing loss counts top-k choices, which expert-choice routing does not make,
        // so a probe could flip one unseen by the routing compared below.
        var setup = new TrainingSetup(TrainingMethod.Full, RouterAuxLossCoef: 0, RouterZLossCoef: 0.01, ExpertChoiceCapacity: 2);
        using var m = new TrainableLlama(w, Pool, setup, 1, 8);
        var rng = new Random(12);
        var tokens = Enumerable.Range(0, 8).Select(_ => rng.Next(c.Config.VocabSize)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        m.ZeroGradients();
        m.ForwardBackward(tokens, targets, 1, 8, 1f);
        foreach (int l in Enumerable.Range(0, c.Config.Layers).Where(c.Config.IsSparseLayer)) // 6 experts × ⌈8·2/6⌉ rows, not 8 rows × top 3
            Assert.Equal(6 * 3, m.RoutedWeights(l).ToArray().Count(x => x != 0));
        string Routing() => string.Join("|", Enumerable.Range(0, c.Config.Layers).Where(c.Config.IsSparseLayer)
            .Select(l => string.Concat(m.RoutedWeights(l).ToArray().Select(x => x != 0 ? '1' : '0')) + string.Join(",", m.RoutedExperts(l).ToArray())));
        double Loss() => m.Forward(tokens, targets, 1, 8) + 0.01 * m.LastZLoss;
        int checkedCount = 0, skipped = 0;
        foreach (var p in m.Parameters.Where(p => p.Name.Contains("exps") || p.Name.Contains("ffn_gate_inp") || p.Name.Contains("attn_q")))
            for (int probe = 0; probe < 3; probe++)
            {
                long i = rng.NextInt64(p.Count);
                float original = p.Value[i];
                const float h = 1e-2f; // float32 forward noise over 2h stays under the tolerance
                p.Value[i] = original + h; double plus = Loss(); var routingPlus = Routing();
                p.Value[i] = original - h; double minus = Loss(); var routingMinus = Routing();
                p.Value[i] = original;
                if (routingPlus != routingMinus) { skipped++; continue; }
                double numeric = (plus - minus) / (2 * h), analytic = p.Gradient[i];
                Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + 2e-2 * Math.Abs(analytic), $"{p.Name}[{i}]: finite difference {numeric:G6}, backward {analytic:G6}");
                checkedCount++;
            }
        output.WriteLine($"{checkedCount} probes checked, {skipped} skipped for a routing change");
        Assert.True(checkedCount >= 30);
    }
}
