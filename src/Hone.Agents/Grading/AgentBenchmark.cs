using System.Text.Json.Nodes;

namespace Hone.Agents;

/// <summary>One trial's outcome: passed, or the reason it failed (<see cref="FailureReasons"/>), with the checks.</summary>
public sealed record TrialOutcome(string TaskId, string Kind, int Trial, ulong Seed, bool Passed, string? FailureReason, string? Detail,
    bool StateMatches, IReadOnlyList<string> MissingFacts, IReadOnlyList<ToolCall> MissingReads, int Steps, bool Transferred);

/// <summary>A whole run: per-task trial outcomes, pass^k and pass@k (k = 1..trials) with standard errors, and the results
/// document in Hone's eval results shape (<see cref="Document"/>).</summary>
public sealed record AgentRunResult(IReadOnlyList<TrialOutcome> Trials, IReadOnlyDictionary<int, (double Value, double? StandardError)> PassHat,
    IReadOnlyDictionary<int, (double Value, double? StandardError)> PassAt, JsonObject Document);

/// <summary>
/// Runs the benchmark: for every task of the split and every trial, a fresh copy of the store, an agent and a customer
/// from the factories, the conversation until the customer stops, the agent transfers, or the step limit; then grading
/// (<see cref="AgentGrader"/>). Any <see cref="IAgent"/>/<see cref="ICustomer"/> plugs in.
/// </summary>
public static class AgentBenchmark
{
    public static Task<AgentRunResult> RunAsync(AgentBenchmarkData data, AgentRunOptions options, Func<AgentContext, IAgent> agents,
        Func<AgentContext, ICustomer> customers, Action<int, int>? progress, CancellationToken cancel) =>
        throw new NotImplementedException("the runner lands in the next commit");
}
