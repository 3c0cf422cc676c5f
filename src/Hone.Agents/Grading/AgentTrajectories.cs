using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Agents;

/// <param name="Split">the tasks to turn into conversations: "train"; "test" is the benchmark's held-out set, refused
/// unless <paramref name="AllowTestSplit"/></param>
/// <param name="Trials">conversations tried per task, each with another customer persona and wording (its seed)</param>
/// <param name="Limit">only the first N tasks of the split</param>
/// <param name="IncludeTools">write the tool schemas as each record's "tools" (OpenAI's shape), so chat templates that
/// render tools show them; off for small contexts</param>
/// <param name="MaxSteps">agent messages per trial before it fails with step_limit</param>
/// <param name="Parallel">trials run at once; the file and the report do not depend on it</param>
/// <param name="AllowTestSplit">write conversations of the held-out tasks anyway (another store's, say, which holds out
/// nothing of the benchmark being measured)</param>
/// <param name="Dedup">drop a passing conversation identical to one already kept (tool call ids aside)</param>
/// <param name="Report">also write the report here (JSON), committed together with the output</param>
public sealed record TrajectoryOptions(string Split = "train", int Trials = 1, ulong Seed = 1234, int? Limit = null, bool IncludeTools = true,
    int MaxSteps = 30, int Parallel = 1, bool AllowTestSplit = false, bool Dedup = true, string? Report = null);

/// <summary>One task's trials and how many of its conversations were kept.</summary>
public sealed record TrajectoryTaskCount(string TaskId, string Kind, int Generated, int Kept);

/// <summary>
/// What a trajectory run did: every trial (generated) is kept or dropped for exactly one reason — the grader's failure
/// reason (<see cref="FailureReasons"/>) for a failing trial, duplicate_exact for a passing one identical to a kept one —
/// so kept + Σ dropped = generated, and the per-task kept counts add up to kept. Characters: the length of each kept
/// conversation (message texts and call JSON), with and without the system policy.
/// </summary>
public sealed record TrajectoryReport(string Split, int Tasks, int TrialsPerTask, int Generated, int Kept, IReadOnlyDictionary<string, int> Dropped,
    IReadOnlyList<TrajectoryTaskCount> PerTask, IReadOnlyList<string> DropExamples, string Teacher, string Customer, string Output, double Seconds,
    IReadOnlyList<int> Characters, IReadOnlyList<int> CharactersWithoutSystem)
{
    public int DroppedTotal => Dropped.Values.Sum();

    /// <summary>Trials the grader failed (every drop but duplicates).</summary>
    public int FailedGrade => Dropped.Where(d => d.Key != AgentTrajectories.DuplicateExact).Sum(d => d.Value);

    public JsonObject ToJson()
    {
        var dropped = new JsonObject();
        foreach (var (k, v) in Dropped) dropped[k] = v;
        var kinds = new JsonObject();
        foreach (var g in PerTask.GroupBy(t => t.Kind).OrderBy(g => g.Key, StringComparer.Ordinal))
            kinds[g.Key] = new JsonObject { ["tasks"] = g.Count(), ["generated"] = g.Sum(t => t.Generated), ["kept"] = g.Sum(t => t.Kept) };
        return new JsonObject
        {
            ["split"] = Split, ["tasks"] = Tasks, ["trials_per_task"] = TrialsPerTask, ["generated"] = Generated, ["kept"] = Kept,
            ["dropped_total"] = DroppedTotal, ["dropped"] = dropped, ["tasks_with_kept"] = PerTask.Count(t => t.Kept > 0), ["kinds"] = kinds,
            ["per_task"] = new JsonArray(PerTask.Select(t => (JsonNode)new JsonObject
            {
                ["task_id"] = t.TaskId, ["kind"] = t.Kind, ["generated"] = t.Generated, ["kept"] = t.Kept,
            }).ToArray()),
            ["drop_examples"] = new JsonArray(DropExamples.Select(e => (JsonNode)JsonValue.Create(e)).ToArray()),
            ["characters"] = Quantiles(Characters), ["characters_without_system"] = Quantiles(CharactersWithoutSystem),
            ["teacher"] = Teacher, ["customer"] = Customer, ["output"] = Output, ["seconds"] = Math.Round(Seconds, 2),
        };
    }

    /// <summary>The q-quantile of the kept conversations' lengths (nearest rank below; 0 when none was kept).</summary>
    public static int Quantile(IReadOnlyList<int> lengths, double q)
    {
        if (lengths.Count == 0) return 0;
        var sorted = lengths.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)(q * sorted.Count))];
    }

    static JsonObject Quantiles(IReadOnlyList<int> xs) => new() { ["median"] = Quantile(xs, 0.5), ["p90"] = Quantile(xs, 0.9), ["max"] = xs.Count == 0 ? 0 : xs.Max() };

    public override string ToString()
    {
        var b = new StringBuilder();
        b.AppendLine($"{Generated:N0} conversations from {Tasks:N0} {Split} tasks × {TrialsPerTask} trials (teacher {Teacher}, customer {Customer}) in " +
                     $"{Seconds.ToString("F1", CultureInfo.InvariantCulture)} s: {Kept:N0} kept → {Output} ({PerTask.Count(t => t.Kept > 0):N0} tasks with one or more), {DroppedTotal:N0} dropped");
        foreach (var (reason, n) in Dropped.Where(d => d.Value > 0)) b.AppendLine($"  {reason,-28} {n,6:N0}");
        if (Kept > 0)
            b.AppendLine($"  characters (messages): median {Quantile(Characters, 0.5)}, p90 {Quantile(Characters, 0.9)}, max {Characters.Max()}; " +
                         $"without the system policy: median {Quantile(CharactersWithoutSystem, 0.5)}, p90 {Quantile(CharactersWithoutSystem, 0.9)}, max {CharactersWithoutSystem.Max()}");
        foreach (var e in DropExamples.Take(6)) b.AppendLine($"  e.g. {e}");
        return b.ToString().TrimEnd();
    }
}

