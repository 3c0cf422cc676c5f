using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>Bad, hostile and unlucky requests get a 4xx in OpenAI's error shape naming the field, never a 500, and the
/// server keeps serving; the health checks and metrics.</summary>
public class ServerHostileTests
{
    static void AssertError(TestServer.Reply reply, int status, string? param, string? messagePart = null)
    {
        Assert.True(reply.Status == status, $"expected {status}, got {reply}");
        var error = reply.Json["error"]!;
        Assert.False(string.IsNullOrWhiteSpace((string?)error["message"]), reply.ToString());
        Assert.NotNull((string?)error["type"]);
        Assert.Equal(param, (string?)error["param"]);
        if (messagePart != null) Assert.Contains(messagePart, (string)error["message"]!);
    }

    static async Task AssertStillServing(TestServer server)
    {
        var ok = await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 3 ships", ["max_tokens"] = 2 });
        Assert.True(ok.Status == 200, ok.ToString());
    }

    [Fact]
    public async Task Malformed_and_out_of_range_requests_get_a_400_naming_the_field_and_the_server_keeps_serving()
    {
        await using var server = await TestServer.StartAsync();
        const string chat = "/v1/chat/completions", completions = "/v1/completions";
        const string messages = "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]";
        var cases = new (string Path, string Body, int Status, string? Param, string? Part)[]
        {
            (chat, "{", 400, null, "not valid JSON"),
            (chat, "", 400, null, "not valid JSON"),
            (chat, "[1, 2]", 400, null, "JSON object"),
            (chat, "{\"messages\": 1, \"messages\": 2}", 400, null, "Duplicate"),
            (chat, "{}", 400, "messages", null),
            (chat, "{\"messages\": \"hi\"}", 400, "messages", null),
            (chat, "{\"messages\": []}", 400, "messages", null),
            (chat, "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", 400, "messages[0].role", "wizard"),
            (chat, "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0].content", null),
            (chat, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]}", 400, "messages[0].content[0].type", "only text"),
            (chat, $"{{{messages}, \"max_tokens\": 1000000000}}", 400, "max_tokens", "context"),
            (chat, $"{{{messages}, \"max_completion_tokens\": 0}}", 400, "max_completion_tokens", null),
            (chat, $"{{{messages}, \"max_tokens\": 2.5}}", 400, "max_tokens", "integer"),
            (chat, $"{{{messages}, \"n\": -1}}", 400, "n", null),
            (chat, $"{{{messages}, \"n\": 17}}", 400, "n", null),
            (chat, $"{{{messages}, \"n\": \"2\"}}", 400, "n", "integer"),
            (chat, $"{{{messages}, \"temperature\": \"hot\"}}", 400, "temperature", "number"),
            (chat, $"{{{messages}, \"temperature\": 2.5}}", 400, "temperature", null),
            (chat, $"{{{messages}, \"temperature\": -0.1}}", 400, "temperature", null),
            (chat, $"{{{messages}, \"top_p\": 0}}", 400, "top_p", null),
            (chat, $"{{{messages}, \"top_p\": 1.5}}", 400, "top_p", null),
            (chat, $"{{{messages}, \"logprobs\": true, \"top_logprobs\": 21}}", 400, "top_logprobs", null),
            (chat, $"{{{messages}, \"top_logprobs\": 2}}", 400, "top_logprobs", "logprobs"),
            (chat, $"{{{messages}, \"stop\": 5}}", 400, "stop", null),
            (chat, $"{{{messages}, \"stop\": [\"a\", 5]}}", 400, "stop[1]", null),
            (chat, $"{{{messages}, \"stream\": \"yes\"}}", 400, "stream", "boolean"),
            (chat, $"{{{messages}, \"seed\": \"x\"}}", 400, "seed", null),
            (chat, $"{{{messages}, \"presence_penalty\": 3}}", 400, "presence_penalty", null),
            (chat, $"{{{messages}, \"model\": 7}}", 400, "model", null),
            (chat, $"{{{messages}, \"model\": \"nope\"}}", 404, "model", "does not exist"),
            (chat, $"{{{messages}, \"model\": \"../../etc/passwd\"}}", 404, "model", "does not exist"),
            (completions, "{\"prompt\": [1, 2, 99999]}", 400, "prompt[2]", null),
            (completions, "{\"prompt\": [\"a\", 3]}", 400, "prompt[1]", null),
            (completions, "{\"prompt\": \"\"}", 400, "prompt", null),
            (completions, "{\"prompt\": {\"a\": 1}}", 400, "prompt", null),
            (completions, "{\"prompt\": \"hi\", \"echo\": true}", 400, "echo", "not supported"),
            (completions, "{\"prompt\": \"hi\", \"logprobs\": 21}", 400, "logprobs", null),
            (completions, "{\"prompt\": [\"a\", \"b\", \"c\"], \"n\": 6}", 400, "n", null),
            ("/v1/embeddings", "{\"input\": \"hi\", \"encoding_format\": \"hex\"}", 400, "encoding_format", null),
            ("/v1/embeddings", "{\"input\": []}", 400, "input", null),
            ("/v1/embeddings", "{\"input\": \"hi\", \"dimensions\": 7}", 400, "dimensions", null),
            ("/tokenize", "{\"content\": 5}", 400, "content", null),
            ("/detokenize", "{\"tokens\": [-1]}", 400, "tokens[0]", null),
            ("/detokenize", "{\"tokens\": \"abc\"}", 400, "tokens", null),
            ("/v1/unload_lora_adapter", "{\"lora_name\": \"never-loaded\"}", 404, "lora_name", null),
            ("/v1/no-such-endpoint", "{}", 404, null, null),
        };
        foreach (var c in cases)
        {
            var reply = await server.PostAsync(c.Path, c.Body);
            try { AssertError(reply, c.Status, c.Param, c.Part); }
            catch (Exception e) { throw new Xunit.Sdk.XunitException($"{c.Path} {c.Body}: {e.Message}"); }
        }
        // Unknown fields are tolerated (SDKs send fields this server does not use).
        var tolerant = await server.PostAsync(chat, $"{{{messages}, \"max_tokens\": 2, \"user\": \"u1\", \"metadata\": {{\"x\": 1}}, \"parallel_tool_calls\": false}}");
        Assert.True(tolerant.Status == 200, tolerant.ToString());

