using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Agents;

/// <param name="Split">the tasks to turn into conversations ("train" for training data)</param>
/// <param name="Trials">conversations per task, each with another customer persona and wording (its seed)</param>
/// <param name="IncludeTools">write the tool schemas as each record's "tools" (OpenAI's shape), so chat templates that
/// render tools show them; off for small contexts</param>
public sealed record TrajectoryOptions(string Split = "train", int Trials = 1, ulong Seed = 1234, int? Limit = null, bool IncludeTools = true);

/// <summary>What was written: records, and the length of each in characters.</summary>
public sealed record TrajectoryStatistics(int Records, int Failed, IReadOnlyList<int> Characters, IReadOnlyList<int> CharactersWithoutSystem);

/// <summary>
/// Training conversations for supervised fine-tuning: the oracle's conversation with the scripted customer, tool calls
/// and results up to the agent's last turn, as {"messages": [system, user, assistant (tool_calls), tool, …], "tools": […]} — the OpenAI shape
/// ChatConversation reads for tool-aware training data. Only passing trials are written (all of them, for the oracle).
/// </summary>
public static class AgentTrajectories
{
    public static async Task<TrajectoryStatistics> WriteAsync(AgentBenchmarkData data, TrajectoryOptions options, string outPath, Action<int, int>? progress,
        CancellationToken cancel)
    {
        var tools = options.IncludeTools ? AgentBenchmark.OpenAiTools(StoreTools.Specs) : null;
        var text = new StringBuilder();
        var lengths = new List<int>();
        var withoutSystem = new List<int>();
        int failed = 0;
        var runOptions = new AgentRunOptions(options.Split, options.Trials, options.Seed, options.Limit);
        await AgentBenchmark.RunAsync(data, runOptions, _ => new OracleAgent(), _ => new ScriptedCustomer(), progress, cancel, trajectory =>
        {
            if (!trajectory.Outcome.Passed) { failed++; return; }
            var messages = (JsonArray)trajectory.Messages.DeepClone();
            // Training teaches the agent's turns: what follows its last one (the customer's goodbye with the simulator's
            // stop marker, or the transfer's tool result) teaches nothing.
            while (messages.Count > 0 && (string?)messages[^1]!["role"] != "assistant") messages.RemoveAt(messages.Count - 1);
            var record = new JsonObject { ["messages"] = messages };
            if (tools != null) record["tools"] = tools.DeepClone();
            string line = record.ToJsonString();
            text.Append(line).Append('\n');
            lengths.Add(messages.Sum(m => ((string?)m!["content"])?.Length ?? 0) + messages.Sum(m => m!["tool_calls"]?.ToJsonString().Length ?? 0));
            withoutSystem.Add(lengths[^1] - (((string?)messages[0]!["content"])?.Length ?? 0));
        });
        AtomicFile.WriteAllText(outPath, text.ToString());
        return new TrajectoryStatistics(lengths.Count, failed, lengths, withoutSystem);
    }
}
