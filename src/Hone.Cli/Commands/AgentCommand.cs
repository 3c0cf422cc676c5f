using System.CommandLine;
using System.Globalization;
using Hone.Agents;
using Hone.Batching;
using Hone.Clients;
using Hone.Evaluation;

namespace Hone.Cli.Commands;

/// <summary>Which agent and customer a run uses.</summary>
/// <param name="Agent">"oracle", "none", or a model (directory or .gguf); ignored with <paramref name="AgentEndpoint"/></param>
/// <param name="AgentModel">the model name to ask the agent endpoint for</param>
/// <param name="User">"scripted" (default) or a model (directory or .gguf); ignored with <paramref name="UserEndpoint"/></param>
/// <param name="UserModel">the model name to ask the customer endpoint for</param>
public sealed record AgentSelection(string Agent, string? Adapter, string? AgentEndpoint, string? AgentModel, string User, string? UserEndpoint,
    string? UserModel = null, int Threads = 0, int Context = 0, int Parallel = 1, float Temperature = 0, int MaxTokens = 256, bool ToolsInPrompt = true,
    string? ApiKey = null, Hone.Tensors.KvCacheType CacheType = Hone.Tensors.KvCacheType.F32);

/// <summary>The agent and customer factories of a run, and what they hold open (engines, HTTP clients).</summary>
internal sealed class AgentFactories : IDisposable
{
    readonly List<IDisposable> _owned = [];

    public required Func<AgentContext, IAgent> Agent { get; init; }
    public required Func<AgentContext, ICustomer> Customer { get; init; }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
    }

    public static AgentFactories Create(AgentSelection s)
    {
        var owned = new List<IDisposable>();
        try
        {
            var agent = AgentFor(s, owned);
            var customer = CustomerFor(s, owned);
            var factories = new AgentFactories { Agent = agent, Customer = customer };
            factories._owned.AddRange(owned);
            return factories;
        }
        catch
        {
            foreach (var d in owned) d.Dispose();
            throw;
        }
    }

    static Func<AgentContext, IAgent> AgentFor(AgentSelection s, List<IDisposable> owned)
    {
        if (s.AgentEndpoint != null)
        {
            if (s.AgentModel == null) throw new ArgumentException("--agent-endpoint needs --agent-model: the model name the endpoint serves");
            if (s.Adapter != null) throw new ArgumentException("--adapter applies to a local model agent; an endpoint serves its adapters by name (--agent-model NAME)");
            var client = OpenAiEndpoint.CreateChatClient(Endpoint(s.AgentEndpoint, "--agent-endpoint"), s.AgentModel, s.ApiKey);
            owned.Add(client);
            var options = new ChatClientAgentOptions(s.AgentModel, s.AgentModel, s.Temperature, s.MaxTokens, s.ToolsInPrompt);
            return _ => new ChatClientAgent(client, options);
        }
        switch (s.Agent)
        {
            case "oracle": Local(s); return _ => new OracleAgent();
            case "none": Local(s); return _ => new NoneAgent();
        }
        var adapters = s.Adapter == null ? [] : new[] { ("adapter", Path.GetFullPath(s.Adapter)) };
        var engine = BatchEngine.Open(s.Agent, adapters, Engine(s));
        owned.Add(engine);
        var local = new HoneChatClient(engine);
        owned.Add(local);
        var agentOptions = new ChatClientAgentOptions(s.Adapter == null ? s.Agent : $"{s.Agent} + {s.Adapter}", s.Adapter == null ? null : "adapter",
            s.Temperature, s.MaxTokens, s.ToolsInPrompt);
        return _ => new ChatClientAgent(local, agentOptions);
    }

    static void Local(AgentSelection s)
    {
        if (s.Adapter != null) throw new ArgumentException($"--adapter applies to a model agent, not to --agent {s.Agent}");
    }

    static Func<AgentContext, ICustomer> CustomerFor(AgentSelection s, List<IDisposable> owned)
    {
        if (s.UserEndpoint != null)
        {
            if (s.UserModel == null) throw new ArgumentException("--user-endpoint needs --user-model: the model name the endpoint serves");
            var client = OpenAiEndpoint.CreateChatClient(Endpoint(s.UserEndpoint, "--user-endpoint"), s.UserModel, s.ApiKey);
            owned.Add(client);
            var options = new ChatClientCustomerOptions(s.UserModel, s.UserModel);
            return _ => new ChatClientCustomer(client, options);
        }
        if (s.User == "scripted") return _ => new ScriptedCustomer();
        var engine = BatchEngine.Open(s.User, [], Engine(s));
        owned.Add(engine);
        var local = new HoneChatClient(engine);
        owned.Add(local);
        var customerOptions = new ChatClientCustomerOptions(s.User);
        return _ => new ChatClientCustomer(local, customerOptions);
    }

    static EngineOptions Engine(AgentSelection s) => new() { Parallel = Math.Max(1, s.Parallel), Context = s.Context, Threads = s.Threads, CacheType = s.CacheType };

    static Uri Endpoint(string text, string option) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            ? uri
            : throw new ArgumentException($"{option} {text}: expected an http:// or https:// address (e.g. http://127.0.0.1:8080/v1)");
}

