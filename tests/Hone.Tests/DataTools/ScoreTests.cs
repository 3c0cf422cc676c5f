using System.Text;
using System.Text.Json.Nodes;
using Hone.DataTools;
using Hone.Evaluation;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.DataTools;

/// <summary><c>data score</c> with the real stories260K model against <see cref="Perplexity.Compute"/> on each text alone.</summary>
public class ScoreTests
{
    const string ModelFile = "models/stories260K/tinyllamas-stories-260k-f32.gguf";

    internal static readonly string[] Texts =
    [
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
        "One day, she saw a big, red ball. She wanted to play with it, but it was too high. " +
        "Lily asked her mom for help. Her mom smiled and said, \"Let's find a stick!\" They looked and looked. " +
        "At last they found a long stick under a tree, and Lily got the ball. She was very happy and said thank you.",
        "Tom had a dog. ",
        "",
        "Zoë 🦙",
    ];

    static (double Ppl, double Nll, long Scored, long Tokens) Reference(string text, int ctx, int stride)
    {
        using var checkpoint = Checkpoint.Open(SharedData.Require(ModelFile));
        var tokenizer = checkpoint.LoadTokenizer();
        using var weights = LlamaWeights.Load(checkpoint);
        using var pool = new WorkerPool(1);
        using var model = new LlamaModel(weights, pool, maxContext: ctx);
        var ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: false);
        var r = Perplexity.Compute(model, ids, tokenizer.BosId, (_, count) => count, new PerplexityOptions(ctx, PerplexityProtocol.Full, stride));
        return (r.Perplexity, r.NegativeLogLikelihood, r.TokensScored, r.Tokens);
    }

    [SkippableFact]
    public void Per_record_scores_are_the_perplexity_of_each_text_alone()
    {
        var model = SharedData.Require(ModelFile);
        using var dir = new TempDirectory();
        var lines = Texts.Select((t, i) => new JsonObject { ["id"] = i, ["text"] = t }.ToJsonString()).ToArray();
        var input = Jsonl.Write(dir, "in.jsonl", lines);
        const int ctx = 32, stride = 16; // the second text is longer than 32 tokens: it is scored in windows
        var r = DataScore.Run(new DataScoreOptions(input, model, dir.File("out.jsonl"), ctx, stride, Threads: 2));
        var output = Jsonl.Lines(dir.File("out.jsonl"));
        Assert.Equal(Texts.Length, output.Length);
        double totalNll = 0;
        long totalScored = 0, totalBytes = 0;
        for (int i = 0; i < Texts.Length; i++)
        {
            // The original bytes come first, untouched.
            Assert.StartsWith(lines[i][..^1], output[i]);
            var o = JsonNode.Parse(output[i])!;
            if (Texts[i].Length == 0)
            {
                Assert.Null(o["ppl"]);
                Assert.Null(o["bits_per_byte"]);
                Assert.Equal(0, (int)o["tokens"]!);
                continue;
            }
            var (ppl, nll, scored, tokens) = Reference(Texts[i], ctx, stride);
            Assert.Equal(ppl, (double)o["ppl"]!, 10);
            int bytes = Encoding.UTF8.GetByteCount(Texts[i]);
            Assert.Equal(nll / Math.Log(2) / bytes, (double)o["bits_per_byte"]!, 10);
            Assert.Equal(tokens, (long)o["tokens"]!);
            totalNll += nll; totalScored += scored; totalBytes += bytes;
        }
        Assert.True(Reference(Texts[1], ctx, stride).Tokens > ctx);
        Assert.Equal((5L, 4L, 1L), (r.Records, r.Scored, r.Unscorable));
        Assert.Equal(Math.Exp(totalNll / totalScored), r.Perplexity, 8);
        Assert.Equal(totalNll / Math.Log(2) / totalBytes, r.BitsPerByte, 8);
        Assert.Equal((ctx, stride, true), (r.Context, r.Stride, r.Bos));
        var meta = JsonNode.Parse(File.ReadAllText(dir.File("out.jsonl.score.json")))!;
        Assert.Equal(r.Protocol, (string)meta["protocol"]!);
        Assert.StartsWith("full: BOS + text tokens", r.Protocol);
        Assert.Equal("ppl", (string)meta["fields"]!["perplexity"]!);
    }

    [SkippableFact]
    public void Rescoring_replaces_the_fields_and_other_names_can_be_chosen()
    {
        var model = SharedData.Require(ModelFile);
        using var dir = new TempDirectory();
        var input = Jsonl.Write(dir, "in.jsonl", "{\"text\":\"Once upon a time\",\"ppl\":1}");
        DataScore.Run(new DataScoreOptions(input, model, dir.File("a.jsonl"), 64));
        var a = JsonNode.Parse(Jsonl.Lines(dir.File("a.jsonl"))[0])!.AsObject();
        Assert.Equal(["text", "ppl", "bits_per_byte", "tokens"], a.Select(kv => kv.Key));
        Assert.Equal(Reference("Once upon a time", 64, 64).Ppl, (double)a["ppl"]!, 10);
        DataScore.Run(new DataScoreOptions(dir.File("a.jsonl"), model, dir.File("b.jsonl"), 64, Column: "ref_ppl", BitsPerByteColumn: "ref_bpb", TokensColumn: "ref_tokens"));
        var b = JsonNode.Parse(Jsonl.Lines(dir.File("b.jsonl"))[0])!.AsObject();
        Assert.Equal((double)a["ppl"]!, (double)b["ref_ppl"]!);
        Assert.Equal(7, b.Count);
        Assert.Throws<ArgumentException>(() => DataScore.Run(new DataScoreOptions(input, model, dir.File("c.jsonl"), Context: 100_000)));
    }
}
