using System.Text.Json.Nodes;
using Hone.Agents;
using Hone.Batching;
using Hone.Clients;
using Hone.Evaluation;

namespace Hone.Workflows;

/// <summary>
/// The quickstart's agent benchmark: a small store with its tasks (the short policy: the embedded model's context has no
/// room for the whole document or the tool declarations, which it learns by fine-tuning; calls stay constrained by the
/// tools' schemas), the oracle's conversations on the training tasks as fine-tuning data, and the run on held-out
/// customers before and after fine-tuning.
/// </summary>
internal static class QuickstartAgent
{
    /// <param name="Directory">the benchmark folder</param>
    /// <param name="Trajectories">training conversations (messages with tool calls and results)</param>
    public sealed record Data(string Directory, string Trajectories, int TrainTasks, int TestTasks, int Conversations, int MedianCharacters);

    /// <summary>Trials per held-out task (pass^1..pass^k) and most agent messages per trial. An agent message may run to
    /// <see cref="MaxTokens"/>: the embedded tokenizer, trained on prose, cuts JSON into single characters, so a call to
    /// find_user_id_by_name_zip alone takes about 100 tokens.</summary>
    public const int Trials = 2, MaxSteps = 12, MaxTokens = 192;

    /// <summary>Stores generated with other seeds (other customers, products and orders) whose tasks, training and held-out
    /// alike, add conversations to learn from: with the benchmark's own ~600 conversations an agent learns them rather than
    /// to copy what each customer says (docs/performance.md, 2026-12-06 morning).</summary>
    public const int OtherStores = 20;

