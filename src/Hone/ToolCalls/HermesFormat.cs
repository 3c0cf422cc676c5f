using System.Text.Json;

namespace Hone.ToolCalls;

/// <summary>
/// NousResearch Hermes tool_use and Qwen2.5 templates: each call is <c>&lt;tool_call&gt;\n{"name": "f", "arguments": {...}}\n&lt;/tool_call&gt;</c>,
/// calls joined by a newline, several in one turn. No ids in the template: OpenAI-style ids are made.
/// </summary>
internal sealed class HermesFormat : OpenerFormat
{
    const string Close = "</tool_call>";

    public override string Name => "hermes";
    public override bool SupportsParallelCalls => true;
    protected override string Opener => "<tool_call>";

    public override string WriteCalls(IReadOnlyList<ToolCall> calls) =>
        string.Join("\n", calls.Select(c => $"<tool_call>\n{{\"name\": \"{c.Name}\", \"arguments\": {ToJson(ArgumentsNode(c))}}}\n</tool_call>"));

    internal override string ResolveId(string? modelId, Random random) => ToolCallIds.NewOpenAiId(random);

    protected override (ReadStatus Status, int End, IReadOnlyList<RawCall> Calls) ReadCalls(string text, int start, bool final)
    {
        int i = JsonText.SkipSpace(text, start);
        var (status, end) = JsonText.ContainerEnd(text, i);
        if (status != ReadStatus.Complete) return (status, end, []);
        RawCall? call;
        using (var document = JsonDocument.Parse(text.AsMemory(i, end - i))) call = ReadCall(document.RootElement);
        if (call == null) return (ReadStatus.Invalid, end, []);
        int j = JsonText.SkipSpace(text, end);
        if (string.CompareOrdinal(text, j, Close, 0, Close.Length) == 0 && j + Close.Length <= text.Length) return (ReadStatus.Complete, j + Close.Length, [call]);
        if (j == text.Length) return final ? (ReadStatus.Complete, j, [call]) : (ReadStatus.Incomplete, j, []); // the turn ended before the close
        if (text.Length - j < Close.Length && string.CompareOrdinal(text, j, Close, 0, text.Length - j) == 0)
            return final ? (ReadStatus.Invalid, j, []) : (ReadStatus.Incomplete, j, []);
        return (ReadStatus.Invalid, j, []);
    }

    /// <summary><c>{"name": string, "arguments": object}</c> in either order; other keys are ignored.</summary>
    static RawCall? ReadCall(JsonElement call)
    {
        if (call.ValueKind != JsonValueKind.Object) return null;
        if (!call.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 } n) return null;
        if (!call.TryGetProperty("arguments", out var arguments)) return null;
        return JsonText.ArgumentsText(arguments) is { } a ? new RawCall(n, a, null) : null;
    }

    public override string AddCallRules(GbnfRuleSink rules, IReadOnlyList<ToolDefinition> tools, bool parallel)
    {
        AddPerToolRules(rules, tools, (tool, arguments) =>
            $"{GbnfRuleSink.Literal($"{{\"name\": \"{tool.Name}\", \"arguments\": ")} {arguments} {GbnfRuleSink.Literal("}")}");
        string one = $"{GbnfRuleSink.Literal("<tool_call>\n")} tool-call {GbnfRuleSink.Literal("\n</tool_call>")}";
        rules.AddRule("tool-calls", parallel ? $"{one} ({GbnfRuleSink.Literal("\n")} {one})*" : one);
        return "tool-calls";
    }
}
