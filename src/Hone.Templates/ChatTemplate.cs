using System.Collections;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Tokenization.Templates;

/// <summary>
/// A Hugging Face chat template (the Jinja2 <c>chat_template</c> of tokenizer_config.json), parsed once and rendered many times.
/// Renders byte-identically to <c>tokenizer.apply_chat_template(..., tokenize=False)</c>: Jinja2 semantics with trim_blocks and
/// lstrip_blocks, the immutable sandbox, loop controls, HF's <c>tojson</c>, <c>raise_exception</c> and <c>strftime_now</c>.
/// Instances are immutable and safe to share between threads.
/// </summary>
public sealed class ChatTemplate
{
    readonly Statement[] body;

    ChatTemplate(Statement[] body, string? name)
    {
        this.body = body;
        Name = name;
    }

    /// <summary>The name given to <see cref="Parse"/>, used in error messages.</summary>
    public string? Name { get; }

    /// <summary>Parses a template. Throws <see cref="TemplateSyntaxException"/> (with line and column) for anything it cannot interpret.</summary>
    public static ChatTemplate Parse(string source, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(Parser.Parse(source, name), name);
    }

    /// <summary>
    /// Renders with the given variables. Values may be null, bool, integers, floating point, string, lists
    /// (<see cref="IReadOnlyList{T}"/> or any non-string enumerable), dictionaries with string keys, and System.Text.Json
    /// <see cref="JsonNode"/> / <see cref="JsonElement"/>. <paramref name="clock"/> is what <c>strftime_now</c> reads (default: local now).
    /// Throws <see cref="TemplateException"/> where Jinja would raise, with the template line, and where the render runs past
    /// a limit of <see cref="RenderBudget"/> (steps, the size of a string, a list or the output), naming the limit.
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? clock = null) => Render(variables, clock, out _);

    string Render(IReadOnlyDictionary<string, object?> variables, Func<DateTime>? clock, out RenderBudget spent)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var root = new Scope(null);
        foreach (var (key, value) in variables) root.Set(key, ValueConversion.ToValue(value));
        var renderer = new Renderer(Name, clock ?? (() => DateTime.Now));
        spent = renderer.Budget;
        return renderer.Render(body, root);
    }

    /// <summary>
    /// Hugging Face's apply_chat_template(messages, tools=..., add_generation_prompt=..., continue_final_message=..., **kwargs):
    /// the template sees <c>messages</c>, <c>tools</c> (none when not given), <c>documents</c> (none when not given),
    /// <c>add_generation_prompt</c>, <c>bos_token</c>/<c>eos_token</c> when given, and the extra variables.
    /// </summary>
    /// <param name="messages">OpenAI-shaped messages: role, content, and optionally tool_calls, tool_call_id, name</param>
    public string Apply(JsonArray messages, ChatTemplateOptions? options = null) => Apply(messages, options, out _);

    /// <summary><see cref="Apply(JsonArray, ChatTemplateOptions?)"/>, reporting what the render spent (tests keep real templates far inside the limits).</summary>
    internal string Apply(JsonArray messages, ChatTemplateOptions? options, out RenderBudget spent)
    {
        ArgumentNullException.ThrowIfNull(messages);
        options ??= new ChatTemplateOptions();
        if (options.ContinueFinalMessage && options.AddGenerationPrompt)
            throw new ArgumentException("ContinueFinalMessage and AddGenerationPrompt are not compatible: continue the final message, or add a header for a new assistant message.");
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (options.BosToken != null) variables["bos_token"] = options.BosToken;
        if (options.EosToken != null) variables["eos_token"] = options.EosToken;
        foreach (var (key, value) in options.Extra ?? new Dictionary<string, object?>())
        {
            if (key is "messages" or "tools" or "documents" or "add_generation_prompt")
                throw new ArgumentException($"'{key}' is set by its own option, not through Extra", nameof(options));
            variables[key] = value;
        }
        variables["messages"] = messages;
        variables["tools"] = options.Tools;
        variables["documents"] = options.Documents;
        variables["add_generation_prompt"] = options.AddGenerationPrompt;
        var rendered = Render(variables, options.Clock, out spent);
        return options.ContinueFinalMessage ? CutAfterFinalMessage(rendered, messages) : rendered;
    }

    /// <summary>continue_final_message: drop what the template adds after the last message's content (its end-of-turn tokens).</summary>
    static string CutAfterFinalMessage(string rendered, JsonArray messages)
    {
        var content = messages.Count == 0 ? null : messages[^1]?["content"];
        var final = content switch
        {
            JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>(),
            JsonArray blocks => blocks.Reverse().Select(b => b?["text"]).OfType<JsonValue>().Select(t => t.GetValue<string>()).FirstOrDefault()
                ?? throw new ArgumentException("ContinueFinalMessage is set but the final message has no text to continue"),
            _ => throw new ArgumentException("ContinueFinalMessage is set but the final message has no text content"),
        };
        var trimmed = PythonStrings.Strip(final, null, true, true);
        var at = rendered.LastIndexOf(trimmed, StringComparison.Ordinal);
        if (at < 0)
            throw new ArgumentException("ContinueFinalMessage is set but the final message does not appear in the rendered chat (the template changed it)");
        var leftTrimmedLength = PythonStrings.Strip(final, null, true, false).Length;
        // As HF: keep the message's trailing whitespace only when the template kept the message verbatim.
        var keepsSpacing = rendered.Substring(at, Math.Min(leftTrimmedLength, rendered.Length - at)) == final;
        return rendered[..(at + (keepsSpacing ? leftTrimmedLength : trimmed.Length))];
    }
}

