using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <summary>A tool the agent sees: name, description, JSON Schema of its arguments (an "object" schema).</summary>
public sealed record AgentToolSpec(string Name, string Description, JsonObject Parameters);

/// <summary>Everything one trial gives the agent and customer.</summary>
public sealed record AgentContext(AgentTask Task, int Trial, ulong Seed, string Policy, IReadOnlyList<AgentToolSpec> Tools);

/// <summary>The customer-service agent under test.</summary>
public interface IAgent
{
    string Name { get; }

    /// <summary>
    /// The agent's next message. <paramref name="conversation"/>: System (the policy) first, then User (the customer's
    /// words), Assistant (TextContent to the customer and/or FunctionCallContent calls, each with a CallId), Tool
    /// (FunctionResultContent(callId, resultText)). Return an Assistant message: text goes to the customer, calls are run
    /// by the harness (all calls of one message, in order) and the agent is asked again.
    /// </summary>
    Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel);
}

/// <summary>The simulated customer.</summary>
public interface ICustomer
{
    string Name { get; }

    /// <summary>
    /// The customer's next words given what the customer has seen: (role "assistant" = the agent's texts, "user" = its own
    /// earlier words), in order. The first call has an empty list: the customer opens the conversation (as in τ-bench,
    /// where the user answers the agent's fixed greeting; here the greeting is implied and not part of the transcript).
    /// A reply containing <see cref="CustomerMarkers.Stop"/> ends the episode.
    /// </summary>
    Task<string> RespondAsync(AgentContext context, IReadOnlyList<(string Role, string Text)> transcript, CancellationToken cancel);
}

public static class CustomerMarkers
{
    public const string Stop = "###STOP###";
}
