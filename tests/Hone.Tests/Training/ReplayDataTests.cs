using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Hone.Training;
using Xunit;
using Hone.Formats;

namespace Hone.Tests.Training;

/// <summary>Replay: plain documents mixed into SFT, every token a target, never in validation.</summary>
public class ReplayDataTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";

    static TrainingData Load(string model, TempDirectory dir, string? replay, TrainingStage stage = TrainingStage.Sft, bool skipBad = false)
    {
        using var checkpoint = Checkpoint.Open(model);
        return TrainingDataLoader.Load(checkpoint, new TrainOptions
        {
            Model = model, Data = dir.File("sft.jsonl"), ValData = dir.File("val.jsonl"), ReplayData = replay, Stage = stage,
            SeqLen = 64, Packing = false, Seed = 1, SkipBadLines = skipBad,
        });
    }

    [SkippableFact]
    public void Replay_documents_join_training_with_every_token_a_target_and_stay_out_of_validation()
    {
        var model = SharedData.Require(Model);
        using var dir = new TempDirectory();
        JsonObject Chat(string q, string a) => new() { ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = q }, new JsonObject { ["role"] = "assistant", ["content"] = a }) };
        File.WriteAllLines(dir.File("sft.jsonl"), [Chat("Hi?", "Hello.").ToJsonString(), Chat("Who?", "Lily.").ToJsonString()]);
        File.WriteAllLines(dir.File("val.jsonl"), [Chat("Why?", "Because.").ToJsonString()]);
        File.WriteAllLines(dir.File("replay.jsonl"), ["""{"text": "Once upon a time there was a cat."}""", """{"text": "The sun was warm."}"""]);

        var plain = Load(model, dir, null);
        var mixed = Load(model, dir, dir.File("replay.jsonl"));
        Assert.Equal(2, plain.Train.RowsPerEpoch);
        Assert.Equal(4, mixed.Train.RowsPerEpoch);
        Assert.Equal(1, mixed.Validation!.RowsPerEpoch);
        Assert.Contains("2 conversations + 2 replay documents", mixed.Description);
        // The replay rows: BOS + text + EOS, every position after BOS a target (padding aside).
        var rows = mixed.Train.InOrder().ToList();
        var replayRows = rows.Skip(2).ToList();
        foreach (var (tokens, targets, _) in replayRows)
        {
            int real = targets.Count(t => t >= 0);
            Assert.True(real >= 8, "a replay document has all its tokens as targets");
        }
        // Conversation rows only score the answers, so they have fewer targets than tokens.
        Assert.All(rows.Take(2), r => Assert.True(r.Targets.Count(t => t >= 0) < r.Tokens.Count(t => t != 0)));

        File.AppendAllLines(dir.File("replay.jsonl"), ["""{"txt": "typo"}"""]);
        var e = Assert.Throws<DataFormatException>(() => Load(model, dir, dir.File("replay.jsonl")));
        Assert.Equal(dir.File("replay.jsonl"), e.File);
        Assert.Equal(3, e.Line);
        Assert.Equal(1, Load(model, dir, dir.File("replay.jsonl"), skipBad: true).SkippedLines);
        Assert.Throws<ArgumentException>(() => Load(model, dir, dir.File("replay.jsonl"), TrainingStage.Cpt));
    }
}
