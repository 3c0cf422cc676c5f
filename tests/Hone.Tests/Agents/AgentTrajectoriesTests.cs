using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Agents;
using Hone.Tests.Infrastructure;
using Microsoft.Extensions.AI;
using Xunit;

namespace Hone.Tests.Agents;

/// <summary>Verified trajectories (<see cref="AgentTrajectories"/>, <c>hone synth trajectories</c>): a teacher's conversations
/// kept when the benchmark's grader passes them, with a report whose counts add up.</summary>
public sealed class AgentTrajectoriesTests(AgentFixture fixture) : IClassFixture<AgentFixture>
{
    static int Count(IReadOnlyDictionary<string, int> dropped, string reason) => dropped.GetValueOrDefault(reason);

    static void CountsAddUp(TrajectoryReport report, string output)
    {
        Assert.Equal(report.Tasks * report.TrialsPerTask, report.Generated);
        Assert.Equal(report.Generated, report.Kept + report.DroppedTotal);
        Assert.Equal(report.Kept, report.PerTask.Sum(t => t.Kept));
        Assert.Equal(report.Generated, report.PerTask.Sum(t => t.Generated));
        Assert.Equal(report.Kept, File.ReadAllLines(output).Length);
        Assert.Equal(AgentTrajectories.DropReasons, report.Dropped.Keys);
    }

    /// <summary>No pending temporary file beside the outputs.</summary>
    static void NoTemporaryFiles(string directory) => Assert.Empty(Directory.GetFiles(directory, ".*.tmp"));

    [Fact]
    public async Task An_oracle_teacher_keeps_every_trial_but_exact_duplicates_and_the_file_does_not_depend_on_parallelism()
    {
        using var dir = new TempDirectory();
        var options = new TrajectoryOptions("train", Trials: 3, Seed: 5, Report: dir.File("report.json"));
        var report = await AgentTrajectories.WriteAsync(fixture.Data, options, dir.File("oracle.jsonl"), null, default);
        CountsAddUp(report, dir.File("oracle.jsonl"));
        Assert.Equal(fixture.Data.TrainTasks.Count, report.Tasks);
        Assert.Equal(0, report.FailedGrade);
        Assert.Equal(report.DroppedTotal, Count(report.Dropped, AgentTrajectories.DuplicateExact));
        Assert.All(report.PerTask, t => Assert.InRange(t.Kept, 1, 3));
        Assert.Equal("oracle", report.Teacher);
        Assert.Equal("scripted", report.Customer);
        // The report file is the report.
        var json = JsonNode.Parse(File.ReadAllText(dir.File("report.json")))!;
        Assert.Equal(report.Kept, (int)json["kept"]!);
        Assert.Equal(report.Generated, (int)json["generated"]!);
        Assert.Equal(report.Generated, (int)json["kept"]! + json["dropped"]!.AsObject().Sum(p => (int)p.Value!));
        Assert.Equal(report.Tasks, json["per_task"]!.AsArray().Count);
        Assert.Equal(report.Kept, json["kinds"]!.AsObject().Sum(k => (int)k.Value!["kept"]!));

        // No two kept lines are the same conversation; with deduplication off the duplicates stay.
        var lines = File.ReadAllLines(dir.File("oracle.jsonl"));
        Assert.Equal(lines.Length, lines.Distinct().Count());
        var all = await AgentTrajectories.WriteAsync(fixture.Data, options with { Dedup = false, Report = null }, dir.File("all.jsonl"), null, default);
        Assert.Equal(all.Generated, all.Kept);

        // Four trials at once write the same file.
        await AgentTrajectories.WriteAsync(fixture.Data, options with { Parallel = 4, Report = null }, dir.File("parallel.jsonl"), null, default);
        Assert.Equal(lines, File.ReadAllLines(dir.File("parallel.jsonl")));
        NoTemporaryFiles(dir.Path);
    }

