using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;

namespace Hone.Model;

/// <summary>
/// Typed fields of a PEFT adapter_config.json: absent and null read as null; anything of the wrong type is an error
/// naming the file, the field, what was expected and what was found (r: "8" → "r: expected an integer, found the
/// string \"8\"").
/// </summary>
internal sealed class PeftConfigReader
{
    readonly JsonObject _o;

    public string Path { get; }

    PeftConfigReader(JsonObject o, string path) { _o = o; Path = path; }

    public static PeftConfigReader Open(string path)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ModelFormatException(path, $"cannot read: {e.Message}", inner: e); }
        try
        {
            var options = new JsonDocumentOptions { MaxDepth = 64 };
            using (var doc = JsonDocument.Parse(text, options)) RejectDuplicateKeys(doc.RootElement, path, "");
            var o = JsonNode.Parse(text, documentOptions: options) as JsonObject ?? throw new ModelFormatException(path, "expected a JSON object");
            return new PeftConfigReader(o, path);
        }
        catch (JsonException e) { throw new ModelFormatException(path, $"not valid JSON at line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}: {e.Message}", inner: e); }
    }

    static void RejectDuplicateKeys(JsonElement element, string file, string at)
    {
        if (element.ValueKind == JsonValueKind.Object)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in element.EnumerateObject())
            {
                string key = at.Length == 0 ? p.Name : $"{at}.{p.Name}";
                if (!seen.Add(p.Name)) throw new ModelFormatException(file, "appears twice (JSON readers differ on which copy wins)", key);
                RejectDuplicateKeys(p.Value, file, key);
            }
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var item in element.EnumerateArray()) RejectDuplicateKeys(item, file, $"{at}[{i++}]");
        }
    }

    public JsonNode? Node(string field) => _o[field];

    /// <summary>The error for a field of the wrong type, naming what it holds.</summary>
    public ModelFormatException WrongType(string field, string expected) => Wrong(field, expected, _o[field]);

    ModelFormatException Wrong(string field, string expected, JsonNode? found) =>
        new(Path, $"expected {expected}, found {Describe(found)}", field);

    /// <summary>"the string \"8\"", "the number 5", "true", "a list [...]", "an object {...}".</summary>
    static string Describe(JsonNode? node)
    {
        string json = node?.ToJsonString() ?? "null";
        if (json.Length > 60) json = json[..57] + "...";
        return node switch
        {
            null => "null",
            JsonArray => $"a list {json}",
            JsonObject => $"an object {json}",
            JsonValue v => v.GetValueKind() switch
            {
                JsonValueKind.String => $"the string {json}",
                JsonValueKind.Number => $"the number {json}",
                _ => json,
            },
            _ => json,
        };
    }

    public string? String(string field) => _o[field] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var other => throw Wrong(field, "a string", other),
    };

    public bool? Bool(string field) => _o[field] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
        var other => throw Wrong(field, "true or false", other),
    };

    public int? Int(string field) => _o[field] switch
    {
        null => null,
        var node => AsInt(field, node),
    };

    int AsInt(string field, JsonNode node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) ? i
            : node is JsonValue d && d.GetValueKind() == JsonValueKind.Number && d.TryGetValue(out double x) && x == Math.Floor(x) && Math.Abs(x) <= int.MaxValue ? (int)x
            : throw Wrong(field, "an integer", node);

    public double? Number(string field) => _o[field] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d) && double.IsFinite(d) => d,
        var other => throw Wrong(field, "a finite number", other),
    };

    public IReadOnlyList<string>? StringList(string field) => _o[field] switch
    {
        null => null,
        JsonArray a => a.Select((item, i) => item is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
            : throw Wrong($"{field}[{i}]", "a string", item)).ToList(),
        var other => throw Wrong(field, "a list of strings", other),
    };

    public IReadOnlyList<int>? IntList(string field) => _o[field] switch
    {
        null => null,
        JsonArray a => a.Select((item, i) => item == null ? throw Wrong($"{field}[{i}]", "an integer", null) : AsInt($"{field}[{i}]", item)).ToList(),
        var other => throw Wrong(field, "a list of integers", other),
    };

    /// <summary>The object's size when the field is an object, null when absent or null.</summary>
    public int? ObjectCount(string field) => _o[field] switch
    {
        null => null,
        JsonObject obj => obj.Count,
        var other => throw Wrong(field, "an object", other),
    };

    /// <summary>The list's length when the field is a list, null when absent or null.</summary>
    public int? ListCount(string field) => _o[field] switch
    {
        null => null,
        JsonArray a => a.Count,
        var other => throw Wrong(field, "a list", other),
    };
}