        // A prompt longer than the context: the engine's message, with both counts.
        string longPrompt = string.Join(' ', Enumerable.Repeat("Order 7 ships in 3 days.", 60));
        var tooLong = await server.PostAsync(completions, new JsonObject { ["prompt"] = longPrompt });
        AssertError(tooLong, 400, "prompt", $"holds {TinyChatModel.Context}");
        Assert.Equal("context_length_exceeded", (string)tooLong.Json["error"]!["code"]!);
        Assert.Contains("tokens", (string)tooLong.Json["error"]!["message"]!);
        await AssertStillServing(server);

        Assert.DoesNotContain("unexpected", server.Log.ToString());
    }

    [Fact]
    public async Task A_ten_megabyte_body_gets_413_and_the_server_keeps_serving()
    {
        await using var server = await TestServer.StartAsync();
        var huge = "{\"prompt\": \"" + new string('a', 10 << 20) + "\"}";
        // The server drains what it refuses, so the client, still sending, reads the answer.
        var response = await server.Http.PostAsync("/v1/completions", new StringContent(huge, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == 413, $"{(int)response.StatusCode}: {text}");
        Assert.Contains("limit", (string)JsonNode.Parse(text)!["error"]!["message"]!);
        await AssertStillServing(server);

        // Sent in chunks, with no Content-Length, it is refused the same way.
        var chunked = new StringContent(huge, Encoding.UTF8, "application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        using var chunkedResponse = await server.Http.SendAsync(request);
        Assert.Equal(413, (int)chunkedResponse.StatusCode);
        await AssertStillServing(server);
    }

    [Fact]
    public async Task Adapters_load_and_unload_at_run_time_and_bad_ones_are_refused()
    {
        using var dir = new TempDirectory();
        string good = ServerTestData.MakeAdapter(dir.File("good"), 3);
        Directory.CreateDirectory(dir.File("empty"));
        File.WriteAllText(dir.File("garbage.gguf"), "not a gguf file");
        Directory.CreateDirectory(dir.File("broken"));
        File.WriteAllText(Path.Combine(dir.File("broken"), "adapter_config.json"), "{\"r\": ");
        await using var server = await TestServer.StartAsync();

        foreach (var (name, path, param) in new[]
                 {
                     ("../evil", good, "lora_name"), ("a/b", good, "lora_name"), ("", good, "lora_name"), (server.ModelName, good, "lora_name"),
                     ("x", dir.File("missing"), "lora_path"), ("x", dir.File("empty"), "lora_path"), ("x", dir.File("garbage.gguf"), "lora_path"),
                     ("x", dir.File("broken"), "lora_path"), ("x", TinyChatModel.Path, "lora_path"),
                 })
        {
            var reply = await server.PostAsync("/v1/load_lora_adapter", new JsonObject { ["lora_name"] = name, ["lora_path"] = path });
            try { AssertError(reply, 400, param); }
            catch (Exception e) { throw new Xunit.Sdk.XunitException($"{name} {path}: {e.Message}"); }
        }
        AssertError(await server.PostAsync("/v1/load_lora_adapter", "{\"lora_name\": \"x\"}"), 400, "lora_path");

        var loaded = await server.PostAsync("/v1/load_lora_adapter", new JsonObject { ["lora_name"] = "good", ["lora_path"] = good });
        Assert.True(loaded.Status == 200, loaded.ToString());
        AssertError(await server.PostAsync("/v1/load_lora_adapter", new JsonObject { ["lora_name"] = "good", ["lora_path"] = good }), 400, "lora_name", "already");
        var models = (await server.GetAsync("/v1/models")).Json["data"]!.AsArray().Select(m => (string)m!["id"]!).ToList();
        Assert.Equal([server.ModelName, "good"], models);

        const string prompt = "The customer asked where order 7 is";
        var expected = ServerTestData.Generate(prompt, 12, good);
        var viaAdapter = await server.PostAsync("/v1/completions", new JsonObject
        {
            ["model"] = "good", ["prompt"] = prompt, ["max_tokens"] = 12, ["temperature"] = 0, ["logprobs"] = 0, ["return_tokens_as_token_ids"] = true,
        });
        Assert.Equal(expected.Ids, ServerTestData.Ids(viaAdapter.Json["choices"]![0]!));

        var unloaded = await server.PostAsync("/v1/unload_lora_adapter", new JsonObject { ["lora_name"] = "good" });
        Assert.True(unloaded.Status == 200, unloaded.ToString());
        AssertError(await server.PostAsync("/v1/completions", new JsonObject { ["model"] = "good", ["prompt"] = prompt }), 404, "model");
        await AssertStillServing(server);
    }

    [Fact]
    public async Task A_full_queue_gets_429_with_retry_after_and_n_is_all_or_nothing()
    {
        // Queue limit 0: every request is refused before anything runs, so the refusal does not depend on timing.
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, QueueLimit = 0 });
        var reply = await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 1", ["n"] = 3 });
        AssertError(reply, 429, null);
        Assert.Equal("rate_limit_exceeded", (string)reply.Json["error"]!["code"]!);
        Assert.NotNull(reply.Response.Headers.RetryAfter);
        var stream = await server.StreamAsync("/v1/chat/completions", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }), ["stream"] = true,
        });
        Assert.Equal(429, stream.Status);
        Assert.Equal(0, (await server.Server.Ready).Statistics.QueueLength);
    }

    [Fact]
    public async Task Health_is_503_while_the_model_loads_then_200_and_metrics_name_what_they_count()
    {
        using var gate = new ManualResetEventSlim();
        await using var server = await TestServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyChatModel.Path,
            OpenEngine = o => { gate.Wait(); return BatchEngine.Open(o.ModelPath, o.Adapters, o.EngineOptions); },
        }, waitReady: false);
        Assert.Equal(503, (await server.GetAsync("/health")).Status);
        Assert.Equal(503, (await server.GetAsync("/health/ready")).Status);
        Assert.Equal(200, (await server.GetAsync("/health/live")).Status);
        var loading = await server.GetAsync("/v1/models");
        AssertError(loading, 503, null, "loading");
        Assert.NotNull(loading.Response.Headers.RetryAfter);
        gate.Set();
        await server.Server.Ready.WaitAsync(HangGuard.Limit);
        Assert.Equal(200, (await server.GetAsync("/health")).Status);
        Assert.Equal(200, (await server.GetAsync("/health/ready")).Status);

        var reply = await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 3 ships", ["max_tokens"] = 4, ["temperature"] = 0 });
        Assert.Equal(200, reply.Status);
        var metrics = await server.GetAsync("/metrics");
        Assert.Equal(200, metrics.Status);
        foreach (var name in new[]
                 {
                     "hone_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1", "hone_requests_total{endpoint=\"/health\",status=\"503\"} 1",
                     "hone_prompt_tokens_total", "hone_generation_tokens_total", "hone_time_to_first_token_seconds_bucket",
                     "hone_time_per_output_token_seconds_bucket", "hone_queue_length", "hone_active_sequences", "hone_kv_cache_tokens_used",
                     "hone_kv_cache_usage_ratio", "hone_step_rows_total{kind=\"decode\"}", "hone_step_rows_bucket", "hone_model_ready 1",
                 })
            Assert.Contains(name, metrics.Text);
        int generated = (int)reply.Json["usage"]!["completion_tokens"]!;
        Assert.Contains($"hone_generation_tokens_total {generated}", metrics.Text);
    }

    [Fact]
    public async Task Completions_accept_every_prompt_shape_and_tokenize_round_trips()
    {
        await using var server = await TestServer.StartAsync();
        var tokens = (await server.PostAsync("/tokenize", new JsonObject { ["content"] = "Order 7 ships", ["add_special"] = true })).Json["tokens"]!.AsArray();
        var ids = tokens.Select(t => (int)t!).ToArray();
        Assert.NotEmpty(ids);
        var text = (await server.PostAsync("/detokenize", new JsonObject { ["tokens"] = new JsonArray(ids.Skip(1).Select(i => (JsonNode)i).ToArray()) })).Json;
        Assert.Contains("Order 7 ships", (string)text["content"]!);

        JsonObject Body(JsonNode prompt) => new() { ["prompt"] = prompt, ["max_tokens"] = 5, ["temperature"] = 0 };
        var fromText = (await server.PostAsync("/v1/completions", Body("Order 7 ships"))).Json;
        var fromIds = (await server.PostAsync("/v1/completions", Body(new JsonArray(ids.Select(i => (JsonNode)i).ToArray())))).Json;
        Assert.Equal((string)fromText["choices"]![0]!["text"]!, (string)fromIds["choices"]![0]!["text"]!);
        var several = (await server.PostAsync("/v1/completions", new JsonObject
        {
            ["prompt"] = new JsonArray("Order 7 ships", "Order 2 ships"), ["max_tokens"] = 5, ["temperature"] = 0, ["n"] = 2,
        })).Json;
        var choices = several["choices"]!.AsArray();
        Assert.Equal(4, choices.Count);
        Assert.Equal([0, 1, 2, 3], choices.Select(c => (int)c!["index"]!).ToArray());
        Assert.Equal((string)fromText["choices"]![0]!["text"]!, (string)choices[1]!["text"]!);
        Assert.StartsWith("cmpl-", (string)several["id"]!);
        Assert.Equal("text_completion", (string)several["object"]!);
        // A stop string ends the text before it, with finish_reason "stop".
        string greedy = (string)(await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 7 ships", ["max_tokens"] = 20, ["temperature"] = 0 }))
            .Json["choices"]![0]!["text"]!;
        Assert.True(greedy.Length >= 4, greedy);
        string stop = greedy.Substring(greedy.Length / 2, 2);
        var stopped = (await server.PostAsync("/v1/completions", new JsonObject
        {
            ["prompt"] = "Order 7 ships", ["max_tokens"] = 20, ["temperature"] = 0, ["stop"] = new JsonArray(stop),
        })).Json["choices"]![0]!;
        Assert.Equal(greedy[..greedy.IndexOf(stop, StringComparison.Ordinal)], (string)stopped["text"]!);
        Assert.Equal("stop", (string)stopped["finish_reason"]!);

        // Streamed chat with n = 2: each choice's deltas, by index, make the text the unstreamed request gives.
        var chatBody = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Where is order 7?" }), ["max_tokens"] = 8, ["temperature"] = 0, ["n"] = 2,
        };
        var unstreamed = (await server.PostAsync("/v1/chat/completions", chatBody)).Json["choices"]!.AsArray();
        chatBody["stream"] = true;
        var streamed = await server.StreamAsync("/v1/chat/completions", chatBody);
        Assert.True(streamed.Done, streamed.Raw);
        for (int i = 0; i < 2; i++)
        {
            var mine = streamed.Chunks.SelectMany(c => c["choices"]!.AsArray()).Where(c => (int)c!["index"]! == i).ToList();
            Assert.Equal((string)unstreamed[i]!["message"]!["content"]!, string.Concat(mine.Select(c => (string?)c!["delta"]!["content"] ?? "")));
            Assert.Equal((string)unstreamed[i]!["finish_reason"]!, (string)mine[^1]!["finish_reason"]!);
        }

        int prompts = (int)fromText["usage"]!["prompt_tokens"]!;
        Assert.Equal(ids.Length, prompts);
        Assert.True((int)several["usage"]!["completion_tokens"]! > 0);
    }

    [Fact]
    public async Task Adapter_loading_is_refused_unless_the_server_allows_it()
    {
        using var dir = new TempDirectory();
        string good = ServerTestData.MakeAdapter(dir.File("good"), 3);
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path });
        AssertError(await server.PostAsync("/v1/load_lora_adapter", new JsonObject { ["lora_name"] = "good", ["lora_path"] = good }), 403, null, "--allow-adapter-loading");
        AssertError(await server.PostAsync("/v1/unload_lora_adapter", new JsonObject { ["lora_name"] = "good" }), 403, null, "--allow-adapter-loading");
        var models = await server.Http.GetStringAsync("/v1/models");
        Assert.DoesNotContain("\"good\"", models);
    }
}
