using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Hone.Data.Synthetic;

/// <summary>
/// One item of the domain evaluation task: the prompt (system message with the order record, and the customer's
/// question) and what a sampled answer must contain. Strict about the fact, lenient about the wording: every
/// <see cref="Contains"/> string must appear exactly as the record writes it (order id, date, amount, tracking
/// number…), and the answer must match <see cref="Regex"/> (the claim: "shipped on", "can no longer be cancelled"…,
/// case-insensitive), in any sentence and any phrasing.
/// JSON: {"id", "intent", "situation", "prompt_messages": [{"role", "content"}…], "expected": {"contains": […], "regex": "(?i)…"}}.
/// </summary>
public sealed record DomainTaskItem(string Id, string Intent, string Situation, IReadOnlyList<ChatMessage> Prompt,
    IReadOnlyList<string> Contains, string? Regex)
{
    public static DomainTaskItem From(EcommerceConversation conversation, string id)
    {
        var intent = conversation.Intents[0];
        var expectation = EcommerceVerifier.Expect(conversation.Facts, intent);
        return new DomainTaskItem(id, intent.ToString(), expectation.Situation, conversation.Messages.Take(2).ToList(),
            expectation.Required, expectation.Claim == null ? null : "(?i)" + expectation.Claim);
    }

    /// <summary>Whether a sampled answer passes.</summary>
    public bool Passes(string answer) => Passes(Contains, Regex, answer);

    /// <summary>The check on its own, for harnesses reading the JSON: all strings present (ordinal), the regex (if any) matches.</summary>
    public static bool Passes(IReadOnlyList<string> contains, string? regex, string answer)
    {
        foreach (var fact in contains)
            if (!answer.Contains(fact, StringComparison.Ordinal)) return false;
        return regex == null || System.Text.RegularExpressions.Regex.IsMatch(answer, regex, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
    }

    public JsonObject ToJson()
    {
        var expected = new JsonObject { ["contains"] = new JsonArray(Contains.Select(c => (JsonNode?)c).ToArray()) };
        if (Regex != null) expected["regex"] = Regex;
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
        return new DomainTaskItem(Text(node["id"], "id"), Text(node["intent"], "intent"), Text(node["situation"], "situation"), prompt, contains, regex);
    }
}
