using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Clients;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Clients;

/// <summary>The load generator's stream parsing and statistics, against a fake OpenAI-shaped streaming server (until
/// hone serve exists, nothing real to drive here).</summary>
public class ServeBenchmarkTests
{
    /// <summary>A minimal OpenAI-compatible streaming server on HttpListener: each request gets <see cref="Chunks"/> text
    /// chunks of two "tokens" each, so a client that counts chunks is off by half, then a usage chunk and [DONE].</summary>
    sealed class FakeServer : LoopbackHttpServer
    {
        public readonly ConcurrentQueue<(string Path, string? Authorization, string? Connection, JsonObject Body)> Requests = new();
        public int Chunks = 5;
        public bool SendUsage = true;
        public bool CrLf;
        public int InFlight, MaxInFlight;
        public Uri Address => Root;

        protected override async Task Serve(HttpListenerContext context)
        {
            var response = context.Response;
            try
            {
                string path = context.Request.Url!.AbsolutePath;
                if (path == "/v1/models")
                {
                    await Write(response, 200, "application/json", "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\",\"object\":\"model\"}]}");
                    return;
                }
                string body = await new StreamReader(context.Request.InputStream).ReadToEndAsync();
                var json = (JsonObject)JsonNode.Parse(body)!;
                Requests.Enqueue((path, context.Request.Headers["Authorization"], context.Request.Headers["Connection"], json));
                if (path is not ("/v1/chat/completions" or "/v1/completions"))
                {
                    await Write(response, 404, "application/json", "{\"error\":{\"message\":\"no such endpoint\"}}");
                    return;
                }
                int now = Interlocked.Increment(ref InFlight);
                lock (this) MaxInFlight = Math.Max(MaxInFlight, now);
                try
                {
                    bool chat = path == "/v1/chat/completions";
                    response.StatusCode = 200;
                    response.ContentType = "text/event-stream";
                    response.SendChunked = true;
                    string end = CrLf ? "\r\n" : "\n";
                    var output = response.OutputStream;
                    async Task Event(string data)
                    {
                        var bytes = Encoding.UTF8.GetBytes(": keep-alive" + end + "data: " + data + end + end);
                        await output.WriteAsync(bytes);
                        await output.FlushAsync();
                    }
                    if (chat) await Event("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}");
                    for (int i = 0; i < Chunks; i++)
                    {
                        await Task.Delay(2);
                        string piece = JsonValue.Create($" w{i}a w{i}b")!.ToJsonString();
                        await Event(chat ? $"{{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{piece}}}}}]}}" : $"{{\"choices\":[{{\"index\":0,\"text\":{piece}}}]}}");
                    }
                    await Event(chat ? "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}" : "{\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}");
                    if (SendUsage) await Event($"{{\"choices\":[],\"usage\":{{\"prompt_tokens\":17,\"completion_tokens\":{2 * Chunks},\"total_tokens\":{17 + 2 * Chunks}}}}}");
                    await Event("[DONE]");
                }
                finally { Interlocked.Decrement(ref InFlight); }
                response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException)
            {
            }
        }

        static async Task Write(HttpListenerResponse response, int status, string type, string text)
        {
            response.StatusCode = status;
            response.ContentType = type;
            var bytes = Encoding.UTF8.GetBytes(text);
            response.ContentLength64 = bytes.Length;
            await response.OutputStream.WriteAsync(bytes);
            response.Close();
        }
    }

    static async Task<List<string>> Events(string text)
    {
        var list = new List<string>();
        await foreach (var d in ServerSentEvents.ReadDataAsync(new MemoryStream(Encoding.UTF8.GetBytes(text)))) list.Add(d);
        return list;
    }

    [Fact]
    public async Task Server_sent_events_are_read_as_the_standard_says()
    {
        Assert.Equal(["a", "b"], await Events("data: a\n\ndata: b\n\n"));
        Assert.Equal(["a", "b"], await Events("data: a\r\n\r\ndata: b\r\n\r\n"));
        Assert.Equal(["a", "b"], await Events("data: a\r\rdata: b\r\r"));
        Assert.Equal(["x\ny", "z"], await Events(": comment\nevent: message\ndata:x\ndata: y\nid: 3\n\ndata: z"));
        Assert.Equal([" two spaces"], await Events("data:  two spaces\n\n"));
        Assert.Equal([""], await Events("data\n\n"));
        Assert.Empty(await Events(": only a comment\n\n\n"));

        // "\r" at the end of one read and "\n" at the start of the next are one line end.
        var split = new ChunkedStream([Encoding.UTF8.GetBytes("data: a\r"), Encoding.UTF8.GetBytes("\n\r"), Encoding.UTF8.GetBytes("\ndata: b\n\n")]);
        var list = new List<string>();
        await foreach (var d in ServerSentEvents.ReadDataAsync(split)) list.Add(d);
        Assert.Equal(["a", "b"], list);
    }

