using Hone.Agents;

namespace Hone.Tests.Agents;

/// <summary>One small generated benchmark folder shared by the agent tests (every task kind, 4 tasks each).</summary>
public sealed class AgentFixture : IDisposable
{
    public static readonly StoreOptions Store = new(Users: 60, Orders: 160, Products: 20, Seed: 11);
    public static readonly TaskOptions Tasks = new(Count: 56, Seed: 11);

    public string Directory { get; }
    public AgentBenchmarkData Data { get; }

    public AgentFixture()
    {
        Directory = Path.Combine(Path.GetTempPath(), "hone-agent-tests-" + Guid.NewGuid().ToString("N"));
        AgentBenchmarkData.Generate(Directory, Store, Tasks);
        Data = AgentBenchmarkData.Load(Directory);
    }

    public IEnumerable<AgentTask> AllTasks => Data.TrainTasks.Concat(Data.TestTasks);

    public void Dispose()
    {
        Data.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}
