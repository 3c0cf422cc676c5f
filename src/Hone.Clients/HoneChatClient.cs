using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Grammars;
using Hone.Inference;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Hone.ToolCalls;
using Microsoft.Extensions.AI;

namespace Hone.Clients;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over an in-process <see cref="BatchEngine"/>: every call is one
/// sequence in the engine's batch, so concurrent callers share the model's steps. Messages go through the model's chat
/// template (<see cref="ChatPrompt.Encode"/>); <see cref="ChatOptions.ModelId"/> names an adapter loaded in the engine
/// (null or the base model's name: the base).
/// <para>Options that are not set take the sampler's defaults (those of <c>hone generate</c>: temperature 0.8, top-k 40,
/// top-p 0.95, min-p 0.05), a fresh random seed per call, and as many output tokens as the context leaves.
/// Temperature 0 is greedy. Non-text message content (images, audio) and tools other than function declarations are
/// refused with <see cref="NotSupportedException"/> rather than ignored.</para>
/// <para>Structured output and tools are enforced by a grammar: <see cref="ChatOptions.ResponseFormat"/> JSON (any object,
/// or a schema) constrains the answer; <see cref="ChatOptions.Tools"/> (<see cref="AIFunctionDeclaration"/>s, their
/// <see cref="AIFunctionDeclaration.JsonSchema"/> the arguments' schema) are shown to the template's <c>tools</c>, and the
/// turn's calls come back as <see cref="FunctionCallContent"/> with <see cref="ChatFinishReason.ToolCalls"/>;
/// <see cref="ChatOptions.ToolMode"/> is honoured (auto: free text, calls constrained from the template's opener;
/// RequireAny / RequireSpecific: only calls from the first token; None: no calls parsed). Input messages' function calls
/// and results become the assistant <c>tool_calls</c> and <c>role: "tool"</c> messages the template renders.</para>
/// </summary>
public sealed class HoneChatClient : IChatClient
{
    public const string ProviderName = "hone";

    /// <summary>A <see cref="ChatOptions.AdditionalProperties"/> key (<see cref="ChatPrompt.ToolsInPromptKey"/>): <c>false</c>
    /// keeps the tools out of the prompt while still constraining and parsing the calls.</summary>
    public const string ToolsInPromptKey = ChatPrompt.ToolsInPromptKey;

    readonly BatchEngine _engine;
    readonly bool _ownsEngine;
    readonly ChatTemplate _template;
    readonly ChatClientMetadata _metadata;
    readonly ToolCallFormat? _toolFormat;

    /// <param name="engine">the engine the calls run on (it may serve other clients at the same time)</param>
    /// <param name="ownsEngine">dispose the engine with this client</param>
    /// <param name="template">a Jinja template file or a format name as <c>hone chat --template</c> takes; null = the model's own</param>
    public HoneChatClient(BatchEngine engine, bool ownsEngine = false, string? template = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
        _ownsEngine = ownsEngine;
        _template = ChatConversation.ResolveTemplate(engine.Tokenizer, template).Template;
        _toolFormat = ToolCallFormat.Detect(_template);
        _metadata = new ChatClientMetadata(ProviderName, null, engine.ModelName);
    }

