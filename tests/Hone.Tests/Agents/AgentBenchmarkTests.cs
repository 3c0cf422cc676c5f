using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Hone.Agents;
using Hone.Tokenization;
using Microsoft.Extensions.AI;
using Xunit;

namespace Hone.Tests.Agents;

public sealed class AgentBenchmarkTests(AgentFixture fixture) : IClassFixture<AgentFixture>
{
    static AgentRunResult Run(AgentBenchmarkData data, Func<AgentContext, IAgent> agent, string split, int trials, string? trajectories = null) =>
        AgentBenchmark.RunAsync(data, new AgentRunOptions(split, trials, 5, TrajectoriesPath: trajectories), agent, _ => new ScriptedCustomer(), null, CancellationToken.None)
            .GetAwaiter().GetResult();

    [Fact]
    public void Same_seed_gives_byte_identical_files_and_another_seed_another_store()
    {
        string a = Path.Combine(fixture.Directory, "again"), b = Path.Combine(fixture.Directory, "other");
        AgentBenchmarkData.Generate(a, AgentFixture.Store, AgentFixture.Tasks);
        foreach (var file in new[] { AgentBenchmarkData.StoreFile, AgentBenchmarkData.TrainTasksFile, AgentBenchmarkData.TestTasksFile, AgentBenchmarkData.PolicyFile, AgentBenchmarkData.ManifestFile })
            Assert.True(File.ReadAllBytes(Path.Combine(fixture.Directory, file)).SequenceEqual(File.ReadAllBytes(Path.Combine(a, file))), $"{file} differs between two generations");
        AgentBenchmarkData.Generate(b, AgentFixture.Store with { Seed = 12 }, AgentFixture.Tasks with { Seed = 12 });
        Assert.NotEqual(SHA256.HashData(File.ReadAllBytes(Path.Combine(a, AgentBenchmarkData.StoreFile))),
            SHA256.HashData(File.ReadAllBytes(Path.Combine(b, AgentBenchmarkData.StoreFile))));
        using var loaded = StoreDatabase.Open(Path.Combine(a, AgentBenchmarkData.StoreFile));
        Assert.Equal(fixture.Data.Store.Hash(), loaded.Hash());
    }

    [Fact]
    public void Tasks_cover_every_kind_with_both_identifications_and_users_split_between_train_and_test()
    {
        var tasks = fixture.AllTasks.ToList();
        Assert.Equal(AgentFixture.Tasks.Count, tasks.Count);
        foreach (var kind in TaskKinds.All) Assert.Contains(tasks, t => t.Kind == kind);
        Assert.Contains(tasks, t => t.Actions[0].Name == "find_user_id_by_email");
        Assert.Contains(tasks, t => t.Actions[0].Name == "find_user_id_by_name_zip");
        Assert.Contains(tasks, t => t.Customer.DoesNotKnow.Contains("order_id"));
        Assert.Empty(fixture.Data.TrainTasks.Select(t => t.UserId).Intersect(fixture.Data.TestTasks.Select(t => t.UserId)));
        Assert.NotEmpty(fixture.Data.TestTasks);
        Assert.Matches(@"^[a-z]+_[a-z]+_\d{4}$", tasks[0].UserId);
        Assert.Matches(@"^#W\d{7}$", tasks.First(t => t.Kind == TaskKinds.CancelPending).Customer.Desired!.Arguments["order_id"]!.GetValue<string>());
    }

    [Fact]
    public void Oracle_passes_every_task_of_both_splits_on_every_trial()
    {
        foreach (var split in new[] { "train", "test" })
        {
            var result = Run(fixture.Data, _ => new OracleAgent(), split, trials: 3);
            var failed = result.Trials.Where(t => !t.Passed).Select(t => $"{t.TaskId} ({t.Kind}) trial {t.Trial}: {t.FailureReason} {t.Detail}").ToList();
            Assert.True(failed.Count == 0, string.Join("\n", failed));
            Assert.All(result.PassHat.Values, v => Assert.Equal(1.0, v.Value));
            Assert.Equal(1.0, (double)result.Document["pass_hat_k"]!["3"]!);
        }
    }

