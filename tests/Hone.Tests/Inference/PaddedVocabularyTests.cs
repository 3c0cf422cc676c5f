using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tests.Formats;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Inference;

/// <summary>
/// An embedding and head with more rows than the tokenizer has tokens (padded to a multiple of 64 or 128, as many
/// checkpoints are) is valid: generation never picks a row no text decodes to, and perplexity and training run.
/// The model is stories260K with its 512 rows padded to 1024; the padding rows of the head are 10× the real rows,
/// so whenever the best real token has a positive logit a padding row beats it: only masking keeps the output right.
/// </summary>
public class PaddedVocabularyTests
{
    const string Model = "models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf";
    const int Tokens = 512, Padded = 1024, Dim = 64;

    static string PaddedModel(TempDirectory dir)
    {
        var path = dir.File("padded.gguf");
        DamagedFiles.RewriteGguf(SharedData.Require(Model), path, _ => { }, t =>
        {
            if (t.Name is not ("token_embd.weight" or "output.weight")) return null;
            Assert.Equal(new long[] { Tokens, Dim }, t.Shape);
            using var g = GgufFile.Open(SharedData.Require(Model));
            var bytes = File.ReadAllBytes(SharedData.Require(Model));
            var rows = new float[Padded * Dim];
            Buffer.BlockCopy(bytes, checked((int)(g.DataOffset + t.Offset)), rows, 0, Tokens * Dim * 4);
            if (t.Name == "output.weight")
                for (int i = Tokens * Dim; i < rows.Length; i++) rows[i] = 10 * rows[i - Tokens * Dim];
            var data = new byte[rows.Length * 4];
            Buffer.BlockCopy(rows, 0, data, 0, data.Length);
            return (new long[] { Padded, Dim }, data);
        });
        return path;
    }

    [SkippableFact]
    public void Greedy_generation_equals_the_unpadded_model()
    {
        var oracle = JsonNode.Parse(File.ReadAllText(SharedData.Require("models/stories260K/stories260K.greedy-from-bos.derived.json")))!;
        using var dir = new TempDirectory();
        var model = PaddedModel(dir);
        var inspect = HoneCli.Run("inspect", model, "--check", "--json");
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        Assert.Equal(Padded, (int)JsonNode.Parse(inspect.Stdout)!["config"]!["vocab_size"]!);
        var r = HoneCli.Run("generate", model, "--temperature", "0", "--max-tokens", "256", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(oracle["generated_token_ids"]!.AsArray().Select(n => (int)n!), json["ids"]!.AsArray().Select(n => (int)n!));
        Assert.Equal((string)oracle["decoded_text"]!, ((string)json["text"]!).TrimEnd());
    }

    [SkippableFact]
    public void Sampled_generation_stays_inside_the_tokenizer()
    {
        using var dir = new TempDirectory();
        var model = PaddedModel(dir);
        var r = HoneCli.Run("generate", model, "--prompt", "Once upon a time", "--temperature", "1.5", "--top-k", "0", "--top-p", "1",
            "--min-p", "0", "--seed", "7", "--max-tokens", "64", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var ids = JsonNode.Parse(r.Stdout)!["ids"]!.AsArray().Select(n => (int)n!).ToArray();
        Assert.NotEmpty(ids);
        Assert.All(ids, id => Assert.InRange(id, 0, Tokens - 1));
    }

    [SkippableFact]
    public void Perplexity_counts_the_padding_rows_in_the_softmax_and_training_runs()
    {
        using var dir = new TempDirectory();
        var model = PaddedModel(dir);
        File.WriteAllText(dir.File("text.txt"), string.Join(" ", Enumerable.Repeat("Once upon a time, there was a little girl named Lily. She loved to play outside.", 8)));
        double Ppl(string m)
        {
            var r = HoneCli.Run("perplexity", m, "--file", dir.File("text.txt"), "--ctx", "64", "--json");
            Assert.True(r.ExitCode == 0, r.ToString());
            return (double)JsonNode.Parse(r.Stdout)!["ppl"]!;
        }
        // Extra rows only add terms to every softmax denominator: perplexity is finite and strictly above the original's.
        double padded = Ppl(model), original = Ppl(SharedData.Require(Model));
        Assert.True(double.IsFinite(padded) && padded > original, $"padded {padded}, original {original}");

        File.WriteAllLines(dir.File("sft.jsonl"), Enumerable.Range(0, 8).Select(i =>
            new JsonObject { ["instruction"] = $"What color is ball {i}?", ["output"] = $"Ball {i} is red." }.ToJsonString()));
        var train = HoneCli.Run("train", model, "--data", dir.File("sft.jsonl"), "--out", dir.File("run"), "--max-steps", "2", "--seq-len", "48", "--threads", "2");
        Assert.True(train.ExitCode == 0, train.ToString());
    }
}