    [Fact]
    public async Task The_none_agent_keeps_nothing_and_the_report_gives_the_graders_reasons()
    {
        using var dir = new TempDirectory();
        var report = await AgentTrajectories.WriteAsync(fixture.Data, new TrajectoryOptions("train", Trials: 2, Seed: 5), dir.File("none.jsonl"),
            _ => new NoneAgent(), _ => new ScriptedCustomer(), null, default);
        CountsAddUp(report, dir.File("none.jsonl"));
        Assert.Equal(0, report.Kept);
        Assert.Equal(report.Generated, report.FailedGrade);
        Assert.Empty(File.ReadAllText(dir.File("none.jsonl")));
        // Tasks that write fail by the database; the others by what was not told or looked up.
        int writes = fixture.Data.TrainTasks.Count(t => t.Actions.Any(a => StoreTools.Find(a.Name)!.Writes || StoreTools.Find(a.Name)!.EndsEpisode));
        Assert.Equal(2 * writes, Count(report.Dropped, FailureReasons.WrongState));
        Assert.Equal(2 * (fixture.Data.TrainTasks.Count - writes), Count(report.Dropped, FailureReasons.MissingFact) + Count(report.Dropped, FailureReasons.MissingLookup));
        Assert.Equal(0, Count(report.Dropped, AgentTrajectories.DuplicateExact));
        Assert.Contains(report.DropExamples, e => e.Contains("(wrong_state): the final database differs", StringComparison.Ordinal));
        Assert.Contains("wrong_state", report.ToString());
    }

    [Fact]
    public async Task The_test_split_is_refused_unless_allowed_and_a_failed_run_leaves_no_file()
    {
        using var dir = new TempDirectory();
        var refused = await Assert.ThrowsAsync<ArgumentException>(() =>
            AgentTrajectories.WriteAsync(fixture.Data, new TrajectoryOptions("test"), dir.File("test.jsonl"), null, default));
        Assert.Contains("held-out", refused.Message);
        Assert.False(File.Exists(dir.File("test.jsonl")));
        var allowed = await AgentTrajectories.WriteAsync(fixture.Data, new TrajectoryOptions("test", AllowTestSplit: true), dir.File("test.jsonl"), null, default);
        Assert.Equal(fixture.Data.TestTasks.Count, allowed.Kept);

        // A teacher that throws on every trial stops the run after the first few; nothing is written under either name.
        var failed = await Assert.ThrowsAsync<InvalidOperationException>(() => AgentTrajectories.WriteAsync(fixture.Data,
            new TrajectoryOptions("train", Report: dir.File("broken.report.json")), dir.File("broken.jsonl"), _ => new ThrowingAgent(), _ => new ScriptedCustomer(), null, default));
        Assert.Contains($"first {AgentTrajectories.FailFastErrors} trials", failed.Message);
        Assert.Contains("endpoint unreachable", failed.Message);
        Assert.False(File.Exists(dir.File("broken.jsonl")));
        Assert.False(File.Exists(dir.File("broken.report.json")));
        NoTemporaryFiles(dir.Path);

        // Through the command: refused before anything is loaded, with the flag named.
        var cli = HoneCli.Run("synth", "trajectories", fixture.Directory, "--teacher", "oracle", "--split", "test", "--out", dir.File("cli.jsonl"));
        Assert.Equal(1, cli.ExitCode);
        Assert.Contains("--allow-test-split", cli.Stderr);
        Assert.False(File.Exists(dir.File("cli.jsonl")));
        var oracleCli = HoneCli.Run("agent", "trajectories", fixture.Directory, "--split", "test", "--out", dir.File("cli.jsonl"));
        Assert.Equal(1, oracleCli.ExitCode);
        Assert.Contains("held-out", oracleCli.Stderr);
    }

