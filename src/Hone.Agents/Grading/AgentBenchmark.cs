using System.Text;
using System.Text.Json.Nodes;
using Hone.Evaluation;
using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <summary>One trial's outcome: passed, or the reason it failed (<see cref="FailureReasons"/>), with the checks.</summary>
public sealed record TrialOutcome(string TaskId, string Kind, int Trial, ulong Seed, bool Passed, string? FailureReason, string? Detail,
    bool StateMatches, IReadOnlyList<string> MissingFacts, IReadOnlyList<ToolCall> MissingReads, int Steps, bool Transferred);

/// <summary>One trial as it happened: the outcome, the conversation (OpenAI-style messages: system, user, assistant with
/// tool_calls, tool) and the hashes compared.</summary>
public sealed record Trajectory(AgentTask Task, TrialOutcome Outcome, JsonArray Messages, string ExpectedHash, string FinalHash, string Agent, string Customer);

/// <summary>A whole run: every trial's outcome, pass^k and pass@k for k = 1..trials (mean over tasks, standard error
/// over tasks), and the results document in Hone's eval results shape (<see cref="Document"/>).</summary>
public sealed record AgentRunResult(IReadOnlyList<TrialOutcome> Trials, IReadOnlyDictionary<int, (double Value, double? StandardError)> PassHat,
    IReadOnlyDictionary<int, (double Value, double? StandardError)> PassAt, JsonObject Document);

/// <summary>
/// Runs the benchmark: for every task of the split and every trial, a fresh copy of the store, an agent and a customer
/// from the factories, the conversation until the customer stops, the agent transfers, or the step limit; then grading
/// (<see cref="AgentGrader"/>). Any <see cref="IAgent"/>/<see cref="ICustomer"/> plugs in. Trials run one after another.
/// </summary>
public static class AgentBenchmark
{
    public const string StandardErrorMethod = "analytical: standard error of the mean of the per-task unbiased estimates over tasks";

    /// <summary>The seed of trial <paramref name="trial"/> of a task: the run's seed mixed with the task id and the trial
    /// (FNV-1a and SplitMix64), so a task's trials differ and a run is reproducible.</summary>
    public static ulong TrialSeed(ulong seed, string taskId, int trial)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (char c in taskId) h = (h ^ c) * 0x100000001b3UL;
        ulong z = seed ^ h ^ ((ulong)trial * 0x9E3779B97F4A7C15UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static async Task<AgentRunResult> RunAsync(AgentBenchmarkData data, AgentRunOptions options, Func<AgentContext, IAgent> agents,
        Func<AgentContext, ICustomer> customers, Action<int, int>? progress, CancellationToken cancel, Action<Trajectory>? onTrajectory = null)
    {
        if (options.Trials < 1) throw new ArgumentException($"--trials must be at least 1, got {options.Trials}");
        if (options.MaxSteps < 1) throw new ArgumentException($"the step limit must be at least 1, got {options.MaxSteps}");
        var tasks = data.Tasks(options.Split);
        if (options.Limit is int limit) tasks = tasks.Take(limit).ToList();
        if (tasks.Count == 0) throw new ArgumentException($"split '{options.Split}' of {data.Directory} has no tasks");
        var started = DateTime.UtcNow;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var outcomes = new List<TrialOutcome>();
        string agentName = "", customerName = "";
        using var trajectories = options.TrajectoriesPath is string path ? Formats.AtomicFile.Begin(path) : null;
        var trajectoryWriter = trajectories is null ? null : new StreamWriter(trajectories.Stream, new UTF8Encoding(false), -1, leaveOpen: true) { NewLine = "\n" };
        int done = 0, total = tasks.Count * options.Trials;
        if (options.Parallel < 1) throw new ArgumentException($"--parallel must be at least 1, got {options.Parallel}");
        progress?.Invoke(0, total);
        var expected = tasks.Select(t => AgentGrader.ExpectedHash(data.Store, t)).ToArray();
        var finished = new Trajectory?[total];
        int written = 0;
        var gate = new object();
        // Trajectories are reported and written in task and trial order, whichever trial ends first.
        void Finished(int index, Trajectory trajectory)
        {
            lock (gate)
            {
                finished[index] = trajectory;
                for (; written < total && finished[written] is { } next; written++)
                {
                    agentName = next.Agent;
                    customerName = next.Customer;
                    outcomes.Add(next.Outcome);
                    trajectoryWriter?.WriteLine(TrajectoryJson(next).ToJsonString());
                    onTrajectory?.Invoke(next);
                    finished[written] = null;
                }
                progress?.Invoke(++done, total);
            }
        }
        await Parallel.ForEachAsync(Enumerable.Range(0, total), new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancel },
            async (index, token) =>
            {
                int t = index / options.Trials, trial = index % options.Trials;
                var task = tasks[t];
                var trajectory = await RunTrialAsync(data, task, trial, TrialSeed(options.Seed, task.Id, trial), expected[t], options.MaxSteps, agents, customers, token);
                Finished(index, trajectory);
            });
        // The writer leaves the pending file's stream open; disposing it flushes, and the commit closes and renames.
        trajectoryWriter?.Dispose();
        trajectories?.Commit();
        return Summarize(data, options, tasks, outcomes, agentName, customerName, started, clock.Elapsed.TotalSeconds);
    }

