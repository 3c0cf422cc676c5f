using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Grammars;
using Hone.Tokenization.Templates;

namespace Hone.ToolCalls;

/// <summary>
/// Tool calls as one family of chat templates writes them in an assistant turn: how to recognize the family from what a
/// template renders (<see cref="Detect(ChatTemplate)"/>), the messages it needs (<see cref="PrepareMessages"/>), parsing
/// the model's output back into calls (whole, or streamed as it is generated), and the grammar rules that make the
/// calls well-formed (a lazy grammar from <see cref="Triggers"/> on). One class per family, registered in <see cref="All"/>.
/// </summary>
public abstract class ToolCallFormat
{
    /// <summary>The families, in the order <see cref="Detect(ChatTemplate)"/> tries them.</summary>
    public static IReadOnlyList<ToolCallFormat> All { get; } = [new HermesFormat(), new Llama3JsonFormat(), new MistralFormat()];

    /// <summary>A short name for messages and logs.</summary>
    public abstract string Name { get; }

    /// <summary>Whether the template renders several calls in one turn.</summary>
    public abstract bool SupportsParallelCalls { get; }

    /// <summary>Text that starts a tool call; from it on a lazy grammar constrains generation (tool_choice auto).</summary>
    public abstract IReadOnlyList<string> Triggers { get; }

    /// <summary>True when a trigger counts only at the start of the turn (Llama 3.x: the turn is the call).</summary>
    public virtual bool TriggersAtTurnStartOnly => false;

    /// <summary>The calls as the template renders them in an assistant turn: the text the model is trained to write after
    /// the generation prompt (<paramref name="calls"/>' arguments are re-written by the template's <c>tojson</c>).</summary>
    public abstract string WriteCalls(IReadOnlyList<ToolCall> calls);

    /// <summary>
    /// Adds the rules of a grammar for tool calls to <paramref name="rules"/> and returns the name of the rule that matches
    /// the calls' text from the trigger on: tool_choice auto lets the model write freely and applies this rule from the
    /// trigger; tool_choice required uses it as the root (only calls, from the first token), and a named function the same
    /// with only that tool in <paramref name="tools"/>. Each call's arguments follow its tool's JSON schema; the builder
    /// behind <paramref name="rules"/> should default additionalProperties to false (strict tool arguments). Add once per grammar.
    /// </summary>
    /// <param name="parallel">several calls in one turn (ignored where the template renders only one)</param>
    public abstract string AddCallRules(GbnfRuleSink rules, IReadOnlyList<ToolDefinition> tools, bool parallel);

    /// <inheritdoc cref="AddCallRules(GbnfRuleSink, IReadOnlyList{ToolDefinition}, bool)"/>
    public string AddCallRules(GbnfBuilder builder, IReadOnlyList<ToolDefinition> tools, bool parallel) =>
        AddCallRules(new GbnfRuleSink(builder.AddJsonSchema, builder.AddRule), tools, parallel);

    /// <summary>Reads the next settled piece of <paramref name="text"/> from <paramref name="position"/>: content that no
    /// later text can turn into a call, a whole call (or several), or whitespace dropped beside calls. Null when it must
    /// wait for more text (or, when <paramref name="final"/>, when nothing is left). A piece always consumes something.</summary>
    internal abstract Piece? Next(string text, int position, ScanState state, bool final);

    /// <summary>The call's id: the model's where the template carries one and it is valid, else a new one.</summary>
    internal abstract string ResolveId(string? modelId, Random random);

    /// <summary>The id a template needs for a caller's id (Mistral demands 9 alphanumerics); the same id always maps the same way.</summary>
    protected virtual string? TemplateId(string? id) => id;

    /// <summary>The family whose calls the template renders, or null when it renders none we know (callers then refuse
    /// <c>tools</c>, saying the template cannot render them). Detected by rendering a probe conversation, not by name.</summary>
    public static ToolCallFormat? Detect(string templateSource)
    {
        ChatTemplate template;
        try { template = ChatTemplate.Parse(templateSource, "template"); }
        catch (TemplateException) { return null; }
        return Detect(template);
    }