    public static Data Prepare(string dir, ulong seed, int threads, Func<int, int, int> s, Action<string> log, CancellationToken cancel)
    {
        string bench = Path.Combine(dir, "bench"), trajectories = Path.Combine(dir, "trajectories.jsonl");
        var kinds = AgentBenchmarkData.Generate(bench, new StoreOptions(Users: s(300, 24), Orders: s(600, 48), Products: s(30, 8), Seed: seed),
            new TaskOptions(Count: s(420, 28), Seed: seed), null, AgentBenchmarkData.ShortPolicy);
        using var data = AgentBenchmarkData.Load(bench);
        // Two conversations per training task, each with another customer persona and wording.
        var stats = AgentTrajectories.WriteAsync(data, new TrajectoryOptions(Split: "train", Trials: 2, Seed: seed, IncludeTools: false), trajectories, null, cancel)
            .GetAwaiter().GetResult();
        var characters = stats.Characters.ToList();
        int records = stats.Records;
        // Each other store on its own (in parallel), joined in store order so that the file is the same on every run.
        var others = new TrajectoryStatistics[OtherStores];
        var files = new string[OtherStores];
        Parallel.For(0, OtherStores, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads), CancellationToken = cancel }, i =>
        {
            ulong otherSeed = seed + 1_000 + (ulong)i;
            string otherBench = Path.Combine(dir, $"other-store-{i + 1}");
            files[i] = Path.Combine(dir, $"other-store-{i + 1}.jsonl");
            AgentBenchmarkData.Generate(otherBench, new StoreOptions(Users: s(300, 24), Orders: s(600, 48), Products: s(30, 8), Seed: otherSeed),
                new TaskOptions(Count: s(420, 28), Seed: otherSeed), null, AgentBenchmarkData.ShortPolicy);
            using (var other = AgentBenchmarkData.Load(otherBench))
            {
                var train = AgentTrajectories.WriteAsync(other, new TrajectoryOptions(Split: "train", Trials: 1, Seed: otherSeed, IncludeTools: false),
                    files[i] + ".train", null, cancel).GetAwaiter().GetResult();
                var test = AgentTrajectories.WriteAsync(other, new TrajectoryOptions(Split: "test", Trials: 1, Seed: otherSeed, IncludeTools: false),
                    files[i] + ".test", null, cancel).GetAwaiter().GetResult();
                others[i] = new TrajectoryStatistics(train.Records + test.Records, train.Failed + test.Failed,
                    [.. train.Characters, .. test.Characters], [.. train.CharactersWithoutSystem, .. test.CharactersWithoutSystem]);
            }
            Directory.Delete(otherBench, recursive: true);
        });
        var text = new System.Text.StringBuilder(File.ReadAllText(trajectories));
        for (int i = 0; i < OtherStores; i++)
        {
            foreach (var part in new[] { files[i] + ".train", files[i] + ".test" })
            {
                text.Append(File.ReadAllText(part));
                File.Delete(part);
            }
            characters.AddRange(others[i].Characters);
            records += others[i].Records;
        }
        Hone.Formats.AtomicFile.WriteAllText(trajectories, text.ToString());
        int median = characters.Count == 0 ? 0 : characters.Order().ElementAt(characters.Count / 2);
        log($"   store of {s(300, 24)} customers and {s(600, 48)} orders; {data.TrainTasks.Count} training tasks, {data.TestTasks.Count} held out (other customers), " +
            $"{kinds.Count(k => k.Value > 0)} kinds");
        log($"   {records:N0} oracle conversations with the simulated customer for fine-tuning (median {median:N0} characters): {stats.Records} on this " +
            $"store's training tasks (two customer personas each), {records - stats.Records:N0} on the tasks of {OtherStores} other generated stores (other customers and orders)");
        return new Data(bench, trajectories, data.TrainTasks.Count, data.TestTasks.Count, records, median);
    }

    /// <summary>Runs the held-out tasks with the model (and adapter) as the agent; returns the results record.</summary>
    public static JsonObject Evaluate(string model, string? adapter, string name, Data agent, ulong seed, int threads, Func<int, int, int> s, string trajectoriesOut,
        Action<string> log, CancellationToken cancel)
    {
        using var data = AgentBenchmarkData.Load(agent.Directory);
        var adapters = adapter == null ? [] : new[] { ("adapter", adapter) };
        using var engine = BatchEngine.Open(model, adapters, new EngineOptions { Parallel = 8, Threads = threads });
        using var client = new HoneChatClient(engine);
        var options = new ChatClientAgentOptions(name, adapter == null ? null : "adapter", Temperature: 0,
            MaxOutputTokens: MaxTokens, ToolsInPrompt: false);
        int limit = Math.Min(s(60, 6), data.TestTasks.Count);
        var result = AgentBenchmark.RunAsync(data, new AgentRunOptions("test", Trials, seed, limit, MaxSteps, trajectoriesOut, Parallel: 8),
            _ => new ChatClientAgent(client, options), _ => new ScriptedCustomer(), null, cancel).GetAwaiter().GetResult();
        var record = (JsonObject)result.Document["results"]![0]!.DeepClone();
        record["task"] = "agent_retail";
        record["description"] = "held-out customers of the store served by the model as a tool-calling agent (τ-bench retail semantics, simulated customer)";
        record["protocol"]!["policy"] = "short (PolicyShort.md); tools not in the prompt, calls constrained by their schemas";
        record["protocol"]!["sampling"] = "greedy";
        var reasons = result.Trials.Where(t => !t.Passed).GroupBy(t => t.FailureReason!).Select(g => $"{g.Key} {g.Count()}");
        log($"     agent_retail: pass^1 {result.PassHat[1].Value:0.####}, pass^{Trials} {result.PassHat[Trials].Value:0.####} " +
            $"({limit} held-out tasks × {Trials} trials; failures: {string.Join(", ", reasons.DefaultIfEmpty("none"))})");
        return record;
    }

    /// <summary>Adds the agent record to an eval results file (so the report compares it before and after).</summary>
    public static void Append(string resultsPath, JsonObject record)
    {
        var records = EvalResults.Read(resultsPath).Select(r => (JsonObject)r.DeepClone()).ToList();
        records.RemoveAll(r => (string?)r["task"] == (string?)record["task"]);
        records.Add(record);
        EvalResults.Write(resultsPath, EvalResults.Document(records));
    }
}
