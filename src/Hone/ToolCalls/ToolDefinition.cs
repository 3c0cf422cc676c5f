using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.ToolCalls;

/// <summary>A request's tool list, a message's tool calls or a record's tools that cannot be used, with the field at fault
/// (<c>tools[2].function.name</c>): the server answers 400 with it, training names the file and line.</summary>
public sealed class ToolFormatException(string field, string message) : Exception($"{field}: {message}")
{
    public string Field { get; } = field;
}

/// <summary>A function the model may call: its name, what it does, and the JSON schema of its arguments.</summary>
public sealed record ToolDefinition(string Name, string? Description, JsonObject Parameters)
{
    /// <summary>OpenAI's rule for function names (letters, digits, underscores and dashes, at most 64). Names go into
    /// grammars and JSON literally, so nothing else is accepted.</summary>
    public static bool IsValidName(string name) =>
        name.Length is > 0 and <= 64 && name.All(c => c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-');

    /// <summary>Reads OpenAI's <c>tools</c>: <c>[{"type": "function", "function": {"name", "description", "parameters"}}]</c>.
    /// Unknown keys are tolerated (a foreign format, e.g. <c>strict</c>); a missing <c>parameters</c> means no arguments.</summary>
    /// <param name="field">the field's name in error messages</param>
    public static IReadOnlyList<ToolDefinition> ParseList(JsonNode? tools, string field = "tools")
    {
        if (tools is not JsonArray array) throw new ToolFormatException(field, $"must be a list of tools, not {Describe(tools)}");
        var result = new List<ToolDefinition>(array.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < array.Count; i++)
        {
            string at = $"{field}[{i}]";
            if (array[i] is not JsonObject tool) throw new ToolFormatException(at, $"must be an object, not {Describe(array[i])}");
            if (tool["type"] is not JsonValue type || !type.TryGetValue(out string? typeName) || typeName != "function")
                throw new ToolFormatException($"{at}.type", $"must be \"function\" (the only tool type), not {Describe(tool["type"])}");
            if (tool["function"] is not JsonObject function) throw new ToolFormatException($"{at}.function", $"must be an object, not {Describe(tool["function"])}");
            var definition = ParseFunction(function, $"{at}.function");
            if (!names.Add(definition.Name)) throw new ToolFormatException($"{at}.function.name", $"'{definition.Name}' is defined twice");
            result.Add(definition);
        }
        return result;
    }

    /// <summary>Reads one function object: <c>{"name", "description"?, "parameters"?}</c>.</summary>
    public static ToolDefinition ParseFunction(JsonObject function, string field)
    {
        if (function["name"] is not JsonValue nameValue || !nameValue.TryGetValue(out string? name))
            throw new ToolFormatException($"{field}.name", $"must be a string, not {Describe(function["name"])}");
        if (!IsValidName(name))
            throw new ToolFormatException($"{field}.name", $"'{name}' is not a function name (1 to 64 letters, digits, underscores or dashes)");
        string? description = null;
        if (function["description"] is { } d)
        {
            if (d is not JsonValue dv || !dv.TryGetValue(out description))
                throw new ToolFormatException($"{field}.description", $"must be a string, not {Describe(d)}");
        }
        JsonObject parameters;
        switch (function["parameters"])
        {
            case null:
                parameters = new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
                break;
            case JsonObject p:
                if (p["type"] is { } t && !(t is JsonValue tv && tv.TryGetValue(out string? ts) && ts == "object"))
                    throw new ToolFormatException($"{field}.parameters.type", $"must be \"object\" (arguments are a JSON object), not {Describe(t)}");
                parameters = (JsonObject)p.DeepClone();
                break;
            default:
                throw new ToolFormatException($"{field}.parameters", $"must be a JSON schema object, not {Describe(function["parameters"])}");
        }
        return new ToolDefinition(name, description, parameters);
    }

    /// <summary>This tool in OpenAI's shape, as templates read <c>tools</c>.</summary>
    public JsonObject ToJson()
    {
        var function = new JsonObject { ["name"] = Name };
        if (Description != null) function["description"] = Description;
        function["parameters"] = Parameters.DeepClone();
        return new JsonObject { ["type"] = "function", ["function"] = function };
    }

    internal static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "a list",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => $"the string \"{Shorten(v.GetValue<string>())}\"",
            JsonValueKind.Number => $"the number {v.ToJsonString()}",
            JsonValueKind.True or JsonValueKind.False => $"the boolean {v.ToJsonString()}",
            _ => v.ToJsonString(),
        },
        _ => node.ToJsonString(),
    };

    static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
