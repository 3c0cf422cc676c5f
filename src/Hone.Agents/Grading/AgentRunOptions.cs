namespace Hone.Agents;

/// <param name="Split">"train" or "test" (held-out users)</param>
/// <param name="Trials">trials per task; pass^k and pass@k are reported for k = 1..Trials</param>
/// <param name="Seed">the run's seed: trial t of task i gets a seed derived from (Seed, task id, t)</param>
/// <param name="Limit">run only the first N tasks of the split</param>
/// <param name="MaxSteps">agent messages per trial before the trial ends with step_limit (τ-bench: 30)</param>
/// <param name="TrajectoriesPath">where every trial's trajectory is written (JSONL); null = not written</param>
/// <param name="Parallel">trials run at once (a model agent on a batch engine runs their steps in one batch); results,
/// trajectories and their order do not depend on it</param>
public sealed record AgentRunOptions(string Split = "test", int Trials = 1, ulong Seed = 1234, int? Limit = null, int MaxSteps = 30,
    string? TrajectoriesPath = null, int Parallel = 1);

/// <summary>Why a trial failed (null when it passed).</summary>
public static class FailureReasons
{
    public const string WrongState = "wrong_state";
    public const string MissingFact = "missing_fact";
    public const string MissingLookup = "missing_lookup";
    public const string StepLimit = "step_limit";
    public const string Error = "error";
}
