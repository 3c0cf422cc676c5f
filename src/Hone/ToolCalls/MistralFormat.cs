using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.ToolCalls;

/// <summary>
/// Mistral (Nemo) templates: <c>[TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "abcdefghi"}, ...]</c>, several calls
/// in one list, each with an id of 9 letters and digits (the template raises otherwise). The text holds <c>[TOOL_CALLS]</c>
/// only where special tokens are decoded as text.
/// </summary>
internal sealed class MistralFormat : OpenerFormat
{
    public override string Name => "mistral";
    public override bool SupportsParallelCalls => true;
    protected override string Opener => "[TOOL_CALLS]";

    public override string WriteCalls(IReadOnlyList<ToolCall> calls) =>
        "[TOOL_CALLS][" + string.Join(", ", calls.Select(c =>
        {
            string function = ToJson(new JsonObject { ["name"] = c.Name, ["arguments"] = ArgumentsNode(c) });
            return function[..^1] + $", \"id\": \"{c.Id}\"}}";
        })) + "]";

    internal override string ResolveId(string? modelId, Random random) =>
        ToolCallIds.IsNineAlphanumerics(modelId) ? modelId! : ToolCallIds.NewNineCharacterId(random);

    protected override string? TemplateId(string? id) => id == null || ToolCallIds.IsNineAlphanumerics(id) ? id : NineCharacterId(id);

    protected override (ReadStatus Status, int End, IReadOnlyList<RawCall> Calls) ReadCalls(string text, int start, bool final)
    {
        int i = JsonText.SkipSpace(text, start);
        if (i < text.Length && text[i] != '[') return (ReadStatus.Invalid, i, []);
        var (status, end) = JsonText.ContainerEnd(text, i);
        if (status != ReadStatus.Complete) return (status, end, []);
        var calls = new List<RawCall>();
        using var document = JsonDocument.Parse(text.AsMemory(i, end - i));
        foreach (var call in document.RootElement.EnumerateArray())
        {
            if (call.ValueKind != JsonValueKind.Object) return (ReadStatus.Invalid, end, []);
            if (!call.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 } n) return (ReadStatus.Invalid, end, []);
            if (!call.TryGetProperty("arguments", out var arguments) || JsonText.ArgumentsText(arguments) is not { } a) return (ReadStatus.Invalid, end, []);
            string? id = call.TryGetProperty("id", out var idElement) && idElement.ValueKind == JsonValueKind.String ? idElement.GetString() : null;
            calls.Add(new RawCall(n, a, id));
        }
        return calls.Count == 0 ? (ReadStatus.Invalid, end, []) : (ReadStatus.Complete, end, calls);
    }

    public override string AddCallRules(GbnfRuleSink rules, IReadOnlyList<ToolDefinition> tools, bool parallel)
    {
        rules.AddRule("tool-call-id", string.Join(" ", Enumerable.Repeat("[a-zA-Z0-9]", 9)));
        AddPerToolRules(rules, tools, (tool, arguments) =>
            $"{GbnfRuleSink.Literal($"{{\"name\": \"{tool.Name}\", \"arguments\": ")} {arguments} {GbnfRuleSink.Literal(", \"id\": \"")} tool-call-id {GbnfRuleSink.Literal("\"}")}");
        rules.AddRule("tool-calls", $"{GbnfRuleSink.Literal("[TOOL_CALLS][")} tool-call{(parallel ? $" ({GbnfRuleSink.Literal(", ")} tool-call)*" : "")} {GbnfRuleSink.Literal("]")}");
        return "tool-calls";
    }
}
