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
        // The benchmark's store and every other store: the same sizes, another seed.
        Dictionary<string, int> GenerateStore(string folder, ulong storeSeed) => AgentBenchmarkData.Generate(folder,
            new StoreOptions(Users: s(300, 24), Orders: s(600, 48), Products: s(30, 8), Seed: storeSeed),
            new TaskOptions(Count: s(420, 28), Seed: storeSeed), null, AgentBenchmarkData.ShortPolicy);
        var kinds = GenerateStore(bench, seed);
        using var data = AgentBenchmarkData.Load(bench);
        // Two conversations per training task, each with another customer persona and wording. Duplicates stay (3 of the
        // default run's 596 repeat one another): the quickstart's measured data and results are kept as they were.
        var stats = AgentTrajectories.WriteAsync(data, new TrajectoryOptions(Split: "train", Trials: 2, Seed: seed, IncludeTools: false, Dedup: false), trajectories, null, cancel)
            .GetAwaiter().GetResult();
        var characters = stats.Characters.ToList();
        int records = stats.Kept;
        // Each other store on its own (in parallel), joined in store order so that the file is the same on every run.
        string[] splits = ["train", "test"];
        string Part(int store, string split) => Path.Combine(dir, $"other-store-{store + 1}.{split}.jsonl");
        var others = new TrajectoryReport[OtherStores, splits.Length];
        Parallel.For(0, OtherStores, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads), CancellationToken = cancel }, i =>
        {
            ulong otherSeed = seed + 1_000 + (ulong)i;
            string otherBench = Path.Combine(dir, $"other-store-{i + 1}");
            GenerateStore(otherBench, otherSeed);
            using (var other = AgentBenchmarkData.Load(otherBench))
                for (int k = 0; k < splits.Length; k++)
                    // Another store's held-out tasks hold nothing of this benchmark out.
                    others[i, k] = AgentTrajectories.WriteAsync(other, new TrajectoryOptions(Split: splits[k], Trials: 1, Seed: otherSeed, IncludeTools: false, AllowTestSplit: true, Dedup: false),
                        Part(i, splits[k]), null, cancel).GetAwaiter().GetResult();
            Directory.Delete(otherBench, recursive: true);
        });
        var text = new System.Text.StringBuilder(File.ReadAllText(trajectories));
        for (int i = 0; i < OtherStores; i++)
            for (int k = 0; k < splits.Length; k++)
            {
                text.Append(File.ReadAllText(Part(i, splits[k])));
                File.Delete(Part(i, splits[k]));
                characters.AddRange(others[i, k].Characters);
                records += others[i, k].Kept;
            }
        Hone.Formats.AtomicFile.WriteAllText(trajectories, text.ToString());
        int median = characters.Count == 0 ? 0 : characters.Order().ElementAt(characters.Count / 2);
        log($"   store of {s(300, 24)} customers and {s(600, 48)} orders; {data.TrainTasks.Count} training tasks, {data.TestTasks.Count} held out (other customers), " +
            $"{kinds.Count(k => k.Value > 0)} kinds");
        log($"   {records:N0} oracle conversations with the simulated customer for fine-tuning (median {median:N0} characters): {stats.Kept} on this " +
            $"store's training tasks (two customer personas each), {records - stats.Kept:N0} on the tasks of {OtherStores} other generated stores (other customers and orders)");
        return new Data(bench, trajectories, data.TrainTasks.Count, data.TestTasks.Count, records, median);
    }

    /// <summary>Runs the held-out tasks with the model as the agent (<paramref name="name"/> in the results); returns the
    /// results record.</summary>
    public static JsonObject Evaluate(string model, string name, Data agent, ulong seed, int threads, Func<int, int, int> s, string trajectoriesOut,
        Action<string> log, CancellationToken cancel)
    {
        using var data = AgentBenchmarkData.Load(agent.Directory);
        using var engine = BatchEngine.Open(model, [], new EngineOptions { Parallel = 8, Threads = threads });
        using var client = new HoneChatClient(engine);
        var options = new ChatClientAgentOptions(name, null, Temperature: 0, MaxOutputTokens: MaxTokens, ToolsInPrompt: false);
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
