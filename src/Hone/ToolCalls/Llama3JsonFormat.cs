using System.Text.Json;

namespace Hone.ToolCalls;

/// <summary>
/// Meta Llama 3.1 / 3.2 templates, for function tools: the whole assistant turn is one call,
/// <c>{"name": "f", "parameters": {...}}</c> (the template raises on several calls in a turn). A turn that is anything
/// else, or more than that object, is content. Builtin tools (3.1's <c>&lt;|python_tag|&gt;</c> calls) are not read.
/// </summary>
internal sealed class Llama3JsonFormat : ToolCallFormat
{
    public override string Name => "llama3-json";
    public override bool SupportsParallelCalls => false;
    public override IReadOnlyList<string> Triggers => ["{"];
    public override bool TriggersAtTurnStartOnly => true;

    public override string WriteCalls(IReadOnlyList<ToolCall> calls)
    {
        if (calls.Count != 1) throw new ArgumentException($"Llama 3.x templates render one tool call per turn, not {calls.Count}");
        return $"{{\"name\": \"{calls[0].Name}\", \"parameters\": {ToJson(ArgumentsNode(calls[0]))}}}";
    }

    internal override string ResolveId(string? modelId, Random random) => ToolCallIds.NewOpenAiId(random);

    internal override Piece? Next(string text, int position, ScanState state, bool final)
    {
        if (position == text.Length) return null;
        if (!state.AtTurnStart) return new Piece(text.Length, text[position..], null); // no call after content
        int j = JsonText.SkipSpace(text, position);
        if (j == text.Length) return final ? new Piece(j, text[position..], null) : null;
        if (text[j] != '{') return new Piece(text.Length, text[position..], null);
        var (status, end) = JsonText.ContainerEnd(text, j);
        if (status == ReadStatus.Incomplete) return final ? new Piece(text.Length, text[position..], null) : null;
        if (status == ReadStatus.Invalid || JsonText.SkipSpace(text, end) < text.Length) return new Piece(text.Length, text[position..], null);
        if (!final) return null; // the turn must end here for this to be a call
        RawCall? call;
        using (var document = JsonDocument.Parse(text.AsMemory(j, end - j))) call = ReadCall(document.RootElement);
        return call == null ? new Piece(text.Length, text[position..], null) : new Piece(text.Length, null, [call]);
    }

    /// <summary>Exactly <c>{"name": string, "parameters": object}</c> ("arguments" accepted for "parameters").</summary>
    static RawCall? ReadCall(JsonElement call)
    {
        string? name = null, arguments = null;
        int count = 0;
        foreach (var property in call.EnumerateObject())
        {
            count++;
            if (property.NameEquals("name") && property.Value.ValueKind == JsonValueKind.String) name = property.Value.GetString();
            else if ((property.NameEquals("parameters") || property.NameEquals("arguments")) && property.Value.ValueKind == JsonValueKind.Object)
                arguments = property.Value.GetRawText();
        }
        return count == 2 && name is { Length: > 0 } && arguments != null ? new RawCall(name, arguments, null) : null;
    }

    public override string AddCallRules(GbnfRuleSink rules, IReadOnlyList<ToolDefinition> tools, bool parallel)
    {
        AddPerToolRules(rules, tools, (tool, arguments) =>
            $"{GbnfRuleSink.Literal($"{{\"name\": \"{tool.Name}\", \"parameters\": ")} {arguments} {GbnfRuleSink.Literal("}")}");
        rules.AddRule("tool-calls", "tool-call");
        return "tool-calls";
    }
}