    /// <summary>A stream that returns its pieces one read at a time.</summary>
    sealed class ChunkedStream(byte[][] pieces) : Stream
    {
        int _next;
        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_next == pieces.Length) return 0;
            var p = pieces[_next++];
            Assert.True(p.Length <= count);
            p.CopyTo(buffer, offset);
            return p.Length;
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    [Fact]
    public void Statistics_come_from_the_samples()
    {
        Assert.Equal(2.5, ServeBenchmark.Percentile([4, 1, 3, 2], 50));
        Assert.Equal(3.97, ServeBenchmark.Percentile([4, 1, 3, 2], 99), 1e-12);
        Assert.Equal(7, ServeBenchmark.Percentile([7], 99));
        Assert.True(double.IsNaN(ServeBenchmark.Percentile([], 50)));

        ServeBenchmark.RequestOutcome[] outcomes =
        [
            new(new RequestSample(0.1, 1.1, 10, 11), null),   // TPOT (1.1 - 0.1) / 10 = 0.1
            new(new RequestSample(0.3, 0.7, 12, 5), null),    // 0.1
            new(new RequestSample(0.2, 0.2, 14, 1), null),    // one token: no TPOT
            new(new RequestSample(double.NaN, 0.05, 8, 0), null),
            new(null, "HTTP 500: boom"),
        ];
        var level = ServeBenchmark.Summarize(3, outcomes, wallSeconds: 2.0);
        Assert.Equal(5, level.Requests);
        Assert.Equal(1, level.Failed);
        Assert.Equal("HTTP 500: boom", level.FirstError);
        Assert.Equal(17, level.GeneratedTokens);
        Assert.Equal(44, level.PromptTokens);
        Assert.Equal(8.5, level.GeneratedTokensPerSecond, 1e-12);
        Assert.Equal(2.0, level.RequestsPerSecond, 1e-12);
        Assert.Equal(0.2, level.TtftP50Seconds, 1e-12);
        Assert.Equal(0.1, level.TpotP50Seconds, 1e-12);
        Assert.Equal(0.1, level.TpotP99Seconds, 1e-12);
        Assert.Equal(4.25, level.MeanGeneratedTokens, 1e-12);
    }

    [Theory]
    [InlineData(ServeEndpoint.Chat, false)]
    [InlineData(ServeEndpoint.Completions, true)]
    public async Task Levels_run_their_clients_at_once_and_count_tokens_from_usage(ServeEndpoint endpoint, bool crlf)
    {
        using var server = new FakeServer { Chunks = 6, CrLf = crlf };
        var result = await ServeBenchmark.RunAsync(
            new ServeBenchOptions(server.Address, [1, 3], RequestsPerClient: 2, PromptTokens: 20, GenTokens: 12, ApiKey: "sk-test", Endpoint: endpoint))
            .WaitAsync(HangGuard.Limit);

        Assert.Equal("fake-model", result.Model);
        Assert.Equal(2, result.Levels.Count);
        foreach (var (level, clients) in result.Levels.Zip([1, 3]))
        {
            Assert.Equal(clients, level.Clients);
            Assert.Equal(clients * 2, level.Requests);
            Assert.Equal(0, level.Failed);
            Assert.Equal(clients * 2 * 12L, level.GeneratedTokens); // usage: 2 per chunk, not 1 per chunk
            Assert.Equal(clients * 2 * 17L, level.PromptTokens);
            Assert.Equal(12, level.MeanGeneratedTokens);
            Assert.InRange(level.TtftP50Seconds, 0, level.WallSeconds);
            Assert.InRange(level.TtftP99Seconds, level.TtftP50Seconds, level.WallSeconds);
            Assert.InRange(level.TpotP50Seconds, 0, level.WallSeconds);
            Assert.Equal(level.GeneratedTokens / level.WallSeconds, level.GeneratedTokensPerSecond, 1e-9);
        }
        Assert.Equal(3, server.MaxInFlight);

        var requests = server.Requests.ToList();
        Assert.Equal(1 + 2 + 6, requests.Count); // the warm-up, then the levels
        string path = endpoint == ServeEndpoint.Chat ? "/v1/chat/completions" : "/v1/completions";
        var prompts = new HashSet<string>();
        foreach (var (p, auth, connection, body) in requests)
        {
            Assert.Equal(path, p);
            Assert.Equal("Bearer sk-test", auth);
            Assert.Equal("fake-model", (string)body["model"]!);
            Assert.True((bool)body["stream"]!);
            Assert.True((bool)body["stream_options"]!["include_usage"]!);
            Assert.Equal(12, (int)body["max_tokens"]!);
            Assert.Null(body["ignore_eos"]);
            Assert.Equal("close", connection);
            string prompt = endpoint == ServeEndpoint.Chat ? (string)body["messages"]![0]!["content"]! : (string)body["prompt"]!;
            Assert.Equal(20, prompt.Split(' ').Length);
            prompts.Add(prompt.Split(' ')[0]);
        }
        Assert.Equal(requests.Count, prompts.Count); // no two requests share a prefix
    }

