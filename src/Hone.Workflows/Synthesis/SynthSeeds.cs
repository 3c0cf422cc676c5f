using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tokenization;

namespace Hone.Synthesis;

/// <summary>One seed conversation of <c>hone synth instruct</c>.</summary>
/// <param name="Id">the record's "id" string (or number), else "line-N"</param>
/// <param name="Line">its line in the seeds file (1-based)</param>
/// <param name="System">the conversation's system message, if any: generated answers are asked for under it</param>
/// <param name="Instruction">the last user message before the first assistant reply (or the last user message)</param>
/// <param name="Answer">the assistant reply to it, if the seed has one</param>
/// <param name="Target">the facts verifier's target: the record's "facts", "target" or "expected" field</param>
/// <param name="Record">the whole record (its fields fill the command verifier's templates)</param>
public sealed record SynthSeed(string Id, long Line, string? System, string Instruction, string? Answer, JsonNode? Target, JsonObject Record);

/// <summary>
/// Reads seeds in every shape the training loader reads (OpenAI <c>messages</c>, ShareGPT <c>conversations</c>, Alpaca
/// <c>instruction</c>/<c>output</c>, prompt/answer pairs such as <c>prompt</c>/<c>completion</c>), through the same
/// normalization (<see cref="ChatConversation.ToConversation"/>). A bad line is an error naming the file and line.
/// </summary>
public static class SynthSeeds
{
    /// <summary>Fields the facts verifier's target is taken from, in this order.</summary>
    public static readonly IReadOnlyList<string> TargetFields = ["facts", "target", "expected"];

    public static IReadOnlyList<SynthSeed> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: seeds file not found", path);
        var seeds = new List<SynthSeed>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        using var reader = new JsonlReader(path);
        while (reader.ReadLine(out var bytes, out long line, out _))
        {
            var node = JsonLines.Parse(bytes, out string? error);
            if (error != null) throw new DataFormatException(path, line, error);
            var seed = Parse(node!, path, line);
            if (!ids.Add(seed.Id)) throw new DataFormatException(path, line, $"seed id \"{seed.Id}\" is used twice");
            seeds.Add(seed);
        }
        if (seeds.Count == 0) throw new DataFormatException(path, 0, "no seeds (the file has no records)");
        return seeds;
    }

    /// <summary>One record as a seed; errors name <paramref name="file"/> and <paramref name="line"/>.</summary>
    public static SynthSeed Parse(JsonNode node, string file, long line)
    {
        var record = node as JsonObject ?? throw new DataFormatException(file, line, "a seed must be a JSON object");
        var conversation = ChatConversation.ToConversation(record, file, line);
        string? system = null, instruction = null, answer = null;
        foreach (var m in conversation.Messages)
        {
            string role = m!["role"]!.GetValue<string>();
            string? content = m["content"] is JsonValue v && v.TryGetValue(out string? s) ? s : null;
            if (role == "system" && system == null && instruction == null) system = content;
            else if (role == "user" && answer == null) instruction = content;
            else if (role == "assistant" && instruction != null && answer == null) answer = content;
        }
        if (string.IsNullOrWhiteSpace(instruction)) throw new DataFormatException(file, line, "the seed has no user message with text (nothing to learn an instruction from)");
        string id = record["id"] switch
        {
            null => $"line-{line}",
            JsonValue v when v.TryGetValue(out string? s) && s.Length > 0 => s,
            JsonValue v when v.TryGetValue(out long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => throw new DataFormatException(file, line, "\"id\" must be a non-empty string or an integer"),
        };
        JsonNode? target = null;
        foreach (var field in TargetFields)
            if (record[field] is { } t) { target = t; break; }
        return new SynthSeed(id, line, system, instruction, answer, target?.DeepClone(), record);
    }
}
