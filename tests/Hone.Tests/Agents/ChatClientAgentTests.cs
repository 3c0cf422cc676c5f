using System.Text.Json.Nodes;
using Hone.Agents;
using Hone.Batching;
using Hone.Clients;
using Hone.Server;
using Hone.Tests.Infrastructure;
using Hone.Tests.Server;
using Xunit;
using Xunit.Abstractions;

namespace Hone.Tests.Agents;

public class ChatClientAgentTests(ITestOutputHelper output)
{
    static AgentRunOptions Run(string trajectories) => new(Split: "test", Trials: 1, Seed: 9, Limit: 4, MaxSteps: 8, TrajectoriesPath: trajectories);

    /// <summary>Messages without the ids a client makes up for calls (they differ between clients by design).</summary>
    static JsonArray WithoutCallIds(JsonArray messages)
    {
        var copy = (JsonArray)messages.DeepClone();
        foreach (var m in copy.OfType<JsonObject>())
        {
            m.Remove("tool_call_id");
            if (m["tool_calls"] is JsonArray calls) foreach (var c in calls.OfType<JsonObject>()) c.Remove("id");
        }
        return copy;
    }

    [Fact]
    public async Task A_local_model_and_the_same_model_behind_hone_serve_hold_the_same_greedy_conversations_and_grades()
    {
        var built = TinyAgentModel.Instance;
        using var dir = new TempDirectory();
        using var data = AgentBenchmarkData.Load(built.Data);
        var options = new ChatClientAgentOptions("tiny", MaxOutputTokens: 96);

        AgentRunResult local;
        using (var client = new HoneChatClient(BatchEngine.Open(built.Model, [], new EngineOptions { Parallel = 2, Context = TinyAgentModel.Context, Threads = 2 }), ownsEngine: true))
            local = await AgentBenchmark.RunAsync(data, Run(dir.File("local.jsonl")), _ => new ChatClientAgent(client, options), _ => new ScriptedCustomer(), null, default);

        AgentRunResult served;
        await using (var server = await TestServer.StartAsync(new ServerOptions { ModelPath = built.Model, Context = TinyAgentModel.Context, Parallel = 2 }))
        {
            using var endpoint = OpenAiEndpoint.CreateChatClient(server.Address, server.ModelName);
            served = await AgentBenchmark.RunAsync(data, Run(dir.File("served.jsonl")), _ => new ChatClientAgent(endpoint, options with { Name = "served" }), _ => new ScriptedCustomer(), null, default);
        }

        var a = File.ReadLines(dir.File("local.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var b = File.ReadLines(dir.File("served.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(a.Count, b.Count);
        int calls = 0;
        for (int i = 0; i < a.Count; i++)
        {
            var ma = WithoutCallIds(a[i]["messages"]!.AsArray());
            var mb = WithoutCallIds(b[i]["messages"]!.AsArray());
            string shown = new JsonArray(ma.Skip(1).Select(m => m!.DeepClone()).ToArray()).ToJsonString();
            output.WriteLine(shown[..Math.Min(1500, shown.Length)]);
            for (int j = 0; j < Math.Min(ma.Count, mb.Count); j++)
                if (ma[j]!.ToJsonString() != mb[j]!.ToJsonString())
                {
                    output.WriteLine($"trajectory {i}, message {j}:\n local  {ma[j]!.ToJsonString()}\n served {mb[j]!.ToJsonString()}");
                    break;
                }
            Assert.Equal(ma.ToJsonString(), mb.ToJsonString());
            calls += ma.OfType<JsonObject>().Count(m => m["tool_calls"] is JsonArray);
        }
        Assert.True(calls > 0, "the fine-tuned model made no tool call: the comparison would not cover calls and their results");
        Assert.Equal(local.Trials.Select(t => (t.TaskId, t.Passed, t.FailureReason)), served.Trials.Select(t => (t.TaskId, t.Passed, t.FailureReason)));
        Assert.Equal(local.PassHat[1].Value, served.PassHat[1].Value);
    }
}
