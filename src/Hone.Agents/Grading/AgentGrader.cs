using System.Text.Json.Nodes;

namespace Hone.Agents;

/// <summary>
/// τ-bench's reward: replay the gold actions on a fresh copy of the store and compare the canonical hash with the
/// agent's final store; then (this benchmark's additions) every required fact must appear in the agent's texts
/// (case-insensitive, commas removed, as τ-bench checks outputs) and every required read must have been made
/// successfully with the same arguments (for authentication: any successful lookup that found the task's user).
/// </summary>
public static class AgentGrader
{
    /// <summary>The hash of the store after the gold actions. A gold action that fails is a broken task, reported as such.</summary>
    public static string ExpectedHash(StoreDatabase source, AgentTask task)
    {
        using var store = source.Copy();
        foreach (var action in task.Actions)
        {
            string result = StoreTools.Call(store, action.Name, action.Arguments);
            if (result.StartsWith("Error:", StringComparison.Ordinal))
                throw new InvalidOperationException($"task {task.Id}: gold action {action.Name} fails on the store: {result}");
        }
        return store.Hash();
    }

    public static List<string> MissingFacts(AgentTask task, IEnumerable<string> agentTexts)
    {
        string said = string.Join("\n", agentTexts).ToLowerInvariant().Replace(",", "");
        return task.Outputs.Where(o => !said.Contains(o.ToLowerInvariant().Replace(",", ""))).ToList();
    }

    public static List<ToolCall> MissingReads(AgentTask task, IReadOnlyList<ConversationView.CallRecord> calls)
    {
        var ok = calls.Where(c => c.Result != null && !c.Result.StartsWith("Error:", StringComparison.Ordinal)).ToList();
        return task.RequiredReads.Where(r => !ok.Any(c => Satisfies(task, r, c))).ToList();
    }

    static bool Satisfies(AgentTask task, ToolCall required, ConversationView.CallRecord made)
    {
        if (required.Name is "find_user_id_by_email" or "find_user_id_by_name_zip")
            return made.Name is "find_user_id_by_email" or "find_user_id_by_name_zip" && made.Result == task.UserId;
        if (made.Name != required.Name) return false;
        foreach (var (key, value) in required.Arguments)
            if (!Same(value, made.Arguments[key])) return false;
        return true;
    }

    static bool Same(JsonNode? a, JsonNode? b) => (a, b) switch
    {
        (JsonValue x, JsonValue y) when x.TryGetValue(out string? s) && y.TryGetValue(out string? t) => string.Equals(s.Trim(), t.Trim(), StringComparison.OrdinalIgnoreCase),
        (JsonArray x, JsonArray y) => x.Count == y.Count && x.Zip(y).All(p => Same(p.First, p.Second)),
        _ => JsonNode.DeepEquals(a, b),
    };
}