/// <summary><c>hone agent data | run | trajectories</c>: the e-commerce agent benchmark (τ-bench retail semantics).
/// The work is in Hone.Agents.</summary>
internal static class AgentCommand
{
    public static Command Create()
    {
        var cmd = new Command("agent",
            "The e-commerce agent benchmark (τ-bench retail semantics): a customer (simulated) talks to an agent that calls tools on a store " +
            "database; graded by the final database against the gold actions', the facts told and the lookups made, reported as pass^k.\n" +
            "  hone agent data --out DIR --seed S          generate the store, policy and tasks\n" +
            "  hone agent run DIR --agent oracle --out r.json   run and grade\n" +
            "  hone agent trajectories DIR --out sft.jsonl  the oracle's conversations as training data\n" +
            "  hone synth trajectories DIR --teacher MODEL --out sft.jsonl   a teacher's conversations the grader passes, as training data\n" +
            "See docs/agent-benchmark.md.");
        cmd.Subcommands.Add(Data());
        cmd.Subcommands.Add(Run());
        cmd.Subcommands.Add(Trajectories());
        return cmd;
    }

    static Command Data()
    {
        var output = new Option<string>("--out", "-o") { Description = "the benchmark folder to write", Required = true };
        var users = new Option<int>("--users") { Description = "customers", DefaultValueFactory = _ => 500 }.Within(2, 1_000_000);
        var orders = new Option<int>("--orders") { Description = "orders", DefaultValueFactory = _ => 1000 }.Within(1, 10_000_000);
        var products = new Option<int>("--products") { Description = "product types", DefaultValueFactory = _ => 50 }.Within(2, 10_000);
        var tasks = new Option<int>("--tasks") { Description = "tasks (train + held-out test, split by user)", DefaultValueFactory = _ => 400 }.Within(1, 1_000_000);
        var seed = new Option<ulong>("--seed", "-s") { Description = "seed: the same seed and sizes give byte-identical files", DefaultValueFactory = _ => 1234UL };
        var policy = new Option<string>("--policy") { Description = "the agent's system prompt: full (the whole policy), short (its rules in brief, for small contexts), or a Markdown file", DefaultValueFactory = _ => "full" };
        var json = CliSupport.Json();
        var cmd = new Command("data",
            "Generate a benchmark folder: store.sqlite (users, products with variants, orders), policy.md (the agent's system prompt), " +
            "tasks_train.jsonl and tasks_test.jsonl (held-out users), manifest.json. Deterministic from --seed.")
        {
            output, users, orders, products, tasks, seed, policy, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            string dir = r.GetValue(output)!;
            ulong s = r.GetValue(seed);
            var kinds = AgentBenchmarkData.Generate(dir, new StoreOptions(r.GetValue(users), r.GetValue(orders), r.GetValue(products), s),
                new TaskOptions(r.GetValue(tasks), s), message => Console.Error.WriteLine(message),
                AgentBenchmarkData.ResolvePolicy(r.GetValue(policy)));
            var manifest = File.ReadAllText(Path.Combine(dir, AgentBenchmarkData.ManifestFile));
            if (r.GetValue(json)) { Console.WriteLine(manifest.Trim()); return 0; }
            foreach (var (kind, count) in kinds) Console.WriteLine($"{kind,-30} {count,5}");
            Console.WriteLine($"{"total",-30} {kinds.Values.Sum(),5}");
            Console.Error.WriteLine($"written to {dir}");
            return 0;
        }));
        return cmd;
    }

    static Command Run()
    {
        var dir = new Argument<string>("dir") { Description = "a benchmark folder (hone agent data)" };
        var agent = new Option<string>("--agent") { Description = "oracle (replays the gold actions), none (does nothing), or a model directory/.gguf", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "an adapter for a model agent" };
        var agentEndpoint = new Option<string?>("--agent-endpoint") { Description = "an OpenAI-compatible endpoint serving the agent model" };
        var agentModel = new Option<string?>("--agent-model") { Description = "the model name to ask the agent endpoint for" };
        var user = new Option<string>("--user") { Description = "the customer: scripted (default, deterministic) or a model", DefaultValueFactory = _ => "scripted" };
        var userEndpoint = new Option<string?>("--user-endpoint") { Description = "an OpenAI-compatible endpoint for a model customer" };
        var userModel = new Option<string?>("--user-model") { Description = "the model name to ask the customer endpoint for" };
        var apiKey = new Option<string?>("--api-key") { Description = $"bearer key for the endpoints (default: ${OpenAiEndpoint.ApiKeyVariable}, else none)" };
        var threads = CliSupport.Threads();
        var context = CliSupport.Context();
        var cacheType = CliSupport.CacheType();
        var parallel = new Option<int>("--parallel", "-p") { Description = "trials run at once (a local model batches their steps)", DefaultValueFactory = _ => 1 }.Within(1, 256);
        var temperature = new Option<float>("--temperature") { Description = "the model agent's sampling temperature (0 = greedy, τ-bench's default)", DefaultValueFactory = _ => 0f }.Within(0, 2);
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens per model agent message", DefaultValueFactory = _ => 256 }.Within(1, 100_000);
        var noToolsInPrompt = new Option<bool>("--no-tools-in-prompt") { Description = "keep the tool declarations out of a local model's prompt (a small model fine-tuned on its tools); calls stay constrained by their schemas" };
        var split = new Option<string>("--split") { Description = "train or test (held-out users)", DefaultValueFactory = _ => "test" };
        split.AcceptOnlyFromAmong("train", "test");
        var trials = new Option<int>("--trials", "-n") { Description = "trials per task (pass^k for k = 1..n)", DefaultValueFactory = _ => 1 }.Within(1, 1000);
        var seed = new Option<ulong>("--seed", "-s") { Description = "run seed (each trial's customer persona and wording)", DefaultValueFactory = _ => 1234UL };
        var limit = new Option<int?>("--limit") { Description = "run only the first N tasks" }.Within(1, int.MaxValue);
        var maxSteps = new Option<int>("--max-steps") { Description = "agent messages per trial before it fails with step_limit", DefaultValueFactory = _ => 30 }.Within(1, 10_000);
        var output = new Option<string>("--out", "-o") { Description = "results file (JSON, Hone's eval results shape plus pass_hat_k, pass_at_k, outcomes)", Required = true };
        var trajectories = new Option<string?>("--trajectories") { Description = "where to write every trial's conversation (JSONL; default: next to --out, .trajectories.jsonl)" };
        var json = CliSupport.Json();
        var cmd = new Command("run",
            "Run and grade an agent on the benchmark: per task and trial, a fresh copy of the store, the customer, the conversation; a trial " +
            "passes when the final database equals the gold actions' (canonical hash), every required fact was told and every required lookup " +
            "made. Failure reasons: wrong_state, missing_fact, missing_lookup, step_limit, error.")
        {
            dir, agent, adapter, agentEndpoint, agentModel, user, userEndpoint, userModel, apiKey, split, trials, seed, limit, maxSteps, parallel,
            temperature, maxTokens, noToolsInPrompt, threads, context, cacheType, output, trajectories, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            var selection = new AgentSelection(r.GetValue(agent)!, r.GetValue(adapter), r.GetValue(agentEndpoint), r.GetValue(agentModel),
                r.GetValue(user)!, r.GetValue(userEndpoint), r.GetValue(userModel), r.GetValue(threads), r.GetValue(context), r.GetValue(parallel),
                r.GetValue(temperature), r.GetValue(maxTokens), !r.GetValue(noToolsInPrompt), r.GetValue(apiKey),
                CliSupport.ParseCacheType(r.GetValue(cacheType)));
            using var factories = AgentFactories.Create(selection);
            string outPath = r.GetValue(output)!;
            string trajectoryPath = r.GetValue(trajectories) ?? Path.ChangeExtension(outPath, null) + ".trajectories.jsonl";
            using var data = AgentBenchmarkData.Load(r.GetValue(dir)!);
            var options = new AgentRunOptions(r.GetValue(split)!, r.GetValue(trials), r.GetValue(seed), r.GetValue(limit), r.GetValue(maxSteps), trajectoryPath,
                r.GetValue(parallel));
            var result = AgentBenchmark.RunAsync(data, options, factories.Agent, factories.Customer, CliSupport.Progress("trials"), cancel).GetAwaiter().GetResult();
            EvalResults.Write(outPath, result.Document);
            if (r.GetValue(json)) { Console.WriteLine(result.Document.ToJsonString()); return 0; }
            Console.WriteLine($"agent {result.Document["agent"]}, customer {result.Document["customer"]}, split {options.Split}: " +
                              $"{result.Document["tasks"]} tasks × {options.Trials} trials");
            foreach (var (k, (v, se)) in result.PassHat)
                Console.WriteLine($"pass^{k} {F(v)}{(se is double s ? " ± " + F(s) : "")}   pass@{k} {F(result.PassAt[k].Value)}{(result.PassAt[k].StandardError is double s2 ? " ± " + F(s2) : "")}");
            var failures = result.Trials.Where(t => !t.Passed).GroupBy(t => t.FailureReason!).OrderBy(g => g.Key, StringComparer.Ordinal);
            foreach (var g in failures) Console.WriteLine($"  {g.Key}: {g.Count()}");
            Console.Error.WriteLine($"results written to {outPath}; trajectories to {trajectoryPath}");
            return 0;
        }));
        return cmd;
    }

    static Command Trajectories()
    {
        var dir = new Argument<string>("dir") { Description = "a benchmark folder (hone agent data)" };
        var split = new Option<string>("--split") { Description = "train (default) or test (the held-out set: needs --allow-test-split)", DefaultValueFactory = _ => "train" };
        split.AcceptOnlyFromAmong("train", "test");
        var allowTest = new Option<bool>("--allow-test-split") { Description = "write conversations of the test split anyway (only where it holds nothing out)" };
        var trials = new Option<int>("--trials", "-n") { Description = "conversations per task, each with another customer persona", DefaultValueFactory = _ => 1 }.Within(1, 100);
        var seed = new Option<ulong>("--seed", "-s") { Description = "seed of the customers' personas and wording", DefaultValueFactory = _ => 1234UL };
        var limit = new Option<int?>("--limit") { Description = "only the first N tasks" }.Within(1, int.MaxValue);
        var noTools = new Option<bool>("--no-tools") { Description = "leave out the tool schemas (each record's \"tools\"), for small contexts" };
        var output = new Option<string>("--out", "-o") { Description = "the training file (JSONL, OpenAI messages with tool_calls and role \"tool\")", Required = true };
        var report = new Option<string?>("--report") { Description = "also write the report as JSON here (as hone synth trajectories writes it)" };
        var json = CliSupport.Json();
        var cmd = new Command("trajectories",
            "Write the oracle's conversations with the simulated customer as training conversations (system policy, customer, agent tool calls, " +
            "tool results, agent replies), for hone train. Each is graded like any agent's and all must pass (else the folder is inconsistent); " +
            "one identical to a conversation already written (tool call ids aside) is dropped. " +
            "For a model or an endpoint as the teacher, with only the conversations the grader passes kept, see hone synth trajectories " +
            "(this command is its --teacher oracle case).")
        {
            dir, split, allowTest, trials, seed, limit, noTools, output, report, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            using var data = AgentBenchmarkData.Load(r.GetValue(dir)!);
            string outPath = r.GetValue(output)!;
            var options = new TrajectoryOptions(r.GetValue(split)!, r.GetValue(trials), r.GetValue(seed), r.GetValue(limit), !r.GetValue(noTools),
                AllowTestSplit: r.GetValue(allowTest), Report: r.GetValue(report));
            var stats = AgentTrajectories.WriteAsync(data, options, outPath, CliSupport.Progress("conversations"), cancel).GetAwaiter().GetResult();
            if (stats.FailedGrade > 0) throw new InvalidOperationException($"{stats.FailedGrade} oracle conversations failed their grade; the benchmark folder is inconsistent");
            int Q(IReadOnlyList<int> xs, double q) => TrajectoryReport.Quantile(xs, q);
            if (r.GetValue(json))
            {
                var document = stats.ToJson();
                document["records"] = stats.Kept;
                document["out"] = outPath;
                Console.WriteLine(document.ToJsonString());
                return 0;
            }
            Console.WriteLine($"{stats.Kept} conversations written to {outPath}" + (stats.DroppedTotal > 0 ? $" ({stats.DroppedTotal} duplicates dropped)" : ""));
            Console.WriteLine($"characters (messages): median {Q(stats.Characters, 0.5)}, p90 {Q(stats.Characters, 0.9)}, max {stats.Characters.DefaultIfEmpty().Max()}; " +
                              $"without the system policy: median {Q(stats.CharactersWithoutSystem, 0.5)}, p90 {Q(stats.CharactersWithoutSystem, 0.9)}, max {stats.CharactersWithoutSystem.DefaultIfEmpty().Max()}");
            return 0;
        }));
        return cmd;
    }

    static string F(double x) => x.ToString("F4", CultureInfo.InvariantCulture);
}