    public BatchEngine Engine => _engine;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (request, modelId, format) = Prepare(messages, options);
        var handle = _engine.Submit(request, cancellationToken);
        SequenceResult result;
        try { result = await handle.CompleteAsync(cancellationToken).ConfigureAwait(false); }
        catch { handle.Cancel(); throw; }
        if (result.FinishReason == "cancelled") throw new OperationCanceledException("the sequence was cancelled", null, cancellationToken);
        string responseId = NewId();
        var message = new ChatMessage(ChatRole.Assistant, result.Text) { MessageId = responseId };
        bool calls = false;
        if (format != null)
        {
            var turn = format.Parse(result.Text);
            var contents = new List<AIContent>();
            if (!string.IsNullOrEmpty(turn.Content)) contents.Add(new TextContent(turn.Content));
            foreach (var call in turn.Calls) contents.Add(FunctionCall(call.Id, call.Name, call.Arguments));
            message.Contents = contents;
            calls = turn.Calls.Count > 0;
        }
        return new ChatResponse(message)
        {
            ResponseId = responseId, ModelId = modelId, CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinishReason(result.FinishReason, calls), Usage = Usage(result.Usage),
        };
    }

    /// <summary>One update per piece of final text the engine reports (with tools: per piece of content the tool-call
    /// parser settles, and one <see cref="FunctionCallContent"/> update per call once it is whole); the last update
    /// carries the finish reason and a <see cref="UsageContent"/>. Stopping the enumeration early cancels the sequence.</summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (request, modelId, format) = Prepare(messages, options);
        string responseId = NewId();
        var created = DateTimeOffset.UtcNow;
        var handle = _engine.Submit(request, cancellationToken);
        var parser = format?.CreateStreamParser();
        var pendingCalls = new Dictionary<int, (string Id, string Name)>();
        bool madeCalls = false;
        bool ended = false;
        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId, MessageId = responseId, ModelId = modelId, CreatedAt = created,
        };
        // The parser's deltas as updates: text as it settles, a call once its arguments have come.
        List<ChatResponseUpdate> Parsed(IReadOnlyList<ToolCallStreamDelta> deltas)
        {
            var updates = new List<ChatResponseUpdate>();
            foreach (var d in deltas)
            {
                if (d.Content is { Length: > 0 } text) updates.Add(Update([new TextContent(text)]));
                if (d.Call is not { } c) continue;
                if (c.Id != null) pendingCalls[c.Index] = (c.Id, c.Name!);
                if (c.Arguments.Length == 0) continue;
                var (id, name) = pendingCalls[c.Index];
                pendingCalls.Remove(c.Index);
                madeCalls = true;
                updates.Add(Update([FunctionCall(id, name, c.Arguments)]));
            }
            return updates;
        }
        try
        {
            await foreach (var e in handle.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                switch (e)
                {
                    case SequenceUpdate u when u.Text.Length > 0:
                        if (parser == null) yield return Update([new TextContent(u.Text)]);
                        else
                            foreach (var update in Parsed(parser.Feed(u.Text))) yield return update;
                        break;
                    case SequenceEnd end:
                        ended = true;
                        if (end.FinishReason == "cancelled") throw new OperationCanceledException("the sequence was cancelled", null, cancellationToken);
                        if (parser != null)
                            foreach (var update in Parsed(parser.Finish())) yield return update;
                        var last = Update([new UsageContent(Usage(end.Usage))]);
                        last.FinishReason = MapFinishReason(end.FinishReason, madeCalls);
                        yield return last;
                        yield break;
                }
            }
            throw new InvalidOperationException("the engine ended the sequence without a result");
        }
        finally
        {
            if (!ended) handle.Cancel();
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(BatchEngine)) return _engine;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_ownsEngine) _engine.Dispose();
    }

    // ---- request mapping ---------------------------------------------------------------------------------

    (SequenceRequest Request, string ModelId, ToolCallFormat? Format) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string? adapter = ResolveModel(_engine, options?.ModelId, "ChatOptions.ModelId");

        var array = new JsonArray();
        if (!string.IsNullOrEmpty(options?.Instructions)) array.Add(Message("system", options.Instructions));
        int index = 0;
        bool usesTools = false;
        foreach (var m in messages)
        {
            usesTools |= AddMessage(array, m, index);
            index++;
        }
        if (index == 0) throw new ArgumentException("there are no messages", nameof(messages));

        var (tools, choice) = Tools(options);
        var schema = options?.ResponseFormat switch
        {
            ChatResponseFormatJson { Schema: { } s } => JsonNode.Parse(s.GetRawText()),
            ChatResponseFormatJson => ChatConstraints.AnyObjectSchema(),
            _ => null,
        };
        bool wantsCalls = tools.Count > 0 && choice.Mode != ToolChoiceMode.None;
        if (_toolFormat == null && (usesTools || wantsCalls))
            throw new NotSupportedException("the chat template cannot render tools and tool calls (no <tool_call>, Llama 3.x or Mistral tool format " +
                                            "found in it); give HoneChatClient a template that can");
        if (_toolFormat != null && usesTools)
        {
            try { array = _toolFormat.PrepareMessages(array, "messages"); }
            catch (ToolFormatException e) { throw new ArgumentException(e.Message, nameof(messages), e); }
        }
        ChatConstraint constraint;
        try
        {
            constraint = wantsCalls
                ? ChatConstraints.ForTools(_toolFormat!, tools, choice, options?.AllowMultipleToolCalls ?? true, schema)
                : new ChatConstraint(schema != null ? ChatConstraints.ForJsonSchema(schema) : null, null, tools);
        }
        catch (GrammarException e)
        {
            throw new ArgumentException($"ChatOptions.{(wantsCalls ? "Tools" : "ResponseFormat")}: the JSON schema cannot be enforced: {e.Message}", nameof(options), e);
        }
        bool toolsInPrompt = !(options?.AdditionalProperties?.TryGetValue(ToolsInPromptKey, out var shown) == true && shown is false);
        var shownTools = toolsInPrompt && tools.Count > 0 && _toolFormat != null ? new JsonArray(tools.Select(t => (JsonNode)t.ToJson()).ToArray()) : null;
        var prompt = ChatPrompt.Encode(_engine.Tokenizer, _template, array, shownTools);

        var sampler = Sampler(options);
        int room = Math.Max(1, _engine.ContextLength - prompt.Length); // 1 at least, so that a prompt that fills the context is refused
        int maxTokens = options?.MaxOutputTokens is int max
            ? max >= 0 ? max : throw new ArgumentOutOfRangeException(nameof(options), $"ChatOptions.MaxOutputTokens must be at least 0, found {max}")
            : room;
        var request = new SequenceRequest
        {
            Prompt = prompt, Adapter = adapter, Sampler = sampler, MaxTokens = maxTokens,
            StopStrings = options?.StopSequences?.Where(s => !string.IsNullOrEmpty(s)).ToArray() ?? [],
            Grammar = constraint.Grammar,
        };
        return (request, adapter ?? _engine.ModelName, constraint.Format);

        static JsonObject Message(string role, string content) => new() { ["role"] = role, ["content"] = content };
    }

    /// <summary>Adds <paramref name="m"/> as OpenAI messages: its text; its function calls as the assistant's
    /// <c>tool_calls</c>; each function result as a <c>role: "tool"</c> message. Returns whether it holds either.</summary>
    static bool AddMessage(JsonArray array, ChatMessage m, int index)
    {
        var text = new System.Text.StringBuilder();
        var calls = new JsonArray();
        var results = new List<JsonObject>();
        foreach (var c in m.Contents)
        {
            switch (c)
            {
                case TextContent t: text.Append(t.Text); break;
                case FunctionCallContent call:
                    calls.Add(new JsonObject
                    {
                        ["id"] = call.CallId, ["type"] = "function",
                        ["function"] = new JsonObject
                        {
                            ["name"] = call.Name,
                            ["arguments"] = JsonSerializer.SerializeToNode(call.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions),
                        },
                    });
                    break;
                case FunctionResultContent result:
                    results.Add(new JsonObject { ["role"] = "tool", ["tool_call_id"] = result.CallId, ["content"] = ResultText(result) });
                    break;
                default:
                    throw new NotSupportedException($"message {index} ({m.Role.Value}): content of type {c.GetType().Name} is not supported; HoneChatClient takes text, function calls and function results");
            }
        }
        if (calls.Count > 0)
            array.Add(new JsonObject { ["role"] = "assistant", ["content"] = text.Length > 0 ? text.ToString() : null, ["tool_calls"] = calls });
        else if (results.Count == 0 || text.Length > 0)
            array.Add(new JsonObject { ["role"] = m.Role.Value, ["content"] = text.ToString() });
        foreach (var r in results) array.Add(r);
        return calls.Count > 0 || results.Count > 0;
    }

    /// <summary>A function's result as the tool message's text: a string as it is, anything else as JSON.</summary>
    static string ResultText(FunctionResultContent result) => result.Result switch
    {
        null => result.Exception is { } e ? $"Error: {e.Message}" : "",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        var other => JsonSerializer.Serialize(other, AIJsonUtilities.DefaultOptions.GetTypeInfo(other.GetType())),
    };

    /// <summary>The options' function declarations as tool definitions, and the tool mode as a tool choice.</summary>
    static (IReadOnlyList<ToolDefinition> Tools, ToolChoice Choice) Tools(ChatOptions? options)
    {
        var tools = new List<ToolDefinition>();
        if (options?.Tools is { } list)
            for (int i = 0; i < list.Count; i++)
            {
                if (list[i] is not AIFunctionDeclaration f)
                    throw new NotSupportedException($"ChatOptions.Tools[{i}] is a {list[i].GetType().Name}; HoneChatClient calls functions (AIFunctionDeclaration) only");
                var function = new JsonObject { ["name"] = f.Name, ["parameters"] = JsonNode.Parse(f.JsonSchema.GetRawText()) };
                if (!string.IsNullOrEmpty(f.Description)) function["description"] = f.Description;
                try
                {
                    var tool = ToolDefinition.ParseFunction(function, $"ChatOptions.Tools[{i}]");
                    if (tools.Any(t => t.Name == tool.Name)) throw new ArgumentException($"ChatOptions.Tools[{i}]: the function '{tool.Name}' is given twice", nameof(options));
                    tools.Add(tool);
                }
                catch (ToolFormatException e) { throw new ArgumentException(e.Message, nameof(options), e); }
            }
        var choice = options?.ToolMode switch
        {
            null or AutoChatToolMode => tools.Count > 0 ? ToolChoice.Auto : ToolChoice.None,
            NoneChatToolMode => ToolChoice.None,
            RequiredChatToolMode { RequiredFunctionName: null } => ToolChoice.Required,
            RequiredChatToolMode { RequiredFunctionName: { } name } => new ToolChoice(ToolChoiceMode.Named, name),
            var other => throw new NotSupportedException($"ChatOptions.ToolMode {other.GetType().Name} is not supported"),
        };
        if (choice.Mode is ToolChoiceMode.Required or ToolChoiceMode.Named && tools.Count == 0)
            throw new ArgumentException("ChatOptions.ToolMode requires a function call, but ChatOptions.Tools holds no functions", nameof(options));
        if (choice.Mode == ToolChoiceMode.Named && !tools.Any(t => t.Name == choice.Name))
            throw new ArgumentException($"ChatOptions.ToolMode requires the function '{choice.Name}', which is not among ChatOptions.Tools ({string.Join(", ", tools.Select(t => t.Name))})", nameof(options));
        return (tools, choice);
    }

    /// <summary>A call the model made, its arguments as a dictionary of JSON values (as FunctionInvokingChatClient binds them).</summary>
    static FunctionCallContent FunctionCall(string id, string name, string arguments)
    {
        Dictionary<string, object?>? parsed = null;
        Exception? error = null;
        try
        {
            using var document = JsonDocument.Parse(arguments);
            parsed = document.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { error = e; }
        return new FunctionCallContent(id, name, parsed) { Exception = error, RawRepresentation = arguments };
    }

    static SamplerOptions Sampler(ChatOptions? options)
    {
        var s = new SamplerOptions(Seed: options?.Seed is long seed ? unchecked((ulong)seed) : (ulong)Random.Shared.NextInt64(long.MinValue, long.MaxValue));
        if (options == null) return s;
        if (options.Temperature is float t) s = s with { Temperature = t };
        if (options.TopP is float p) s = s with { TopP = p };
        if (options.TopK is int k) s = s with { TopK = k };
        if (options.PresencePenalty is float presence) s = s with { PresencePenalty = presence };
        if (options.FrequencyPenalty is float frequency) s = s with { FrequencyPenalty = frequency };
        try { s.Validate(); }
        catch (ArgumentException e) { throw new ArgumentException($"ChatOptions: {e.Message}", nameof(options), e); }
        return s;
    }

    /// <summary>The adapter a model id names: null for none, the base model's name or an empty id; otherwise it must be
    /// loaded in the engine.</summary>
    internal static string? ResolveModel(BatchEngine engine, string? modelId, string field)
    {
        if (string.IsNullOrEmpty(modelId) || modelId == engine.ModelName) return null;
        var names = engine.AdapterNames;
        if (!names.Contains(modelId))
            throw new RequestRejectedException(RejectReason.UnknownModel,
                $"{field}: no model or adapter named '{modelId}' is served here; the names are '{engine.ModelName}' (the base)" +
                (names.Count > 0 ? ", " + string.Join(", ", names.Select(n => $"'{n}'")) : ""), "model");
        return modelId;
    }

    internal static UsageDetails Usage(SequenceUsage u) => new()
    {
        InputTokenCount = u.PromptTokens, OutputTokenCount = u.CompletionTokens, TotalTokenCount = u.PromptTokens + u.CompletionTokens,
        CachedInputTokenCount = u.CachedPromptTokens,
    };

    static ChatFinishReason? MapFinishReason(string reason, bool calls = false) => reason switch
    {
        "stop" when calls => ChatFinishReason.ToolCalls,
        "stop" => ChatFinishReason.Stop,
        "length" => ChatFinishReason.Length,
        _ => new ChatFinishReason(reason),
    };

    static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");
}