    [Fact]
    public async Task A_stream_without_usage_fails_the_request_rather_than_counting_chunks()
    {
        using var server = new FakeServer { SendUsage = false };
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => ServeBenchmark.RunAsync(
            new ServeBenchOptions(server.Address, [1], RequestsPerClient: 1, Model: "m")).WaitAsync(HangGuard.Limit));
        Assert.Contains("include_usage", e.Message);

        var outcome = await ServeBenchmark.ReadStreamAsync(new MemoryStream(Encoding.UTF8.GetBytes("data: {\"error\":{\"message\":\"overloaded\"}}\n\n")),
            ServeEndpoint.Chat, System.Diagnostics.Stopwatch.GetTimestamp(), default);
        Assert.Contains("overloaded", outcome.Error);
        outcome = await ServeBenchmark.ReadStreamAsync(new MemoryStream(Encoding.UTF8.GetBytes("data: {\"choices\":[]}\n\n")),
            ServeEndpoint.Chat, System.Diagnostics.Stopwatch.GetTimestamp(), default);
        Assert.Contains("[DONE]", outcome.Error);
        outcome = await ServeBenchmark.ReadStreamAsync(new MemoryStream(Encoding.UTF8.GetBytes("data: {not json\n\n")),
            ServeEndpoint.Chat, System.Diagnostics.Stopwatch.GetTimestamp(), default);
        Assert.Contains("not JSON", outcome.Error);
    }

    [Fact]
    public void The_command_prints_json_with_the_protocol_and_refuses_mixed_modes()
    {
        using var server = new FakeServer { Chunks = 3 };
        var r = HoneCli.Run("bench", "--serve", server.Address.ToString(), "--clients", "1,2", "--requests", "1", "--gen-tokens", "6",
            "--prompt-tokens", "8", "--endpoint", "completions", "--ignore-eos", "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var json = JsonNode.Parse(r.Stdout)!;
        Assert.Contains("include_usage", (string)json["protocol"]!);
        Assert.Equal("/v1/completions", (string)json["endpoint"]!);
        var levels = json["levels"]!.AsArray();
        Assert.Equal([1, 2], levels.Select(l => (int)l!["clients"]!));
        Assert.Equal([6L, 12L], levels.Select(l => (long)l!["generated_tokens"]!));
        Assert.All(server.Requests, q => Assert.True((bool)q.Body["ignore_eos"]!));

        var text = HoneCli.Run("bench", "--serve", server.Address.ToString(), "--clients", "2", "--requests", "1");
        Assert.True(text.ExitCode == 0, text.ToString());
        Assert.Contains("TTFT p50", text.Stdout);
        Assert.Contains("Protocol:", text.Stdout);

        var mixed = HoneCli.Run("bench", "--serve", server.Address.ToString(), "--shape", "tiny");
        Assert.Equal(1, mixed.ExitCode);
        Assert.Contains("--shape", mixed.Stderr);
        var orphan = HoneCli.Run("bench", "--clients", "4");
        Assert.Equal(1, orphan.ExitCode);
        Assert.Contains("--clients goes with --serve", orphan.Stderr);
        var bad = HoneCli.Run("bench", "--serve", server.Address.ToString(), "--clients", "1,x");
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("'x'", bad.Stderr);
    }

    [Fact]
    public void A_server_that_is_not_there_is_one_error_line()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var r = HoneCli.Run("bench", "--serve", $"http://127.0.0.1:{port}", "--model", "m", "--clients", "1", "--requests", "1");
        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: the warm-up request failed", r.Stderr.Split('\n').First(l => l.StartsWith("error", StringComparison.Ordinal)));
    }
}
