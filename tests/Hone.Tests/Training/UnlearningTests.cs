using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Training;

/// <summary>
/// The unlearning objectives (grad-ascent, grad-diff, NPO): their logit gradients against float64 PyTorch
/// (tools/reference/make_unlearn_fixtures.py), their parameter gradients through the whole model against finite
/// differences, and the unlearn stage end to end.
/// </summary>
public unsafe class UnlearningTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    /// <summary>What the training loss path does with one micro-batch of logits: each sequence's NLL from the
    /// cross-entropy kernel (scale 0), its weight from the objective, then the kernel again with that weight.</summary>
    static double LossAndLogitGradient(float[] logits, int[] targets, int sequences, int positions, int vocab, HashSet<int> forget,
        double[] referenceNll, string method, double beta, double retainWeight)
    {
        long forgetTargets = 0, retainTargets = 0;
        for (int s = 0; s < sequences; s++)
        {
            int n = targets.Skip(s * positions).Take(positions).Count(t => t >= 0);
            if (forget.Contains(s)) forgetTargets += n; else retainTargets += n;
        }
        double loss = 0;
        fixed (float* l = logits)
            for (int s = 0; s < sequences; s++)
            {
                float* rows = l + (long)s * positions * vocab;
                var copy = new float[positions * vocab];
                new Span<float>(rows, positions * vocab).CopyTo(copy);
                double nll;
                fixed (float* c = copy) nll = CrossEntropy.ForwardBackward(c, positions, vocab, targets.AsSpan(s * positions, positions), 0);
                var (term, weight) = forget.Contains(s)
                    ? UnlearningObjective.ForgetSequence(method, nll, referenceNll[s], beta, forgetTargets, forget.Count)
                    : retainWeight > 0 ? UnlearningObjective.RetainSequence(nll, retainWeight, retainTargets) : (0, 0);
                loss += term;
                CrossEntropy.ForwardBackward(rows, positions, vocab, targets.AsSpan(s * positions, positions), (float)weight);
            }
        return loss;
    }

    [Fact]
    public void Objectives_and_logit_gradients_match_float64_pytorch()
    {
        var f = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "unlearning", "objectives.json")))!;
        int s = (int)f["sequences"]!, t = (int)f["positions"]!, v = (int)f["vocab"]!;
        var logits = f["logits"]!.AsArray().Select(x => (float)(double)x!).ToArray();
        var targets = f["targets"]!.AsArray().Select(x => (int)x!).ToArray();
        var forget = f["forget"]!.AsArray().Select(x => (int)x!).ToHashSet();
        var referenceNll = f["reference_loglik"]!.AsArray().Select(x => -(double)x!).ToArray();
        foreach (var c in f["cases"]!.AsArray())
        {
            var work = (float[])logits.Clone();
            double loss = LossAndLogitGradient(work, targets, s, t, v, forget, referenceNll, (string)c!["method"]!, (double)c["beta"]!, (double)c["retain_weight"]!);
            var want = c["dlogits"]!.AsArray().Select(x => (double)x!).ToArray();
            double scale = want.Max(Math.Abs), worst = want.Select((w, i) => Math.Abs(w - work[i])).Max();
            output.WriteLine($"{c["name"],-18} loss {loss:F7} (torch {(double)c["loss"]!:F7}), dlogits max rel err {worst / scale:E2}");
            Assert.Equal((double)c["loss"]!, loss, 5);
            Assert.True(worst <= 1e-5 * scale, $"{c["name"]}: dlogits differ by {worst:E2} (scale {scale:E2})");
        }
    }

    [Fact]
    public void The_npo_weight_is_the_derivative_of_its_term_and_tends_to_grad_ascent_as_beta_vanishes()
    {
        foreach (double beta in new[] { 0.1, 1.0, 3.0 })
            foreach (double nll in new[] { 2.0, 7.5, 20.0 })
            {
                const double h = 1e-5, reference = 6.0;
                double plus = UnlearningObjective.ForgetSequence("npo", nll + h, reference, beta, 0, 4).Term;
                double minus = UnlearningObjective.ForgetSequence("npo", nll - h, reference, beta, 0, 4).Term;
                double weight = UnlearningObjective.ForgetSequence("npo", nll, reference, beta, 0, 4).Weight;
                Assert.Equal((plus - minus) / (2 * h), weight, 6);
                // ∂L/∂log π = 2σ(β(log π − log π_ref))/N, and ∂log π/∂NLL = −1.
                Assert.Equal(-2 * UnlearningObjective.Sigmoid(beta * (reference - nll)) / 4, weight, 12);
            }
        // β → 0: σ → 1/2, so the weight is −1/N, sequence-level gradient ascent.
        Assert.Equal(-1.0 / 4, UnlearningObjective.ForgetSequence("npo", 9.0, 3.0, 1e-9, 0, 4).Weight, 6);
        Assert.Equal(800.0, UnlearningObjective.Softplus(800), 9);
        Assert.Equal(0.0, UnlearningObjective.Softplus(-800), 12);
    }

    static UnlearningBatch RandomBatch(Random rng, int batch, int sequence, int vocab, bool shortRow)
    {
        var tokens = Enumerable.Range(0, batch * sequence).Select(_ => rng.Next(vocab)).ToArray();
        var targets = new int[batch * sequence];
        var lengths = new int[batch];
        for (int b = 0; b < batch; b++)
        {
            lengths[b] = shortRow && b == batch - 1 ? sequence - 3 : sequence;
            // The prompt's first two positions are not scored, as SFT masks them; padding is not either.
            for (int i = 0; i < sequence; i++)
                targets[b * sequence + i] = i >= 2 && i + 1 < lengths[b] ? tokens[b * sequence + i + 1] : -1;
        }
        return new UnlearningBatch(tokens, targets, lengths, batch, sequence);
    }

    [Theory]
    [InlineData("grad-ascent", 0.1, 0.0)]
    [InlineData("grad-diff", 0.1, 0.8)]
    [InlineData("npo", 0.5, 0.0)]
    [InlineData("npo", 2.0, 0.6)]
    public void Gradients_through_the_model_pass_finite_differences(string method, double beta, double retainWeight)
    {
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 24, HiddenSize = 16, IntermediateSize = 32, Layers = 2, Heads = 2, KvHeads = 1,
            HeadDim = 8, RotaryDims = 8, MaxPositions = 16, TiedEmbeddings = false,
        };
        using var weights = LlamaWeights.CreateRandom(config, TensorType.F32, 11, std: 0.2f, embeddingStd: 0.5f);
        using var model = new TrainableLlama(weights, Pool, new TrainingSetup(TrainingMethod.Full), maxBatch: 2, maxSequence: 8);
        var rng = new Random(5);
        var forget = new List<UnlearningBatch> { RandomBatch(rng, 2, 8, 24, shortRow: true), RandomBatch(rng, 2, 8, 24, shortRow: false) };
        var retain = retainWeight > 0 ? new List<UnlearningBatch> { RandomBatch(rng, 2, 8, 24, shortRow: false), RandomBatch(rng, 2, 8, 24, shortRow: true) } : [];
        if (method == "npo")
            // References on both sides of the current likelihood, so the weights σ(β·log-ratio) are not all 1/2.
            forget = forget.Select((b, k) => b with
            {
                ReferenceNll = UnlearningObjective.ForwardSequenceNll(model, b.Tokens, b.Targets, b.Lengths, b.Batch, b.Sequence).Select((x, i) => x + (k + i % 2 == 0 ? 2.5 : -1.5)).ToArray(),
            }).ToList();
        model.ZeroGradients();
        var step = UnlearningObjective.ForwardBackward(model, method, forget, retain, beta, retainWeight);
        double value = UnlearningObjective.Value(model, method, forget, retain, beta, retainWeight);
        Assert.Equal(value, step.Objective, 5);
        int checkedCount = FiniteDifferences.CheckParameters(model.Parameters, () => UnlearningObjective.Value(model, method, forget, retain, beta, retainWeight),
            $"{method}", seed: 9, probesPerParameter: 3);
        output.WriteLine($"{method} β {beta} retain {retainWeight}: objective {step.Objective:F6}, {checkedCount} probes over {model.Parameters.Count} parameters");
        Assert.True(checkedCount >= 3 * model.Parameters.Count);
    }

    // ---- the stage, end to end ----------------------------------------------------------------------------

    static string Conversations(TempDirectory dir, string name, IEnumerable<(string Question, string Answer)> pairs)
    {
        string path = dir.File(name);
        File.WriteAllLines(path, pairs.Select(p => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = p.Question }, new JsonObject { ["role"] = "assistant", ["content"] = p.Answer }),
        }.ToJsonString()));
        return path;
    }

    static TrainOptions UnlearnOptions(TempDirectory dir, string method) => new()
    {
        Model = TinyChatModel.Path, Stage = TrainingStage.Unlearn, UnlearnMethod = method, Out = dir.File("out-" + method), Method = TrainingMethod.Lora,
        Forget = Conversations(dir, "forget.jsonl", Enumerable.Range(0, 6).Select(i => ($"Where is order {i}?", $"Order {i} ships in {i % 5 + 1} days."))),
        Retain = Conversations(dir, "retain.jsonl", Enumerable.Range(10, 6).Select(i => ($"When does order {i} arrive?", $"It is on its way, order {i}."))),
        SeqLen = 48, BatchSize = 2, GradAccum = 2, MaxSteps = 6, Lr = 5e-2f, LoraR = 4, LoraAlpha = 8, Threads = 2, SaveEvery = 0, EvalEvery = 3,
        WarmupSteps = 0, Schedule = LearningRateSchedule.Constant, Seed = 4,
    };

    sealed class Reporter : ITrainingReporter
    {
        public readonly List<string> Lines = [];
        public void Info(string message) => Lines.Add(message);
        public void Progress(TrainingProgress progress) { }
        public void Validation(long step, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }

    [Theory]
    [InlineData("grad-ascent")]
    [InlineData("grad-diff")]
    [InlineData("npo")]
    public void The_unlearn_stage_raises_the_forget_loss_and_writes_an_adapter(string method)
    {
        using var dir = new TempDirectory();
        var o = UnlearnOptions(dir, method);
        var summary = Trainer.Run(o, TrainingDataLoader.Load, new Reporter());
        Assert.Equal(6, summary.Steps);
        Assert.True(File.Exists(Path.Combine(o.Out, "adapter_model.safetensors")));
        var evaluations = File.ReadAllLines(Path.Combine(o.Out, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).Where(j => j["forget_nll"] != null && j["loss"] == null).ToList();
        Assert.Equal([0L, 3L, 6L], evaluations.Select(e => (long)e["step"]!));
        double before = (double)evaluations[0]["forget_nll"]!, after = (double)evaluations[^1]["forget_nll"]!;
        output.WriteLine($"{method}: forget NLL {before:F4} → {after:F4}, retain {evaluations[0]["retain_nll"]} → {evaluations[^1]["retain_nll"]}");
        Assert.True(after > before + 0.1, $"{method}: the forget set's NLL went from {before:F4} to {after:F4}");
        Assert.NotNull(evaluations[0]["retain_nll"]); // grad-ascent evaluates the retain set without training on it
        var unlearning = JsonNode.Parse(File.ReadAllText(Path.Combine(o.Out, "train_summary.json")))!["unlearning"]!;
        Assert.Equal(method, (string)unlearning["method"]!);
        Assert.Equal(after, (double)unlearning["forget_nll"]!, 5);
    }

    [Fact]
    public void A_forget_target_loss_stops_the_run_at_the_first_evaluation_past_it()
    {
        using var dir = new TempDirectory();
        var o = UnlearnOptions(dir, "grad-ascent");
        var reporter = new Reporter();
        var before = Trainer.Run(o with { MaxSteps = 1, Out = dir.File("probe") }, TrainingDataLoader.Load, reporter);
        double start = (double)JsonNode.Parse(File.ReadAllLines(Path.Combine(dir.File("probe"), "metrics.jsonl"))[0])!["forget_nll"]!;
        var summary = Trainer.Run(o with { ForgetTargetLoss = start + 0.05, MaxSteps = 60 }, TrainingDataLoader.Load, reporter);
        Assert.True(summary.EarlyStopped);
        Assert.True(summary.Steps < 60 && summary.Steps % 3 == 0, $"stopped at step {summary.Steps}");
        Assert.True(File.Exists(Path.Combine(o.Out, "adapter_model.safetensors")));
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(Path.Combine(o.Out, "train_summary.json")))!["unlearning"]!["reached_forget_target"]!);
    }

    [Fact]
    public void Unlearning_options_are_checked_before_anything_loads()
    {
        using var dir = new TempDirectory();
        var o = UnlearnOptions(dir, "grad-diff");
        Assert.Contains("--forget", Assert.Throws<ArgumentException>(() => (o with { Forget = null }).Validate()).Message);
        Assert.Contains("--retain", Assert.Throws<ArgumentException>(() => (o with { Retain = null }).Validate()).Message);
        Assert.Contains("packing", Assert.Throws<ArgumentException>(() => (o with { Packing = true }).Validate()).Message);
        Assert.Contains("--data", Assert.Throws<ArgumentException>(() => (o with { Data = "x.jsonl" }).Validate()).Message);
        Assert.Contains("unlearn", Assert.Throws<ArgumentException>(() => (o with { Stage = TrainingStage.Sft, Data = "x.jsonl" }).Validate()).Message);
        (o with { UnlearnMethod = "npo", Retain = null }).Validate();
        Assert.Throws<FormatException>(() => TrainOptions.Setting("unlearn_method")!.Parse("forget-everything"));
        Assert.Equal("grad-ascent", TrainOptions.Setting("unlearn_method")!.Parse("grad-ascent"));
    }
}
