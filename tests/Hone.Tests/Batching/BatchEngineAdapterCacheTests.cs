using Hone.Batching;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Hone.Tests.Server;
using Xunit;

namespace Hone.Tests.Batching;

/// <summary>The prefix cache is per adapter: keys and values computed under one adapter (or the base) are never
/// reused for a request under another, whose projections differ.</summary>
public class BatchEngineAdapterCacheTests
{
    static int[] Generate(int[] prompt, string? adapter)
    {
        using var loaded = LoadedModel.Open(TinyChatModel.Path, adapter);
        return new Generator(loaded.Model, loaded.Tokenizer).Generate(prompt, new GenerationOptions(12, SamplerOptions.Greedy, StopAtEndOfTurn: false)).Ids;
    }

    [Fact]
    public async Task The_same_prompt_under_the_base_then_an_adapter_then_the_base_gives_each_ones_own_output()
    {
        using var dir = new TempDirectory();
        string adapter = ServerTestData.MakeAdapter(dir.File("a"), 1);
        using var engine = BatchEngine.Open(TinyChatModel.Path, [("a", adapter)], new EngineOptions { Parallel = 1 });
        var prompt = engine.Tokenizer.Encode("The customer asked where order 7 is", addSpecialTokens: true, parseSpecialTokens: true);
        var expectedBase = Generate(prompt, null);
        var expectedAdapter = Generate(prompt, adapter);
        Assert.NotEqual(expectedBase, expectedAdapter);

        // One slot, so every request lands where the previous one left its prompt's keys and values.
        foreach (var (name, expected) in new[] { ((string?)null, expectedBase), ("a", expectedAdapter), (null, expectedBase), ("a", expectedAdapter) })
        {
            var result = await engine.Submit(new SequenceRequest { Prompt = prompt, Adapter = name, MaxTokens = 12, StopAtEndOfTurn = false }).CompleteAsync();
            Assert.Equal(expected, result.Ids);
        }
        // The same adapter twice does reuse the cache.
        var again = await engine.Submit(new SequenceRequest { Prompt = prompt, Adapter = "a", MaxTokens = 12, StopAtEndOfTurn = false }).CompleteAsync();
        Assert.True(again.Usage.CachedPromptTokens > 0);
    }
}