    sealed class ThrowingAgent : IAgent
    {
        public string Name => "throwing";
        public Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel) =>
            throw new HttpRequestException("endpoint unreachable");
    }

    /// <summary>
    /// An OpenAI-compatible endpoint that plays the oracle on the tasks <see cref="Right"/> holds and declines on the
    /// others. It tells the task by the customer's opening words (each task's first trial opens differently).
    /// </summary>
    sealed class HalfRightEndpoint(IReadOnlyDictionary<string, AgentTask> byOpening, IReadOnlySet<string> right) : LoopbackHttpServer
    {
        public readonly ConcurrentQueue<JsonObject> Requests = new();
        public Uri Address => new(Root, "v1");
        public IReadOnlySet<string> Right => right;

        static string Text(JsonNode? content) => content switch
        {
            null => "",
            JsonArray parts => string.Concat(parts.Select(p => (string?)p!["text"] ?? "")),
            _ => content.GetValue<string>(),
        };

        static List<ChatMessage> Conversation(JsonArray messages)
        {
            var conversation = new List<ChatMessage>();
            foreach (var m in messages.OfType<JsonObject>())
            {
                string role = (string)m["role"]!;
                if (role is "system" or "user") conversation.Add(new ChatMessage(role == "system" ? ChatRole.System : ChatRole.User, Text(m["content"])));
                else if (role == "assistant")
                {
                    var contents = new List<AIContent>();
                    if (Text(m["content"]) is { Length: > 0 } text) contents.Add(new TextContent(text));
                    foreach (var call in (m["tool_calls"] as JsonArray ?? []).OfType<JsonObject>())
                    {
                        var arguments = JsonNode.Parse((string)call["function"]!["arguments"]!)!.AsObject();
                        contents.Add(new FunctionCallContent((string)call["id"]!, (string)call["function"]!["name"]!,
                            arguments.ToDictionary(p => p.Key, p => (object?)p.Value?.DeepClone())));
                    }
                    conversation.Add(new ChatMessage(ChatRole.Assistant, contents));
                }
                else if (role == "tool")
                    conversation.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent((string)m["tool_call_id"]!, Text(m["content"]))]));
            }
            return conversation;
        }

        protected override async Task Serve(HttpListenerContext context)
        {
            try
            {
                var body = (JsonObject)JsonNode.Parse(await new StreamReader(context.Request.InputStream).ReadToEndAsync())!;
                Requests.Enqueue(body);
                var conversation = Conversation(body["messages"]!.AsArray());
                var task = byOpening[conversation.First(m => m.Role == ChatRole.User).Text];
                var reply = right.Contains(task.Id) ? OracleAgent.Next(task, new ConversationView(conversation)) : new ChatMessage(ChatRole.Assistant, NoneAgent.Reply);
                var calls = reply.Contents.OfType<FunctionCallContent>().ToList();
                var message = new JsonObject { ["role"] = "assistant", ["content"] = calls.Count > 0 ? null : reply.Text };
                if (calls.Count > 0)
                    message["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)new JsonObject
                    {
                        ["id"] = c.CallId, ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = ConversationView.ToJson(c.Arguments).ToJsonString() },
                    }).ToArray());
                await WriteChatCompletionAsync(context, body["model"]!.GetValue<string>(), message, calls.Count > 0 ? "tool_calls" : "stop");
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException) { }
            catch (Exception e)
            {
                // A request the fake cannot place fails loudly (the trial's error names it), not silently.
                context.Response.StatusCode = 500;
                var bytes = Encoding.UTF8.GetBytes(e.Message);
                await context.Response.OutputStream.WriteAsync(bytes);
                context.Response.Close();
            }
        }
    }

    [Fact]
    public void An_endpoint_teacher_through_the_cli_keeps_exactly_the_tasks_it_solves_and_reports_counts_that_add_up()
    {
        using var dir = new TempDirectory();
        const ulong seed = 21;
        var tasks = fixture.Data.TrainTasks.Take(12).ToList();
        var byOpening = tasks.ToDictionary(t => ScriptedCustomer.Respond(t, AgentBenchmark.TrialSeed(seed, t.Id, 0), []));
        Assert.Equal(tasks.Count, byOpening.Count);
        var right = tasks.Where((t, i) => i % 3 != 1).Select(t => t.Id).ToHashSet();
        using var server = new HalfRightEndpoint(byOpening, right);

        var r = HoneCli.Run("synth", "trajectories", fixture.Directory, "--teacher-endpoint", server.Address.ToString(), "--teacher-model", "teacher-x",
            "--limit", "12", "--seed", seed.ToString(), "--parallel", "3", "--out", dir.File("kept.jsonl"), "--report", dir.File("report.json"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.NotEmpty(server.Requests);
        Assert.All(server.Requests, q => Assert.Equal("teacher-x", (string?)q["model"]));

        var report = JsonNode.Parse(File.ReadAllText(dir.File("report.json")))!;
        Assert.Equal(12, (int)report["tasks"]!);
        Assert.Equal(12, (int)report["generated"]!);
        Assert.Equal(right.Count, (int)report["kept"]!);
        Assert.Equal(12, (int)report["kept"]! + report["dropped"]!.AsObject().Sum(p => (int)p.Value!));
        Assert.Equal(12 - right.Count, (int)report["dropped_total"]!);
        Assert.Equal(0, (int)report["dropped"]![FailureReasons.Error]!);
        Assert.Equal("teacher-x", (string?)report["teacher"]);
        // Per task: exactly the tasks it solves are kept.
        Assert.Equal(right.Order(), report["per_task"]!.AsArray().Where(t => (int)t!["kept"]! == 1).Select(t => (string)t!["task_id"]!).Order());
        Assert.All(report["per_task"]!.AsArray(), t => Assert.Equal(right.Contains((string)t!["task_id"]!) ? 1 : 0, (int)t!["kept"]!));

        // The file holds those conversations in task order: each opens with its task's customer and ends on the agent's turn.
        var lines = File.ReadAllLines(dir.File("kept.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(tasks.Where(t => right.Contains(t.Id)).Select(t => t.Id), lines.Select(l => byOpening[(string)l["messages"]![1]!["content"]!].Id));
        Assert.All(lines, l =>
        {
            Assert.Equal("system", (string?)l["messages"]![0]!["role"]);
            Assert.Equal(fixture.Data.Policy, (string?)l["messages"]![0]!["content"]);
            Assert.Equal("assistant", (string?)l["messages"]!.AsArray()[^1]!["role"]);
            Assert.Contains(l["messages"]!.AsArray(), m => (string?)m!["role"] == "tool");
            Assert.Equal(StoreTools.Specs.Count, l["tools"]!.AsArray().Count);
        });
        Assert.Contains($"{right.Count} kept", r.Stdout);
        NoTemporaryFiles(dir.Path);

        // The same teacher, the oracle's case and both teachers at once through the command line.
        var both = HoneCli.Run("synth", "trajectories", fixture.Directory, "--teacher", "oracle", "--teacher-endpoint", server.Address.ToString(),
            "--teacher-model", "x", "--out", dir.File("x.jsonl"));
        Assert.Equal(1, both.ExitCode);
        Assert.Contains("two teachers", both.Stderr);
        var none = HoneCli.Run("synth", "trajectories", fixture.Directory, "--out", dir.File("x.jsonl"));
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("a teacher is needed", none.Stderr);
        var oracle = HoneCli.Run("synth", "trajectories", fixture.Directory, "--agent", "oracle", "--limit", "12", "--seed", seed.ToString(), "--json", "--no-tools",
            "--out", dir.File("oracle.jsonl"));
        Assert.True(oracle.ExitCode == 0, oracle.ToString());
        Assert.Equal(12, (int)JsonNode.Parse(oracle.Stdout)!["kept"]!);
        // The endpoint's kept conversations are the oracle's on those tasks (tools aside: that run wrote none).
        var oracleLines = File.ReadAllLines(dir.File("oracle.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.All(oracleLines, l => Assert.Null(l["tools"]));
        var oracleByTask = oracleLines.ToDictionary(l => byOpening[(string)l["messages"]![1]!["content"]!].Id, l => l["messages"]!.ToJsonString());
        foreach (var l in lines) Assert.Equal(oracleByTask[byOpening[(string)l["messages"]![1]!["content"]!].Id], l["messages"]!.ToJsonString());
    }
}
