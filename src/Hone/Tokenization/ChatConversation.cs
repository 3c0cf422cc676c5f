using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Formats;
using Hone.Tokenization.Templates;

namespace Hone.Tokenization;

/// <summary>
/// Conversations for chat models: the template a model is rendered with (its own, a given file, or a plain
/// instruction/response one for base models), records in the common shapes normalized to OpenAI-style messages
/// (OpenAI `messages`, ShareGPT `conversations`, Alpaca `instruction`/`input`/`output`), and a conversation tokenized
/// with its assistant tokens marked (used by training, evaluation and chat alike).
/// </summary>
public static class ChatConversation
{
    /// <summary>Used when a model has no chat template (base models): instruction/response with EOS after answers.</summary>
    public const string PlainTemplate =
        "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}\n\n" +
        "{% elif message['role'] == 'user' %}{% if loop.index0 > 0 and messages[loop.index0 - 1]['role'] == 'assistant' %}\n\n{% endif %}" +
        "### Instruction:\n{{ message['content'] }}\n\n### Response:\n" +
        "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}";

    /// <summary>Chat formats named as LLaMA-Factory's `template` names them, each with markers a conversation rendered
    /// in that format always holds. Hone has no built-in copies of them: a name stands for the model's own template,
    /// when a probe conversation rendered with it holds the markers.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> FormatMarkers = new Dictionary<string, string[]>
    {
        ["llama3"] = ["<|start_header_id|>", "<|eot_id|>"],
        ["llama2"] = ["[INST]"],
        ["mistral"] = ["[INST]"],
        ["qwen"] = ["<|im_start|>"],
        ["qwen3"] = ["<|im_start|>"],
        ["chatml"] = ["<|im_start|>"],
        ["gemma"] = ["<start_of_turn>"],
        ["phi"] = ["<|user|>", "<|end|>"],
    };

    /// <param name="templateFile">a Jinja file, a chat format name of <see cref="FormatMarkers"/> (which the model's
    /// own template must be), or null for the model's template</param>
    public static (ChatTemplate Template, string Name) ResolveTemplate(Tokenizer tokenizer, string? templateFile)
    {
        if (templateFile != null && !File.Exists(templateFile) && FormatMarkers.TryGetValue(templateFile.Trim().ToLowerInvariant(), out var markers))
        {
            if (tokenizer.ChatTemplate == null)
                throw new ArgumentException($"template '{templateFile}': the model has no chat template to use for it, and Hone has no built-in copy of that format; give a Jinja template file");
            var own = ChatTemplate.Parse(tokenizer.ChatTemplate, "model");
            string probe;
            try
            {
                probe = own.Apply(new JsonArray(Message("user", "u"), Message("assistant", "a")),
                    new ChatTemplateOptions { BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken });
            }
            catch (TemplateException e) { throw new ArgumentException($"template '{templateFile}': the model's own chat template does not render a plain conversation: {e.Message}"); }
            if (!markers.All(m => probe.Contains(m, StringComparison.Ordinal)))
                throw new ArgumentException($"template '{templateFile}': the model's own chat template is not of that format (what it renders lacks {string.Join(" and ", markers)}); " +
                                            "leave the template out to use the model's, or give a Jinja template file");
            return (own, $"from the model (a {templateFile} template)");
        }
        if (templateFile != null)
        {
            if (!File.Exists(templateFile))
                throw new FileNotFoundException($"{templateFile}: chat template file not found (nor a chat format name: {string.Join(", ", FormatMarkers.Keys)})", templateFile);
            return (ChatTemplate.Parse(File.ReadAllText(templateFile), templateFile), Path.GetFileName(templateFile));
        }
        if (tokenizer.ChatTemplate != null) return (ChatTemplate.Parse(tokenizer.ChatTemplate, tokenizer.ChatTemplateSource ?? "the model's chat_template"), "from the model");
        return (ChatTemplate.Parse(PlainTemplate, "plain"), "plain instruction/response (the model has none)");
    }

    /// <summary>Normalize a record to OpenAI-style messages (its tools, if any, are dropped: see <see cref="ToConversation"/>).</summary>
    public static JsonArray ToMessages(JsonNode record, string file, long line) => ToConversation(record, file, line).Messages;

