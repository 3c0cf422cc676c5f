using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Server;

/// <summary>Reads the known fields of a request body, refusing wrong types and values with a 400 that names the field.
/// Unknown fields are left alone: the SDKs send fields this server does not use.</summary>
internal static class JsonFields
{
    static JsonValueKind Kind(JsonNode? node) => node == null ? JsonValueKind.Null : node.GetValueKind();

    /// <summary>Absent or null → null; otherwise the field's value, checked to be a string.</summary>
    public static string? String(JsonObject o, string name) => Kind(o[name]) switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => o[name]!.GetValue<string>(),
        _ => throw ApiException.BadType(name, "a string"),
    };

    public static string RequiredString(JsonObject o, string name) =>
        String(o, name) ?? throw new ApiException(400, $"'{name}' is required", name, "missing_required_parameter");

    public static bool? Bool(JsonObject o, string name) => Kind(o[name]) switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw ApiException.BadType(name, "a boolean"),
    };

    public static double? Number(JsonObject o, string name, double min, double max, bool minExclusive = false, bool maxExclusive = false)
    {
        var node = o[name];
        if (Kind(node) == JsonValueKind.Null) return null;
        if (Kind(node) != JsonValueKind.Number) throw ApiException.BadType(name, "a number");
        double value = node!.GetValue<JsonElement>().GetDouble();
        bool below = minExclusive ? value <= min : value < min, above = maxExclusive ? value >= max : value > max;
        if (below || above || !double.IsFinite(value))
            throw ApiException.BadValue(name, $"'{name}' must be in {(minExclusive ? "(" : "[")}{min}, {max}{(maxExclusive ? ")" : "]")}, found {value}");
        return value;
    }

    public static long? Integer(JsonObject o, string name, long min, long max)
    {
        var node = o[name];
        if (Kind(node) == JsonValueKind.Null) return null;
        return Integer(node!, name, min, max);
    }

    public static long Integer(JsonNode node, string name, long min, long max)
    {
        if (Kind(node) != JsonValueKind.Number) throw ApiException.BadType(name, "an integer");
        var element = node.GetValue<JsonElement>();
        if (!element.TryGetInt64(out long value))
        {
            double d = element.GetDouble();
            throw d == Math.Floor(d) && double.IsFinite(d)
                ? ApiException.BadValue(name, $"'{name}' must be in [{min}, {max}], found {element.GetRawText()}")
                : ApiException.BadType(name, "an integer");
        }
        if (value < min || value > max) throw ApiException.BadValue(name, $"'{name}' must be in [{min}, {max}], found {value}");
        return value;
    }

    public static JsonObject? Object(JsonObject o, string name) => Kind(o[name]) switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.Object => (JsonObject)o[name]!,
        _ => throw ApiException.BadType(name, "an object"),
    };

    /// <summary>A string or a list of strings (as "stop" is): null when absent.</summary>
    public static string[]? StringOrList(JsonObject o, string name, int maxItems)
    {
        var node = o[name];
        switch (Kind(node))
        {
            case JsonValueKind.Null: return null;
            case JsonValueKind.String: return [node!.GetValue<string>()];
            case JsonValueKind.Array:
                var array = (JsonArray)node!;
                if (array.Count > maxItems) throw ApiException.BadValue(name, $"'{name}' may hold at most {maxItems} strings, found {array.Count}");
                return array.Select((item, i) => Kind(item) == JsonValueKind.String ? item!.GetValue<string>() : throw ApiException.BadType($"{name}[{i}]", "a string")).ToArray();
            default: throw ApiException.BadType(name, "a string or a list of strings");
        }
    }

    /// <summary>A list of token ids, each checked against the vocabulary.</summary>
    public static int[] TokenIds(JsonArray array, string name, int vocabulary)
    {
        var ids = new int[array.Count];
        for (int i = 0; i < ids.Length; i++) ids[i] = (int)Integer(array[i] ?? throw ApiException.BadType($"{name}[{i}]", "a token id"), $"{name}[{i}]", 0, vocabulary - 1);
        return ids;
    }

    /// <summary>OpenAI's prompt shapes (completions and embeddings): a string, a list of strings, a list of token ids,
    /// or a list of lists of token ids. Returns the prompts as either text or ids.</summary>
    public static List<(string? Text, int[]? Ids)> Prompts(JsonObject o, string name, int vocabulary, int maxItems)
    {
        var node = o[name];
        var result = new List<(string?, int[]?)>();
        switch (Kind(node))
        {
            case JsonValueKind.Null: throw new ApiException(400, $"'{name}' is required", name, "missing_required_parameter");
            case JsonValueKind.String: result.Add((node!.GetValue<string>(), null)); break;
            case JsonValueKind.Array:
                var array = (JsonArray)node!;
                if (array.Count == 0) throw ApiException.BadValue(name, $"'{name}' is an empty list");
                if (array.Count > maxItems) throw ApiException.BadValue(name, $"'{name}' may hold at most {maxItems} items, found {array.Count}");
                switch (Kind(array[0]))
                {
                    case JsonValueKind.Number: result.Add((null, TokenIds(array, name, vocabulary))); break;
                    case JsonValueKind.String:
                        for (int i = 0; i < array.Count; i++)
                            result.Add((Kind(array[i]) == JsonValueKind.String ? array[i]!.GetValue<string>() : throw ApiException.BadType($"{name}[{i}]", "a string"), null));
                        break;
                    case JsonValueKind.Array:
                        for (int i = 0; i < array.Count; i++)
                            result.Add((null, array[i] is JsonArray ids ? TokenIds(ids, $"{name}[{i}]", vocabulary) : throw ApiException.BadType($"{name}[{i}]", "a list of token ids")));
                        break;
                    default: throw ApiException.BadType(name, "a string, a list of strings, a list of token ids or a list of lists of token ids");
                }
                break;
            default: throw ApiException.BadType(name, "a string, a list of strings, a list of token ids or a list of lists of token ids");
        }
        for (int i = 0; i < result.Count; i++)
            if (result[i].Item1 is "" || result[i].Item2 is { Length: 0 })
                throw ApiException.BadValue(result.Count == 1 ? name : $"{name}[{i}]", $"'{name}' is empty");
        return result;
    }
}
