using System.Text.Json.Nodes;

namespace Hone.Agents;

/// <summary>
/// One tool of the store (τ-bench retail's names, arguments and semantics). Invalid arguments and refused actions come
/// back as "Error: …" text, never as exceptions: the agent reads them and may try again.
/// </summary>
public interface IStoreTool
{
    string Name { get; }
    /// <summary>Whether a successful call changes the database (then the policy asks for an explicit yes first).</summary>
    bool Writes { get; }
    /// <summary>Whether a call ends the episode (transfer to a human).</summary>
    bool EndsEpisode { get; }
    AgentToolSpec Spec { get; }
    /// <summary>The tool's text result: compact JSON for reads and successful writes, a plain value, or "Error: …".</summary>
    string Invoke(StoreDatabase store, JsonObject arguments);
}
