using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Hone.Tests.Model;
using Hone.Training;
using Xunit;

namespace Hone.Tests.Training;

public class TrainerTests
{
    sealed class Recorder(Action<TrainingProgress>? onProgress = null) : ITrainingReporter
    {
        public readonly List<TrainingProgress> Steps = new();
        public readonly List<string> Checkpoints = new();
        public void Info(string message) { }
        public void Progress(TrainingProgress p) { Steps.Add(p); onProgress?.Invoke(p); }
        public void Validation(long step, double loss, bool improved) { }
        public void Checkpoint(string path) => Checkpoints.Add(path);
    }

    /// <summary>A small "SFT set": 4 sequences whose second half is the target (first half is the prompt).</summary>
    static TrainingData Memorize(Checkpoint c, TrainOptions o)
    {
        var rng = new Random(11);
        var examples = Enumerable.Range(0, 4).Select(_ =>
        {
            var ids = Enumerable.Range(0, 16).Select(_ => 3 + rng.Next(c.Config.VocabSize - 3)).ToArray();
            return new TrainingExample(ids, ids.Select((_, i) => i >= 8).ToArray());
        }).ToList();
        return new TrainingData(new TrainingRows(examples, o.SeqLen, false, 0, o.Seed), null, 0, "4 synthetic examples");
    }

