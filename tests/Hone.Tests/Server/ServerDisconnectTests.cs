using System.Text;
using System.Text.Json.Nodes;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>A client that goes away cancels its sequence: the engine stops generating for it at its next step; a
/// request for n sequences that cannot all be queued is refused whole, and the ones already queued never run.</summary>
public class ServerDisconnectTests
{
    [Fact]
    public async Task A_client_that_disconnects_mid_stream_cancels_its_sequence()
    {
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, Parallel = 1 });
        var engine = await server.Server.Ready;
        const int maxTokens = 100;
        var body = new JsonObject { ["prompt"] = "The customer asked where order 7 is", ["max_tokens"] = maxTokens, ["temperature"] = 0, ["stream"] = true };

        // Alone and read to the end, this request generates all its tokens (no end of turn), so a short run below is
        // the cancellation's doing.
        var whole = await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = body["prompt"]!.DeepClone(), ["max_tokens"] = maxTokens, ["temperature"] = 0 });
        Assert.Equal(maxTokens, (int)whole.Json["usage"]!["completion_tokens"]!);

        // Hold the engine after each step while armed, so the client can leave while its sequence is in flight.
        using var gate = new ManualResetEventSlim();
        int steps = 0;
        int armed = 1;
        engine.StepCompleted += _ =>
        {
            Interlocked.Increment(ref steps);
            if (Volatile.Read(ref armed) == 1) gate.Wait();
        };
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") })
        using (var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(200, (int)response.StatusCode);
            Assert.True(HangGuard.WaitUntil(() => Volatile.Read(ref steps) >= 1), "the engine never stepped");
            Assert.Equal(1, engine.Statistics.ActiveSequences);
        } // disposing an unfinished response closes the connection
        // The server notices (the request ends and is counted) while the engine is still held ...
        Assert.True(HangGuard.WaitUntil(() => server.GetAsync("/metrics").Result.Text.Contains("hone_requests_total{endpoint=\"/v1/completions\",status=\"499\"}"), 50),
            "the server never noticed the disconnect");
        int before = Volatile.Read(ref steps);
        Volatile.Write(ref armed, 0);
        gate.Set();
        // ... and the engine ends the sequence at its next step instead of generating the rest.
        Assert.True(HangGuard.WaitUntil(() => engine.Statistics.ActiveSequences == 0), "the sequence never ended");
        int after = Volatile.Read(ref steps) - before;
        Assert.True(after <= 2, $"{after} more steps ran after the client left (of up to {maxTokens})");
        Assert.Equal(200, (await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 1", ["max_tokens"] = 2 })).Status);
        // The cancelled sequence's tokens count in the metrics too: the whole request, at least one of the cancelled
        // one's, and the last request's two.
        var metrics = (await server.GetAsync("/metrics")).Text;
        var generated = System.Text.RegularExpressions.Regex.Match(metrics, @"^hone_generation_tokens_total (\d+)", System.Text.RegularExpressions.RegexOptions.Multiline);
        Assert.True(generated.Success, metrics);
        Assert.InRange(int.Parse(generated.Groups[1].Value), maxTokens + 1 + 2, 2 * maxTokens + 2 - 1);
    }

    [Fact]
    public async Task N_sequences_that_cannot_all_be_queued_are_refused_whole()
    {
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, Parallel = 1, QueueLimit = 2 });
        var engine = await server.Server.Ready;
        using var gate = new ManualResetEventSlim();
        int steps = 0, armed = 1;
        engine.StepCompleted += _ =>
        {
            Interlocked.Increment(ref steps);
            if (Volatile.Read(ref armed) == 1) gate.Wait();
        };
        // One request holds the only slot (the engine is held after its first step) ...
        var first = server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 1", ["max_tokens"] = 3, ["temperature"] = 0 });
        Assert.True(HangGuard.WaitUntil(() => Volatile.Read(ref steps) >= 1), "the engine never stepped");
        // ... so of n = 3 two would wait and the third does not fit the queue: all three are refused.
        var refused = await server.PostAsync("/v1/completions", new JsonObject { ["prompt"] = "Order 2", ["max_tokens"] = 100, ["temperature"] = 0, ["n"] = 3 });
        Assert.True(refused.Status == 429, refused.ToString());
        Assert.NotNull(refused.Response.Headers.RetryAfter);
        int before = Volatile.Read(ref steps);
        Volatile.Write(ref armed, 0);
        gate.Set();
        Assert.Equal(200, (await first).Status);
        Assert.True(HangGuard.WaitUntil(() => engine.Statistics is { ActiveSequences: 0, QueueLength: 0 }), "the engine never went idle");
        // The first request's last steps ran; the two queued sequences of 100 tokens did not.
        int after = Volatile.Read(ref steps) - before;
        Assert.True(after <= 3, $"{after} steps ran after the refusal");
    }
}
