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

    [Fact]
    public void Hone_agent_run_takes_a_local_model_as_agent_and_as_customer_and_trials_at_once_change_nothing()
    {
        var built = TinyAgentModel.Instance;
        using var dir = new TempDirectory();
        string[] common = ["agent", "run", built.Data, "--agent", built.Model, "--limit", "2", "--trials", "2", "--max-steps", "3", "--max-tokens", "24", "--threads", "2"];
        var one = HoneCli.Run([.. common, "--out", dir.File("one.json"), "--parallel", "1"]);
        Assert.True(one.ExitCode == 0, one.ToString());
        var four = HoneCli.Run([.. common, "--out", dir.File("four.json"), "--parallel", "4"]);
        Assert.True(four.ExitCode == 0, four.ToString());
        // The same trajectories in the same order, whether the trials ran one by one or four at once in one batch.
        Assert.Equal(File.ReadAllLines(dir.File("one.trajectories.jsonl")).Select(WithoutIds), File.ReadAllLines(dir.File("four.trajectories.jsonl")).Select(WithoutIds));
        var doc = JsonNode.Parse(File.ReadAllText(dir.File("four.json")))!;
        Assert.Equal(built.Model, (string?)doc["agent"]);
        Assert.Equal(4, doc["outcomes"]!.AsArray().SelectMany(o => o!["trials"]!.AsArray()).Count());

        // A model as the customer (ECom-Bench-style persona prompt), against the oracle.
        var customer = HoneCli.Run("agent", "run", built.Data, "--agent", "oracle", "--user", built.Model, "--limit", "1", "--max-steps", "4", "--threads", "2",
            "--out", dir.File("customer.json"));
        Assert.True(customer.ExitCode == 0, customer.ToString());
        Assert.Equal(built.Model, (string?)JsonNode.Parse(File.ReadAllText(dir.File("customer.json")))!["customer"]);

        var badEndpoint = HoneCli.Run("agent", "run", built.Data, "--agent-endpoint", "ftp://x", "--agent-model", "m", "--agent", "ignored", "--out", dir.File("x.json"));
        Assert.Equal(1, badEndpoint.ExitCode);
        Assert.Contains("--agent-endpoint ftp://x", badEndpoint.Stderr);
        var noModel = HoneCli.Run("agent", "run", built.Data, "--agent-endpoint", "http://127.0.0.1:9", "--agent", "x", "--out", dir.File("x.json"));
        Assert.Equal(1, noModel.ExitCode);
        Assert.Contains("--agent-model", noModel.Stderr);
    }

    static string WithoutIds(string line)
    {
        var o = JsonNode.Parse(line)!.AsObject();
        o["messages"] = WithoutCallIds(o["messages"]!.AsArray());
        o.Remove("elapsed_seconds");
        return o.ToJsonString();
    }

    [Fact]
    public async Task The_report_has_an_agent_page_with_pass_hat_k_failures_and_task_kinds()
    {
        using var dir = new TempDirectory();
        string data = dir.File("bench");
        AgentBenchmarkData.Generate(data, new StoreOptions(30, 60, 8, 4), new TaskOptions(40, 4));
        using var benchmark = AgentBenchmarkData.Load(data);
        Directory.CreateDirectory(dir.File("run"));
        var oracle = await AgentBenchmark.RunAsync(benchmark, new AgentRunOptions(Trials: 3), _ => new OracleAgent(), _ => new ScriptedCustomer(), null, default);
        Hone.Evaluation.EvalResults.Write(dir.File("run/eval-oracle.json"), oracle.Document);
        var none = await AgentBenchmark.RunAsync(benchmark, new AgentRunOptions(Trials: 3), _ => new NoneAgent(), _ => new ScriptedCustomer(), null, default);
        Hone.Evaluation.EvalResults.Write(dir.File("run/eval-none.json"), none.Document);
        var report = Hone.Evaluation.Report.RunReport.Write(new Hone.Evaluation.Report.ReportOptions([dir.File("run")], dir.File("report.html"), "agents"));
        string html = File.ReadAllText(report.HtmlPath), md = File.ReadAllText(report.MarkdownPath);
        Assert.Contains("<h2>Agent benchmark</h2>", html);
        Assert.Contains("pass^k: every one of k trials passes", html);
        string kind = oracle.Trials[0].Kind;
        Assert.Contains(kind, html);
        Assert.Contains("## Agent benchmark", md);
        Assert.Contains("wrong_state", md); // the do-nothing agent's failures, by reason
        // The oracle passes every trial of the kind, the do-nothing agent none of them (its tasks here all need a write or a fact).
        Assert.Matches($@"\| {kind} \| (0 / (\d+) \| \2 / \2|(\d+) / \3 \| 0 / \3) \|", md);
    }
}
