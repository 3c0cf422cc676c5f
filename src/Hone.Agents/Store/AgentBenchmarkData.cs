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
}