    /// <inheritdoc cref="Detect(string)"/>
    public static ToolCallFormat? Detect(ChatTemplate template)
    {
        const string name = "hone_probe_function", description = "Hone probe function description.";
        var tools = new JsonArray(new ToolDefinition(name, description, new JsonObject
        {
            ["type"] = "object",
            ["properties"] = new JsonObject { ["x"] = new JsonObject { ["type"] = "string", ["description"] = "The x value." } },
            ["required"] = new JsonArray("x"),
        }).ToJson());
        var call = new ToolCall("abcdefghi", name, """{"x": "y"}""");
        var messages = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = "Probe question." },
            new JsonObject
            {
                ["role"] = "assistant", ["content"] = null,
                ["tool_calls"] = new JsonArray(new JsonObject
                {
                    ["id"] = call.Id, ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = name, ["arguments"] = new JsonObject { ["x"] = "y" } },
                }),
            });
        string rendered;
        try
        {
            rendered = template.Apply(messages, new ChatTemplateOptions { Tools = tools, BosToken = "<s>", EosToken = "</s>", Clock = () => new DateTime(2024, 1, 1) });
        }
        catch (TemplateException) { return null; }
        if (!rendered.Contains(description, StringComparison.Ordinal)) return null; // the tools are not shown to the model
        return All.FirstOrDefault(f => rendered.Contains(f.WriteCalls([call]), StringComparison.Ordinal));
    }

    /// <summary>The calls and text of a whole assistant turn (the generated text, after the generation prompt). Never
    /// throws on model output: a call that is not well-formed stays in the content.</summary>
    /// <param name="random">where new ids come from (tests pass a seeded one); shared when null</param>
    public ParsedTurn Parse(string text, Random? random = null)
    {
        var parser = CreateStreamParser(random);
        var deltas = parser.Feed(text).Concat(parser.Finish());
        return Collect(deltas);
    }

    /// <summary>A parser fed text as it is generated (<see cref="ToolCallStreamParser"/>).</summary>
    public ToolCallStreamParser CreateStreamParser(Random? random = null) => new(this, random ?? Random.Shared);

    /// <summary>Gathers streamed deltas into a turn (as a client accumulates chunks).</summary>
    public static ParsedTurn Collect(IEnumerable<ToolCallStreamDelta> deltas)
    {
        var content = new StringBuilder();
        var calls = new List<(string Id, string Name, StringBuilder Arguments)>();
        foreach (var delta in deltas)
        {
            if (delta.Content != null) content.Append(delta.Content);
            if (delta.Call is { } c)
            {
                if (c.Index == calls.Count) calls.Add((c.Id!, c.Name!, new StringBuilder()));
                calls[c.Index].Arguments.Append(c.Arguments);
            }
        }
        return new ParsedTurn(calls.Count > 0 && content.Length == 0 ? null : content.ToString(),
            calls.Select(c => new ToolCall(c.Id, c.Name, c.Arguments.ToString())).ToList());
    }

    /// <summary>
    /// What a caller does to an OpenAI conversation before the template renders it: a copy in which each assistant
    /// <c>tool_calls[].function.arguments</c> is a JSON object (OpenAI sends a JSON string; Qwen, Llama and Mistral
    /// templates print it with <c>tojson</c>), <c>type</c> is "function", <c>tool_calls</c> that are null or empty are
    /// removed (Hermes tests "is defined"), an assistant message without calls has string content, and ids (and the
    /// <c>tool_call_id</c> of <c>role: "tool"</c> results) are what the template demands (<see cref="TemplateId"/>).
    /// Throws <see cref="ToolFormatException"/> naming the field (<c>messages[2].tool_calls[0].function.arguments</c>).
    /// </summary>
    public JsonArray PrepareMessages(JsonArray messages, string field = "messages")
    {
        var result = new JsonArray();
        for (int i = 0; i < messages.Count; i++)
        {
            string at = $"{field}[{i}]";
            if (messages[i] is not JsonObject original) throw new ToolFormatException(at, $"must be an object, not {ToolDefinition.Describe(messages[i])}");
            var message = (JsonObject)original.DeepClone();
            string? role = message["role"] is JsonValue r && r.TryGetValue(out string? rs) ? rs : null;
            if (message["tool_calls"] is JsonArray calls && calls.Count > 0)
            {
                if (role != "assistant") throw new ToolFormatException($"{at}.tool_calls", $"only assistant messages make tool calls, not {role ?? "a message without a role"}");
                for (int j = 0; j < calls.Count; j++) PrepareCall(calls[j], $"{at}.tool_calls[{j}]");
            }
            else if (message.ContainsKey("tool_calls"))
            {
                if (message["tool_calls"] is not (null or JsonArray))
                    throw new ToolFormatException($"{at}.tool_calls", $"must be a list, not {ToolDefinition.Describe(message["tool_calls"])}");
                message.Remove("tool_calls");
            }
            if (role == "assistant" && !message.ContainsKey("tool_calls") && message["content"] == null) message["content"] = "";
            if (role == "tool" && message["tool_call_id"] is JsonValue id && id.TryGetValue(out string? ids)) message["tool_call_id"] = TemplateId(ids);
            result.Add((JsonNode)message);
        }
        return result;
    }

    void PrepareCall(JsonNode? node, string at)
    {
        if (node is not JsonObject call) throw new ToolFormatException(at, $"must be an object, not {ToolDefinition.Describe(node)}");
        if (call["function"] is not JsonObject function) throw new ToolFormatException($"{at}.function", $"must be an object, not {ToolDefinition.Describe(call["function"])}");
        if (function["name"] is not JsonValue name || !name.TryGetValue(out string? _))
            throw new ToolFormatException($"{at}.function.name", $"must be a string, not {ToolDefinition.Describe(function["name"])}");
        switch (function["arguments"])
        {
            case null: function["arguments"] = new JsonObject(); break;
            case JsonObject: break;
            case JsonValue v when v.TryGetValue(out string? text):
                JsonNode? parsed;
                try { parsed = JsonNode.Parse(text); }
                catch (JsonException e) { throw new ToolFormatException($"{at}.function.arguments", $"is not JSON: {e.Message}"); }
                if (parsed is not JsonObject) throw new ToolFormatException($"{at}.function.arguments", $"must hold a JSON object, not {ToolDefinition.Describe(parsed)}");
                function["arguments"] = parsed;
                break;
            default:
                throw new ToolFormatException($"{at}.function.arguments", $"must be a JSON object or a string holding one, not {ToolDefinition.Describe(function["arguments"])}");
        }
        if (call["type"] == null) call["type"] = "function";
        if (call["id"] is JsonValue id && id.TryGetValue(out string? ids)) call["id"] = TemplateId(ids);
        else if (call["id"] != null) throw new ToolFormatException($"{at}.id", $"must be a string, not {ToolDefinition.Describe(call["id"])}");
    }

    /// <summary>9 letters and digits derived from <paramref name="id"/> (SHA-256), so a call and its result agree.</summary>
    protected static string NineCharacterId(string id)
    {
        const string alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(id));
        return string.Create(9, hash, (chars, h) => { for (int i = 0; i < 9; i++) chars[i] = alphanumerics[h[i] % alphanumerics.Length]; });
    }

    /// <summary>JSON written as Hugging Face's <c>tojson</c> writes it (", " and ": "), by the template engine itself.</summary>
    protected static string ToJson(JsonNode node) =>
        TojsonTemplate.Render(new Dictionary<string, object?> { ["value"] = node });

    static readonly ChatTemplate TojsonTemplate = ChatTemplate.Parse("{{ value | tojson }}", "tojson");

    /// <summary>A call's arguments text as a JSON object (the text was produced or checked as one).</summary>
    protected static JsonNode ArgumentsNode(ToolCall call) =>
        JsonNode.Parse(call.Arguments) as JsonObject ?? throw new ArgumentException($"the arguments of call {call.Id} are not a JSON object");

    /// <summary>Each tool's call rule (<paramref name="callBody"/> given the tool and its arguments rule) and one
    /// <c>tool-call</c> rule choosing between them.</summary>
    protected static void AddPerToolRules(GbnfRuleSink rules, IReadOnlyList<ToolDefinition> tools, Func<ToolDefinition, string, string> callBody)
    {
        if (tools.Count == 0) throw new ArgumentException("a tool-call grammar needs at least one tool");
        var alternatives = new List<string>();
        for (int i = 0; i < tools.Count; i++)
        {
            string arguments = rules.AddJsonSchema($"{tools[i].Name}-arguments", tools[i].Parameters);
            rules.AddRule($"tool-call-{i}", callBody(tools[i], arguments));
            alternatives.Add($"tool-call-{i}");
        }
        rules.AddRule("tool-call", string.Join(" | ", alternatives));
    }
}

/// <summary>Where the scan of a turn stands: nothing read yet, or right after a call (whitespace there is dropped).</summary>
internal readonly record struct ScanState(bool AtTurnStart, bool AfterCall);

/// <summary>A settled piece of a turn: up to <see cref="End"/>, content or calls (neither: dropped whitespace).</summary>
internal sealed record Piece(int End, string? Content, IReadOnlyList<RawCall>? Calls);

/// <summary>A call as the model wrote it: its id only where the template carries one.</summary>
internal sealed record RawCall(string Name, string Arguments, string? Id);