/// <summary>
/// Training conversations for supervised fine-tuning, verified by the benchmark's grader: a teacher agent (the oracle,
/// a stronger model, any <see cref="IAgent"/>) talks with the customer on each task of the split for a number of
/// trials; each trial is graded (final database against the gold actions', facts told, lookups made) and only passing
/// ones are written, up to the agent's last turn, as {"messages": [system, user, assistant (tool_calls), tool, …],
/// "tools": […]} — the OpenAI shape ChatConversation reads for tool-aware training data. The oracle's run (every trial
/// passes) is one case of it.
/// </summary>
public static class AgentTrajectories
{
    public const string DuplicateExact = "duplicate_exact";

    /// <summary>Drop reasons in report order: the grader's, then duplicates of a kept conversation (checked only for passing trials).</summary>
    public static readonly IReadOnlyList<string> DropReasons =
        [FailureReasons.WrongState, FailureReasons.MissingFact, FailureReasons.MissingLookup, FailureReasons.StepLimit, FailureReasons.Error, DuplicateExact];

    /// <summary>When each of the first this many trials fails with an error (an exception from the agent: an unreachable
    /// endpoint, a prompt longer than the model's context), the run stops with it: a setup problem, not data to count.</summary>
    public const int FailFastErrors = 5;

    const int MaxDropExamples = 3;

    /// <summary>Refuses the test split (the benchmark's held-out tasks: training on them contaminates every later run on
    /// them) unless <see cref="TrajectoryOptions.AllowTestSplit"/>.</summary>
    public static void CheckSplit(AgentBenchmarkData data, TrajectoryOptions options)
    {
        if (options.Split == "test" && !options.AllowTestSplit)
            throw new ArgumentException($"split 'test' of {data.Directory} is the benchmark's held-out set: conversations on its tasks would contaminate " +
                                        "every later hone agent run on it; use --split train, or --allow-test-split where that set holds nothing out");
    }

    /// <summary>The oracle with the scripted customer.</summary>
    public static Task<TrajectoryReport> WriteAsync(AgentBenchmarkData data, TrajectoryOptions options, string outPath, Action<int, int>? progress,
        CancellationToken cancel) =>
        WriteAsync(data, options, outPath, _ => new OracleAgent(), _ => new ScriptedCustomer(), progress, cancel);

