using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Hone.Training;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Training;

/// <summary>
/// Knowledge distillation (hone train --stage distill): the loss kernel against float64 PyTorch
/// (tools/reference/make_distill_fixtures.py → Fixtures/distill/kd.json), every divergence's gradient through a tiny
/// model against finite differences, the teacher's alignment with the student's rows, the vocabulary checks, and a
/// distillation run with every training method.
/// </summary>
public unsafe class DistillationTests(ITestOutputHelper output)
{
    static readonly WorkerPool Pool = new(2);

    // ---- the kernel against PyTorch ------------------------------------------------------------------------

    public static IEnumerable<object[]> Cases() =>
        ((JsonArray)JsonNode.Parse(File.ReadAllText(FixturePath))!["cases"]!).Select(c => new object[] { (string)c!["name"]! });

    static string FixturePath => Path.Combine(AppContext.BaseDirectory, "Fixtures", "distill", "kd.json");

    static JsonNode Case(string name) => ((JsonArray)JsonNode.Parse(File.ReadAllText(FixturePath))!["cases"]!).Single(c => (string)c!["name"]! == name)!;

    static float[] Floats(JsonNode node) => ((JsonArray)node).Select(v => (float)(double)v!).ToArray();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Loss_and_gradient_match_pytorch_float64(string name)
    {
        var c = Case(name);
        int rows = (int)c["rows"]!, v = (int)c["vocab"]!, vt = (int)c["teacher_vocab"]!, shared = (int)c["shared"]!;
        float ratio = (float)(double)c["ratio"]!, temperature = (float)(double)c["temperature"]!, scale = (float)(double)c["scale"]!;
        var divergence = Enum.Parse<DistillationDivergence>((string)c["divergence"]!, ignoreCase: true);
        var teacher = Floats(c["teacher"]!);
        var targets = ((JsonArray)c["targets"]!).Select(t => (int)t!).ToArray();
        var want = Floats(c["dlogits"]!);
        foreach (var threads in new[] { 1, 2 })
        {
            var logits = Floats(c["logits"]!);
            using var pool = new WorkerPool(threads);
            DistillationSums sums;
            fixed (float* z = logits, zt = teacher)
                sums = Distillation.ForwardBackward(pool, z, zt, vt, rows, v, shared, targets, scale, ratio, temperature, divergence);
            double loss = scale * ((1 - (double)ratio) * sums.CrossEntropy + ratio * sums.Divergence);
            AssertClose($"{name} loss", (double)c["loss"]!, loss);
            AssertClose($"{name} cross-entropy", (double)c["cross_entropy_sum"]!, sums.CrossEntropy);
            AssertClose($"{name} divergence", (double)c["divergence_sum"]!, sums.Divergence);
            double top = want.Max(Math.Abs), worst = 0;
            for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(logits[i] - want[i]));
            output.WriteLine($"{name} ({threads} threads): loss {loss:G8}, gradient max abs error {worst:E2} of {top:E2}");
            Assert.True(worst <= 1e-5 * top + 1e-8, $"{name}: gradient error {worst:E2} against a scale of {top:E2}");
            for (int r = 0; r < rows; r++)
                if (targets[r] < 0) Assert.All(logits.AsSpan(r * v, v).ToArray(), g => Assert.Equal(0f, g));
        }
    }

    static void AssertClose(string what, double want, double got) =>
        Assert.True(Math.Abs(got - want) <= 1e-5 * Math.Max(1, Math.Abs(want)), $"{what}: {got:G10}, PyTorch float64 {want:G10}");

    [Fact]
    public void Bad_kernel_arguments_are_refused()
    {
        var z = new float[8];
        var zt = new float[8];
        fixed (float* a = z, b = zt)
        {
            var pa = (nint)a; var pb = (nint)b;
            Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.ForwardBackward((float*)pa, (float*)pb, 8, 1, 8, 9, [0], 1, 0.5f, 2, DistillationDivergence.Forward));
            Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.ForwardBackward((float*)pa, (float*)pb, 8, 1, 8, 8, [0], 1, 0.5f, 0, DistillationDivergence.Forward));
            Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.ForwardBackward((float*)pa, (float*)pb, 8, 1, 8, 8, [0], 1, 1.5f, 2, DistillationDivergence.Forward));
            Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.ForwardBackward((float*)pa, (float*)pb, 8, 1, 8, 8, [8], 1, 0.5f, 2, DistillationDivergence.Forward));
        }
    }

    // ---- through a tiny model --------------------------------------------------------------------------------

    /// <summary>A teacher with the tiny chat model's tokenizer and a different (random, 3-layer) body.</summary>
    static readonly Lazy<string> TeacherModel = new(() => TinyChatModel.Build("distill-teacher", vocab => new ModelConfig
    {
        Architecture = "llama", VocabSize = vocab, HiddenSize = 32, IntermediateSize = 64, Layers = 3, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = TinyChatModel.Context, TiedEmbeddings = false,
    }, seed: 23, std: 0.08f, embeddingStd: 0.3f));

    /// <summary>The same teacher with 9 ids past the tokenizer's (a padded vocabulary).</summary>
    static readonly Lazy<string> WiderTeacherModel = new(() => TinyChatModel.Build("distill-teacher-wide", vocab => new ModelConfig
    {
        Architecture = "llama", VocabSize = vocab + 9, HiddenSize = 32, IntermediateSize = 64, Layers = 1, Heads = 2, KvHeads = 1,
        HeadDim = 16, RotaryDims = 16, MaxPositions = TinyChatModel.Context, TiedEmbeddings = false,
    }, seed: 29, std: 0.08f, embeddingStd: 0.3f));

    static (int[] Tokens, int[] Targets) Batch(int batch, int sequence, int vocab, int seed)
    {
        var rng = new Random(seed);
        var tokens = Enumerable.Range(0, batch * sequence).Select(_ => rng.Next(vocab)).ToArray();
        var targets = tokens.Skip(1).Append(-1).ToArray();
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < sequence / 3; t++) targets[b * sequence + t] = -1; // a masked prompt in every sequence
        return (tokens, targets);
    }

    [Theory]
    [InlineData(DistillationDivergence.Forward, 1f, 1f)]
    [InlineData(DistillationDivergence.Forward, 2f, 0.5f)]
    [InlineData(DistillationDivergence.Reverse, 1f, 1f)]
    [InlineData(DistillationDivergence.Reverse, 2.5f, 0.5f)]
    [InlineData(DistillationDivergence.Symmetric, 0.7f, 0.3f)]
    [InlineData(DistillationDivergence.Symmetric, 2f, 1f)]
    public void Finite_differences_agree_with_backward_for_every_divergence(DistillationDivergence divergence, float temperature, float ratio)
    {
        using var studentCheckpoint = Checkpoint.Open(TinyChatModel.Path);
        using var teacherCheckpoint = Checkpoint.Open(TeacherModel.Value);
        using var w = LlamaWeights.Load(studentCheckpoint, new WeightLoadOptions(TensorType.F32));
        const int batch = 2, sequence = 12;
        using var student = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), batch, sequence);
        using var teacher = ModelTeacher.Open(teacherCheckpoint, null, Pool, batch, sequence);
        int vocab = studentCheckpoint.Config.VocabSize;
        student.LogitsLoss = new DistillationLoss(teacher, new DistillationSettings(ratio, temperature, divergence), vocab);
        var (tokens, targets) = Batch(batch, sequence, vocab, 7);
        student.ZeroGradients();
        student.ForwardBackward(tokens, targets, batch, sequence, 1f);
        int probes = FiniteDifferences.CheckParameters(student.Parameters, () => student.Forward(tokens, targets, batch, sequence),
            $"{divergence} T={temperature} α={ratio}", seed: 11, probesPerParameter: 2);
        Assert.True(probes >= 2 * 15);
    }

    /// <summary>A teacher that is the student itself (same weights; the inference forward beside the training one):
    /// the divergence is zero and with α = 1 so is every gradient. Any misalignment of the teacher's rows (sequence
    /// offsets, loss chunks, masked sequences skipped) would show as a positive KL.</summary>
    [Fact]
    public void A_teacher_identical_to_the_student_gives_zero_divergence()
    {
        using var checkpoint = Checkpoint.Open(TinyChatModel.Path);
        using var w = LlamaWeights.Load(checkpoint, new WeightLoadOptions(TensorType.F32));
        using var teacherCheckpoint = Checkpoint.Open(TinyChatModel.Path);
        const int batch = 3, sequence = 100; // rows beyond one loss chunk
        using var student = new TrainableLlama(w, Pool, new TrainingSetup(TrainingMethod.Full), batch, sequence);
        using var teacher = ModelTeacher.Open(teacherCheckpoint, null, Pool, batch, sequence);
        var loss = new DistillationLoss(teacher, new DistillationSettings(1f, 2f, DistillationDivergence.Symmetric), checkpoint.Config.VocabSize);
        student.LogitsLoss = loss;
        var (tokens, targets) = Batch(batch, sequence, checkpoint.Config.VocabSize, 3);
        for (int t = 0; t < sequence; t++) targets[sequence + t] = -1; // the middle sequence has no target: the teacher skips it
        int count = targets.Count(t => t >= 0);
        student.ZeroGradients();
        double total = student.ForwardBackward(tokens, targets, batch, sequence, 1f / count);
        output.WriteLine($"KL per target {loss.Sums.Divergence / count:E3}, cross-entropy {loss.Sums.CrossEntropy / count:F4}");
        Assert.True(loss.Sums.Divergence / count < 1e-6, $"divergence {loss.Sums.Divergence / count:E3} per target");
        Assert.True(loss.Sums.CrossEntropy / count > 1, "the cross-entropy is counted beside it");
        Assert.Equal(loss.Sums.Divergence, total, 12);
        Assert.All(student.Parameters, p => Assert.True(p.Gradients.ToArray().Max(Math.Abs) < 1e-4, $"{p.Name}: gradient {p.Gradients.ToArray().Max(Math.Abs):E2}"));
    }

    // ---- vocabularies ----------------------------------------------------------------------------------------

    [Fact]
    public void Vocabularies_that_differ_only_in_size_are_sliced_to_the_shared_ids()
    {
        using var student = Checkpoint.Open(TinyChatModel.Path);
        using var teacher = Checkpoint.Open(WiderTeacherModel.Value);
        int shared = DistillationVocabulary.Shared(student.LoadTokenizer(), student.Config.VocabSize, teacher.LoadTokenizer(), teacher.Config.VocabSize, out var note);
        Assert.Equal(student.Config.VocabSize, shared);
        Assert.NotNull(note);
        Assert.Contains($"student {student.Config.VocabSize}, teacher {student.Config.VocabSize + 9}", note);
        Assert.Equal(shared, DistillationVocabulary.Shared(teacher.LoadTokenizer(), teacher.Config.VocabSize, student.LoadTokenizer(), student.Config.VocabSize, out _));
        // Same tokenizer, same size: nothing to say.
        Assert.Equal(shared, DistillationVocabulary.Shared(student.LoadTokenizer(), shared, student.LoadTokenizer(), shared, out var none));
        Assert.Null(none);
    }

    [Fact]
    public void A_different_tokenizer_is_refused_naming_the_first_differing_token()
    {
        using var dir = new TempDirectory();
        foreach (var f in Directory.GetFiles(TinyChatModel.Path)) File.Copy(f, dir.File(Path.GetFileName(f)));
        var json = JsonNode.Parse(File.ReadAllText(dir.File("tokenizer.json")))!;
        var vocab = (JsonObject)json["model"]!["vocab"]!;
        int id = SwapLastTwoTokens(vocab, out string teacherPiece);
        File.WriteAllText(dir.File("tokenizer.json"), json.ToJsonString());
        var teacher = Tokenizer.FromHuggingFaceDirectory(dir.Path);
        using var student = Checkpoint.Open(TinyChatModel.Path);
        var e = Assert.Throws<ArgumentException>(() =>
            DistillationVocabulary.Shared(student.LoadTokenizer(), student.Config.VocabSize, teacher, student.Config.VocabSize, out _));
        output.WriteLine(e.Message);
        Assert.Contains($"at token {id}", e.Message);
        Assert.Contains($"\"{teacherPiece}\" in the teacher", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>Exchange the ids of the vocabulary's last two pieces (the merges stay valid): returns the first of the
    /// two ids, and the piece it now names.</summary>
    static int SwapLastTwoTokens(JsonObject vocab, out string piece)
    {
        var last = vocab.Select(kv => (Piece: kv.Key, Id: (int)kv.Value!)).OrderBy(kv => kv.Id).TakeLast(2).ToArray();
        vocab[last[0].Piece] = last[1].Id;
        vocab[last[1].Piece] = last[0].Id;
        piece = last[1].Piece;
        return last[0].Id;
    }

    // ---- the stage, with every method ----------------------------------------------------------------------

    sealed class Recorder : ITrainingReporter
    {
        public readonly List<string> Lines = new();
        public void Info(string message) => Lines.Add(message);
        public void Progress(TrainingProgress progress) { }
        public void Validation(long step, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }

    /// <summary>Synthetic conversations: a prompt half (masked) and an answer half (targets).</summary>
    static TrainingData Data(Checkpoint c, TrainOptions o)
    {
        var rng = new Random(5);
        var examples = Enumerable.Range(0, 8).Select(_ =>
        {
            var ids = Enumerable.Range(0, 24).Select(_ => 3 + rng.Next(c.Config.VocabSize - 3)).ToArray();
            return new TrainingExample(ids, ids.Select((_, i) => i >= 12).ToArray());
        }).ToList();
        return new TrainingData(new TrainingRows(examples, o.SeqLen, false, 0, o.Seed), null, 0, "8 synthetic examples");
    }

    static TrainOptions Options(string outDir, TrainingMethod method) => new()
    {
        Model = TinyChatModel.Path, Data = "synthetic", Out = outDir, Method = method, Stage = TrainingStage.Distill, Teacher = TeacherModel.Value,
        KdRatio = 0.8, KdTemperature = 2, SeqLen = 24, BatchSize = 4, MaxSteps = 40, Lr = 1e-2f, LoraR = 8, LoraAlpha = 16, Threads = 2,
        QloraType = "q8_0", SaveEvery = 0, EvalEvery = 0, WarmupSteps = 2, Schedule = LearningRateSchedule.Constant, FreezeTrainableLayers = 1,
        LogEvery = 1, Seed = 3,
    };

    [Theory]
    [InlineData(TrainingMethod.Full)]
    [InlineData(TrainingMethod.Freeze)]
    [InlineData(TrainingMethod.Lora)]
    [InlineData(TrainingMethod.Dora)]
    [InlineData(TrainingMethod.QLora)]
    public void Every_method_distills(TrainingMethod method)
    {
        using var dir = new TempDirectory();
        var reporter = new Recorder();
        // Adapters and a frozen layer move the student less per step than full training: a larger step for them.
        // The teacher alone (α = 1), so that memorizing the hard labels does not pull the student elsewhere.
        var o = Options(dir.Path, method) with { MaxSteps = 60, Lr = method == TrainingMethod.Full ? 1e-2f : 4e-2f, KdRatio = 1 };
        var summary = Trainer.Run(o, Data, reporter);
        Assert.Equal(60, summary.Steps);
        Assert.Contains(reporter.Lines, l => l.StartsWith("distill: teacher") && l.Contains("KL(teacher ‖ student)"));
        var lines = File.ReadAllLines(Path.Combine(dir.Path, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        double first = (double)lines[0]["kd_loss"]!, last = (double)lines[^1]["kd_loss"]!;
        output.WriteLine($"{method}: kd_loss {first:F4} → {last:F4}, ce_loss {(double)lines[0]["ce_loss"]!:F4} → {(double)lines[^1]["ce_loss"]!:F4}");
        // Measured: full 1.63 → 0.10; the adapters and the frozen layers 1.63 → 1.26–1.50 in these 60 steps.
        Assert.True(last < (method == TrainingMethod.Full ? 0.25 : 0.95) * first, $"{method}: the divergence from the teacher fell only from {first:F4} to {last:F4}");
        Assert.All(lines, l => Assert.Equal((double)l["kd_loss"]!, (double)l["loss"]!, 5));
        Assert.Equal("distill", (string)JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "train_summary.json")))!["stage"]!);
    }

    [Fact]
    public void A_resumed_distillation_ends_bit_identical()
    {
        using var straight = new TempDirectory();
        using var resumed = new TempDirectory();
        var o = Options(straight.Path, TrainingMethod.Lora) with { MaxSteps = 8, SaveEvery = 3 };
        Trainer.Run(o, Data, new Recorder());
        using var cts = new CancellationTokenSource();
        var reporter = new CancellingRecorder(5, cts);
        Assert.True(Trainer.Run(o with { Out = resumed.Path }, Data, reporter, cts.Token).Interrupted);
        Trainer.Run(o with { Out = resumed.Path, Resume = "auto" }, Data, new Recorder());
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight.Path, "adapter_model.safetensors")), File.ReadAllBytes(Path.Combine(resumed.Path, "adapter_model.safetensors")));
        // Another temperature is another trajectory: its checkpoint is not resumed.
        var e = Assert.Throws<ModelFormatException>(() => Trainer.Run(o with { Out = resumed.Path, Resume = "auto", KdTemperature = 3, MaxSteps = 9 }, Data, new Recorder()));
        Assert.Contains("different training options", e.Message);
    }

    [Fact]
    public void A_teacher_on_its_own_threads_teaches_the_same()
    {
        using var shared = new TempDirectory();
        using var own = new TempDirectory();
        var o = Options(shared.Path, TrainingMethod.Full) with { MaxSteps = 6 };
        Trainer.Run(o, Data, new Recorder());
        var reporter = new Recorder();
        Trainer.Run(o with { Out = own.Path, TeacherThreads = 1 }, Data, reporter);
        Assert.Contains(reporter.Lines, l => l.StartsWith("distill: teacher") && l.Contains("a pool of its own (1 threads)"));
        // The teacher runs at exact precision, whose results do not depend on the thread count: the same losses.
        var a = File.ReadAllLines(Path.Combine(shared.Path, "metrics.jsonl")).Select(l => (double)JsonNode.Parse(l)!["kd_loss"]!).ToList();
        var b = File.ReadAllLines(Path.Combine(own.Path, "metrics.jsonl")).Select(l => (double)JsonNode.Parse(l)!["kd_loss"]!).ToList();
        Assert.Equal(6, a.Count);
        for (int i = 0; i < a.Count; i++) Assert.Equal(a[i], b[i], 6);
    }

    sealed class CancellingRecorder(int step, CancellationTokenSource cts) : ITrainingReporter
    {
        public void Info(string message) { }
        public void Progress(TrainingProgress p) { if (p.Step == step) cts.Cancel(); }
        public void Validation(long s, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }

    [Fact]
    public void Options_are_checked_before_anything_loads()
    {
        var o = new TrainOptions { Model = "m", Data = "d", Out = "o", Stage = TrainingStage.Distill };
        Assert.Contains("needs a teacher", Assert.Throws<ArgumentException>(() => o.Validate()).Message);
        Assert.Contains("apply to --stage distill", Assert.Throws<ArgumentException>(() => (o with { Stage = TrainingStage.Sft, Teacher = "t" }).Validate()).Message);
        Assert.Contains("apply to --stage distill", Assert.Throws<ArgumentException>(() => (o with { Stage = TrainingStage.Sft, KdTemperature = 4 }).Validate()).Message);
        Assert.Throws<ArgumentException>(() => (o with { Teacher = "t", KdRatio = 1.5 }).Validate());
        Assert.Throws<ArgumentException>(() => (o with { Teacher = "t", KdTemperature = 0 }).Validate());
        (o with { Teacher = "t", KdRatio = 1, KdTemperature = 4, KdLoss = DistillationDivergence.Reverse }).Validate();
        Assert.Contains("applies to a live --teacher", Assert.Throws<ArgumentException>(() => (o with { TeacherCache = "c", TeacherThreads = 2 }).Validate()).Message);
        Assert.Contains("apply to --stage distill", Assert.Throws<ArgumentException>(() => (o with { Stage = TrainingStage.Sft, TeacherThreads = 2 }).Validate()).Message);
        (o with { Teacher = "t", TeacherThreads = 2 }).Validate();
    }

    [Fact]
    public void Recipe_keys_set_the_distillation()
    {
        var r = TrainRecipe.Apply(YamlRecipe.Parse("recipe.yaml",
            "stage: distill\nteacher: big\nteacher_adapter: big-sft\nkd_ratio: 0.7\nkd_temperature: 3\nkd_loss: symmetric\nteacher_threads: 3\n"), new TrainOptions());
        var o = r.Options;
        Assert.Equal(TrainingStage.Distill, o.Stage);
        Assert.Equal("big", o.Teacher);
        Assert.Equal("big-sft", o.TeacherAdapter);
        Assert.Equal(0.7, o.KdRatio);
        Assert.Equal(3, o.KdTemperature);
        Assert.Equal(DistillationDivergence.Symmetric, o.KdLoss);
        Assert.Equal(3, o.TeacherThreads);
        Assert.Throws<DataFormatException>(() => TrainRecipe.Apply(YamlRecipe.Parse("recipe.yaml", "kd_loss: jensen\n"), new TrainOptions()));
    }

    [Fact]
    public void A_teacher_with_another_tokenizer_stops_the_run_before_data_loads()
    {
        using var dir = new TempDirectory();
        using var teacherDir = new TempDirectory();
        foreach (var f in Directory.GetFiles(TeacherModel.Value)) File.Copy(f, teacherDir.File(Path.GetFileName(f)));
        var json = JsonNode.Parse(File.ReadAllText(teacherDir.File("tokenizer.json")))!;
        var vocab = (JsonObject)json["model"]!["vocab"]!;
        int id = SwapLastTwoTokens(vocab, out _);
        File.WriteAllText(teacherDir.File("tokenizer.json"), json.ToJsonString());
        bool loaded = false;
        var e = Assert.Throws<ArgumentException>(() => Trainer.Run(Options(dir.Path, TrainingMethod.Lora) with { Teacher = teacherDir.Path },
            (c, o) => { loaded = true; return Data(c, o); }, new Recorder()));
        Assert.False(loaded);
        Assert.Contains($"at token {id}", e.Message);
        Assert.StartsWith(teacherDir.Path, e.Message);
    }
}