/// <summary>Options of <see cref="ChatTemplate.Apply"/>, named after apply_chat_template's arguments.</summary>
public sealed record ChatTemplateOptions
{
    /// <summary>End with the header that starts an assistant turn (for generation).</summary>
    public bool AddGenerationPrompt { get; init; }

    /// <summary>Leave the final message open (no end-of-turn) so the model continues it. Not with <see cref="AddGenerationPrompt"/>.</summary>
    public bool ContinueFinalMessage { get; init; }

    /// <summary>The tokenizer's BOS token text; not passed to the template when null.</summary>
    public string? BosToken { get; init; }

    /// <summary>The tokenizer's EOS token text; not passed to the template when null.</summary>
    public string? EosToken { get; init; }

    /// <summary>Tool definitions (JSON schemas, usually <c>{"type": "function", "function": {...}}</c>); none when null.</summary>
    public JsonArray? Tools { get; init; }

    /// <summary>Documents for retrieval-augmented templates; none when null.</summary>
    public JsonArray? Documents { get; init; }

    /// <summary>More template variables (HF's **kwargs), e.g. date_string, builtin_tools, enable_thinking. They override the tokens.</summary>
    public IReadOnlyDictionary<string, object?>? Extra { get; init; }

    /// <summary>What <c>strftime_now</c> reads; local now when null. Tests pin it.</summary>
    public Func<DateTime>? Clock { get; init; }
}

/// <summary>Turns caller values (CLR primitives, collections, System.Text.Json nodes) into the interpreter's Python-like values.</summary>
internal static class ValueConversion
{
    public static object? ToValue(object? value) => value switch
    {
        null => null,
        string or bool or long or double => value,
        int i => (long)i,
        short s => (long)s,
        sbyte s => (long)s,
        byte b => (long)b,
        ushort u => (long)u,
        uint u => (long)u,
        ulong u => u <= long.MaxValue ? (long)u : throw new ArgumentException($"integer {u} does not fit in 64 bits"),
        float f => double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture),
        decimal d => (double)d,
        char c => c.ToString(),
        DictValue or List<object?> or TupleValue or NamespaceValue or MarkupValue => value,
        JsonNode node => FromJsonNode(node),
        JsonElement element => FromJsonElement(element),
        JsonDocument document => FromJsonElement(document.RootElement),
        IReadOnlyDictionary<string, object?> dictionary => FromPairs(dictionary.Select(p => new KeyValuePair<object, object?>(p.Key, p.Value)), dictionary.Count),
        IDictionary dictionary => FromPairs(Entries(dictionary), dictionary.Count),
        IEnumerable sequence => sequence.Cast<object?>().Select(ToValue).ToList(),
        _ => throw new ArgumentException($"a value of type {value.GetType()} cannot be passed to a chat template"),
    };

    /// <summary>A non-generic dictionary's entries (its IEnumerable yields KeyValuePairs for generic dictionaries, not entries).</summary>
    static IEnumerable<KeyValuePair<object, object?>> Entries(IDictionary dictionary)
    {
        for (var entry = dictionary.GetEnumerator(); entry.MoveNext();) yield return new(entry.Key, entry.Value);
    }

    static DictValue FromPairs(IEnumerable<KeyValuePair<object, object?>> pairs, int count)
    {
        var result = new DictValue(count);
        foreach (var (key, item) in pairs) result.Set(ToValue(key), ToValue(item));
        return result;
    }

    static object? FromJsonNode(JsonNode? node)
    {
        switch (node)
        {
            case null: return null;
            case JsonObject obj:
                var dict = new DictValue(obj.Count);
                foreach (var (key, item) in obj) dict.Set(key, FromJsonNode(item));
                return dict;
            case JsonArray array:
                var list = new List<object?>(array.Count);
                foreach (var item in array) list.Add(FromJsonNode(item));
                return list;
        }
        var value = (JsonValue)node;
        if (value.TryGetValue<JsonElement>(out var element)) return FromJsonElement(element);
        switch (value.GetValueKind())
        {
            case JsonValueKind.String: return value.GetValue<string>();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.Null: return null;
        }
        if (value.TryGetValue<long>(out var l)) return l;
        if (value.TryGetValue<int>(out var i)) return (long)i;
        if (value.TryGetValue<double>(out var d)) return d;
        if (value.TryGetValue<float>(out var f)) return ToValue(f);
        if (value.TryGetValue<decimal>(out var m)) return (double)m;
        // Other CLR numbers: re-read their JSON text, where an integer has no '.' or exponent, as Python's json.loads decides.
        return FromJsonElement(JsonDocument.Parse(value.ToJsonString()).RootElement);
    }

    static object? FromJsonElement(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var dict = new DictValue();
                foreach (var property in element.EnumerateObject()) dict.Set(property.Name, FromJsonElement(property.Value));
                return dict;
            case JsonValueKind.Array:
                return element.EnumerateArray().Select(FromJsonElement).ToList();
            case JsonValueKind.String: return element.GetString();
            case JsonValueKind.True: return true;
            case JsonValueKind.False: return false;
            case JsonValueKind.Number:
                var raw = element.GetRawText();
                if (raw.AsSpan().IndexOfAny('.', 'e', 'E') >= 0) return element.GetDouble();
                return element.TryGetInt64(out var integer) ? integer : throw new ArgumentException($"JSON integer {raw} does not fit in 64 bits");
            default: return null;
        }
    }
}
