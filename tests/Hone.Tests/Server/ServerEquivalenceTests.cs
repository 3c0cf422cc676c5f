using System.Text.Json.Nodes;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>What the server generates is what `hone generate` generates, token for token: alone, amid other requests
/// with other prompts, samplers and adapters, and for many streaming clients at once.</summary>
public class ServerEquivalenceTests
{
    static JsonObject Completion(string model, string prompt, int maxTokens, double temperature = 0, long? seed = null, bool stream = false)
    {
        var body = new JsonObject
        {
            ["model"] = model, ["prompt"] = prompt, ["max_tokens"] = maxTokens, ["temperature"] = temperature,
            ["logprobs"] = 0, ["return_tokens_as_token_ids"] = true, ["stream"] = stream,
        };
        if (seed != null) body["seed"] = seed;
        return body;
    }

    [Fact]
    public async Task Greedy_completions_equal_hone_generate_alone_and_amid_sixteen_others_with_adapters()
    {
        using var dir = new TempDirectory();
        string adapterA = ServerTestData.MakeAdapter(dir.File("a"), 1), adapterB = ServerTestData.MakeAdapter(dir.File("b"), 2);
        const string prompt = "The customer asked where order 7 is";
        var expectedBase = ServerTestData.Generate(prompt, 30);
        var expectedA = ServerTestData.Generate(prompt, 30, adapterA);
        Assert.NotEmpty(expectedBase.Ids);
        Assert.NotEqual(expectedBase.Ids, expectedA.Ids); // the adapter matters, so the comparison below means something

        await using var server = await TestServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyChatModel.Path, Adapters = [("a", adapterA), ("b", adapterB)], Parallel = 17, StepTokens = 64,
        });
        string model = server.ModelName;

        var alone = await server.PostAsync("/v1/completions", Completion(model, prompt, 30));
        Assert.Equal(200, alone.Status);
        Assert.Equal(expectedBase.Ids, ServerTestData.Ids(alone.Json["choices"]![0]!));
        Assert.Equal(expectedBase.Text, (string)alone.Json["choices"]![0]!["text"]!);
        var aloneA = await server.PostAsync("/v1/completions", Completion("a", prompt, 30));
        Assert.Equal(expectedA.Ids, ServerTestData.Ids(aloneA.Json["choices"]![0]!));

        // Sixteen others in flight: other prompts, greedy and seeded sampling, the base and both adapters, streamed or not.
        string[] models = [model, "a", "b"];
        var others = Enumerable.Range(0, 16).Select(i => i % 4 == 3
            ? server.StreamAsync("/v1/completions", Completion(models[i % 3], $"Order {i} ships in {i % 5 + 1} days and " + new string('x', i * 2), 10 + 3 * i,
                i % 2 == 0 ? 0 : 0.9, seed: i, stream: true)).ContinueWith(t => t.Result.Status)
            : server.PostAsync("/v1/completions", Completion(models[i % 3], $"Order {i} ships in {i % 5 + 1} days and " + new string('x', i * 2), 10 + 3 * i,
                i % 2 == 0 ? 0 : 0.9, seed: i)).ContinueWith(t => t.Result.Status)).ToList();
        var crowdedBase = server.PostAsync("/v1/completions", Completion(model, prompt, 30));
        var crowdedA = server.PostAsync("/v1/completions", Completion("a", prompt, 30));
        var crowdedAStream = server.StreamAsync("/v1/completions", Completion("a", prompt, 30, stream: true));
        Assert.All(await Task.WhenAll(others), status => Assert.Equal(200, status));

        Assert.Equal(expectedBase.Ids, ServerTestData.Ids((await crowdedBase).Json["choices"]![0]!));
        var a = (await crowdedA).Json;
        Assert.Equal(expectedA.Ids, ServerTestData.Ids(a["choices"]![0]!));
        Assert.Equal(expectedA.Text, (string)a["choices"]![0]!["text"]!);
        Assert.Equal("a", (string)a["model"]!);
        var streamed = await crowdedAStream;
        Assert.True(streamed.Done, streamed.Raw);
        var streamedIds = streamed.Chunks.SelectMany(c => c["choices"]!.AsArray())
            .Where(c => c!["logprobs"] != null).SelectMany(c => ServerTestData.Ids(c!)).ToArray();
        Assert.Equal(expectedA.Ids, streamedIds);
        Assert.Equal(expectedA.Text, string.Concat(streamed.Chunks.SelectMany(c => c["choices"]!.AsArray()).Select(c => (string)c!["text"]!)));
    }

    [Fact]
    public async Task Sixty_four_streaming_clients_each_get_their_own_text_or_a_429()
    {
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, Parallel = 8, QueueLimit = 4, StepTokens = 64 });
        string model = server.ModelName;
        // Eight distinct requests (prompts, greedy or seeded sampling), each answered alone first.
        JsonObject Request(int k) => new()
        {
            ["model"] = model, ["max_tokens"] = 6 + k % 3, ["stream"] = true,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Where is order {k}? It ships in {k % 5 + 1} days." }),
            ["temperature"] = k % 2 == 0 ? 0 : 0.8, ["seed"] = 100 + k,
        };
        static string Text(List<JsonNode> chunks) =>
            string.Concat(chunks.SelectMany(c => c["choices"]!.AsArray()).Select(c => (string?)c!["delta"]!["content"] ?? ""));
        var expected = new string[8];
        for (int k = 0; k < 8; k++)
        {
            var alone = await server.StreamAsync("/v1/chat/completions", Request(k));
            Assert.True(alone.Status == 200 && alone.Done, alone.Raw);
            expected[k] = Text(alone.Chunks);
        }

        int completed = 0, refused = 0;
        var clients = Enumerable.Range(0, 64).Select(client => Task.Run(async () =>
        {
            for (int r = 0; r < 3; r++)
            {
                int k = (client + r) % 8;
                var result = await server.StreamAsync("/v1/chat/completions", Request(k));
                if (result.Status == 429)
                {
                    var error = JsonNode.Parse(result.Raw)!["error"]!;
                    Assert.Equal("rate_limit_exceeded", (string)error["code"]!);
                    Interlocked.Increment(ref refused);
                    continue;
                }
                Assert.True(result.Status == 200 && result.Done, $"client {client} request {r}: {result.Raw}");
                Assert.Equal(expected[k], Text(result.Chunks));
                var ids = result.Chunks.Select(c => (string)c["id"]!).Distinct().ToList();
                Assert.Single(ids);
                Interlocked.Increment(ref completed);
            }
        })).ToArray();
        await Task.WhenAll(clients);
        Assert.Equal(64 * 3, completed + refused);
        Assert.True(completed > 0);
        Console.WriteLine($"64 streaming clients × 3: {completed} completed, {refused} refused with 429");
        // Still serving.
        Assert.Equal(200, (await server.PostAsync("/v1/completions", Completion(model, "Order 1", 3))).Status);
    }
}
