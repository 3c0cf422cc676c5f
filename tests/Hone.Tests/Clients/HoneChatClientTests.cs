using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Clients;
using Hone.Inference;
using Hone.Model;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using Microsoft.Extensions.AI;
using Xunit;

namespace Hone.Tests.Clients;

/// <summary>The Microsoft.Extensions.AI clients over the batched engine, against single-sequence generation.</summary>
public class HoneChatClientTests
{
    static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 30 };

    /// <summary>What <see cref="Generator"/> alone gives for these messages through the model's template.</summary>
    static GenerationResult Reference(IEnumerable<(string Role, string Text)> messages, int maxTokens, string? adapter = null)
    {
        using var loaded = LoadedModel.Open(TinyChatModel.Path, adapter);
        var template = ChatConversation.ResolveTemplate(loaded.Tokenizer, null).Template;
        var array = new JsonArray();
        foreach (var (role, text) in messages) array.Add((JsonNode)new JsonObject { ["role"] = role, ["content"] = text });
        var ids = ChatPrompt.Encode(loaded.Tokenizer, template, array);
        var result = new Generator(loaded.Model, loaded.Tokenizer).Generate(ids, new GenerationOptions(maxTokens, SamplerOptions.Greedy));
        Assert.Equal(ids.Length, result.PromptTokens);
        return result;
    }

    static BatchEngine Open(int parallel = 4, IEnumerable<(string, string)>? adapters = null) =>
        BatchEngine.Open(TinyChatModel.Path, adapters ?? [], new EngineOptions { Parallel = parallel, StepTokens = 64, Threads = 1 });

    static string Question(int i) => $"Where is order {i}?";

    [Fact]
    public async Task Greedy_text_and_usage_equal_the_generator_and_streaming_concatenates_to_it()
    {
        var expected = Reference([("system", "You answer about orders."), ("user", Question(7))], 30);
        using var client = new HoneChatClient(Open(), ownsEngine: true);
        ChatMessage[] messages = [new(ChatRole.System, "You answer about orders."), new(ChatRole.User, Question(7))];

        var response = await client.GetResponseAsync(messages, Greedy);
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal(expected.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(expected.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(expected.Ids.Length, response.Usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens + expected.Ids.Length, response.Usage.TotalTokenCount);
        Assert.Equal(client.Engine.ModelName, response.ModelId);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, Greedy)) updates.Add(u);
        Assert.True(updates.Count >= 2, $"expected text updates and a final one, got {updates.Count}");
        Assert.Equal(expected.Text, string.Concat(updates.Select(u => u.Text)));
        var last = updates[^1];
        Assert.Equal(response.FinishReason, last.FinishReason);
        var usage = Assert.Single(last.Contents.OfType<UsageContent>()).Details;
        Assert.Equal(expected.PromptTokens, usage.InputTokenCount);
        Assert.Equal(expected.Ids.Length, usage.OutputTokenCount);
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.FinishReason));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());

        // The library's own folding of updates agrees.
        var folded = updates.ToChatResponse();
        Assert.Equal(expected.Text, folded.Text);
        Assert.Equal(expected.Ids.Length, folded.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task Max_output_tokens_ends_with_length_and_stop_sequences_cut_the_text()
    {
        var expected = Reference([("user", Question(3))], 30);
        Assert.True(expected.Ids.Length >= 12 && expected.Text.Length >= 12, $"the reference is too short to cut: '{expected.Text}'");
        using var client = new HoneChatClient(Open(), ownsEngine: true);
        ChatMessage[] messages = [new(ChatRole.User, Question(3))];

        var shortResponse = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 5 });
        Assert.Equal(ChatFinishReason.Length, shortResponse.FinishReason);
        Assert.Equal(5, shortResponse.Usage!.OutputTokenCount);
        Assert.StartsWith(shortResponse.Text, expected.Text);

        string stop = expected.Text.Substring(8, 3);
        int at = expected.Text.IndexOf(stop, StringComparison.Ordinal);
        var stopped = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 30, StopSequences = [stop] });
        Assert.Equal(expected.Text[..at], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task A_seed_repeats_a_sampled_answer_and_instructions_are_a_system_message()
    {
        using var client = new HoneChatClient(Open(), ownsEngine: true);
        ChatMessage[] messages = [new(ChatRole.User, Question(4))];
        var sampled = new ChatOptions { Temperature = 1.5f, TopK = 0, TopP = 1, Seed = 11, MaxOutputTokens = 20 };
        string first = (await client.GetResponseAsync(messages, sampled)).Text;
        Assert.Equal(first, (await client.GetResponseAsync(messages, sampled)).Text);
        var others = new List<string>();
        for (int seed = 12; seed < 16; seed++)
            others.Add((await client.GetResponseAsync(messages, new ChatOptions { Temperature = 1.5f, TopK = 0, TopP = 1, Seed = seed, MaxOutputTokens = 20 })).Text);
        Assert.Contains(others, o => o != first);

        var expected = Reference([("system", "Be brief."), ("user", Question(4))], 30);
        var instructed = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 30, Instructions = "Be brief." });
        Assert.Equal(expected.Text, instructed.Text);
        Assert.Equal(expected.PromptTokens, instructed.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task Eight_concurrent_callers_each_get_what_they_get_alone()
    {
        using var client = new HoneChatClient(Open(parallel: 3), ownsEngine: true);
        var alone = new List<string>();
        for (int i = 0; i < 8; i++) alone.Add((await client.GetResponseAsync([new ChatMessage(ChatRole.User, Question(i))], Greedy)).Text);
        Assert.True(alone.Distinct().Count() > 1, "every prompt gave the same text: the test would not notice a mix-up");

        var together = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
        {
            if (i % 2 == 0) return (await client.GetResponseAsync([new ChatMessage(ChatRole.User, Question(i))], Greedy)).Text;
            var text = new System.Text.StringBuilder();
            await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, Question(i))], Greedy)) text.Append(u.Text);
            return text.ToString();
        })));
        Assert.Equal(alone, together);
    }

    [Fact]
    public async Task Model_id_picks_an_adapter_and_an_unknown_one_is_refused_by_name()
    {
        using var dir = new TempDirectory();
        string adapter = MakeAdapter(dir);
        var expectedBase = Reference([("user", Question(5))], 30);
        var expectedAdapted = Reference([("user", Question(5))], 30, adapter);
        Assert.NotEqual(expectedBase.Text, expectedAdapted.Text);

        using var client = new HoneChatClient(Open(adapters: [("support", adapter)]), ownsEngine: true);
        ChatMessage[] messages = [new(ChatRole.User, Question(5))];
        var adapted = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 30, ModelId = "support" });
        Assert.Equal(expectedAdapted.Text, adapted.Text);
        Assert.Equal("support", adapted.ModelId);
        var byBaseName = await client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, MaxOutputTokens = 30, ModelId = client.Engine.ModelName });
        Assert.Equal(expectedBase.Text, byBaseName.Text);

        var e = await Assert.ThrowsAsync<RequestRejectedException>(() =>
            client.GetResponseAsync(messages, new ChatOptions { Temperature = 0, ModelId = "nonesuch" }));
        Assert.Equal(RejectReason.UnknownModel, e.Reason);
        Assert.Contains("'nonesuch'", e.Message);
        Assert.Contains("'support'", e.Message);
        await Assert.ThrowsAsync<RequestRejectedException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(messages, new ChatOptions { ModelId = "nonesuch" })) { }
        });

        using var embedder = new HoneEmbeddingGenerator(client.Engine);
        await Assert.ThrowsAsync<RequestRejectedException>(() => embedder.GenerateAsync(["hello"], new EmbeddingGenerationOptions { ModelId = "nonesuch" }));
        var baseVector = (await embedder.GenerateAsync(["Order 5 ships"]))[0].Vector.ToArray();
        var adaptedVector = (await embedder.GenerateAsync(["Order 5 ships"], new EmbeddingGenerationOptions { ModelId = "support" }))[0].Vector.ToArray();
        Assert.NotEqual(baseVector, adaptedVector);
    }

    static unsafe string MakeAdapter(TempDirectory dir)
    {
        // A rank-2 LoRA on both layers' query projections (hidden 32) with a large nonzero B, so it changes greedy text.
        var adapterDir = Path.Combine(dir.Path, "adapter");
        var adapters = new List<LoraAdapter>();
        try
        {
            for (int layer = 0; layer < TinyChatModel.Layers; layer++)
            {
                var a = new LoraAdapter($"blk.{layer}.attn_q.weight", 2, 32, 32, alpha: 4);
                adapters.Add(a);
                a.Initialize(3 + (ulong)layer, null);
                for (int i = 0; i < 32 * 2; i++) a.B[i] = (i % 7 - 3) * 0.5f;
            }
            PeftAdapter.Save(adapterDir, adapters, new PeftAdapterConfig(2, 4, 0, PeftTargets.Of(["q_proj"]), false, AdapterKinds.Lora, null));
        }
        finally { foreach (var a in adapters) a.Dispose(); }
        return adapterDir;
    }

    [Fact]
    public async Task Cancelling_a_call_ends_its_sequence_in_the_engine()
    {
        var expected = Reference([("user", Question(2))], 60);
        Assert.True(expected.Ids.Length >= 30, $"the reference stops after {expected.Ids.Length} tokens: too few to see a cancellation");
        using var engine = Open(parallel: 2);
        int decoded = 0;
        // Slow the engine's steps down so that the cancellation lands mid-sequence (this is not a timing assertion).
        engine.StepCompleted += s => { Interlocked.Add(ref decoded, s.DecodeRows); Thread.Sleep(20); };
        using var client = new HoneChatClient(engine);

        using var cancel = new CancellationTokenSource();
        var received = new System.Text.StringBuilder();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, Question(2))],
                               new ChatOptions { Temperature = 0, MaxOutputTokens = 60 }, cancel.Token))
            {
                received.Append(u.Text);
                cancel.Cancel();
            }
        });
        Assert.StartsWith(received.ToString(), expected.Text);
        await WaitIdle(engine);
        Assert.InRange(Volatile.Read(ref decoded), 0, expected.Ids.Length / 2); // the whole answer would take Ids.Length - 1 decode rows

        // Breaking out of the stream cancels too; a token cancelled before the call never runs anything.
        decoded = 0;
        await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, Question(2))], new ChatOptions { Temperature = 0, MaxOutputTokens = 60 }))
            break;
        await WaitIdle(engine);
        Assert.InRange(Volatile.Read(ref decoded), 0, expected.Ids.Length / 2); // the whole answer would take Ids.Length - 1 decode rows

        decoded = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            client.GetResponseAsync([new ChatMessage(ChatRole.User, Question(2))], Greedy, cancel.Token));
        await WaitIdle(engine);
        Assert.Equal(0, Volatile.Read(ref decoded));

        // The engine still serves.
        Assert.Equal(expected.Text[..10], (await client.GetResponseAsync([new ChatMessage(ChatRole.User, Question(2))], Greedy)).Text[..10]);
    }

    static async Task WaitIdle(BatchEngine engine)
    {
        var deadline = DateTime.UtcNow.AddMinutes(2); // a hang guard, not a timing
        while (engine.Statistics is { ActiveSequences: > 0 } or { QueueLength: > 0 })
        {
            Assert.True(DateTime.UtcNow < deadline, $"the engine is still busy: {engine.Statistics}");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Options_the_client_cannot_honour_are_refused_not_ignored()
    {
        using var client = new HoneChatClient(Open(parallel: 1), ownsEngine: true);
        ChatMessage[] messages = [new(ChatRole.User, "hi")];
        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(
            [new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "image/png")])], Greedy));
        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(messages, new ChatOptions { TopP = 0 }));
        Assert.Contains("top-p", e.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([], Greedy));

        var metadata = Assert.IsType<ChatClientMetadata>(client.GetService(typeof(ChatClientMetadata)));
        Assert.Equal("hone", metadata.ProviderName);
        Assert.Equal(client.Engine.ModelName, metadata.DefaultModelId);
        Assert.Same(client, client.GetService<IChatClient>());
    }

    [Fact]
    public async Task Embeddings_have_unit_norm_and_the_hidden_size()
    {
        using var engine = Open(parallel: 2);
        using var embedder = new HoneEmbeddingGenerator(engine);
        var metadata = Assert.IsType<EmbeddingGeneratorMetadata>(embedder.GetService(typeof(EmbeddingGeneratorMetadata)));
        Assert.Equal(engine.Config.HiddenSize, metadata.DefaultModelDimensions);
        Assert.Equal("hone", metadata.ProviderName);

        string[] texts = ["Order 1 ships in 2 days.", "The customer asked where order 9 is.", "x"];
        var embeddings = await embedder.GenerateAsync(texts);
        Assert.Equal(texts.Length, embeddings.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            var v = embeddings[i].Vector.ToArray();
            Assert.Equal(engine.Config.HiddenSize, v.Length);
            double norm = 0;
            foreach (var x in v) norm += (double)x * x;
            Assert.Equal(1.0, Math.Sqrt(norm), 1e-4);
            var direct = await engine.EmbedAsync(engine.Tokenizer.Encode(texts[i], addSpecialTokens: true, parseSpecialTokens: false));
            Assert.Equal(direct, v);
        }
        Assert.NotEqual(embeddings[0].Vector.ToArray(), embeddings[1].Vector.ToArray());
        Assert.Equal(texts.Sum(t => engine.Tokenizer.Encode(t, addSpecialTokens: true, parseSpecialTokens: false).Length), embeddings.Usage!.InputTokenCount);
        await Assert.ThrowsAsync<NotSupportedException>(() => embedder.GenerateAsync(["a"], new EmbeddingGenerationOptions { Dimensions = 8 }));
    }
}