    [Fact]
    public void Do_nothing_agent_fails_every_task_write_tasks_by_state()
    {
        var result = Run(fixture.Data, _ => new NoneAgent(), "train", trials: 1);
        Assert.All(result.Trials, t => Assert.False(t.Passed));
        var tasks = fixture.Data.TrainTasks.ToDictionary(t => t.Id);
        foreach (var t in result.Trials)
        {
            bool writes = tasks[t.TaskId].Actions.Any(a => StoreTools.Find(a.Name)!.Writes || StoreTools.Find(a.Name)!.EndsEpisode);
            if (writes) Assert.Equal(FailureReasons.WrongState, t.FailureReason);
            else Assert.True(t.FailureReason is FailureReasons.MissingFact or FailureReasons.MissingLookup, $"{t.TaskId}: {t.FailureReason}");
        }
        Assert.Equal(0.0, result.PassHat[1].Value);
    }

    /// <summary>The oracle, except that one call is changed before it is made.</summary>
    sealed class AlteredOracle(Func<FunctionCallContent, FunctionCallContent?> alter, Func<string, string>? alterText = null) : IAgent
    {
        public string Name => "altered";
        public async Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel)
        {
            var message = await new OracleAgent().RespondAsync(context, conversation, cancel);
            var contents = message.Contents.Select(c => c switch
            {
                FunctionCallContent call => (AIContent)(alter(call) ?? call),
                TextContent text when alterText != null => new TextContent(alterText(text.Text)),
                _ => c,
            }).ToList();
            return new ChatMessage(ChatRole.Assistant, contents);
        }
    }

    [Fact]
    public async Task One_wrong_write_fails_by_the_database_hash()
    {
        // Cancelling with the other reason, and paying a modification with another of the customer's payment methods.
        var cancelResult = Run(fixture.Data, _ => new AlteredOracle(call => call.Name != "cancel_pending_order" ? null
            : new FunctionCallContent(call.CallId, call.Name, new Dictionary<string, object?>
            {
                ["order_id"] = call.Arguments!["order_id"],
                ["reason"] = ((JsonNode)call.Arguments["reason"]!).GetValue<string>() == "no longer needed" ? "ordered by mistake" : "no longer needed",
            })), "train", 1);
        var cancelIds = fixture.Data.TrainTasks.Where(t => t.Kind == TaskKinds.CancelPending).Select(t => t.Id).ToHashSet();
        Assert.NotEmpty(cancelIds);
        // (The oracle, not seeing its own write among its calls, may propose again until the step limit: the state is wrong either way.)
        Assert.All(cancelResult.Trials.Where(t => cancelIds.Contains(t.TaskId)), t => Assert.False(t.Passed || t.StateMatches, $"{t.TaskId}: {t.FailureReason}"));
        Assert.Contains(cancelResult.Trials, t => cancelIds.Contains(t.TaskId) && t.FailureReason == FailureReasons.WrongState);

        var exchanges = fixture.AllTasks.Where(t => t.Kind is TaskKinds.Exchange or TaskKinds.ModifyItems).ToList();
        int checkedTasks = 0;
        foreach (var task in exchanges)
        {
            var write = task.Actions[^1];
            string method = write.Arguments["payment_method_id"]!.GetValue<string>();
            var user = fixture.Data.Store.GetUser(task.UserId)!;
            var other = user.PaymentMethods.FirstOrDefault(m => m.Id != method && m.Source != "gift_card");
            if (other == null) continue;
            var trajectory = await AgentBenchmark.RunTrialAsync(fixture.Data, task, 0, 3, AgentGrader.ExpectedHash(fixture.Data.Store, task), 30,
                _ => new AlteredOracle(call => call.Name != write.Name ? null : new FunctionCallContent(call.CallId, call.Name,
                    new Dictionary<string, object?>(call.Arguments!) { ["payment_method_id"] = other.Id })),
                _ => new SkipConfirmationCustomer(), CancellationToken.None);
            Assert.False(trajectory.Outcome.Passed || trajectory.Outcome.StateMatches, $"{task.Id}: {trajectory.Outcome.FailureReason}");
            checkedTasks++;
        }
        Assert.True(checkedTasks > 0, "no exchange or modification task whose user has a second payment method");
    }

    /// <summary>The scripted customer, except that it says yes to any proposal (so a wrong write is made).</summary>
    sealed class SkipConfirmationCustomer : ICustomer
    {
        public string Name => "yes-man";
        public Task<string> RespondAsync(AgentContext context, IReadOnlyList<(string Role, string Text)> transcript, CancellationToken cancel) =>
            transcript.Count > 0 && transcript[^1].Text.Contains("(yes/no)") ? Task.FromResult("Yes.")
                : new ScriptedCustomer().RespondAsync(context, transcript, cancel);
    }

    [Fact]
    public void Not_telling_the_facts_fails_with_missing_fact()
    {
        var result = Run(fixture.Data, _ => new AlteredOracle(_ => null, text => text.StartsWith("Order ") ? "Your order is on its way. " + OracleAgent.AnythingElse : text), "train", 1);
        var ids = fixture.Data.TrainTasks.Where(t => t.Kind == TaskKinds.OrderStatus).Select(t => t.Id).ToHashSet();
        Assert.NotEmpty(ids);
        Assert.All(result.Trials.Where(t => ids.Contains(t.TaskId)), t => Assert.Equal(FailureReasons.MissingFact, t.FailureReason));
        Assert.All(result.Trials.Where(t => !ids.Contains(t.TaskId)), t => Assert.True(t.Passed, $"{t.TaskId}: {t.FailureReason} {t.Detail}"));
    }

    /// <summary>The oracle on the trials listed, the do-nothing agent on the others.</summary>
    sealed class SometimesAgent(params int[] oracleTrials) : IAgent
    {
        public string Name => "sometimes";
        public Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel) =>
            oracleTrials.Contains(context.Trial) ? new OracleAgent().RespondAsync(context, conversation, cancel) : new NoneAgent().RespondAsync(context, conversation, cancel);
    }

    [Fact]
    public async Task Pass_hat_k_and_pass_at_k_match_hand_computed_values()
    {
        // Every task passes trials 0 and 1 of 3 (c = 2, n = 3): pass^1 = 2/3, pass^2 = C(2,2)/C(3,2) = 1/3, pass^3 = 0;
        // pass@1 = 2/3, pass@2 = 1 - C(1,2)/C(3,2) = 1, pass@3 = 1. Every task alike: standard error 0.
        var data = fixture.Data;
        var result = await AgentBenchmark.RunAsync(data, new AgentRunOptions("test", 3, 5, Limit: 6), _ => new SometimesAgent(0, 1), _ => new ScriptedCustomer(), null,
            CancellationToken.None);
        Assert.Equal(2.0 / 3, result.PassHat[1].Value, 12);
        Assert.Equal(1.0 / 3, result.PassHat[2].Value, 12);
        Assert.Equal(0.0, result.PassHat[3].Value, 12);
        Assert.Equal(2.0 / 3, result.PassAt[1].Value, 12);
        Assert.Equal(1.0, result.PassAt[2].Value, 12);
        Assert.Equal(1.0, result.PassAt[3].Value, 12);
        Assert.Equal(0.0, result.PassHat[1].StandardError!.Value, 12);
        // One task passes 1 of 2 trials, another 2 of 2: pass^2 = (0 + 1)/2, standard error sqrt(((0-.5)² + (1-.5)²)/1/2) = 0.5.
        var two = await AgentBenchmark.RunAsync(data, new AgentRunOptions("test", 2, 5, Limit: 2),
            c => c.Task.Id == data.TestTasks[0].Id ? new SometimesAgent(0) : new OracleAgent(), _ => new ScriptedCustomer(), null, CancellationToken.None);
        Assert.Equal(0.5, two.PassHat[2].Value, 12);
        Assert.Equal(0.5, two.PassHat[2].StandardError!.Value, 12);
        Assert.Equal(0.75, two.PassHat[1].Value, 12);
        var document = two.Document;
        Assert.Equal("hone-eval-results", (string?)document["format"]);
        Assert.Equal(0.5, (double)document["pass_hat_k"]!["2"]!);
        Assert.Equal(1.0, (double)document["pass_at_k"]!["2"]!);
        Assert.Equal(2, (int)document["tasks"]!);
        Assert.Equal(2, (int)document["trials"]!);
        Assert.Equal(0.5, (double)document["results"]![0]!["metrics"]!["pass^2"]!["value"]!);
        Assert.Equal(1, (int)document["outcomes"]![0]!["passed"]!);
    }

    [Fact]
    public async Task Trajectories_are_tool_aware_training_conversations_that_ChatConversation_reads()
    {
        string path = Path.Combine(fixture.Directory, "sft.jsonl");
        var stats = await AgentTrajectories.WriteAsync(fixture.Data, new TrajectoryOptions("train", 1, 5), path, null, CancellationToken.None);
        Assert.Equal(0, stats.FailedGrade);
        Assert.Equal(fixture.Data.TrainTasks.Count, stats.Kept);
        long line = 0;
        bool sawToolRole = false;
        foreach (var text in File.ReadLines(path))
        {
            var record = ChatConversation.ToConversation(JsonNode.Parse(text)!, path, ++line);
            Assert.True(record.UsesTools);
            Assert.NotNull(record.Tools);
            Assert.Equal("system", (string?)record.Messages[0]!["role"]);
            Assert.Equal("assistant", (string?)record.Messages[^1]!["role"]);
            sawToolRole |= record.Messages.Any(m => (string?)m!["role"] == "tool");
            // No invented facts: every id the agent says or passes to a tool was said by the customer or returned by a tool before.
            var seen = new System.Text.StringBuilder();
            foreach (var m in record.Messages.Skip(1))
            {
                string role = (string)m!["role"]!;
                string said = ((string?)m["content"] ?? "") + (m["tool_calls"]?.ToJsonString().Replace("\\\"", "\"") ?? "");
                if (role == "assistant")
                    foreach (System.Text.RegularExpressions.Match id in System.Text.RegularExpressions.Regex.Matches(said, @"#W\d{7}|\b\d{10}\b|\b(?:credit_card|paypal|gift_card)_\d+"))
                        Assert.True(seen.ToString().Contains(id.Value), $"{path}:{line}: the agent used {id.Value} before anyone told it");
                else seen.Append(said).Append('\n');
            }
            Assert.DoesNotContain(CustomerMarkers.Stop, text);
        }
        Assert.True(sawToolRole);
        // The run's own trajectories file: one line per trial, with the reason a trial failed.
        string runPath = Path.Combine(fixture.Directory, "none.trajectories.jsonl");
        Run(fixture.Data, _ => new NoneAgent(), "test", 1, runPath);
        var lines = File.ReadAllLines(runPath);
        Assert.Equal(fixture.Data.TestTasks.Count, lines.Length);
        Assert.All(lines, l => Assert.NotNull((string?)JsonNode.Parse(l)!["reason"]));
    }

    [Fact]
    public async Task A_throwing_agent_fails_with_error_and_bad_call_arguments_are_a_tool_error_not_an_error()
    {
        var task = fixture.Data.TestTasks[0];
        string expected = AgentGrader.ExpectedHash(fixture.Data.Store, task);
        var thrown = await AgentBenchmark.RunTrialAsync(fixture.Data, task, 0, 1, expected, 30, _ => new ThrowingAgent(), _ => new ScriptedCustomer(), CancellationToken.None);
        Assert.Equal(FailureReasons.Error, thrown.Outcome.FailureReason);
        Assert.Contains("boom", thrown.Outcome.Detail);
        var bad = await AgentBenchmark.RunTrialAsync(fixture.Data, task, 0, 1, expected, 4, _ => new BadCallAgent(), _ => new ScriptedCustomer(), CancellationToken.None);
        Assert.Equal(FailureReasons.StepLimit, bad.Outcome.FailureReason);
        var results = bad.Messages.Where(m => (string?)m!["role"] == "tool").Select(m => (string)m!["content"]!).ToList();
        Assert.Contains("Error: argument 'order_id' must be a string", results);
        Assert.Contains("Error: unknown tool 'delete_everything'", results);
    }

    sealed class ThrowingAgent : IAgent
    {
        public string Name => "throws";
        public Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel) => throw new InvalidOperationException("boom");
    }

    sealed class BadCallAgent : IAgent
    {
        public string Name => "bad calls";
        public Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel) =>
            Task.FromResult(new ChatMessage(ChatRole.Assistant,
            [
                new FunctionCallContent("c1", "get_order_details", new Dictionary<string, object?> { ["order_id"] = 12 }),
                new FunctionCallContent("c2", "delete_everything", new Dictionary<string, object?>()),
            ]));
    }
}
