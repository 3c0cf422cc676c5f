using System.CommandLine;
using System.Globalization;
using Hone.Agents;
using Hone.Evaluation;

namespace Hone.Cli.Commands;

/// <summary>Which agent and customer a run uses: the built-in ones here; model-backed ones (a model directory, an
/// OpenAI-compatible endpoint) are resolved by the branches marked below.</summary>
/// <param name="Agent">"oracle", "none", or a model (directory or .gguf)</param>
/// <param name="User">"scripted" (default) or a model</param>
public sealed record AgentSelection(string Agent, string? Adapter, string? AgentEndpoint, string? AgentModel, string User, string? UserEndpoint);

internal static class AgentFactories
{
    public static Func<AgentContext, IAgent> Agent(AgentSelection s) => s.Agent switch
    {
        "oracle" when s.AgentEndpoint == null => _ => new OracleAgent(),
        "none" when s.AgentEndpoint == null => _ => new NoneAgent(),
        _ when s.AgentEndpoint != null => throw new NotImplementedException($"--agent-endpoint {s.AgentEndpoint}: the OpenAI-endpoint agent is not built yet"),
        _ => throw new NotImplementedException($"--agent {s.Agent}: model-backed agents (ChatClientAgent) are not built yet; use oracle or none"),
    };

    public static Func<AgentContext, ICustomer> Customer(AgentSelection s) => s.User switch
    {
        "scripted" when s.UserEndpoint == null => _ => new ScriptedCustomer(),
        _ when s.UserEndpoint != null => throw new NotImplementedException($"--user-endpoint {s.UserEndpoint}: the model-driven customer is not built yet"),
        _ => throw new NotImplementedException($"--user {s.User}: the model-driven customer is not built yet; use scripted"),
    };
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
        var json = CliSupport.Json();
        var cmd = new Command("data",
            "Generate a benchmark folder: store.sqlite (users, products with variants, orders), policy.md (the agent's system prompt), " +
            "tasks_train.jsonl and tasks_test.jsonl (held-out users), manifest.json. Deterministic from --seed.")
        {
            output, users, orders, products, tasks, seed, json,
        };
        cmd.SetAction(r => CliSupport.Guard(() =>
        {
            string dir = r.GetValue(output)!;
            ulong s = r.GetValue(seed);
            var kinds = AgentBenchmarkData.Generate(dir, new StoreOptions(r.GetValue(users), r.GetValue(orders), r.GetValue(products), s),
                new TaskOptions(r.GetValue(tasks), s), message => Console.Error.WriteLine(message));
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
            dir, agent, adapter, agentEndpoint, agentModel, user, userEndpoint, split, trials, seed, limit, maxSteps, output, trajectories, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            var selection = new AgentSelection(r.GetValue(agent)!, r.GetValue(adapter), r.GetValue(agentEndpoint), r.GetValue(agentModel),
                r.GetValue(user)!, r.GetValue(userEndpoint));
            var agents = AgentFactories.Agent(selection);
            var customers = AgentFactories.Customer(selection);
            string outPath = r.GetValue(output)!;
            string trajectoryPath = r.GetValue(trajectories) ?? Path.ChangeExtension(outPath, null) + ".trajectories.jsonl";
            using var data = AgentBenchmarkData.Load(r.GetValue(dir)!);
            var options = new AgentRunOptions(r.GetValue(split)!, r.GetValue(trials), r.GetValue(seed), r.GetValue(limit), r.GetValue(maxSteps), trajectoryPath);
            var result = AgentBenchmark.RunAsync(data, options, agents, customers, CliSupport.Progress("trials"), cancel).GetAwaiter().GetResult();
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
        var split = new Option<string>("--split") { Description = "train (default) or test", DefaultValueFactory = _ => "train" };
        split.AcceptOnlyFromAmong("train", "test");
        var trials = new Option<int>("--trials", "-n") { Description = "conversations per task, each with another customer persona", DefaultValueFactory = _ => 1 }.Within(1, 100);
        var seed = new Option<ulong>("--seed", "-s") { Description = "seed of the customers' personas and wording", DefaultValueFactory = _ => 1234UL };
        var limit = new Option<int?>("--limit") { Description = "only the first N tasks" }.Within(1, int.MaxValue);
        var noTools = new Option<bool>("--no-tools") { Description = "leave out the tool schemas (each record's \"tools\"), for small contexts" };
        var output = new Option<string>("--out", "-o") { Description = "the training file (JSONL, OpenAI messages with tool_calls and role \"tool\")", Required = true };
        var json = CliSupport.Json();
        var cmd = new Command("trajectories",
            "Write the oracle's conversations with the simulated customer as training conversations (system policy, customer, agent tool calls, " +
            "tool results, agent replies), for hone train.")
        {
            dir, split, trials, seed, limit, noTools, output, json,
        };
        cmd.SetAction(r => CliSupport.GuardInterruptible(cancel =>
        {
            using var data = AgentBenchmarkData.Load(r.GetValue(dir)!);
            string outPath = r.GetValue(output)!;
            var stats = AgentTrajectories.WriteAsync(data, new TrajectoryOptions(r.GetValue(split)!, r.GetValue(trials), r.GetValue(seed), r.GetValue(limit), !r.GetValue(noTools)),
                outPath, CliSupport.Progress("conversations"), cancel).GetAwaiter().GetResult();
            if (stats.Failed > 0) throw new InvalidOperationException($"{stats.Failed} oracle conversations failed their grade; the benchmark folder is inconsistent");
            var sorted = stats.Characters.Order().ToList();
            var sortedBody = stats.CharactersWithoutSystem.Order().ToList();
            int Q(List<int> xs, double q) => xs.Count == 0 ? 0 : xs[Math.Min(xs.Count - 1, (int)(q * xs.Count))];
            if (r.GetValue(json))
            {
                Console.WriteLine(new System.Text.Json.Nodes.JsonObject
                {
                    ["records"] = stats.Records, ["out"] = outPath,
                    ["characters"] = new System.Text.Json.Nodes.JsonObject { ["median"] = Q(sorted, 0.5), ["p90"] = Q(sorted, 0.9), ["max"] = sorted.LastOrDefault() },
                    ["characters_without_system"] = new System.Text.Json.Nodes.JsonObject { ["median"] = Q(sortedBody, 0.5), ["p90"] = Q(sortedBody, 0.9), ["max"] = sortedBody.LastOrDefault() },
                }.ToJsonString());
                return 0;
            }
            Console.WriteLine($"{stats.Records} conversations written to {outPath}");
            Console.WriteLine($"characters (messages): median {Q(sorted, 0.5)}, p90 {Q(sorted, 0.9)}, max {sorted.LastOrDefault()}; " +
                              $"without the system policy: median {Q(sortedBody, 0.5)}, p90 {Q(sortedBody, 0.9)}, max {sortedBody.LastOrDefault()}");
            return 0;
        }));
        return cmd;
    }

    static string F(double x) => x.ToString("F4", CultureInfo.InvariantCulture);
}
