using System.Text.Json.Nodes;
using Hone.Model;
using Hone.Tensors;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Model;

/// <summary>Real pretrained weights (stories260K, GGUF v1 and v3) against the recorded greedy continuation.</summary>
public class Stories260KTests
{
    static readonly WorkerPool Pool = new(2);

    [SkippableTheory]
    [InlineData("models/stories260K/tinyllamas-stories-260k-f32.gguf")]
    [InlineData("models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf")]
    public void Greedy_continuation_from_bos_matches_the_recorded_one(string file)
    {
        var path = SharedData.Require(file);
        var oracle = JsonNode.Parse(File.ReadAllText(SharedData.Require("models/stories260K/stories260K.greedy-from-bos.derived.json")))!;
        var expected = oracle["generated_token_ids"]!.AsArray().Select(n => (int)n!).ToArray();
        using var checkpoint = Checkpoint.Open(path);
        Assert.Equal(RopeLayout.AdjacentPairs, checkpoint.Config.RopeLayout);
        using var weights = LlamaWeights.Load(checkpoint);
        using var model = new LlamaModel(weights, Pool);
        var logits = new float[checkpoint.Config.VocabSize];
        int token = (int)oracle["bos_id"]!;
        var got = new List<int>();
        for (int step = 0; step < expected.Length; step++)
        {
            model.Forward([token], logits);
            if (step == 0)
                foreach (var top in oracle["step0_top5"]!.AsArray())
                    Assert.Equal((double)top!["logit"]!, logits[(int)top["id"]!], 3);
            token = Array.IndexOf(logits, logits.Max());
            got.Add(token);
        }
        Assert.Equal(expected, got);
    }

    [Fact]
    public void Decoding_a_token_allocates_nothing()
    {
        using var c = Checkpoint.Open(ReferenceLogitsTests.FixturePath("llama-gguf-f32"));
        using var w = LlamaWeights.Load(c);
        using var model = new LlamaModel(w, Pool, maxContext: 64);
        var logits = new float[c.Config.VocabSize];
        int token = 1;
        for (int i = 0; i < 4; i++) model.Forward(new ReadOnlySpan<int>(in token), logits); // warm up the JIT and per-thread buffers
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 40; i++) model.Forward(new ReadOnlySpan<int>(in token), logits);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [SkippableFact]
    public void Prefill_in_one_batch_gives_the_same_logits_as_token_by_token_decode()
    {
        var path = SharedData.Require("models/stories260K/tinyllamas-stories-260k-f32.v3.derived.gguf");
        using var checkpoint = Checkpoint.Open(path);
        using var weights = LlamaWeights.Load(checkpoint);
        using var model = new LlamaModel(weights, Pool, maxContext: 256, maxBatch: 64);
        int v = checkpoint.Config.VocabSize;
        var tokens = Enumerable.Range(0, 150).Select(i => 1 + (i * 37) % (v - 1)).ToArray();
        var all = new float[tokens.Length * v];
        model.Forward(tokens, all, allLogits: true);
        model.Reset();
        var one = new float[v];
        for (int t = 0; t < tokens.Length; t++)
        {
            model.Forward([tokens[t]], one);
            TestData.AssertClose(all.AsSpan(t * v, v), one, 1e-4, $"position {t}");
        }
    }
}
