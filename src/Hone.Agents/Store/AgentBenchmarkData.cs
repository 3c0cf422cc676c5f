using System.Reflection;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Agents;

/// <summary>
/// A benchmark folder as `hone agent data` writes it: store.sqlite (the store), policy.md (the agent's system prompt),
/// tasks_train.jsonl and tasks_test.jsonl (held-out users), manifest.json (sizes and seed).
/// </summary>
public sealed class AgentBenchmarkData : IDisposable
{
    public const string StoreFile = "store.sqlite", PolicyFile = "policy.md", TrainTasksFile = "tasks_train.jsonl", TestTasksFile = "tasks_test.jsonl",
        ManifestFile = "manifest.json";

    public string Directory { get; }
    public StoreDatabase Store { get; }
    public string Policy { get; }
    public IReadOnlyList<AgentTask> TrainTasks { get; }
    public IReadOnlyList<AgentTask> TestTasks { get; }

    public AgentBenchmarkData(string directory, StoreDatabase store, string policy, IReadOnlyList<AgentTask> train, IReadOnlyList<AgentTask> test)
    {
        Directory = directory;
        Store = store;
        Policy = policy;
        TrainTasks = train;
        TestTasks = test;
    }

    public IReadOnlyList<AgentTask> Tasks(string split) => split switch
    {
        "train" => TrainTasks,
        "test" => TestTasks,
        _ => throw new ArgumentException($"unknown split '{split}': train or test"),
    };

    public void Dispose() => Store.Dispose();

    /// <summary>The policy document the agent gets as its system prompt (Policy.md, embedded).</summary>
    public static string DefaultPolicy { get; } = ReadPolicy("Hone.Agents.Policy.md");

    /// <summary>The policy's rules in brief (PolicyShort.md, about 130 words against about 700), for small models whose
    /// context has no room for the whole document; the tasks, tools and grading are the same.</summary>
    public static string ShortPolicy { get; } = ReadPolicy("Hone.Agents.PolicyShort.md");

    /// <summary>"full" (the default), "short", or a Markdown file of the user's.</summary>
    public static string ResolvePolicy(string? policy) => policy switch
    {
        null or "full" => DefaultPolicy,
        "short" => ShortPolicy,
        _ when File.Exists(policy) => File.ReadAllText(policy).Replace("\r\n", "\n"),
        _ => throw new FileNotFoundException($"{policy}: policy not found (give full, short, or a Markdown file)", policy),
    };

    static string ReadPolicy(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
                           ?? throw new InvalidOperationException($"the embedded policy ({name}) is missing");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Replace("\r\n", "\n");
    }

    /// <summary>
    /// Generates a benchmark folder: the store, the policy, the tasks split by user, and a manifest. The same options
    /// give byte-identical files. Returns the per-kind task counts.
    /// </summary>
    /// <param name="policy">the agent's system prompt (<see cref="ResolvePolicy"/>); null = <see cref="DefaultPolicy"/></param>
    public static Dictionary<string, int> Generate(string directory, StoreOptions store, TaskOptions tasks, Action<string>? progress = null, string? policy = null)
    {
        store.Validate();
        tasks.Validate();
        System.IO.Directory.CreateDirectory(directory);
        progress?.Invoke($"store: {store.Users} users, {store.Orders} orders, {store.Products} products (seed {store.Seed})");
        using var db = StoreGenerator.Generate(store);
        progress?.Invoke($"tasks: {tasks.Count}");
        var generated = TaskGenerator.Generate(db, tasks);
        db.Save(Path.Combine(directory, StoreFile));
        AtomicFile.WriteAllText(Path.Combine(directory, PolicyFile), policy ?? DefaultPolicy);
        AgentTaskJson.Write(Path.Combine(directory, TrainTasksFile), generated.Where(t => t.Split == "train"));
        AgentTaskJson.Write(Path.Combine(directory, TestTasksFile), generated.Where(t => t.Split == "test"));
        var kinds = TaskKinds.All.ToDictionary(k => k, k => generated.Count(t => t.Kind == k));
        var manifest = new JsonObject
        {
            ["format"] = "hone-agent-benchmark",
            ["format_version"] = 1,
            ["users"] = store.Users,
            ["orders"] = store.Orders,
            ["products"] = store.Products,
            ["seed"] = store.Seed,
            ["task_seed"] = tasks.Seed,
            ["tasks"] = generated.Count,
            ["train"] = generated.Count(t => t.Split == "train"),
            ["test"] = generated.Count(t => t.Split == "test"),
            ["kinds"] = new JsonObject(kinds.Select(k => KeyValuePair.Create(k.Key, (JsonNode?)k.Value))),
        };
        AtomicFile.WriteAllText(Path.Combine(directory, ManifestFile), manifest.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
        return kinds;
    }

    /// <summary>Loads a benchmark folder; a missing or damaged file is an error naming it.</summary>
    public static AgentBenchmarkData Load(string directory)
    {
        if (!System.IO.Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: benchmark folder not found (make one with `hone agent data --out {directory}`)");
        string policyPath = Path.Combine(directory, PolicyFile);
        if (!File.Exists(policyPath)) throw new FileNotFoundException($"{policyPath}: policy not found", policyPath);
        var train = AgentTaskJson.Read(Path.Combine(directory, TrainTasksFile));
        var test = AgentTaskJson.Read(Path.Combine(directory, TestTasksFile));
        var store = StoreDatabase.Open(Path.Combine(directory, StoreFile));
        return new AgentBenchmarkData(directory, store, File.ReadAllText(policyPath), train, test);
    }
}
