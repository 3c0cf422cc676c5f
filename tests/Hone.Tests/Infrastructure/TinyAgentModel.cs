using System.Text.Json.Nodes;
using Hone.Agents;
using Hone.Model;
using Hone.Tensors;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Hone.Training;

namespace Hone.Tests.Infrastructure;

/// <summary>
/// A small store with its tasks, and a tiny Llama fine-tuned briefly on the oracle's conversations with the scripted
/// customer (tools shown in Hone's chat template), so that greedy decoding writes both text and tool calls: enough to
/// drive the agent benchmark through a local engine and through a server. Built once per test run.
/// </summary>
public static class TinyAgentModel
{
    public const int Context = 8192;

    public sealed record Built(string Data, string Model);

    static readonly Lazy<Built> Lazy = new(() => Build(TestFolders.DeletedAtExit(System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"hone-tiny-agent-{Environment.ProcessId}"))));

    public static Built Instance => Lazy.Value;

    static Built Build(string root)
    {
        if (Directory.Exists(root)) Directory.Delete(root, true);
        string data = System.IO.Path.Combine(root, "store"), model = System.IO.Path.Combine(root, "model"), trajectories = System.IO.Path.Combine(root, "sft.jsonl");
        AgentBenchmarkData.Generate(data, new StoreOptions(Users: 24, Orders: 48, Products: 8, Seed: 3), new TaskOptions(Count: 40, Seed: 3));
        using (var benchmark = AgentBenchmarkData.Load(data))
            AgentTrajectories.WriteAsync(benchmark, new TrajectoryOptions(Split: "train"), trajectories, null, default).GetAwaiter().GetResult();

        // The tokenizer learns from the rendered conversations, so the policy and the tool list take few tokens.
        var template = ChatTemplate.Parse(ChatFormat.Template);
        var texts = File.ReadLines(trajectories).Select(line =>
        {
            var record = JsonNode.Parse(line)!.AsObject();
            var messages = Hone.ToolCalls.ToolCallFormat.All[0].PrepareMessages(record["messages"]!.AsArray());
            return template.Apply(messages, new ChatTemplateOptions { BosToken = "", EosToken = ChatFormat.End, Tools = record["tools"]!.AsArray() });
        }).ToList();
        string init = System.IO.Path.Combine(root, "init");
        BpeTrainer.Train(texts, new BpeTrainerOptions(VocabSize: 2048), init);
        var tokenizer = Tokenizer.FromHuggingFaceDirectory(init);
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = tokenizer.VocabSize, HiddenSize = 64, IntermediateSize = 128, Layers = 1, Heads = 2, KvHeads = 1,
            HeadDim = 32, RotaryDims = 32, MaxPositions = Context, TiedEmbeddings = true, BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId,
        };
        using (var w = LlamaWeights.CreateRandom(config, TensorType.F32, 11, std: 0.02f))
            Hone.Transforms.ModelConverter.Write(w, null, init, TensorType.F32, new List<string>());
        int longest = texts.Max(t => tokenizer.Encode(t).Length);
        Trainer.Run(new TrainOptions
        {
            Model = init, Data = trajectories, Out = model, Method = TrainingMethod.Full, Stage = TrainingStage.Sft, MaxSteps = 80, BatchSize = 1,
            SeqLen = Math.Min(Context, longest + 8), Lr = 3e-3f, WarmupSteps = 2, EvalEvery = 0, SaveEvery = 0, ValSplit = 0, Threads = 2, Seed = 5, LogEvery = 100,
        }, TrainingDataLoader.Load, new QuietReporter());
        return new Built(data, model);
    }

    sealed class QuietReporter : ITrainingReporter
    {
        public void Info(string message) { }
        public void Progress(TrainingProgress p) { }
        public void Validation(long step, double loss, bool improved) { }
        public void Checkpoint(string path) { }
    }
}
