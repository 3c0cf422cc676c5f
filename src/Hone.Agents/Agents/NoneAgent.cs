using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <summary>The do-nothing baseline: never calls a tool, always declines. It should pass no task.</summary>
public sealed class NoneAgent : IAgent
{
    public const string Reply = "I'm sorry, I can't help with that.";
    public string Name => "none";

    public Task<ChatMessage> RespondAsync(AgentContext context, IReadOnlyList<ChatMessage> conversation, CancellationToken cancel) =>
        Task.FromResult(new ChatMessage(ChatRole.Assistant, Reply));
}
