using System.Text.Json.Nodes;

namespace Hone.Evaluation;

/// <summary>
/// A few worked items per task, kept in the results file's details as "samples" — item index, question, reference and
/// the model's answer — so a report can set the answers of two runs side by side for the same questions. Bounded: the
/// first <see cref="MaxItems"/> items of a task, every text cut to <see cref="MaxChars"/> characters.
/// </summary>
public static class EvalSamples
{
    public const int MaxItems = 5;
    public const int MaxChars = 1000;

    public static bool Wanted(int item) => item < MaxItems;

    /// <summary>The text, cut to <see cref="MaxChars"/> with an ellipsis (never inside a surrogate pair).</summary>
    public static string Cut(string text)
    {
        if (text.Length <= MaxChars) return text;
        int end = char.IsHighSurrogate(text[MaxChars - 1]) ? MaxChars - 1 : MaxChars;
        return text[..end] + "…";
    }

    /// <summary>A reference as recorded: strings cut; a structure that serializes longer than the limit becomes its
    /// cut JSON text.</summary>
    public static JsonNode? Cut(JsonNode? reference) => reference switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => Cut(s),
        JsonArray a when a.All(n => n is JsonValue v && v.TryGetValue(out string? _)) && a.Count <= MaxItems => new JsonArray(a.Select(n => (JsonNode)Cut((string)n!)).ToArray()),
        _ when reference.ToJsonString() is var json && json.Length > MaxChars => Cut(json),
        _ => reference.DeepClone(),
    };

    /// <summary>The samples a results record holds (empty for files written before samples were kept).</summary>
    public static IReadOnlyList<JsonObject> Of(JsonObject record) =>
        record["details"]?["samples"] is JsonArray a ? a.OfType<JsonObject>().ToList() : [];
}