    /// <summary>A random model whose embedding and head are wide enough (V ≤ D, unit-scale rows) that every token is
    /// reachable by adapters alone; written once per test run as a Hugging Face directory.</summary>
    static readonly Lazy<string> MemorizerModel = new(() =>
    {
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = 48, HiddenSize = 64, IntermediateSize = 128, Layers = 2, Heads = 4, KvHeads = 2,
            HeadDim = 16, RotaryDims = 16, MaxPositions = 64, TiedEmbeddings = false,
        };
        var dir = TestFolders.DeletedAtExit(Path.Combine(Path.GetTempPath(), $"hone-memorizer-{Environment.ProcessId}"));
        using var w = LlamaWeights.CreateRandom(config, TensorType.F32, 17, std: 0.05f, embeddingStd: 0.3f);
        Hone.Transforms.ModelConverter.Write(w, null, dir, TensorType.F32, new List<string>());
        return dir;
    });

    static TrainOptions Options(string outDir, TrainingMethod method) => new()
    {
        Model = MemorizerModel.Value, Data = "synthetic", Out = outDir, Method = method,
        SeqLen = 16, BatchSize = 4, GradAccum = 1, MaxSteps = 300, Lr = method == TrainingMethod.Full || method == TrainingMethod.Freeze ? 1e-2f : 1e-2f,
        LoraR = 8, LoraAlpha = 16, Threads = 2, QloraType = "q8_0", SaveEvery = 0, EvalEvery = 0, WarmupSteps = 5, Schedule = LearningRateSchedule.Constant,
        FreezeTrainableLayers = 2, FreezeExtraModules = ["lm_head"], LogEvery = 10, Seed = 3,
    };

    [Theory]
    [InlineData(TrainingMethod.Full)]
    [InlineData(TrainingMethod.Freeze)]
    [InlineData(TrainingMethod.Lora)]
    [InlineData(TrainingMethod.Dora)]
    [InlineData(TrainingMethod.QLora)]
    public void Tiny_model_memorizes_a_small_sft_set(TrainingMethod method)
    {
        using var dir = new TempDirectory();
        var summary = Trainer.Run(Options(dir.Path, method), Memorize, new Recorder());
        Assert.True(summary.FinalLoss < 0.05, $"{method}: final loss {summary.FinalLoss}");
        var lines = File.ReadAllLines(Path.Combine(dir.Path, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.All(lines, l => { Assert.NotNull(l["step"]); Assert.NotNull(l["loss"]); Assert.NotNull(l["lr"]); Assert.NotNull(l["tokens_per_s"]); });
        if (method is TrainingMethod.Lora or TrainingMethod.Dora or TrainingMethod.QLora)
        {
            var config = PeftAdapter.ReadConfig(dir.Path);
            Assert.Equal(8, config.Rank);
            Assert.Equal(method == TrainingMethod.Dora ? AdapterKinds.Dora : AdapterKinds.Lora, config.Kind);
        }
        else Assert.True(File.Exists(Path.Combine(dir.Path, "model.safetensors")));
    }

    /// <summary>QDoRA: DoRA adapters over a quantized base (PEFT trains them over bitsandbytes layers), from the CLI's
    /// --method qlora --adapter-kind dora or a recipe's quantization_bit with use_dora.</summary>
    [Fact]
    public void Dora_adapters_train_over_a_quantized_base()
    {
        using var dir = new TempDirectory();
        var summary = Trainer.Run(Options(dir.Path, TrainingMethod.QLora) with { AdapterKind = "dora" }, Memorize, new Recorder());
        Assert.True(summary.FinalLoss < 0.05, $"final loss {summary.FinalLoss}");
        Assert.Equal(AdapterKinds.Dora, PeftAdapter.ReadConfig(dir.Path).Kind);
    }

    [Theory]
    [InlineData(TrainingMethod.Lora)]
    [InlineData(TrainingMethod.Full)]
    public void Interrupted_and_resumed_run_ends_bit_identical(TrainingMethod method)
    {
        using var straight = new TempDirectory();
        using var resumed = new TempDirectory();
        var o = Options(straight.Path, method) with { MaxSteps = 12, LoraDropout = method == TrainingMethod.Lora ? 0.1f : 0f, LogEvery = 1, SaveEvery = 4, KeepCheckpoints = 2 };
        Trainer.Run(o, Memorize, new Recorder());

        using var cts = new CancellationTokenSource();
        var first = Trainer.Run(o with { Out = resumed.Path }, Memorize, new Recorder(p => { if (p.Step == 7) cts.Cancel(); }), cts.Token);
        Assert.True(first.Interrupted);
        Assert.Equal(7, first.Steps);
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(resumed.Path, "checkpoints")).Length); // keeps the last 2
        var second = Trainer.Run(o with { Out = resumed.Path, Resume = "auto" }, Memorize, new Recorder());
        Assert.False(second.Interrupted);
        Assert.Equal(12, second.Steps);

        string output = method == TrainingMethod.Lora ? "adapter_model.safetensors" : "model.safetensors";
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight.Path, output)), File.ReadAllBytes(Path.Combine(resumed.Path, output)));
        var a = File.ReadAllLines(Path.Combine(straight.Path, "metrics.jsonl")).Select(l => (double)JsonNode.Parse(l)!["loss"]!).ToArray();
        var b = File.ReadAllLines(Path.Combine(resumed.Path, "metrics.jsonl")).Select(l => (double)JsonNode.Parse(l)!["loss"]!).ToArray();
        Assert.Equal(a, b);
    }

    [Fact]
    public void Resume_with_different_options_is_refused()
    {
        using var dir = new TempDirectory();
        var o = Options(dir.Path, TrainingMethod.Lora) with { MaxSteps = 6, SaveEvery = 2 };
        using var cts = new CancellationTokenSource();
        Trainer.Run(o, Memorize, new Recorder(p => { if (p.Step == 3) cts.Cancel(); }), cts.Token);
        var e = Assert.Throws<ModelFormatException>(() => Trainer.Run(o with { Lr = 1e-3f, Resume = "auto" }, Memorize, new Recorder()));
        Assert.Contains("different training options", e.Message);
    }

    [Fact]
    public void Same_seed_same_threads_is_bit_identical()
    {
        using var a = new TempDirectory();
        using var b = new TempDirectory();
        var o = Options(a.Path, TrainingMethod.Lora) with { MaxSteps = 5, LoraDropout = 0.2f };
        Trainer.Run(o, Memorize, new Recorder());
        Trainer.Run(o with { Out = b.Path }, Memorize, new Recorder());
        Assert.Equal(File.ReadAllBytes(Path.Combine(a.Path, "adapter_model.safetensors")), File.ReadAllBytes(Path.Combine(b.Path, "adapter_model.safetensors")));
    }
}
