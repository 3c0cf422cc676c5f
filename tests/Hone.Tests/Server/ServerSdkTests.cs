using System.ClientModel;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Inference;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Hone.Tokenization;
using OpenAI.Chat;
using OpenAI.Embeddings;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>The official OpenAI .NET SDK as the client: chat, streaming chat with usage, models, embeddings, and its
/// typed errors; completions (the SDK has no legacy client) over raw HTTP.</summary>
public class ServerSdkTests
{
    static readonly ChatMessage[] Conversation = [new SystemChatMessage("You answer about orders."), new UserChatMessage("Where is order 7?")];

    /// <summary>What Generator gives for the conversation through the model's chat template, greedy.</summary>
    static GenerationResult GenerateChat(int maxTokens)
    {
        using var loaded = LoadedModel.Open(TinyChatModel.Path);
        var template = ChatConversation.ResolveTemplate(loaded.Tokenizer, null).Template;
        var messages = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "You answer about orders." },
            new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" });
        var prompt = ChatPrompt.Encode(loaded.Tokenizer, template, messages);
        return new Generator(loaded.Model, loaded.Tokenizer).Generate(prompt, new GenerationOptions(maxTokens, SamplerOptions.Greedy));
    }

    [Fact]
    public async Task Chat_through_the_sdk_is_the_generator_greedy_output_with_usage_and_logprobs()
    {
        await using var server = await TestServer.StartAsync();
        var chat = server.Sdk().GetChatClient(server.ModelName);
        var expected = GenerateChat(12);
        Assert.NotEmpty(expected.Ids);

        ChatCompletion reply = await chat.CompleteChatAsync(Conversation, new ChatCompletionOptions
        {
            Temperature = 0, MaxOutputTokenCount = 12, IncludeLogProbabilities = true, TopLogProbabilityCount = 3,
        });
        Assert.Equal(expected.Text, reply.Content.Count == 0 ? "" : reply.Content[0].Text);
        Assert.Equal(expected.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop, reply.FinishReason);
        Assert.StartsWith("chatcmpl-", reply.Id);
        Assert.Equal(server.ModelName, reply.Model);
        Assert.Equal(ChatMessageRole.Assistant, reply.Role);
        Assert.Equal(expected.PromptTokens, reply.Usage.InputTokenCount);
        Assert.Equal(expected.Ids.Length, reply.Usage.OutputTokenCount);
        Assert.Equal(reply.Usage.InputTokenCount + reply.Usage.OutputTokenCount, reply.Usage.TotalTokenCount);
        Assert.Equal(expected.Ids.Length, reply.ContentTokenLogProbabilities.Count);
        // Each token's text as it reads in the reply: together, the reply.
        Assert.Equal(expected.Text, string.Concat(reply.ContentTokenLogProbabilities.Select(t => t.Token)));
        foreach (var token in reply.ContentTokenLogProbabilities)
        {
            Assert.True(token.LogProbability <= 0);
            Assert.Equal(3, token.TopLogProbabilities.Count);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(token.TopLogProbabilities[0].LogProbability, token.LogProbability, 1e-5);
        }
    }

    [Fact]
    public async Task Streaming_chat_through_the_sdk_gives_the_same_text_and_a_usage_chunk()
    {
        await using var server = await TestServer.StartAsync();
        var chat = server.Sdk().GetChatClient(server.ModelName);
        var expected = GenerateChat(12);

        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;
        await foreach (var update in chat.CompleteChatStreamingAsync(Conversation, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 }))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            if (update.FinishReason != null) finish = update.FinishReason;
            if (update.Usage != null) usage = update.Usage;
        }
        Assert.Equal(expected.Text, text.ToString());
        Assert.True(updates > 2, $"{updates} updates");
        Assert.Equal(expected.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop, finish);
        Assert.NotNull(usage); // the SDK asks for stream_options.include_usage
        Assert.Equal(expected.PromptTokens, usage.InputTokenCount);
        Assert.Equal(expected.Ids.Length, usage.OutputTokenCount);

        // Raw: include_usage gives a last chunk with empty choices and the usage; every other chunk has "usage": null.
        var raw = await server.StreamAsync("/v1/chat/completions", new JsonObject
        {
            ["model"] = server.ModelName, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" }),
            ["temperature"] = 0, ["max_tokens"] = 5, ["stream"] = true, ["stream_options"] = new JsonObject { ["include_usage"] = true },
        });
        Assert.Equal(200, raw.Status);
        Assert.True(raw.Done, raw.Raw);
        var last = raw.Chunks[^1];
        Assert.Empty(last["choices"]!.AsArray());
        Assert.Equal(5, (int)last["usage"]!["completion_tokens"]!);
        Assert.All(raw.Chunks.SkipLast(1), c => Assert.Null(c["usage"]));
        Assert.All(raw.Chunks, c => Assert.Equal("chat.completion.chunk", (string)c["object"]!));
    }

    [Fact]
    public async Task Models_embeddings_and_typed_errors_through_the_sdk()
    {
        using var dir = new TempDirectory();
        var adapter = ServerTestData.MakeAdapter(dir.File("support"), 11);
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, Adapters = [("support", adapter)] });
        var sdk = server.Sdk();

        var models = (await sdk.GetOpenAIModelClient().GetModelsAsync()).Value;
        Assert.Equal([server.ModelName, "support"], models.Select(m => m.Id).ToArray());
        Assert.Equal("support", (await sdk.GetOpenAIModelClient().GetModelAsync("support")).Value.Id);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => sdk.GetOpenAIModelClient().GetModelAsync("nope"));
        Assert.Equal(404, missing.Status);

        // Embeddings: the SDK asks for base64; the vectors are unit length, the same for the same text, and equal the
        // float encoding's.
        var embeddings = sdk.GetEmbeddingClient(server.ModelName);
        var many = (await embeddings.GenerateEmbeddingsAsync(["Order 7 ships in 3 days.", "The customer asked", "Order 7 ships in 3 days."])).Value;
        Assert.Equal(3, many.Count);
        var first = many[0].ToFloats().ToArray();
        Assert.Equal(32, first.Length);
        Assert.Equal(1.0, Math.Sqrt(first.Sum(v => (double)v * v)), 1e-4);
        Assert.Equal(first, many[2].ToFloats().ToArray());
        Assert.NotEqual(first, many[1].ToFloats().ToArray());
        var floats = await server.PostAsync("/v1/embeddings", new JsonObject { ["input"] = "Order 7 ships in 3 days.", ["encoding_format"] = "float" });
        Assert.Equal(200, floats.Status);
        Assert.Equal(first, floats.Json["data"]![0]!["embedding"]!.AsArray().Select(v => (float)v!).ToArray());
        Assert.True((int)floats.Json["usage"]!["prompt_tokens"]! > 0);

        // Errors arrive as the SDK's typed exception with the status: unknown model 404, bad values 400.
        var unknown = await Assert.ThrowsAsync<ClientResultException>(() => sdk.GetChatClient("no-such-model").CompleteChatAsync(Conversation));
        Assert.Equal(404, unknown.Status);
        Assert.Contains("model_not_found", unknown.Message);
        var bad = await Assert.ThrowsAsync<ClientResultException>(() =>
            sdk.GetChatClient(server.ModelName).CompleteChatAsync(Conversation, new ChatCompletionOptions { Temperature = 2.5f }));
        Assert.Equal(400, bad.Status);
        Assert.Contains("temperature", bad.Message);
        var tooMany = await Assert.ThrowsAsync<ClientResultException>(() =>
            sdk.GetChatClient(server.ModelName).CompleteChatAsync(Conversation, new ChatCompletionOptions { IncludeLogProbabilities = true, TopLogProbabilityCount = 21 }));
        Assert.Equal(400, tooMany.Status);
        Assert.Contains("top_logprobs", tooMany.Message);

        // An adapter by name answers too.
        ChatCompletion viaAdapter = await sdk.GetChatClient("support").CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 4 });
        Assert.Equal("support", viaAdapter.Model);
    }

    [Fact]
    public async Task A_key_is_required_when_set_and_compared_exactly()
    {
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, ApiKey = "s3cret-key" });
        var wrong = await Assert.ThrowsAsync<ClientResultException>(() => server.Sdk("wrong-key").GetChatClient(server.ModelName).CompleteChatAsync(Conversation));
        Assert.Equal(401, wrong.Status);
        var prefix = await Assert.ThrowsAsync<ClientResultException>(() => server.Sdk("s3cret").GetOpenAIModelClient().GetModelsAsync());
        Assert.Equal(401, prefix.Status);

        using var anonymous = new HttpClient { BaseAddress = server.Address, Timeout = HangGuard.Limit };
        var none = await anonymous.GetAsync("/v1/models");
        Assert.Equal(401, (int)none.StatusCode);
        var error = JsonNode.Parse(await none.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("invalid_api_key", (string)error["code"]!);
        Assert.Equal(401, (int)(await anonymous.GetAsync("/metrics")).StatusCode);
        Assert.Equal(200, (int)(await anonymous.GetAsync("/health")).StatusCode);

        ChatCompletion ok = await server.Sdk("s3cret-key").GetChatClient(server.ModelName).CompleteChatAsync(Conversation, new ChatCompletionOptions { MaxOutputTokenCount = 3 });
        Assert.Equal(server.ModelName, ok.Model);
    }
}
