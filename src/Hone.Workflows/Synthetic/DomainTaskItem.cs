using System.Text.Json.Nodes;

namespace Hone.Synthetic;

/// <summary>
/// One item of the domain evaluation task: the prompt (system message with the order record, and the customer's
/// question) and what a sampled answer must contain. Strict about the fact, lenient about the wording: every
/// <see cref="Contains"/> string must appear exactly as the record writes it (order id, date, amount, tracking
/// number…), and the answer must match <see cref="Regex"/> (the claim: "shipped on", "can no longer be cancelled"…,
/// case-insensitive), in any sentence and any phrasing, and must not match any <see cref="Forbidden"/> pattern (a claim that
/// contradicts the situation: "delivered" for an order still being prepared).
/// JSON: {"id", "intent", "situation", "prompt_messages": [{"role", "content"}…],
/// "expected": {"contains": […], "regex": "(?i)…", "forbidden": ["(?i)…"…]}}.
/// </summary>
public sealed record DomainTaskItem(string Id, string Intent, string Situation, IReadOnlyList<ChatMessage> Prompt,
    IReadOnlyList<string> Contains, string? Regex, IReadOnlyList<string> Forbidden)
{
    public static DomainTaskItem From(EcommerceConversation conversation, string id)
    {
        var intent = conversation.Intents[0];
        var expectation = EcommerceVerifier.Expect(conversation.Facts, intent);
        return new DomainTaskItem(id, intent.ToString(), expectation.Situation, conversation.Messages.Take(2).ToList(),
            expectation.Required, expectation.Claim == null ? null : "(?i)" + expectation.Claim, expectation.Forbidden.Select(f => "(?i)" + f).ToList());
    }

    /// <summary>Whether a sampled answer passes: the evaluation's facts checker on this item's expectations.</summary>
    public bool Passes(string answer) => Evaluation.Checkers.FactsOutcome(answer, Contains, Regex, Forbidden) == "pass";

    public JsonObject ToJson()
    {
        var expected = new JsonObject { ["contains"] = new JsonArray(Contains.Select(c => (JsonNode?)c).ToArray()) };
        if (Regex != null) expected["regex"] = Regex;
        if (Forbidden.Count > 0) expected["forbidden"] = new JsonArray(Forbidden.Select(f => (JsonNode?)f).ToArray());
        return new JsonObject
        {
            ["id"] = Id,
            ["intent"] = Intent,
            ["situation"] = Situation,
            ["prompt_messages"] = SyntheticFiles.Messages(Prompt),
            ["expected"] = expected,
        };
    }

    public static DomainTaskItem FromJson(JsonNode node)
    {
        string Text(JsonNode? n, string what) => n is JsonValue v && v.TryGetValue(out string? s) ? s : throw new FormatException($"task item: {what} must be a string");
        var prompt = (node["prompt_messages"] as JsonArray ?? throw new FormatException("task item: prompt_messages must be an array"))
            .Select(m => new ChatMessage(Text(m?["role"], "role"), Text(m?["content"], "content"))).ToList();
        var expected = node["expected"] as JsonObject ?? throw new FormatException("task item: expected must be an object");
        var contains = (expected["contains"] as JsonArray ?? []).Select(c => Text(c, "expected.contains[]")).ToList();
        string? regex = expected["regex"] is JsonNode r ? Text(r, "expected.regex") : null;
        var forbidden = (expected["forbidden"] as JsonArray ?? []).Select(f => Text(f, "expected.forbidden[]")).ToList();
        return new DomainTaskItem(Text(node["id"], "id"), Text(node["intent"], "intent"), Text(node["situation"], "situation"), prompt, contains, regex, forbidden);
    }
}
