using System.Text.Json.Nodes;
using Hone.Tests.Infrastructure;
using Xunit;

namespace Hone.Tests.Agents;

public sealed class AgentCommandTests
{
    [Fact]
    public void Data_then_run_oracle_and_none_then_trajectories_end_to_end()
    {
        string dir = Path.Combine(Path.GetTempPath(), "hone-agent-cli-" + Guid.NewGuid().ToString("N"));
        try
        {
            var data = HoneCli.Run("agent", "data", "--out", dir, "--users", "40", "--orders", "100", "--products", "12", "--tasks", "28", "--seed", "7");
            Assert.True(data.ExitCode == 0, data.ToString());
            Assert.Contains("refuse_other_users_order", data.Stdout);
            foreach (var f in new[] { "store.sqlite", "policy.md", "tasks_train.jsonl", "tasks_test.jsonl", "manifest.json" }) Assert.True(File.Exists(Path.Combine(dir, f)), f);

            string results = Path.Combine(dir, "oracle.json");
            var run = HoneCli.Run("agent", "run", dir, "--agent", "oracle", "--trials", "2", "--out", results);
            Assert.True(run.ExitCode == 0, run.ToString());
            var doc = JsonNode.Parse(File.ReadAllText(results))!;
            Assert.Equal("hone-eval-results", (string?)doc["format"]);
            Assert.Equal(1.0, (double)doc["pass_hat_k"]!["1"]!);
            Assert.Equal(1.0, (double)doc["pass_hat_k"]!["2"]!);
            Assert.Equal(1.0, (double)doc["pass_at_k"]!["2"]!);
            Assert.Equal(2, (int)doc["trials"]!);
            int tasks = (int)doc["tasks"]!;
            Assert.True(tasks > 0);
            Assert.Equal(tasks, doc["outcomes"]!.AsArray().Count);
            Assert.Equal("agent", (string?)doc["results"]![0]!["kind"]);
            Assert.Equal(tasks * 2, File.ReadAllLines(Path.Combine(dir, "oracle.trajectories.jsonl")).Length);

            var none = HoneCli.Run("agent", "run", dir, "--agent", "none", "--split", "train", "--limit", "5", "--out", Path.Combine(dir, "none.json"), "--json");
            Assert.True(none.ExitCode == 0, none.ToString());
            Assert.Equal(0.0, (double)JsonNode.Parse(none.Stdout)!["pass_hat_k"]!["1"]!);

            var sft = HoneCli.Run("agent", "trajectories", dir, "--split", "train", "--out", Path.Combine(dir, "sft.jsonl"));
            Assert.True(sft.ExitCode == 0, sft.ToString());
            Assert.Contains("conversations written", sft.Stdout);

            var missing = HoneCli.Run("agent", "run", Path.Combine(dir, "nope"), "--agent", "oracle", "--out", Path.Combine(dir, "x.json"));
            Assert.Equal(1, missing.ExitCode);
            Assert.Contains("benchmark folder not found", missing.Stderr);
            File.AppendAllText(Path.Combine(dir, "tasks_test.jsonl"), "{\"id\": 1}\n");
            var damaged = HoneCli.Run("agent", "run", dir, "--agent", "oracle", "--out", Path.Combine(dir, "x.json"));
            Assert.Equal(1, damaged.ExitCode);
            Assert.Contains("tasks_test.jsonl:", damaged.Stderr);
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }
}
