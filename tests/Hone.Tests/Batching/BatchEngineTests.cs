using Hone.Batching;
using Hone.Inference;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Batching;

/// <summary>The batched engine against single-sequence generation: the same tokens, alone or in a crowd.</summary>
public class BatchEngineTests
{
    static int[] Generate(string model, int[] prompt, int maxTokens, SamplerOptions sampler, string? adapter = null)
    {
        using var loaded = LoadedModel.Open(model, adapter);
        var generator = new Generator(loaded.Model, loaded.Tokenizer);
        return generator.Generate(prompt, new GenerationOptions(maxTokens, sampler, StopAtEndOfTurn: false)).Ids;
    }

    static int[] Prompt(BatchEngine engine, string text) => engine.Tokenizer.Encode(text, addSpecialTokens: true, parseSpecialTokens: true);

    [Fact]
    public async Task Greedy_output_equals_the_generator_alone_and_among_sixteen_others()
    {
        string model = TinyChatModel.Path;
        using var engine = BatchEngine.Open(model, [], new EngineOptions { Parallel = 17, StepTokens = 64 });
        var prompt = Prompt(engine, "The customer asked where order 7 is");
        var expected = Generate(model, prompt, 40, SamplerOptions.Greedy);

        var alone = await engine.Submit(new SequenceRequest { Prompt = prompt, MaxTokens = 40, StopAtEndOfTurn = false }).CompleteAsync();
        Assert.Equal(expected, alone.Ids);

        var others = Enumerable.Range(0, 16).Select(i => engine.Submit(new SequenceRequest
        {
            Prompt = Prompt(engine, $"Order {i} ships in {i % 5 + 1} days and " + new string('x', i * 3)),
            MaxTokens = 10 + 3 * i, StopAtEndOfTurn = false,
            Sampler = i % 2 == 0 ? SamplerOptions.Greedy : new SamplerOptions(Temperature: 0.9f, Seed: (ulong)i),
        })).ToList();
        var crowded = await engine.Submit(new SequenceRequest { Prompt = prompt, MaxTokens = 40, StopAtEndOfTurn = false }).CompleteAsync();
        foreach (var o in others) await o.CompleteAsync();
        Assert.Equal(expected, crowded.Ids);
        Assert.Equal("length", crowded.FinishReason);
        Assert.Equal(prompt.Length, crowded.Usage.PromptTokens);
        Assert.Equal(40, crowded.Usage.CompletionTokens);
    }
}
