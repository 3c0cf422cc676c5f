using System.CommandLine;
using Hone.Agents;
using Hone.Clients;

namespace Hone.Cli.Commands;

/// <summary><c>hone synth trajectories</c>: a teacher agent's conversations on the agent benchmark's training tasks, kept
/// when the benchmark's grader passes them (the work is in Hone.Agents' <see cref="AgentTrajectories"/>).</summary>
internal static class SynthTrajectoriesCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("dir") { Description = "a benchmark folder (hone agent data): its store, policy (the system message) and tasks" };
        var teacher = new Option<string?>("--teacher", "--agent") { Description = "the teacher agent: oracle (replays the gold actions), none (does nothing), or a local model (Hugging Face folder or .gguf)" };
        var teacherAdapter = new Option<string?>("--teacher-adapter", "--adapter") { Description = "an adapter for a local model teacher (PEFT folder or GGUF)" };
        var teacherEndpoint = new Option<string?>("--teacher-endpoint", "--agent-endpoint") { Description = "the teacher as an OpenAI-compatible endpoint (http://host:port/v1), instead of --teacher" };
        var teacherModel = new Option<string?>("--teacher-model", "--agent-model") { Description = "the model name to ask the teacher endpoint for" };
        var user = new Option<string>("--user") { Description = "the customer: scripted (default, deterministic from each trial's seed) or a model (folder or .gguf)", DefaultValueFactory = _ => "scripted" };
        var userEndpoint = new Option<string?>("--user-endpoint") { Description = "an OpenAI-compatible endpoint for a model customer" };
        var userModel = new Option<string?>("--user-model") { Description = "the model name to ask the customer endpoint for" };
        var apiKey = new Option<string?>("--api-key") { Description = $"bearer key for the endpoints (default: ${OpenAiEndpoint.ApiKeyVariable}, else none)" };
        var split = new Option<string>("--split") { Description = "the tasks to run: train (default); test is the held-out set and needs --allow-test-split", DefaultValueFactory = _ => "train" };
        split.AcceptOnlyFromAmong("train", "test");
        var allowTest = new Option<bool>("--allow-test-split") { Description = "write conversations of the test split anyway (only where it holds nothing out: another store's benchmark, say)" };
        var trials = new Option<int>("--trials", "-n") { Description = "conversations tried per task, each with another customer persona and wording", DefaultValueFactory = _ => 1 }.Within(1, 1000);
        var seed = new Option<ulong>("--seed", "-s") { Description = "run seed: each trial's customer persona, wording and sampling seed come from (seed, task, trial)", DefaultValueFactory = _ => 1234UL };
        var limit = new Option<int?>("--limit") { Description = "only the first N tasks of the split" }.Within(1, int.MaxValue);
        var maxSteps = new Option<int>("--max-steps") { Description = "agent messages per trial before it fails with step_limit", DefaultValueFactory = _ => 30 }.Within(1, 10_000);
        var parallel = new Option<int>("--parallel", "-p") { Description = "trials run at once (a local model batches their steps); the output does not depend on it", DefaultValueFactory = _ => 1 }.Within(1, 256);
        var temperature = new Option<float>("--temperature") { Description = "a model teacher's sampling temperature (0 = greedy)", DefaultValueFactory = _ => 0f }.Within(0, 2);
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens per model teacher message", DefaultValueFactory = _ => 256 }.Within(1, 100_000);
        var noToolsInPrompt = new Option<bool>("--no-tools-in-prompt") { Description = "keep the tool declarations out of a local model teacher's prompt (a small model fine-tuned on its tools); calls stay constrained by their schemas" };
        var threads = CliSupport.Threads();
        var context = CliSupport.Context();
        var cacheType = CliSupport.CacheType();
        var noTools = new Option<bool>("--no-tools") { Description = "leave the tool schemas out of each record's \"tools\", for small contexts" };
        var dedup = new Option<string>("--dedup") { Description = "exact: drop a passing conversation identical to a kept one (tool call ids aside); off: keep every passing one", DefaultValueFactory = _ => "exact" }
            .AcceptOnlyFromAmong("exact", "off");
        var output = new Option<string>("--out", "-o") { Description = "kept conversations, JSONL {\"messages\", \"tools\"} (written under a temporary name, renamed when complete)", Required = true };
        var report = new Option<string?>("--report") { Description = "also write the report as JSON here (committed with the output)" };
        var json = CliSupport.Json();
        var cmd = new Command("trajectories",
            "Verified agent trajectories: a teacher agent (the oracle, a local model with an adapter, or an OpenAI-compatible endpoint) talks with the " +
            "customer on each task of the benchmark's training split, --trials times; the benchmark's grader checks each trial (the final database " +
            "equals the gold actions', every required fact was told, every required lookup made) and only passing conversations are written, up to " +
            "the agent's last turn, as training data for hone train (the shape hone agent trajectories writes; the system message is the folder's " +
            "policy, hone agent data --policy). Dropped, for the grader's reason: " + string.Join(", ", AgentTrajectories.DropReasons.SkipLast(1)) +
            "; or " + AgentTrajectories.DuplicateExact + " (identical to a kept conversation). The report (stdout, --report) counts generated = kept + " +
            "dropped, and kept conversations per task and task kind. The test split is refused (it is the held-out set) unless --allow-test-split. " +
            $"A teacher that fails with an error on each of the first {AgentTrajectories.FailFastErrors} trials stops the run. An interrupted run writes nothing.")
        {
            dir, teacher, teacherAdapter, teacherEndpoint, teacherModel, user, userEndpoint, userModel, apiKey, split, allowTest, trials, seed, limit, maxSteps,
            parallel, temperature, maxTokens, noToolsInPrompt, threads, context, cacheType, noTools, dedup, output, report, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            string? teacherPath = r.GetValue(teacher), endpoint = r.GetValue(teacherEndpoint);
            if (teacherPath != null && endpoint != null) throw new ArgumentException("--teacher and --teacher-endpoint name two teachers: give one");
            if (teacherPath == null && endpoint == null)
                throw new ArgumentException("a teacher is needed: --teacher oracle|MODEL [--teacher-adapter DIR] or --teacher-endpoint URL --teacher-model NAME");
            if (endpoint == null && r.GetValue(teacherModel) != null) throw new ArgumentException("--teacher-model names the model of --teacher-endpoint; a local model is --teacher PATH");
            var options = new TrajectoryOptions(r.GetValue(split)!, r.GetValue(trials), r.GetValue(seed), r.GetValue(limit), !r.GetValue(noTools), r.GetValue(maxSteps),
                r.GetValue(parallel), r.GetValue(allowTest), r.GetValue(dedup) == "exact", r.GetValue(report));
            using var data = AgentBenchmarkData.Load(r.GetValue(dir)!);
            AgentTrajectories.CheckSplit(data, options); // before a model is loaded
            var selection = new AgentSelection(teacherPath ?? "", r.GetValue(teacherAdapter), endpoint, r.GetValue(teacherModel), r.GetValue(user)!,
                r.GetValue(userEndpoint), r.GetValue(userModel), r.GetValue(threads), r.GetValue(context), r.GetValue(parallel), r.GetValue(temperature),
                r.GetValue(maxTokens), !r.GetValue(noToolsInPrompt), r.GetValue(apiKey), CliSupport.ParseCacheType(r.GetValue(cacheType)));
            using var factories = AgentFactories.Create(selection);
            var result = AgentTrajectories.WriteAsync(data, options, r.GetValue(output)!, factories.Agent, factories.Customer, CliSupport.Progress("trials"), cancel)
                .GetAwaiter().GetResult();
            return Write(result, r.GetValue(json));
        }));
        return cmd;
    }

    static int Write(TrajectoryReport report, bool json)
    {
        Console.WriteLine(json ? report.ToJson().ToJsonString(new() { WriteIndented = true }) : report.ToString());
        return 0;
    }
}