    /// <summary>
    /// Normalize a record to OpenAI-style messages and the tools it offers the model (null when none). Tools come from a
    /// top-level <c>tools</c> list (OpenAI's shape, or a JSON string holding it, as LLaMA-Factory's ShareGPT files keep
    /// it; bare <c>{"name", "description", "parameters"}</c> functions are wrapped as OpenAI's). ShareGPT's
    /// <c>function_call</c> turns (a JSON object or list of <c>{"name", "arguments"}</c>, as a string or inline) become
    /// assistant <c>tool_calls</c> and <c>observation</c> turns <c>role: "tool"</c> results answering them in order. Calls
    /// without an id get <c>call00001</c>, <c>call00002</c>... (9 characters, as Mistral's template demands; deterministic,
    /// so training is reproducible). Arguments stay as given; the tool-call format prepares them for its template.
    /// </summary>
    public static ChatRecord ToConversation(JsonNode record, string file, long line)
    {
        if (record is not JsonObject o) throw new DataFormatException(file, line, "a record must be a JSON object");
        int callNumber = 0;
        string NewCallId() => $"call{++callNumber:D5}";
        if (o["messages"] is JsonArray messages)
        {
            var result = new JsonArray();
            for (int i = 0; i < messages.Count; i++)
            {
                var m = messages[i];
                string at = $"messages[{i}]";
                string role = m?["role"] is JsonValue r && r.TryGetValue(out string? rs) ? rs : throw new DataFormatException(file, line, $"{at}: a message needs a \"role\" string");
                if (role is not ("system" or "user" or "assistant" or "tool")) throw new DataFormatException(file, line, $"{at}.role: unknown role '{role}'");
                var copy = (JsonObject)m.DeepClone();
                if (m["tool_calls"] is { } calls)
                {
                    if (role != "assistant" || calls is not JsonArray callList)
                        throw new DataFormatException(file, line, $"{at}.tool_calls: only an assistant message has tool_calls, as a list");
                    for (int j = 0; j < callList.Count; j++)
                    {
                        if (copy["tool_calls"]![j] is not JsonObject call || call["function"] is not JsonObject)
                            throw new DataFormatException(file, line, $"{at}.tool_calls[{j}]: a call needs a \"function\" object");
                        if (call["id"] == null) call["id"] = NewCallId();
                    }
                }
                else if (m["content"] is not JsonValue c || !c.TryGetValue(out string? _))
                    throw new DataFormatException(file, line, $"{at}.content: the {role} message needs a \"content\" string");
                result.Add((JsonNode)copy);
            }
            return new ChatRecord(Checked(result, file, line), Tools(o, file, line));
        }
        if (o["conversations"] is JsonArray conversation)
        {
            var result = new JsonArray();
            if (o["system"] is JsonValue sys && sys.TryGetValue(out string? systemText)) result.Add((JsonNode)Message("system", systemText));
            var unanswered = new Queue<string>();
            for (int i = 0; i < conversation.Count; i++)
            {
                var turn = conversation[i];
                string at = $"conversations[{i}]";
                string from = turn?["from"] is JsonValue f && f.TryGetValue(out string? fs) ? fs : throw new DataFormatException(file, line, $"{at}: a ShareGPT turn needs \"from\"");
                if (from == "function_call")
                {
                    var call = CallsOf(turn["value"], $"{at}.value", file, line, NewCallId);
                    foreach (var c in call) unanswered.Enqueue(c!["id"]!.GetValue<string>());
                    result.Add((JsonNode)new JsonObject { ["role"] = "assistant", ["content"] = null, ["tool_calls"] = call });
                    continue;
                }
                string value = turn["value"] is JsonValue v && v.TryGetValue(out string? vs) ? vs : throw new DataFormatException(file, line, $"{at}.value: a ShareGPT turn needs a \"value\" string");
                if (from == "observation")
                {
                    if (!unanswered.TryDequeue(out var id))
                        throw new DataFormatException(file, line, $"{at}: an observation answers a function_call, and no call before it is unanswered");
                    result.Add((JsonNode)new JsonObject { ["role"] = "tool", ["tool_call_id"] = id, ["content"] = value });
                    continue;
                }
                string role = from switch
                {
                    "human" or "user" => "user",
                    "gpt" or "assistant" or "model" => "assistant",
                    "system" => "system",
                    _ => throw new DataFormatException(file, line, $"{at}.from: unknown ShareGPT speaker '{from}' (human, gpt, system, function_call, observation)"),
                };
                result.Add((JsonNode)Message(role, value));
            }
            return new ChatRecord(Checked(result, file, line), Tools(o, file, line));
        }
        if (o["instruction"] == null && Field(o, PromptFields) is string prompt && Field(o, AnswerFields) is string answer)
        {
            // A prompt/answer pair under the names datasets use (CSV columns, Q&A sets): one user turn, one answer.
            // (With an "instruction" the record is Alpaca's, whose answer may also be named response/answer/completion.)
            var result = new JsonArray();
            if (o["system"] is JsonValue sys && sys.TryGetValue(out string? systemText) && systemText.Length > 0) result.Add((JsonNode)Message("system", systemText));
            result.Add((JsonNode)Message("user", prompt));
            result.Add((JsonNode)Message("assistant", answer));
            return new ChatRecord(result, null);
        }
        if (o["instruction"] is JsonValue instruction && instruction.TryGetValue(out string? instructionText))
        {
            var result = new JsonArray();
            if (o["system"] is JsonValue sys && sys.TryGetValue(out string? systemText) && systemText.Length > 0) result.Add((JsonNode)Message("system", systemText));
            if (o["history"] is JsonArray history)
                foreach (var pair in history)
                {
                    if (pair is not JsonArray p || p.Count != 2) throw new DataFormatException(file, line, "history entries must be [prompt, response] pairs");
                    result.Add((JsonNode)Message("user", p[0]!.GetValue<string>()));
                    result.Add((JsonNode)Message("assistant", p[1]!.GetValue<string>()));
                }
            string input = o["input"] is JsonValue i && i.TryGetValue(out string? it) ? it : "";
            string output = o["output"] is JsonValue v && v.TryGetValue(out string? ot) ? ot
                : Field(o, AnswerFields) ?? throw new DataFormatException(file, line, "an Alpaca record needs an \"output\" string (or response, answer, completion)");
            result.Add((JsonNode)Message("user", input.Length > 0 ? $"{instructionText}\n\n{input}" : instructionText));
            result.Add((JsonNode)Message("assistant", output));
            return new ChatRecord(result, null);
        }
        throw new DataFormatException(file, line, "unrecognized record: expected \"messages\" (OpenAI), \"conversations\" (ShareGPT), \"instruction\"/\"output\" (Alpaca) " +
            $"or a prompt field ({string.Join(", ", PromptFields)}) with an answer field ({string.Join(", ", AnswerFields)})");
    }