    /// <summary>One trial: the conversation on a fresh copy of the store, then its grade.</summary>
    public static async Task<Trajectory> RunTrialAsync(AgentBenchmarkData data, AgentTask task, int trial, ulong seed, string expectedHash, int maxSteps,
        Func<AgentContext, IAgent> agents, Func<AgentContext, ICustomer> customers, CancellationToken cancel)
    {
        var context = new AgentContext(task, trial, seed, data.Policy, StoreTools.Specs);
        var agent = agents(context);
        var customer = customers(context);
        using var store = data.Store.Copy();
        var conversation = new List<ChatMessage> { new(ChatRole.System, data.Policy) };
        var transcript = new List<(string Role, string Text)>();
        int steps = 0, customerTurns = 0;
        bool stepLimit = false, transferred = false;
        string? error = null;
        try
        {
            string words = await customer.RespondAsync(context, transcript, cancel);
            while (true)
            {
                customerTurns++;
                transcript.Add(("user", words));
                conversation.Add(new ChatMessage(ChatRole.User, words));
                if (words.Contains(CustomerMarkers.Stop, StringComparison.Ordinal)) break;
                if (customerTurns > 2 * maxSteps) { stepLimit = true; break; }
                bool toCustomer = false;
                while (!toCustomer && !transferred)
                {
                    if (steps >= maxSteps) { stepLimit = true; break; }
                    steps++;
                    var reply = await agent.RespondAsync(context, conversation, cancel);
                    var message = new ChatMessage(ChatRole.Assistant, reply.Contents.Where(c => c is TextContent or FunctionCallContent).ToList());
                    conversation.Add(message);
                    if (message.Text.Length > 0) transcript.Add(("assistant", message.Text));
                    var calls = message.Contents.OfType<FunctionCallContent>().ToList();
                    if (calls.Count == 0) toCustomer = true;
                    foreach (var call in calls)
                    {
                        string result = Run(store, call);
                        conversation.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, result)]));
                        if (StoreTools.Find(call.Name)?.EndsEpisode == true && !result.StartsWith("Error:", StringComparison.Ordinal)) transferred = true;
                    }
                }
                if (stepLimit || transferred) break;
                words = await customer.RespondAsync(context, transcript, cancel);
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested) { throw; }
        catch (Exception e) { error = $"{e.GetType().Name}: {e.Message}"; }

        var view = new ConversationView(conversation);
        string finalHash = store.Hash();
        bool state = finalHash == expectedHash;
        var facts = AgentGrader.MissingFacts(task, view.AgentTexts);
        var reads = AgentGrader.MissingReads(task, view.Calls);
        bool passed = error == null && state && facts.Count == 0 && reads.Count == 0;
        string? reason = passed ? null
            : error != null ? FailureReasons.Error
            : stepLimit ? FailureReasons.StepLimit
            : !state ? FailureReasons.WrongState
            : facts.Count > 0 ? FailureReasons.MissingFact
            : FailureReasons.MissingLookup;
        string? detail = reason switch
        {
            null => null,
            FailureReasons.Error => error,
            FailureReasons.StepLimit => $"stopped after {steps} agent steps and {customerTurns} customer turns",
            FailureReasons.WrongState => "the final database differs from the gold actions' (expected " + string.Join(", ", task.Actions.Where(a => StoreTools.Find(a.Name)!.Writes || StoreTools.Find(a.Name)!.EndsEpisode).Select(a => a.Name).DefaultIfEmpty("no write")) + ")",
            FailureReasons.MissingFact => "not told: " + string.Join(", ", facts),
            _ => "not made: " + string.Join(", ", reads.Select(r => $"{r.Name}({r.Arguments.ToJsonString()})")),
        };
        var outcome = new TrialOutcome(task.Id, task.Kind, trial, seed, passed, reason, detail, state, facts, reads, steps, transferred);
        return new Trajectory(task, outcome, OpenAiMessages(conversation), expectedHash, finalHash, agent.Name, customer.Name);
    }

    /// <summary>Runs one call the agent made; bad arguments (unparsable JSON included) are an "Error: …" result.</summary>
    static string Run(StoreDatabase store, FunctionCallContent call)
    {
        if (call.Exception != null) return $"Error: could not read the arguments: {call.Exception.Message}";
        JsonObject arguments;
        try { arguments = ConversationView.ToJson(call.Arguments); }
        catch (Exception e) when (e is System.Text.Json.JsonException or NotSupportedException or InvalidOperationException) { return $"Error: could not read the arguments: {e.Message}"; }
        return StoreTools.Call(store, call.Name, arguments);
    }

    /// <summary>The conversation as OpenAI-style messages (what ChatConversation reads for tool-aware training data).</summary>
    public static JsonArray OpenAiMessages(IReadOnlyList<ChatMessage> conversation)
    {
        var messages = new JsonArray();
        foreach (var m in conversation)
        {
            if (m.Role == ChatRole.System || m.Role == ChatRole.User)
                messages.Add((JsonNode)new JsonObject { ["role"] = m.Role == ChatRole.System ? "system" : "user", ["content"] = m.Text });
            else if (m.Role == ChatRole.Assistant)
            {
                var calls = m.Contents.OfType<FunctionCallContent>().ToList();
                var o = new JsonObject { ["role"] = "assistant", ["content"] = calls.Count > 0 && m.Text.Length == 0 ? null : m.Text };
                if (calls.Count > 0)
                    o["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)new JsonObject
                    {
                        ["id"] = c.CallId,
                        ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = ConversationView.ToJson(c.Arguments).ToJsonString() },
                    }).ToArray());
                messages.Add((JsonNode)o);
            }
            else if (m.Role == ChatRole.Tool)
                foreach (var r in m.Contents.OfType<FunctionResultContent>())
                    messages.Add((JsonNode)new JsonObject { ["role"] = "tool", ["tool_call_id"] = r.CallId, ["content"] = r.Result?.ToString() ?? "" });
        }
        return messages;
    }

    /// <summary>The tools as OpenAI's "tools" list (type function, name, description, parameters).</summary>
    public static JsonArray OpenAiTools(IEnumerable<AgentToolSpec> specs) => new(specs.Select(s => (JsonNode)new JsonObject
    {
        ["type"] = "function",
        ["function"] = new JsonObject { ["name"] = s.Name, ["description"] = s.Description, ["parameters"] = ChatClientAgent.SentForm(s.Parameters) },
    }).ToArray());

    public static JsonObject TrajectoryJson(Trajectory t) => new()
    {
        ["task_id"] = t.Task.Id,
        ["kind"] = t.Task.Kind,
        ["split"] = t.Task.Split,
        ["trial"] = t.Outcome.Trial,
        ["seed"] = t.Outcome.Seed,
        ["agent"] = t.Agent,
        ["customer"] = t.Customer,
        ["passed"] = t.Outcome.Passed,
        ["reason"] = t.Outcome.FailureReason,
        ["detail"] = t.Outcome.Detail,
        ["steps"] = t.Outcome.Steps,
        ["transferred"] = t.Outcome.Transferred,
        ["expected_hash"] = t.ExpectedHash,
        ["final_hash"] = t.FinalHash,
        ["messages"] = t.Messages.DeepClone(),
    };

    static AgentRunResult Summarize(AgentBenchmarkData data, AgentRunOptions options, IReadOnlyList<AgentTask> tasks, List<TrialOutcome> outcomes,
        string agentName, string customerName, DateTime started, double seconds)
    {
        int n = options.Trials;
        var passedPerTask = tasks.Select(t => outcomes.Count(o => o.TaskId == t.Id && o.Passed)).ToList();
        var passHat = new Dictionary<int, (double, double?)>();
        var passAt = new Dictionary<int, (double, double?)>();
        for (int k = 1; k <= n; k++)
        {
            var hat = passedPerTask.Select(c => PassAtK.PassHat(n, c, k)).ToList();
            var at = passedPerTask.Select(c => PassAtK.PassAt(n, c, k)).ToList();
            passHat[k] = (EvalStatistics.Mean(hat), EvalStatistics.StandardErrorOfMean(hat));
            passAt[k] = (EvalStatistics.Mean(at), EvalStatistics.StandardErrorOfMean(at));
        }
        var metrics = new JsonObject();
        foreach (var (k, (v, se)) in passHat) metrics[$"pass^{k}"] = Metric(v, se);
        foreach (var (k, (v, se)) in passAt) metrics[$"pass@{k}"] = Metric(v, se);
        var reasons = outcomes.Where(o => !o.Passed).GroupBy(o => o.FailureReason!).OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Count());
        var perKind = new JsonObject();
        foreach (var g in tasks.GroupBy(t => t.Kind).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var ids = g.Select(t => t.Id).ToHashSet();
            var trials = outcomes.Where(o => ids.Contains(o.TaskId)).ToList();
            perKind[g.Key] = new JsonObject { ["tasks"] = ids.Count, ["trials"] = trials.Count, ["passed"] = trials.Count(o => o.Passed) };
        }
        var perTask = new JsonArray(tasks.Select((t, i) => (JsonNode)new JsonObject
        {
            ["task_id"] = t.Id,
            ["kind"] = t.Kind,
            ["passed"] = passedPerTask[i],
            ["trials"] = new JsonArray(outcomes.Where(o => o.TaskId == t.Id).Select(o => (JsonNode)new JsonObject
            {
                ["trial"] = o.Trial, ["seed"] = o.Seed, ["passed"] = o.Passed, ["reason"] = o.FailureReason, ["detail"] = o.Detail, ["steps"] = o.Steps,
            }).ToArray()),
        }).ToArray());
        var record = new JsonObject
        {
            ["task"] = $"agent-retail/{options.Split}",
            ["kind"] = "agent",
            ["source"] = data.Directory,
            ["n"] = tasks.Count,
            ["metrics"] = metrics,
            ["protocol"] = new JsonObject
            {
                ["benchmark"] = "τ-bench retail semantics: tools, policy, gold-action replay",
                ["split"] = options.Split,
                ["trials"] = n,
                ["max_steps"] = options.MaxSteps,
                ["customer"] = customerName,
                ["reward"] = "1 if the final database hash equals the gold actions' and every required fact was told and every required read made, else 0",
                ["pass^k"] = "mean over tasks of C(c, k)/C(n, k) (all k tries succeed)",
                ["pass@k"] = "mean over tasks of 1 - C(n-c, k)/C(n, k)",
                ["seed"] = "trial seed = mix(run seed, task id, trial)",
            },
            ["details"] = new JsonObject
            {
                ["failure_reasons"] = new JsonObject(reasons.Select(r => KeyValuePair.Create(r.Key, (JsonNode?)r.Value))),
                ["kinds"] = perKind,
                ["trajectories"] = options.TrajectoriesPath,
            },
            ["model"] = agentName,
            ["adapter"] = null,
            ["seed"] = options.Seed,
            ["limit"] = options.Limit,
            ["context"] = 0,
            ["elapsed_seconds"] = Math.Round(seconds, 3),
            ["hone_version"] = EvalResults.HoneVersion,
            ["started_utc"] = started.ToString("yyyy-MM-ddTHH:mm:ssZ"),
        };
        var document = EvalResults.Document([record]);
        document["agent"] = agentName;
        document["customer"] = customerName;
        document["split"] = options.Split;
        document["tasks"] = tasks.Count;
        document["trials"] = n;
        document["pass_hat_k"] = new JsonObject(passHat.Select(p => KeyValuePair.Create(p.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), (JsonNode?)Round(p.Value.Item1))));
        document["pass_hat_k_stderr"] = new JsonObject(passHat.Select(p => KeyValuePair.Create(p.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), Number(p.Value.Item2))));
        document["pass_at_k"] = new JsonObject(passAt.Select(p => KeyValuePair.Create(p.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), (JsonNode?)Round(p.Value.Item1))));
        document["pass_at_k_stderr"] = new JsonObject(passAt.Select(p => KeyValuePair.Create(p.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), Number(p.Value.Item2))));
        document["outcomes"] = perTask;
        return new AgentRunResult(outcomes, passHat, passAt, document);
    }

    static double Round(double x) => Math.Round(x, 6);
    static JsonNode? Number(double? x) => x is double d && double.IsFinite(d) ? Math.Round(d, 6) : null;

    static JsonObject Metric(double value, double? se) => new()
    {
        ["value"] = Round(value), ["stderr"] = Number(se), ["stderr_method"] = StandardErrorMethod, ["higher_is_better"] = true,
    };
}
