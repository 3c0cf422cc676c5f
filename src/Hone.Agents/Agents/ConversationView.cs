using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace Hone.Agents;

/// <summary>A conversation read back: the customer's words, the agent's texts, and its tool calls with their results.</summary>
public sealed class ConversationView
{
    public sealed record CallRecord(string Name, JsonObject Arguments, string? Result);

    public List<string> CustomerTexts { get; } = [];
    public List<string> AgentTexts { get; } = [];
    public List<CallRecord> Calls { get; } = [];
    /// <summary>The role of the last message that is not a tool result ("user" or "assistant"), or null.</summary>
    public string? LastSpeaker { get; private set; }

    public ConversationView(IReadOnlyList<ChatMessage> conversation)
    {
        var byId = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var m in conversation)
        {
            if (m.Role == ChatRole.User) { CustomerTexts.Add(m.Text); LastSpeaker = "user"; }
            else if (m.Role == ChatRole.Assistant)
            {
                if (m.Text.Length > 0) AgentTexts.Add(m.Text);
                foreach (var call in m.Contents.OfType<FunctionCallContent>())
                {
                    byId[call.CallId] = Calls.Count;
                    Calls.Add(new CallRecord(call.Name, ToJson(call.Arguments), null));
                }
                LastSpeaker = "assistant";
            }
            else if (m.Role == ChatRole.Tool)
                foreach (var result in m.Contents.OfType<FunctionResultContent>())
                    if (byId.TryGetValue(result.CallId, out int i)) Calls[i] = Calls[i] with { Result = result.Result?.ToString() };
        }
    }

    public string CustomerSaid => string.Join("\n", CustomerTexts).ToLowerInvariant();

    public string? LastCustomerText => CustomerTexts.Count > 0 ? CustomerTexts[^1] : null;

    public bool Made(ToolCall call) => Calls.Any(c => c.Name == call.Name && JsonNode.DeepEquals(c.Arguments, call.Arguments));

    public string? ResultOf(ToolCall call) => Calls.LastOrDefault(c => c.Name == call.Name && JsonNode.DeepEquals(c.Arguments, call.Arguments))?.Result;

    /// <summary>Arguments as the agent gave them (strings, JSON elements, lists) as one JSON object.</summary>
    public static JsonObject ToJson(IDictionary<string, object?>? arguments)
    {
        var o = new JsonObject();
        if (arguments == null) return o;
        foreach (var (key, value) in arguments)
            o[key] = value switch
            {
                null => null,
                JsonNode node => node.DeepClone(),
                JsonElement element => JsonNode.Parse(element.GetRawText()),
                string s => s,
                _ => JsonSerializer.SerializeToNode(value),
            };
        return o;
    }
}
