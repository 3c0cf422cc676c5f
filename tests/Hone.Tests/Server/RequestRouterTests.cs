using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Experts;
using Hone.Formats;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Server;

/// <summary>Request-level routing: nearest-centroid classification of prompt embeddings, built from example prompts,
/// and `hone serve --router`, which sends requests for "auto" to the chosen adapter.</summary>
public class RequestRouterTests
{
    [Fact]
    public void Centroids_are_unit_means_of_unit_embeddings_and_the_nearest_route_wins()
    {
        var a = RequestRouter.Centroid([[2f, 0f, 0f], [0f, 10f, 0f]]);
        Assert.Equal(1 / Math.Sqrt(2), a[0], 6);
        Assert.Equal(1 / Math.Sqrt(2), a[1], 6);
        var router = new RequestRouter([new RequestRoute("a", a, 2), new RequestRoute("base", [0f, 0f, 1f], 1)]);
        Assert.Equal("a", router.Route([1f, 1.2f, 0.1f]).Route.Name);
        Assert.Equal("base", router.Route([0.1f, 0f, 3f]).Route.Name);
        using var dir = new TempDirectory();
        router.Save(dir.File("r.json"));
        var back = RequestRouter.Load(dir.File("r.json"));
        Assert.Equal(router.Routes.Select(r => r.Name), back.Routes.Select(r => r.Name));
        Assert.Equal(router.Routes[0].Centroid, back.Routes[0].Centroid);
        File.WriteAllText(dir.File("bad.json"), """{"format": "hone-request-router", "version": 1, "routes": [{"name": "a", "centroid": [1, "x"]}]}""");
        var e = Assert.Throws<ModelFormatException>(() => RequestRouter.Load(dir.File("bad.json")));
        Assert.Contains("routes[0].centroid", e.Message);
    }

    static string Prompts(TempDirectory dir, string name, Func<int, string> text, int count, int offset = 0)
    {
        string path = dir.File(name);
        File.WriteAllLines(path, Enumerable.Range(offset, count).Select(i =>
            new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text(i) }) }.ToJsonString()));
        return path;
    }

    static string Orders(int i) => $"Where is my order #{1000 + i}? It was placed on {i % 28 + 1} May and the tracking shows nothing.";
    static string Policies(int i) => i % 2 == 0 ? "What is your return policy for shoes bought on sale?" : $"Can I return an item after {i % 40 + 10} days?";

    [Fact]
    public async Task Serve_routes_requests_for_auto_to_the_adapter_of_the_nearest_prompts()
    {
        using var dir = new TempDirectory();
        string ordersAdapter = ServerTestData.MakeAdapter(dir.File("orders"), 1), policiesAdapter = ServerTestData.MakeAdapter(dir.File("policies"), 2);
        var report = RequestRouterBuilder.Build(new RequestRouterOptions(TinyChatModel.Path,
            [("orders", Prompts(dir, "orders.jsonl", Orders, 20)), ("policies", Prompts(dir, "policies.jsonl", Policies, 20))], dir.File("router.json"),
            Check: [("orders", Prompts(dir, "orders-check.jsonl", Orders, 10, 50)), ("policies", Prompts(dir, "policies-check.jsonl", Policies, 10, 50))], Threads: 2));
        foreach (var (name, prompts, correct) in report.Accuracy) Assert.True(correct == prompts, $"{name}: {correct} of {prompts}");

        await using var server = await TestServer.StartAsync(new ServerOptions
        {
            ModelPath = TinyChatModel.Path, Adapters = [("orders", ordersAdapter), ("policies", policiesAdapter)], Router = dir.File("router.json"),
        });
        var models = (await server.GetAsync("/v1/models")).Json["data"]!.AsArray().Select(m => (string)m!["id"]!).ToList();
        Assert.Contains("auto", models);
        foreach (var (question, adapter) in new[] { (Orders(77), "orders"), (Policies(78), "policies") })
        {
            JsonObject Body(string model) => new()
            {
                ["model"] = model, ["max_tokens"] = 8, ["temperature"] = 0,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question }),
            };
            var routed = await server.PostAsync("/v1/chat/completions", Body("auto"));
            Assert.True(routed.Status == 200, routed.ToString());
            Assert.Equal(adapter, (string)routed.Json["model"]!);
            var direct = await server.PostAsync("/v1/chat/completions", Body(adapter));
            Assert.Equal((string)direct.Json["choices"]![0]!["message"]!["content"]!, (string)routed.Json["choices"]![0]!["message"]!["content"]!);
        }
    }

    [Fact]
    public void The_cli_builds_a_router_and_reports_held_out_accuracy()
    {
        using var dir = new TempDirectory();
        var r = HoneCli.Run("router", "build", TinyChatModel.Path, "--route", $"orders={Prompts(dir, "o.jsonl", Orders, 8)}",
            "--route", $"base={Prompts(dir, "p.jsonl", Policies, 8)}", "--check", $"orders={Prompts(dir, "oc.jsonl", Orders, 4, 30)}",
            "--out", dir.File("router.json"), "--json");
        Assert.True(r.ExitCode == 0, r.ToString());
        var check = JsonNode.Parse(r.Stdout)!["check"]!.AsArray().Single()!;
        Assert.Equal(4, (int)check["prompts"]!);
        Assert.Equal(2, RequestRouter.Load(dir.File("router.json")).Routes.Count);
        var bad = HoneCli.Run("router", "build", TinyChatModel.Path, "--route", "orders", "--route", "x=y", "--out", dir.File("r2.json"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("expected NAME=FILE", bad.Stderr);
    }

    [Fact]
    public async Task A_router_naming_an_adapter_the_server_lacks_stops_the_load_with_a_message()
    {
        using var dir = new TempDirectory();
        new RequestRouter([new RequestRoute("missing", [1f, 0f], 1), new RequestRoute("base", [0f, 1f], 1)]).Save(dir.File("r.json"));
        await using var server = await TestServer.StartAsync(new ServerOptions { ModelPath = TinyChatModel.Path, Router = dir.File("r.json") }, waitReady: false);
        await Assert.ThrowsAnyAsync<Exception>(() => server.Server.Ready.WaitAsync(HangGuard.Limit));
        var reply = await server.GetAsync("/v1/models");
        Assert.Equal(503, reply.Status);
        Assert.Contains("embeddings have 2 values", reply.Text);
    }
}