    /// <summary>Field names of a prompt/answer pair, in the order they are looked for.</summary>
    public static readonly IReadOnlyList<string> PromptFields = ["question", "prompt", "input", "query"];
    public static readonly IReadOnlyList<string> AnswerFields = ["response", "answer", "output", "completion"];

    /// <summary>The first of <paramref name="names"/> holding a non-empty string (names compared without case).</summary>
    static string? Field(JsonObject o, IReadOnlyList<string> names)
    {
        foreach (var name in names)
            foreach (var (key, value) in o)
                if (string.Equals(key.Trim(), name, StringComparison.OrdinalIgnoreCase) && value is JsonValue v && v.TryGetValue(out string? text) && text.Trim().Length > 0)
                    return text.Trim();
        return null;
    }

    static JsonObject Message(string role, string content) => new() { ["role"] = role, ["content"] = content };

    /// <summary>A ShareGPT function_call's value: one <c>{"name", "arguments"}</c> object or a list of them, inline or as JSON text.</summary>
    static JsonArray CallsOf(JsonNode? value, string at, string file, long line, Func<string> newId)
    {
        if (value is JsonValue text && text.TryGetValue(out string? json))
        {
            try { value = JsonNode.Parse(json); }
            catch (JsonException e) { throw new DataFormatException(file, line, $"{at}: a function_call value must be JSON: {e.Message}"); }
        }
        var items = value switch
        {
            JsonObject one => [one],
            JsonArray many when many.Count > 0 => many.ToList(),
            _ => throw new DataFormatException(file, line, $"{at}: a function_call value is a {{\"name\", \"arguments\"}} object or a non-empty list of them"),
        };
        var calls = new JsonArray();
        for (int i = 0; i < items.Count; i++)
        {
            if (items[i] is not JsonObject call || call["name"] is not JsonValue name || !name.TryGetValue(out string? _))
                throw new DataFormatException(file, line, $"{at}{(items.Count > 1 ? $"[{i}]" : "")}.name: a call needs a \"name\" string");
            calls.Add((JsonNode)new JsonObject
            {
                ["id"] = newId(), ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = call["name"]!.DeepClone(), ["arguments"] = call["arguments"]?.DeepClone() ?? new JsonObject() },
            });
        }
        return calls;
    }

    /// <summary>The record's <c>tools</c> in OpenAI's shape, or null when it has none (absent, null, empty string or list).</summary>
    static JsonArray? Tools(JsonObject record, string file, long line)
    {
        var tools = record["tools"];
        if (tools is JsonValue text && text.TryGetValue(out string? json))
        {
            if (json.Trim().Length == 0) return null;
            try { tools = JsonNode.Parse(json); }
            catch (JsonException e) { throw new DataFormatException(file, line, $"tools: a JSON string of tools must be JSON: {e.Message}"); }
        }
        if (tools == null) return null;
        if (tools is not JsonArray list) throw new DataFormatException(file, line, "tools: must be a list of tools (or a JSON string holding one)");
        if (list.Count == 0) return null;
        var result = new JsonArray();
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] is not JsonObject tool) throw new DataFormatException(file, line, $"tools[{i}]: must be an object");
            bool bare = tool["function"] == null && tool["name"] != null;
            result.Add(bare ? new JsonObject { ["type"] = "function", ["function"] = tool.DeepClone() } : tool.DeepClone());
        }
        return result;
    }

    static JsonArray Checked(JsonArray messages, string file, long line)
    {
        if (!messages.Any(m => m!["role"]!.GetValue<string>() == "assistant")) throw new DataFormatException(file, line, "the conversation has no assistant message to learn from");
        return messages;
    }

    /// <summary>
    /// Tokenize a conversation with assistant tokens as targets. The template is rendered incrementally (before each
    /// assistant turn with the generation prompt, and after it), so each assistant turn's text is located exactly;
    /// a template that does not render conversations as growing prefixes is refused rather than guessed at.
    /// </summary>
    /// <param name="tools">the tools the template shows the model (OpenAI's shape), or null</param>
    public static (int[] Ids, bool[] IsTarget) Tokenize(Tokenizer tokenizer, ChatTemplate template, JsonArray messages, bool trainOnPrompt, JsonArray? tools = null)
    {
        var options = new ChatTemplateOptions { BosToken = tokenizer.BosToken, EosToken = tokenizer.EosToken, Tools = tools };
        string Render(int count, bool generationPrompt) =>
            template.Apply(new JsonArray(messages.Take(count).Select(m => m!.DeepClone()).ToArray()), options with { AddGenerationPrompt = generationPrompt });
        var segments = new List<(string Text, bool Target)>();
        string sofar = "";
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i]!["role"]!.GetValue<string>() != "assistant") continue;
            string before = Render(i, true), after = Render(i + 1, false);
            if (!before.StartsWith(sofar, StringComparison.Ordinal) || !after.StartsWith(before, StringComparison.Ordinal))
                throw new InvalidOperationException("the chat template does not render this conversation as growing prefixes, so assistant turns cannot be located; pass --template with a template that does");
            segments.Add((before[sofar.Length..], false));
            segments.Add((after[before.Length..], true));
            sofar = after;
        }
        string full = Render(messages.Count, false);
        if (!full.StartsWith(sofar, StringComparison.Ordinal)) throw new InvalidOperationException("the chat template's full rendering does not extend its partial renderings");
        segments.Add((full[sofar.Length..], false));

        var ids = new List<int>();
        var isTarget = new List<bool>();
        foreach (var (text, target) in segments)
        {
            if (text.Length == 0) continue;
            var part = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: true);
            ids.AddRange(part);
            isTarget.AddRange(Enumerable.Repeat(target || trainOnPrompt, part.Length));
        }
        if (tokenizer.AddsBos && tokenizer.BosId is int bos && (ids.Count == 0 || ids[0] != bos)) { ids.Insert(0, bos); isTarget.Insert(0, false); }
        if (isTarget.Count > 0) isTarget[0] = false;
        return (ids.ToArray(), isTarget.ToArray());
    }
}

/// <summary>A training or evaluation record as a conversation: OpenAI-style messages and the tools offered (null when none).</summary>
public sealed record ChatRecord(JsonArray Messages, JsonArray? Tools)
{
    /// <summary>Whether the conversation involves tools at all (offered, called, or answered).</summary>
    public bool UsesTools => Tools != null || Messages.Any(m => m?["tool_calls"] != null || m?["role"]?.GetValue<string>() == "tool");
}