    public static async Task<TrajectoryReport> WriteAsync(AgentBenchmarkData data, TrajectoryOptions options, string outPath,
        Func<AgentContext, IAgent> teacher, Func<AgentContext, ICustomer> customers, Action<int, int>? progress, CancellationToken cancel)
    {
        CheckSplit(data, options);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tasks = data.Tasks(options.Split);
        if (options.Limit is int limit) tasks = tasks.Take(limit).ToList();
        var tools = options.IncludeTools ? AgentBenchmark.OpenAiTools(StoreTools.Specs) : null;
        var lengths = new List<int>();
        var withoutSystem = new List<int>();
        var dropped = DropReasons.ToDictionary(r => r, _ => 0);
        var keptPerTask = new Dictionary<string, int>();
        var generatedPerTask = new Dictionary<string, int>();
        var perReasonExamples = new Dictionary<string, int>();
        var examples = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int generated = 0, kept = 0;
        string teacherName = "", customerName = "";

        using var pending = AtomicFile.Begin(outPath);
        using var reportFile = options.Report is string reportPath ? AtomicFile.Begin(reportPath) : null;
        var writer = new StreamWriter(pending.Stream, new UTF8Encoding(false), -1, leaveOpen: true) { NewLine = "\n" };
        void Drop(string reason, Trajectory trajectory, string? detail)
        {
            dropped[reason]++;
            if (perReasonExamples.GetValueOrDefault(reason) >= MaxDropExamples) return;
            perReasonExamples[reason] = perReasonExamples.GetValueOrDefault(reason) + 1;
            examples.Add($"{trajectory.Task.Id} trial {trajectory.Outcome.Trial} ({reason}): {detail}");
        }

        var runOptions = new AgentRunOptions(options.Split, options.Trials, options.Seed, options.Limit, options.MaxSteps, Parallel: options.Parallel);
        // Called under the runner's lock, in task and trial order whatever the parallelism: the file is the same either way.
        await AgentBenchmark.RunAsync(data, runOptions, teacher, customers, progress, cancel, trajectory =>
        {
            generated++;
            (teacherName, customerName) = (trajectory.Agent, trajectory.Customer);
            generatedPerTask[trajectory.Task.Id] = generatedPerTask.GetValueOrDefault(trajectory.Task.Id) + 1;
            var outcome = trajectory.Outcome;
            if (!outcome.Passed)
            {
                if (outcome.FailureReason == FailureReasons.Error && generated == FailFastErrors && dropped[FailureReasons.Error] == FailFastErrors - 1)
                    throw new InvalidOperationException($"the teacher failed with an error on each of the first {FailFastErrors} trials; the last: {outcome.Detail}");
                Drop(outcome.FailureReason!, trajectory, outcome.Detail);
                return;
            }
            var messages = Trimmed(trajectory.Messages);
            if (options.Dedup && !seen.Add(WithoutCallIds(messages).ToJsonString()))
            {
                Drop(DuplicateExact, trajectory, "the same conversation as a kept one");
                return;
            }
            var record = new JsonObject { ["messages"] = messages };
            if (tools != null) record["tools"] = tools.DeepClone();
            writer.WriteLine(record.ToJsonString());
            kept++;
            keptPerTask[trajectory.Task.Id] = keptPerTask.GetValueOrDefault(trajectory.Task.Id) + 1;
            lengths.Add(messages.Sum(m => ((string?)m!["content"])?.Length ?? 0) + messages.Sum(m => m!["tool_calls"]?.ToJsonString().Length ?? 0));
            withoutSystem.Add(lengths[^1] - (((string?)messages[0]!["content"])?.Length ?? 0));
        }).ConfigureAwait(false);
        writer.Dispose();

        var perTask = tasks.Select(t => new TrajectoryTaskCount(t.Id, t.Kind, generatedPerTask.GetValueOrDefault(t.Id), keptPerTask.GetValueOrDefault(t.Id))).ToList();
        var report = new TrajectoryReport(options.Split, tasks.Count, options.Trials, generated, kept, dropped, perTask, examples, teacherName, customerName,
            outPath, clock.Elapsed.TotalSeconds, lengths, withoutSystem);
        if (generated != tasks.Count * options.Trials || kept + report.DroppedTotal != generated || perTask.Sum(t => t.Kept) != kept)
            throw new InvalidOperationException($"the counts do not add up: {kept} kept + {report.DroppedTotal} dropped, {generated} generated, " +
                                                $"{tasks.Count} tasks × {options.Trials} trials");
        if (reportFile != null)
            reportFile.Stream.Write(Encoding.UTF8.GetBytes(report.ToJson().ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = Hone.DataTools.DataJson.Readable.Encoder }) + "\n"));
        pending.Commit();
        reportFile?.Commit();
        return report;
    }

    /// <summary>The conversation up to the agent's last turn: what follows it (the customer's goodbye with the simulator's
    /// stop marker, or the transfer's tool result) teaches nothing.</summary>
    static JsonArray Trimmed(JsonArray conversation)
    {
        var messages = (JsonArray)conversation.DeepClone();
        while (messages.Count > 0 && (string?)messages[^1]!["role"] != "assistant") messages.RemoveAt(messages.Count - 1);
        return messages;
    }

    /// <summary>The messages without the ids a client makes up for calls, which differ between identical conversations.</summary>
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
}
