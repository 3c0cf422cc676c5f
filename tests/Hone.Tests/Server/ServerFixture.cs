using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Model;
using Hone.Server;
using Hone.Tests.Infrastructure;
using OpenAI;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>A real Kestrel server over <see cref="TinyChatModel"/> on 127.0.0.1 and a free port, with an HttpClient
/// and an OpenAI SDK client pointed at it.</summary>
public sealed class TestServer : IAsyncDisposable
{
    public required HoneServer Server { get; init; }
    public required Uri Address { get; init; }
    public required HttpClient Http { get; init; }
    public required StringWriter Log { get; init; }
    public string ModelName => Server.Ready.Result.ModelName;

    public static async Task<TestServer> StartAsync(ServerOptions? options = null, bool waitReady = true)
    {
        options ??= new ServerOptions { ModelPath = TinyChatModel.Path, AllowAdapterLoading = true };
        options = options with { Host = "127.0.0.1", Port = 0, Threads = options.Threads == 0 ? 2 : options.Threads };
        var log = new StringWriter();
        var server = await HoneServer.StartAsync(options, TextWriter.Synchronized(log));
        if (waitReady) await server.Ready.WaitAsync(HangGuard.Limit);
        var address = server.Addresses.Single();
        var http = new HttpClient { BaseAddress = address, Timeout = HangGuard.Limit };
        if (options.ApiKey != null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKey);
        return new TestServer { Server = server, Address = address, Http = http, Log = log };
    }

    /// <summary>The OpenAI SDK against this server: no retries (a 429 must reach the test), the hang guard as timeout.</summary>
    public OpenAIClient Sdk(string key = "unused") => new(new ApiKeyCredential(key), new OpenAIClientOptions
    {
        Endpoint = new Uri(Address, "/v1"), RetryPolicy = new ClientRetryPolicy(0), NetworkTimeout = HangGuard.Limit,
    });

    public sealed record Reply(int Status, string Text, HttpResponseMessage Response)
    {
        public JsonNode Json => JsonNode.Parse(Text) ?? throw new InvalidOperationException($"no JSON in: {Text}");
        public override string ToString() => $"{Status}: {Text}";
    }

    public async Task<Reply> PostAsync(string path, string body)
    {
        var response = await Http.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        return new Reply((int)response.StatusCode, await response.Content.ReadAsStringAsync(), response);
    }

    public Task<Reply> PostAsync(string path, JsonNode body) => PostAsync(path, body.ToJsonString());

    public async Task<Reply> GetAsync(string path)
    {
        var response = await Http.GetAsync(path);
        return new Reply((int)response.StatusCode, await response.Content.ReadAsStringAsync(), response);
    }

    /// <summary>A streamed request's events: the JSON of each "data:" line before [DONE], and whether [DONE] came.</summary>
    public async Task<(int Status, List<JsonNode> Chunks, bool Done, string Raw)> StreamAsync(string path, JsonNode body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        string raw = await response.Content.ReadAsStringAsync();
        var chunks = new List<JsonNode>();
        bool done = false;
        if (response.IsSuccessStatusCode)
            foreach (var line in raw.Split('\n'))
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                string data = line["data: ".Length..];
                if (data == "[DONE]") { done = true; continue; }
                Assert.False(done, $"data after [DONE]: {raw}");
                chunks.Add(JsonNode.Parse(data)!);
            }
        return ((int)response.StatusCode, chunks, done, raw);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
    }
}

public static class ServerTestData
{
    /// <summary>A LoRA adapter for <see cref="TinyChatModel"/> on every layer's query and value projections, with a
    /// nonzero B drawn from <paramref name="seed"/> so it changes the model's output.</summary>
    public static unsafe string MakeAdapter(string directory, ulong seed)
    {
        var random = new Random((int)seed);
        var adapters = new List<LoraAdapter>();
        for (int layer = 0; layer < TinyChatModel.Layers; layer++)
        {
            adapters.Add(new LoraAdapter($"blk.{layer}.attn_q.weight", 4, 32, 32, alpha: 8));
            adapters.Add(new LoraAdapter($"blk.{layer}.attn_v.weight", 4, 32, 16, alpha: 8));
        }
        foreach (var a in adapters)
        {
            for (long i = 0; i < (long)a.Rank * a.In; i++) a.A[i] = (float)(random.NextDouble() - 0.5);
            for (long i = 0; i < (long)a.Out * a.Rank; i++) a.B[i] = (float)(random.NextDouble() - 0.5);
        }
        PeftAdapter.Save(directory, adapters, new PeftAdapterConfig(4, 8, 0, PeftTargets.Of(["q_proj", "v_proj"]), false, AdapterKinds.Lora, null));
        foreach (var a in adapters) a.Dispose();
        return directory;
    }

    /// <summary>What `hone generate --temperature 0 --json` gives (text and generated ids).</summary>
    public static (string Text, int[] Ids) Generate(string prompt, int maxTokens, string? adapter = null)
    {
        var args = new List<string> { "generate", TinyChatModel.Path, "--prompt", prompt, "--max-tokens", maxTokens.ToString(), "--temperature", "0", "--json" };
        if (adapter != null) args.AddRange(["--adapter", adapter]);
        var result = HoneCli.Run(args.ToArray());
        Assert.True(result.ExitCode == 0, result.ToString());
        var json = JsonNode.Parse(result.Stdout)!;
        return ((string)json["text"]!, json["ids"]!.AsArray().Select(i => (int)i!).ToArray());
    }

    /// <summary>The ids of a completion asked for with logprobs and return_tokens_as_token_ids.</summary>
    public static int[] Ids(JsonNode choice) =>
        choice["logprobs"]!["tokens"]!.AsArray().Select(t => int.Parse(((string)t!)["token_id:".Length..])).ToArray();
}
