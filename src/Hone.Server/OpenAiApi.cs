using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Hone.Batching;
using Hone.Grammars;
using Hone.Inference;
using Hone.Tokenization.Templates;
using Hone.ToolCalls;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using static Hone.Server.JsonFields;

namespace Hone.Server;

/// <summary>The OpenAI-compatible endpoints (and vLLM's adapter loading, llama.cpp's tokenizer endpoints) over the
/// server's <see cref="BatchEngine"/>. Request bodies are read as JSON objects field by field, so a wrong type or an
/// out-of-range value gets a 400 naming the field; unknown fields are ignored.</summary>
internal static class OpenAiApi
{
    internal static readonly JsonSerializerOptions Output = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    static readonly JsonDocumentOptions Input = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    public static void Map(IEndpointRouteBuilder app, HoneServer server)
    {
        app.MapPost("/v1/chat/completions", ctx => ChatCompletions(ctx, server));
        app.MapPost("/v1/completions", ctx => Completions(ctx, server));
        app.MapPost("/v1/embeddings", ctx => Embeddings(ctx, server));
        app.MapGet("/v1/models", ctx => WriteJson(ctx, ModelList(server)));
        app.MapGet("/v1/models/{**id}", ctx => WriteJson(ctx, ModelById(server, (string)ctx.Request.RouteValues["id"]!)));
        app.MapPost("/v1/load_lora_adapter", ctx => LoadAdapter(ctx, server));
        app.MapPost("/v1/unload_lora_adapter", ctx => UnloadAdapter(ctx, server));
        app.MapPost("/tokenize", ctx => Tokenize(ctx, server));
        app.MapPost("/detokenize", ctx => Detokenize(ctx, server));
    }

    // ---- plumbing ----------------------------------------------------------------------------------------------

    /// <summary>The body as a JSON object. Bodies over the limit get 413; Kestrel's own limit is set higher
    /// (<see cref="HoneServer.TransportLimit"/>) so that it drains the rest of such a body after the answer, and the
    /// client, still sending, reads a clean 413 instead of a closed connection.</summary>
    static async Task<JsonObject> ReadBody(HttpContext ctx, HoneServer server)
    {
        long limit = server.Options.MaxRequestBytes;
        var tooLarge = new ApiException(413, $"the request body is larger than this server's limit of {limit} bytes", null, "request_too_large");
        if (ctx.Request.ContentLength > limit) throw tooLarge;
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int n;
        while ((n = await ctx.Request.Body.ReadAsync(chunk, ctx.RequestAborted).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + n > limit) throw tooLarge;
            buffer.Write(chunk, 0, n);
        }
        JsonNode? node;
        try { node = JsonNode.Parse(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), null, Input); }
        catch (JsonException e) { throw new ApiException(400, $"the request body is not valid JSON: {e.Message}", null, "invalid_json"); }
        return node as JsonObject ?? throw new ApiException(400, "the request body must be a JSON object", null, "invalid_json");
    }

    static Task WriteJson(HttpContext ctx, JsonNode node, int status = 200)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        return ctx.Response.WriteAsync(node.ToJsonString(Output), ctx.RequestAborted);
    }

    static string NewId(string prefix) => prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));

    static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>A request's "model": the base (by name, or when absent) → null, an adapter's name → that name; anything
    /// else is OpenAI's 404 model_not_found.</summary>
    static string? ResolveModel(BatchEngine engine, string? model)
    {
        if (model == null || model == engine.ModelName) return null;
        if (engine.AdapterPath(model) != null) return model;
        throw UnknownModel(engine, model);
    }

    /// <summary>Whether a request names the routed model ("auto") of a server with a request router.</summary>
    static bool IsRouted(HoneServer server, string? model) => server.Router != null && model == ServerOptions.AutoModel;

    /// <summary>The adapter a prompt is routed to (null: the base): its embedding, then the nearest route.</summary>
    static async Task<string?> Route(HoneServer server, BatchEngine engine, int[] prompt, CancellationToken cancel)
    {
        float[] embedding;
        try { embedding = await engine.EmbedAsync(prompt, null, cancel).ConfigureAwait(false); }
        catch (RequestRejectedException e) { throw Rejected(e, "messages"); }
        var (route, _) = server.Router!.Route(embedding);
        return route.Name == Experts.RequestRouter.BaseRoute ? null : route.Name;
    }

    static ApiException UnknownModel(BatchEngine engine, string model)
    {
        var names = new[] { engine.ModelName }.Concat(engine.AdapterNames).Select(n => $"'{n}'");
        string shown = model.Length > 100 ? model[..100] + "…" : model;
        return new ApiException(404, $"The model '{shown}' does not exist; this server serves {string.Join(", ", names)}", "model", "model_not_found");
    }

    static ApiException Rejected(RequestRejectedException e, string promptField) => e.Reason switch
    {
        RejectReason.QueueFull => new ApiException(429, e.Message, null, "rate_limit_exceeded", "rate_limit_error") { RetryAfterSeconds = 1 },
        RejectReason.PromptTooLong => new ApiException(400, e.Message, promptField, "context_length_exceeded"),
        RejectReason.UnknownModel => new ApiException(404, e.Message, "model", "model_not_found"),
        _ => new ApiException(400, e.Message, e.Param == "prompt" ? promptField : e.Param, "invalid_value"),
    };

    // ---- sampling parameters -----------------------------------------------------------------------------------

    sealed record Generation(SamplerOptions Sampler, long? Seed, int? MaxTokens, string[] Stop, int N, int TopLogprobs,
        bool Stream, bool IncludeUsage, bool TokensAsIds);

    /// <summary>The sampling fields shared by chat and completions, with OpenAI's defaults (temperature 1, top_p 1, no
    /// top_k or min_p; temperature 0 is greedy).</summary>
    static Generation ReadGeneration(JsonObject body, BatchEngine engine, ServerOptions options, bool chat)
    {
        double temperature = Number(body, "temperature", 0, 2) ?? 1;
        double topP = Number(body, "top_p", 0, 1, minExclusive: true) ?? 1;
        long topK = Integer(body, "top_k", -1, int.MaxValue) ?? 0;
        double minP = Number(body, "min_p", 0, 1, maxExclusive: true) ?? 0;
        double presence = Number(body, "presence_penalty", -2, 2) ?? 0;
        double frequency = Number(body, "frequency_penalty", -2, 2) ?? 0;
        double repetition = Number(body, "repetition_penalty", 0, 10, minExclusive: true) ?? 1;
        long? seed = Integer(body, "seed", long.MinValue, long.MaxValue);
        long? maxTokens = null;
        foreach (var field in new[] { "max_tokens", "max_completion_tokens" })
            if (Integer(body, field, 1, int.MaxValue) is long value)
            {
                if (value > engine.ContextLength)
                    throw ApiException.BadValue(field, $"'{field}' is {value}, more than this server's context of {engine.ContextLength} tokens (prompt and output together)");
                maxTokens = value;
            }
        var stop = StringOrList(body, "stop", 16) ?? [];
        for (int i = 0; i < stop.Length; i++)
            if (stop[i].Length == 0) throw ApiException.BadValue("stop", "'stop' holds an empty string");
        int n = (int)(Integer(body, "n", 1, options.MaxChoices) ?? 1);
        int topLogprobs = -1;
        if (chat)
        {
            bool logprobs = Bool(body, "logprobs") ?? false;
            long? top = Integer(body, "top_logprobs", 0, SequenceRequest.MaxTopLogprobs);
            if (top != null && !logprobs) throw ApiException.BadValue("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            if (logprobs) topLogprobs = (int)(top ?? 0);
        }
        else if (Integer(body, "logprobs", 0, SequenceRequest.MaxTopLogprobs) is long top) topLogprobs = (int)top;
        bool stream = Bool(body, "stream") ?? false;
        bool includeUsage = false;
        if (Object(body, "stream_options") is { } streamOptions) includeUsage = Bool(streamOptions, "include_usage") ?? false;
        bool asIds = Bool(body, "return_tokens_as_token_ids") ?? false;
        if (Object(body, "logit_bias") is { Count: > 0 }) throw ApiException.BadValue("logit_bias", "'logit_bias' is not supported by this server");
        var sampler = new SamplerOptions((float)temperature, (int)Math.Max(0, topK), (float)topP, (float)minP, (float)repetition,
            (float)presence, (float)frequency, PenaltyWindow: -1);
        return new Generation(sampler, seed, maxTokens is long m ? (int)m : null, stop, n, topLogprobs, stream, includeUsage, asIds);
    }

    /// <summary>Submits n sequences per prompt, all or none: when one is refused, the ones already queued are cancelled.</summary>
    static List<BatchEngine.SequenceHandle> SubmitAll(BatchEngine engine, List<int[]> prompts, string? adapter, Generation g,
        string promptField, CancellationToken cancel, GrammarSpec? grammar = null)
    {
        var handles = new List<BatchEngine.SequenceHandle>();
        try
        {
            for (int p = 0; p < prompts.Count; p++)
                for (int i = 0; i < g.N; i++)
                {
                    ulong seed = g.Seed is long s ? unchecked((ulong)s + (ulong)handles.Count) : BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
                    handles.Add(engine.Submit(new SequenceRequest
                    {
                        Prompt = prompts[p], Adapter = adapter, Sampler = g.Sampler with { Seed = seed },
                        MaxTokens = g.MaxTokens ?? engine.ContextLength, StopStrings = g.Stop, TopLogprobs = g.TopLogprobs, Grammar = grammar,
                    }, cancel));
                }
            return handles;
        }
        catch (RequestRejectedException e)
        {
            foreach (var h in handles) h.Cancel();
            throw Rejected(e, promptField);
        }
    }

    /// <summary>Reads the events of all sequences as they come, in any order: <paramref name="update"/> for text,
    /// <paramref name="end"/> once per sequence.</summary>
    static async Task Follow(IReadOnlyList<BatchEngine.SequenceHandle> handles, HoneServer server,
        Func<int, SequenceUpdate, Task> update, Func<int, SequenceEnd, Task> end, CancellationToken cancel)
    {
        var merged = Channel.CreateUnbounded<(int Index, SequenceEvent Event)>(new UnboundedChannelOptions { SingleReader = true });
        var pumps = handles.Select((h, i) => Task.Run(async () =>
        {
            await foreach (var e in h.Events.ReadAllAsync(cancel).ConfigureAwait(false)) merged.Writer.TryWrite((i, e));
        }, cancel)).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(t => merged.Writer.TryComplete(t.Exception?.GetBaseException()), TaskScheduler.Default);
        try
        {
            int ended = 0;
            while (ended < handles.Count)
            {
                var (index, e) = await merged.Reader.ReadAsync(cancel).ConfigureAwait(false);
                switch (e)
                {
                    case SequenceUpdate u: await update(index, u).ConfigureAwait(false); break;
                    case SequenceEnd done:
                        ended++;
                        await end(index, done).ConfigureAwait(false);
                        break;
                }
            }
        }
        catch
        {
            foreach (var h in handles) h.Cancel();
            throw;
        }
    }

    static JsonObject Usage(IEnumerable<SequenceUsage> firstOfEachPrompt, int completionTokens)
    {
        int prompt = 0, cached = 0;
        foreach (var u in firstOfEachPrompt) { prompt += u.PromptTokens; cached += u.CachedPromptTokens; }
        return new JsonObject
        {
            ["prompt_tokens"] = prompt, ["completion_tokens"] = completionTokens, ["total_tokens"] = prompt + completionTokens,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cached },
        };
    }

    static async Task StartStream(HttpContext ctx)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
    }

    static async Task Send(HttpContext ctx, string data)
    {
        await ctx.Response.WriteAsync("data: " + data + "\n\n", ctx.RequestAborted).ConfigureAwait(false);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
    }

    static async Task SendError(HttpContext ctx, Exception e, HoneServer server)
    {
        if (ctx.RequestAborted.IsCancellationRequested) return;
        server.Log($"hone serve: a stream failed: {e}");
        var error = e as ApiException ?? new ApiException(500, $"internal error: {e.GetType().Name}: {e.Message}");
        try { await Send(ctx, error.ToJson().ToJsonString(Output)).ConfigureAwait(false); await Send(ctx, "[DONE]").ConfigureAwait(false); }
        catch (Exception ex) when (ex is IOException or OperationCanceledException) { }
    }

    static string TokenString(HoneServer server, BatchEngine engine, int id, bool asIds) => asIds ? $"token_id:{id}" : server.TokenText(engine, id);

    static float Finite(float logprob) => float.IsFinite(logprob) ? logprob : -9999f;

    /// <summary>Chat's logprobs entries: {token, logprob, bytes, top_logprobs}.</summary>
    static JsonArray ChatLogprobs(HoneServer server, BatchEngine engine, IEnumerable<GeneratedToken> tokens, bool asIds)
    {
        JsonObject Entry(int id, float logprob)
        {
            string token = TokenString(server, engine, id, asIds);
            return new JsonObject
            {
                ["token"] = token, ["logprob"] = Finite(logprob),
                ["bytes"] = new JsonArray(Encoding.UTF8.GetBytes(asIds ? server.TokenText(engine, id) : token).Select(b => (JsonNode)(int)b).ToArray()),
            };
        }
        var content = new JsonArray();
        foreach (var t in tokens)
        {
            var entry = Entry(t.Id, t.Logprob);
            entry["top_logprobs"] = new JsonArray(t.Top.Select(top => (JsonNode)Entry(top.Id, top.Logprob)).ToArray());
            content.Add(entry);
        }
        return content;
    }

    /// <summary>The legacy completions' logprobs: parallel lists of tokens, their logprobs, the top alternatives and
    /// each token's offset in the text.</summary>
    sealed class CompletionLogprobs
    {
        readonly JsonArray _tokens = [], _logprobs = [], _top = [], _offsets = [];
        int _offset;

        public void Add(HoneServer server, BatchEngine engine, IEnumerable<GeneratedToken> tokens, bool asIds, bool withTop)
        {
            foreach (var t in tokens)
            {
                string token = TokenString(server, engine, t.Id, asIds);
                _tokens.Add(token);
                _logprobs.Add(Finite(t.Logprob));
                _offsets.Add(_offset);
                _offset += asIds ? server.TokenText(engine, t.Id).Length : token.Length;
                if (withTop)
                {
                    var top = new JsonObject();
                    foreach (var alternative in t.Top) top[TokenString(server, engine, alternative.Id, asIds)] = Finite(alternative.Logprob);
                    _top.Add(top);
                }
            }
        }

        public JsonObject ToJson(bool withTop) => new()
        {
            ["tokens"] = _tokens.DeepClone(), ["token_logprobs"] = _logprobs.DeepClone(),
            ["top_logprobs"] = withTop ? _top.DeepClone() : null, ["text_offset"] = _offsets.DeepClone(),
        };

        public void Clear() { _tokens.Clear(); _logprobs.Clear(); _top.Clear(); _offsets.Clear(); }
    }

    // ---- chat --------------------------------------------------------------------------------------------------

    static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];

    /// <summary>OpenAI messages → the template's messages: roles checked, text parts joined, other parts refused.</summary>
    static JsonArray Messages(JsonObject body)
    {
        if (body["messages"] is not JsonArray messages)
            throw body["messages"] == null
                ? new ApiException(400, "'messages' is required", "messages", "missing_required_parameter")
                : ApiException.BadType("messages", "a list of messages");
        if (messages.Count == 0) throw ApiException.BadValue("messages", "'messages' is an empty list");
        var result = new JsonArray();
        for (int i = 0; i < messages.Count; i++)
        {
            string at = $"messages[{i}]";
            if (messages[i] is not JsonObject m) throw ApiException.BadType(at, "an object");
            string role = (m["role"] is JsonValue r && r.GetValueKind() == JsonValueKind.String ? r.GetValue<string>() : null)
                          ?? throw ApiException.BadType($"{at}.role", "a string");
            if (!Roles.Contains(role)) throw ApiException.BadValue($"{at}.role", $"'{at}.role' must be one of {string.Join(", ", Roles)}, found '{role}'");
            var content = m["content"];
            string? text;
            switch (content?.GetValueKind() ?? JsonValueKind.Null)
            {
                case JsonValueKind.Null: text = null; break;
                case JsonValueKind.String: text = content!.GetValue<string>(); break;
                case JsonValueKind.Array:
                    var parts = new List<string>();
                    var array = (JsonArray)content!;
                    for (int p = 0; p < array.Count; p++)
                    {
                        if (array[p] is not JsonObject part) throw ApiException.BadType($"{at}.content[{p}]", "an object");
                        string type = String(part, "type") ?? "text";
                        if (type is not "text") throw ApiException.BadValue($"{at}.content[{p}].type", $"only text content is supported, found '{type}'");
                        parts.Add(String(part, "text") ?? throw ApiException.BadType($"{at}.content[{p}].text", "a string"));
                    }
                    text = string.Join("\n", parts);
                    break;
                default: throw ApiException.BadType($"{at}.content", "a string or a list of content parts");
            }
            if (text == null && m["tool_calls"] == null) throw ApiException.BadType($"{at}.content", "a string or a list of content parts");
            var message = new JsonObject { ["role"] = role == "developer" ? "system" : role, ["content"] = text };
            foreach (var extra in new[] { "name", "tool_calls", "tool_call_id" })
                if (m[extra] != null) message[extra] = m[extra]!.DeepClone();
            result.Add(message);
        }
        return result;
    }

    // ---- structured output and tools -----------------------------------------------------------------------

    /// <summary>What the output must be, from <c>response_format</c> (OpenAI: text, json_object, json_schema; llama.cpp's
    /// json_object with a "schema"), or llama.cpp's <c>json_schema</c> (a schema) and <c>grammar</c> (GBNF text) fields:
    /// at most one of them. <see cref="Schema"/> is set for JSON formats, <see cref="Gbnf"/> for a grammar.</summary>
    sealed record OutputFormat(JsonNode? Schema, string? Gbnf, string Param);

    static OutputFormat? ReadOutputFormat(JsonObject body)
    {
        var found = new List<OutputFormat>();
        if (Object(body, "response_format") is { } format)
        {
            string type = String(format, "type") ?? throw ApiException.BadType("response_format.type", "a string");
            switch (type)
            {
                case "text": break;
                case "json_object":
                    found.Add(new OutputFormat(Object(format, "schema") ?? ChatConstraints.AnyObjectSchema(), null, "response_format"));
                    break;
                case "json_schema":
                    var spec = Object(format, "json_schema") ?? throw new ApiException(400, "'response_format.json_schema' is required when the type is 'json_schema'",
                        "response_format", "missing_required_parameter");
                    _ = String(spec, "name");
                    _ = Bool(spec, "strict"); // strict or not, the schema is enforced
                    found.Add(new OutputFormat(Object(spec, "schema") ?? ChatConstraints.AnyObjectSchema(), null, "response_format"));
                    break;
                default:
                    throw ApiException.BadValue("response_format", $"'response_format.type' must be 'text', 'json_object' or 'json_schema', found '{type}'");
            }
        }
        if (Object(body, "json_schema") is { } schema) found.Add(new OutputFormat(schema, null, "json_schema"));
        if (String(body, "grammar") is { } gbnf) found.Add(new OutputFormat(null, gbnf, "grammar"));
        if (found.Count > 1)
            throw ApiException.BadValue(found[1].Param, $"give one of 'response_format' (JSON), 'json_schema' and 'grammar', not both '{found[0].Param}' and '{found[1].Param}'");
        return found.Count == 1 ? found[0] : null;
    }

    /// <summary>The grammar of an output format, compiled; an unsupported schema keyword or a broken grammar is a 400
    /// naming it.</summary>
    static GrammarSpec Compile(OutputFormat format)
    {
        try
        {
            return format.Gbnf != null
                ? new GrammarSpec(ChatConstraints.Compile(format.Gbnf, "grammar"))
                : ChatConstraints.ForJsonSchema(format.Schema!);
        }
        catch (GrammarException e)
        {
            throw ApiException.BadValue(format.Param, format.Gbnf != null ? $"'grammar' is not a valid GBNF grammar: {e.Message}" : $"the JSON schema cannot be enforced: {e.Message}");
        }
    }

    /// <summary>OpenAI's <c>tool_choice</c>: "none", "auto", "required" or {"type": "function", "function": {"name"}}
    /// naming one of the tools. Absent: auto with tools, none without.</summary>
    static ToolChoice ReadToolChoice(JsonObject body, IReadOnlyList<ToolDefinition> tools)
    {
        var node = body["tool_choice"];
        ToolChoice choice;
        switch (node?.GetValueKind() ?? JsonValueKind.Null)
        {
            case JsonValueKind.Null: return tools.Count > 0 ? ToolChoice.Auto : ToolChoice.None;
            case JsonValueKind.String:
                choice = node!.GetValue<string>() switch
                {
                    "none" => ToolChoice.None,
                    "auto" => ToolChoice.Auto,
                    "required" => ToolChoice.Required,
                    var other => throw ApiException.BadValue("tool_choice", $"'tool_choice' must be 'none', 'auto', 'required' or a function, found '{other}'"),
                };
                break;
            case JsonValueKind.Object:
                var o = (JsonObject)node!;
                if (String(o, "type") is not "function") throw ApiException.BadValue("tool_choice", "'tool_choice.type' must be 'function'");
                var function = Object(o, "function") ?? throw ApiException.BadType("tool_choice.function", "an object with the function's name");
                string name = String(function, "name") ?? throw ApiException.BadType("tool_choice.function.name", "a string");
                if (!tools.Any(t => t.Name == name))
                    throw ApiException.BadValue("tool_choice", $"'tool_choice' names the function '{(name.Length > 64 ? name[..64] + "…" : name)}', which is not among the tools" +
                        (tools.Count > 0 ? $" ({string.Join(", ", tools.Select(t => t.Name))})" : " (there are none)"));
                choice = new ToolChoice(ToolChoiceMode.Named, name);
                break;
            default: throw ApiException.BadType("tool_choice", "'none', 'auto', 'required' or an object naming a function");
        }
        if (choice.Mode == ToolChoiceMode.Required && tools.Count == 0)
            throw ApiException.BadValue("tool_choice", "'tool_choice' is 'required' but there are no 'tools'");
        return choice;
    }

    /// <summary>The request's tools, tool choice and output format → the messages the template needs, the tools it
    /// shows, and the grammar and parser of the turn.</summary>
    static (JsonArray Messages, JsonArray? Tools, ChatConstraint Constraint) ReadChatConstraint(JsonObject body, HoneServer server, JsonArray messages)
    {
        IReadOnlyList<ToolDefinition> tools = [];
        if (body["tools"] != null)
        {
            try { tools = ToolDefinition.ParseList(body["tools"], "tools"); }
            catch (ToolFormatException e) { throw ApiException.BadValue(e.Field, $"'{e.Field}' {e.Message[(e.Field.Length + 2)..]}"); }
        }
        var choice = ReadToolChoice(body, tools);
        bool parallel = Bool(body, "parallel_tool_calls") ?? true;
        var output = ReadOutputFormat(body);
        var format = server.ToolFormat;
        bool usesCalls = messages.Any(m => m!["tool_calls"] is JsonArray { Count: > 0 });
        if (format == null && (usesCalls || (tools.Count > 0 && choice.Mode != ToolChoiceMode.None)))
            throw ApiException.BadValue(usesCalls && tools.Count == 0 ? "messages" : "tools",
                "this model's chat template cannot render tools and tool calls (no <tool_call>, Llama 3.x or Mistral tool format found in it); " +
                "start hone serve with --template pointing at a template that can");
        if (format != null && messages.Any(m => m!["tool_calls"] != null || m!["role"]?.GetValue<string>() == "tool"))
        {
            try { messages = format.PrepareMessages(messages, "messages"); }
            catch (ToolFormatException e) { throw ApiException.BadValue(e.Field, $"'{e.Field}' {e.Message[(e.Field.Length + 2)..]}"); }
        }
        JsonArray? shown = tools.Count > 0 && format != null ? new JsonArray(tools.Select(t => (JsonNode)t.ToJson()).ToArray()) : null;
        if (output?.Gbnf != null && tools.Count > 0 && choice.Mode != ToolChoiceMode.None)
            throw ApiException.BadValue("grammar", "'grammar' cannot be combined with 'tools' (use 'tool_choice': 'none', or a JSON 'response_format')");
        if (tools.Count == 0 || choice.Mode == ToolChoiceMode.None || format == null)
            return (messages, shown, new ChatConstraint(output != null ? Compile(output) : null, null, tools));
        if (output != null) Compile(output); // its errors name its own field
        try { return (messages, shown, ChatConstraints.ForTools(format, tools, choice, parallel, output?.Schema)); }
        catch (GrammarException e) { throw ApiException.BadValue("tools", $"a tool's parameters cannot be enforced: {e.Message}"); }
    }

    static JsonObject ToolCallJson(ToolCall call) => new()
    {
        ["id"] = call.Id, ["type"] = "function", ["function"] = new JsonObject { ["name"] = call.Name, ["arguments"] = call.Arguments },
    };

    /// <summary>A turn that made calls ends with "tool_calls" (unless it was cut by max_tokens).</summary>
    static string FinishReason(string engineReason, bool calls) => calls && engineReason == "stop" ? "tool_calls" : engineReason;

    static async Task ChatCompletions(HttpContext ctx, HoneServer server)
    {
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        bool routed = IsRouted(server, String(body, "model"));
        string? adapter = routed ? null : ResolveModel(engine, String(body, "model"));
        string model = adapter ?? engine.ModelName;
        var g = ReadGeneration(body, engine, server.Options, chat: true);
        var template = server.ChatTemplate;
        var (messages, tools, constraint) = ReadChatConstraint(body, server, Messages(body));
        int[] prompt;
        try { prompt = ChatPrompt.Encode(engine.Tokenizer, template, messages, tools); }
        catch (TemplateException e) { throw new ApiException(400, $"the chat template refused the messages: {e.Message}", "messages", "invalid_value"); }
        if (prompt.Length == 0) throw ApiException.BadValue("messages", "the messages give an empty prompt");

        var cancel = ctx.RequestAborted;
        if (routed) model = (adapter = await Route(server, engine, prompt, cancel).ConfigureAwait(false)) ?? engine.ModelName;
        var handles = SubmitAll(engine, [prompt], adapter, g, "messages", cancel, constraint.Grammar);
        string id = NewId("chatcmpl-");
        long created = Now();
        var usages = new SequenceUsage?[handles.Count];
        int completionTokens = 0;
        var toolFormat = constraint.Format;

        JsonObject Chunk(JsonArray choices) => new()
        {
            ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = model, ["choices"] = choices,
        };

        if (g.Stream)
        {
            var parsers = handles.Select(_ => toolFormat?.CreateStreamParser()).ToArray();
            var madeCalls = new bool[handles.Count];
            await StartStream(ctx).ConfigureAwait(false);
            try
            {
                for (int i = 0; i < handles.Count; i++)
                {
                    var first = Chunk([new JsonObject
                    {
                        ["index"] = i, ["delta"] = new JsonObject { ["role"] = "assistant", ["content"] = "" }, ["logprobs"] = null, ["finish_reason"] = null,
                    }]);
                    if (g.IncludeUsage) first["usage"] = null;
                    await Send(ctx, first.ToJsonString(Output)).ConfigureAwait(false);
                }

                async Task SendDelta(int i, JsonObject delta, JsonObject? logprobs)
                {
                    var chunk = Chunk([new JsonObject { ["index"] = i, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = null }]);
                    if (g.IncludeUsage) chunk["usage"] = null;
                    await Send(ctx, chunk.ToJsonString(Output)).ConfigureAwait(false);
                }

                // A parsed turn's deltas, each its own chunk: content, or a call (index, id, type and name first, then its arguments).
                async Task SendParsed(int i, IReadOnlyList<ToolCallStreamDelta> deltas, JsonObject? logprobs)
                {
                    foreach (var d in deltas)
                    {
                        JsonObject delta;
                        if (d.Call is { } c)
                        {
                            madeCalls[i] = true;
                            var call = new JsonObject { ["index"] = c.Index };
                            if (c.Id != null) { call["id"] = c.Id; call["type"] = "function"; }
                            var function = new JsonObject();
                            if (c.Name != null) function["name"] = c.Name;
                            function["arguments"] = c.Arguments;
                            call["function"] = function;
                            delta = new JsonObject { ["tool_calls"] = new JsonArray(call) };
                        }
                        else delta = new JsonObject { ["content"] = d.Content };
                        await SendDelta(i, delta, logprobs).ConfigureAwait(false);
                        logprobs = null;
                    }
                    if (logprobs != null) await SendDelta(i, new JsonObject(), logprobs).ConfigureAwait(false);
                }

                await Follow(handles, server, async (i, u) =>
                {
                    if (u.Text.Length == 0 && (g.TopLogprobs < 0 || u.Tokens.Count == 0)) return;
                    var logprobs = g.TopLogprobs >= 0 ? new JsonObject { ["content"] = ChatLogprobs(server, engine, u.Tokens, g.TokensAsIds), ["refusal"] = null } : null;
                    if (parsers[i] is { } parser) await SendParsed(i, u.Text.Length > 0 ? parser.Feed(u.Text) : [], logprobs).ConfigureAwait(false);
                    else await SendDelta(i, new JsonObject { ["content"] = u.Text }, logprobs).ConfigureAwait(false);
                }, async (i, end) =>
                {
                    usages[i] = end.Usage;
                    completionTokens += end.Usage.CompletionTokens;
                    if (parsers[i] is { } parser && end.FinishReason != "cancelled") await SendParsed(i, parser.Finish(), null).ConfigureAwait(false);
                    var chunk = Chunk([new JsonObject
                    {
                        ["index"] = i, ["delta"] = new JsonObject(), ["logprobs"] = null, ["finish_reason"] = FinishReason(end.FinishReason, madeCalls[i]),
                    }]);
                    if (g.IncludeUsage) chunk["usage"] = null;
                    await Send(ctx, chunk.ToJsonString(Output)).ConfigureAwait(false);
                }, cancel).ConfigureAwait(false);
                if (g.IncludeUsage)
                {
                    var last = Chunk([]);
                    last["usage"] = Usage([usages[0]!], completionTokens);
                    await Send(ctx, last.ToJsonString(Output)).ConfigureAwait(false);
                }
                await Send(ctx, "[DONE]").ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException && !cancel.IsCancellationRequested) { await SendError(ctx, e, server).ConfigureAwait(false); }
            return;
        }

        var texts = handles.Select(_ => new StringBuilder()).ToArray();
        var tokens = handles.Select(_ => new List<GeneratedToken>()).ToArray();
        var finish = new string[handles.Count];
        await Follow(handles, server, (i, u) =>
        {
            texts[i].Append(u.Text);
            tokens[i].AddRange(u.Tokens);
            return Task.CompletedTask;
        }, (i, end) =>
        {
            usages[i] = end.Usage;
            finish[i] = end.FinishReason;
            completionTokens += end.Usage.CompletionTokens;
            return Task.CompletedTask;
        }, cancel).ConfigureAwait(false);
        var choices = new JsonArray();
        for (int i = 0; i < handles.Count; i++)
        {
            var message = new JsonObject { ["role"] = "assistant", ["content"] = texts[i].ToString(), ["refusal"] = null };
            string reason = finish[i];
            if (toolFormat != null)
            {
                var turn = toolFormat.Parse(texts[i].ToString());
                message["content"] = turn.Content;
                if (turn.Calls.Count > 0) message["tool_calls"] = new JsonArray(turn.Calls.Select(c => (JsonNode)ToolCallJson(c)).ToArray());
                reason = FinishReason(reason, turn.Calls.Count > 0);
            }
            choices.Add(new JsonObject
            {
                ["index"] = i,
                ["message"] = message,
                ["logprobs"] = g.TopLogprobs >= 0 ? new JsonObject { ["content"] = ChatLogprobs(server, engine, tokens[i], g.TokensAsIds), ["refusal"] = null } : null,
                ["finish_reason"] = reason,
            });
        }
        await WriteJson(ctx, new JsonObject
        {
            ["id"] = id, ["object"] = "chat.completion", ["created"] = created, ["model"] = model, ["choices"] = choices,
            ["usage"] = Usage([usages[0]!], completionTokens),
        }).ConfigureAwait(false);
    }

    // ---- completions -------------------------------------------------------------------------------------------

    const int MaxPrompts = 64;

    static async Task Completions(HttpContext ctx, HoneServer server)
    {
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        bool routed = IsRouted(server, String(body, "model"));
        string? adapter = routed ? null : ResolveModel(engine, String(body, "model"));
        string model = adapter ?? engine.ModelName;
        var g = ReadGeneration(body, engine, server.Options, chat: false);
        if (Bool(body, "echo") == true) throw ApiException.BadValue("echo", "'echo' is not supported by this server");
        if (String(body, "suffix") is { Length: > 0 }) throw ApiException.BadValue("suffix", "'suffix' is not supported by this server");
        if (Integer(body, "best_of", 1, server.Options.MaxChoices) is long bestOf && bestOf != g.N)
            throw ApiException.BadValue("best_of", "'best_of' other than 'n' is not supported by this server");
        var prompts = Prompts(body, "prompt", engine.Config.VocabSize, MaxPrompts)
            .Select(p => p.Ids ?? engine.Tokenizer.Encode(p.Text!, addSpecialTokens: true, parseSpecialTokens: true)).ToList();
        if (prompts.Count * g.N > server.Options.MaxChoices)
            throw ApiException.BadValue("n", $"{prompts.Count} prompts × n = {g.N} ask for {prompts.Count * g.N} completions; at most {server.Options.MaxChoices} per request");
        if (routed && prompts.Count > 0) // a request's prompts go one way: the first one's
            model = (adapter = await Route(server, engine, prompts[0], ctx.RequestAborted).ConfigureAwait(false)) ?? engine.ModelName;

        var output = ReadOutputFormat(body);
        var grammar = output != null ? Compile(output) : null;

        var cancel = ctx.RequestAborted;
        var handles = SubmitAll(engine, prompts, adapter, g, "prompt", cancel, grammar);
        string id = NewId("cmpl-");
        long created = Now();
        var usages = new SequenceUsage?[handles.Count];
        int completionTokens = 0;
        bool withTop = g.TopLogprobs > 0;
        var logprobs = handles.Select(_ => new CompletionLogprobs()).ToArray();
        IEnumerable<SequenceUsage> FirstOfEachPrompt() => Enumerable.Range(0, prompts.Count).Select(p => usages[p * g.N]!);

        JsonObject Chunk(JsonObject choice) => new()
        {
            ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = model, ["choices"] = new JsonArray(choice),
        };

        if (g.Stream)
        {
            await StartStream(ctx).ConfigureAwait(false);
            try
            {
                await Follow(handles, server, async (i, u) =>
                {
                    if (u.Text.Length == 0 && (g.TopLogprobs < 0 || u.Tokens.Count == 0)) return;
                    JsonObject? lp = null;
                    if (g.TopLogprobs >= 0)
                    {
                        logprobs[i].Clear();
                        logprobs[i].Add(server, engine, u.Tokens, g.TokensAsIds, withTop);
                        lp = logprobs[i].ToJson(withTop);
                    }
                    var chunk = Chunk(new JsonObject { ["index"] = i, ["text"] = u.Text, ["logprobs"] = lp, ["finish_reason"] = null });
                    if (g.IncludeUsage) chunk["usage"] = null;
                    await Send(ctx, chunk.ToJsonString(Output)).ConfigureAwait(false);
                }, async (i, end) =>
                {
                    usages[i] = end.Usage;
                    completionTokens += end.Usage.CompletionTokens;
                    var chunk = Chunk(new JsonObject { ["index"] = i, ["text"] = "", ["logprobs"] = null, ["finish_reason"] = end.FinishReason });
                    if (g.IncludeUsage) chunk["usage"] = null;
                    await Send(ctx, chunk.ToJsonString(Output)).ConfigureAwait(false);
                }, cancel).ConfigureAwait(false);
                if (g.IncludeUsage)
                {
                    var last = new JsonObject
                    {
                        ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = model, ["choices"] = new JsonArray(),
                        ["usage"] = Usage(FirstOfEachPrompt(), completionTokens),
                    };
                    await Send(ctx, last.ToJsonString(Output)).ConfigureAwait(false);
                }
                await Send(ctx, "[DONE]").ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException && !cancel.IsCancellationRequested) { await SendError(ctx, e, server).ConfigureAwait(false); }
            return;
        }

        var texts = handles.Select(_ => new StringBuilder()).ToArray();
        var finish = new string[handles.Count];
        await Follow(handles, server, (i, u) =>
        {
            texts[i].Append(u.Text);
            if (g.TopLogprobs >= 0) logprobs[i].Add(server, engine, u.Tokens, g.TokensAsIds, withTop);
            return Task.CompletedTask;
        }, (i, end) =>
        {
            usages[i] = end.Usage;
            finish[i] = end.FinishReason;
            completionTokens += end.Usage.CompletionTokens;
            return Task.CompletedTask;
        }, cancel).ConfigureAwait(false);
        var choices = new JsonArray();
        for (int i = 0; i < handles.Count; i++)
            choices.Add(new JsonObject
            {
                ["index"] = i, ["text"] = texts[i].ToString(),
                ["logprobs"] = g.TopLogprobs >= 0 ? logprobs[i].ToJson(withTop) : null,
                ["finish_reason"] = finish[i],
            });
        await WriteJson(ctx, new JsonObject
        {
            ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = model, ["choices"] = choices,
            ["usage"] = Usage(FirstOfEachPrompt(), completionTokens),
        }).ConfigureAwait(false);
    }

    // ---- embeddings --------------------------------------------------------------------------------------------

    const int MaxEmbeddingInputs = 2048;

    static async Task Embeddings(HttpContext ctx, HoneServer server)
    {
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        string? adapter = ResolveModel(engine, String(body, "model"));
        string format = String(body, "encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw ApiException.BadValue("encoding_format", $"'encoding_format' must be 'float' or 'base64', found '{format}'");
        if (Integer(body, "dimensions", 1, int.MaxValue) is long dimensions && dimensions != engine.Config.HiddenSize)
            throw ApiException.BadValue("dimensions", $"this model's embeddings have {engine.Config.HiddenSize} dimensions, not {dimensions}");
        var inputs = Prompts(body, "input", engine.Config.VocabSize, MaxEmbeddingInputs)
            .Select(p => p.Ids ?? engine.Tokenizer.Encode(p.Text!, addSpecialTokens: true, parseSpecialTokens: true)).ToList();

        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ctx.RequestAborted);
        var tasks = new List<Task<float[]>>();
        try
        {
            foreach (var tokens in inputs) tasks.Add(engine.EmbedAsync(tokens, adapter, cancel.Token));
        }
        catch (RequestRejectedException e)
        {
            cancel.Cancel();
            throw Rejected(e, "input");
        }
        float[][] vectors;
        try { vectors = await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch { cancel.Cancel(); throw; }
        int promptTokens = inputs.Sum(t => t.Length);
        var data = new JsonArray();
        for (int i = 0; i < vectors.Length; i++)
        {
            JsonNode embedding = format == "base64"
                ? Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(vectors[i].AsSpan()))
                : new JsonArray(vectors[i].Select(v => (JsonNode)v).ToArray());
            data.Add(new JsonObject { ["object"] = "embedding", ["index"] = i, ["embedding"] = embedding });
        }
        await WriteJson(ctx, new JsonObject
        {
            ["object"] = "list", ["data"] = data, ["model"] = adapter ?? engine.ModelName,
            ["usage"] = new JsonObject { ["prompt_tokens"] = promptTokens, ["total_tokens"] = promptTokens },
        }).ConfigureAwait(false);
    }

    // ---- models and adapters -----------------------------------------------------------------------------------

    static JsonObject ModelObject(HoneServer server, BatchEngine engine, string name, bool adapter) => new()
    {
        ["id"] = name, ["object"] = "model", ["created"] = server.Created, ["owned_by"] = "hone",
        ["root"] = adapter ? name : engine.ModelName, ["parent"] = adapter ? engine.ModelName : null, ["max_model_len"] = engine.ContextLength,
    };

    static JsonObject ModelList(HoneServer server)
    {
        var engine = server.Engine;
        var data = new JsonArray(ModelObject(server, engine, engine.ModelName, false));
        foreach (var name in engine.AdapterNames) data.Add(ModelObject(server, engine, name, true));
        if (server.Router != null) data.Add(ModelObject(server, engine, ServerOptions.AutoModel, true));
        return new JsonObject { ["object"] = "list", ["data"] = data };
    }

    static JsonObject ModelById(HoneServer server, string id)
    {
        var engine = server.Engine;
        if (id == engine.ModelName) return ModelObject(server, engine, id, false);
        if (engine.AdapterPath(id) != null) return ModelObject(server, engine, id, true);
        throw UnknownModel(engine, id);
    }

    static void RequireAdapterLoading(HoneServer server)
    {
        if (!server.Options.AllowAdapterLoading)
            throw new ApiException(403, "loading and unloading adapters while serving is off; start hone serve with --allow-adapter-loading " +
                "(it lets every caller that may use this server make it read a path of its choosing)", null, "adapter_loading_disabled", "permission_error");
    }

    static async Task LoadAdapter(HttpContext ctx, HoneServer server)
    {
        RequireAdapterLoading(server);
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        string name = RequiredString(body, "lora_name"), path = RequiredString(body, "lora_path");
        if (!BatchEngine.IsValidAdapterName(name))
            throw ApiException.BadValue("lora_name", "'lora_name' must be 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit");
        if (name == engine.ModelName) throw ApiException.BadValue("lora_name", $"'{name}' is the base model's name");
        if (engine.AdapterPath(name) is { } existing) throw ApiException.BadValue("lora_name", $"an adapter named '{name}' is already loaded");
        if (path.Length == 0 || (!Directory.Exists(path) && !File.Exists(path)))
            throw ApiException.BadValue("lora_path", $"no adapter directory or file at '{path}'");
        try { await Task.Run(() => engine.AddAdapter(name, path), ctx.RequestAborted).ConfigureAwait(false); }
        catch (Exception e) when (e is not (OperationCanceledException or OutOfMemoryException))
        {
            throw ApiException.BadValue("lora_path", $"cannot load adapter '{name}' from '{path}': {e.Message}");
        }
        server.Log($"hone serve: loaded adapter '{name}' from {path}");
        ctx.Response.ContentType = "text/plain";
        await ctx.Response.WriteAsync($"Success: LoRA adapter '{name}' added successfully.", ctx.RequestAborted).ConfigureAwait(false);
    }

    static async Task UnloadAdapter(HttpContext ctx, HoneServer server)
    {
        RequireAdapterLoading(server);
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        string name = RequiredString(body, "lora_name");
        if (!engine.RemoveAdapter(name))
            throw new ApiException(404, $"no adapter named '{(name.Length > 100 ? name[..100] + "…" : name)}' is loaded", "lora_name", "not_found");
        server.Log($"hone serve: unloaded adapter '{name}'");
        ctx.Response.ContentType = "text/plain";
        await ctx.Response.WriteAsync($"Success: LoRA adapter '{name}' removed successfully.", ctx.RequestAborted).ConfigureAwait(false);
    }

    // ---- tokenizer (llama.cpp's shapes) ------------------------------------------------------------------------

    static async Task Tokenize(HttpContext ctx, HoneServer server)
    {
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        string content = RequiredString(body, "content");
        bool addSpecial = Bool(body, "add_special") ?? false, parseSpecial = Bool(body, "parse_special") ?? true;
        bool withPieces = Bool(body, "with_pieces") ?? false;
        var ids = engine.Tokenizer.Encode(content, addSpecial, parseSpecial);
        var tokens = new JsonArray();
        foreach (int id in ids)
            tokens.Add(withPieces ? new JsonObject { ["id"] = id, ["piece"] = server.TokenText(engine, id) } : (JsonNode)id);
        await WriteJson(ctx, new JsonObject { ["tokens"] = tokens }).ConfigureAwait(false);
    }

    static async Task Detokenize(HttpContext ctx, HoneServer server)
    {
        var body = await ReadBody(ctx, server).ConfigureAwait(false);
        var engine = server.Engine;
        int[] ids = body["tokens"] switch
        {
            null => [],
            JsonArray a => TokenIds(a, "tokens", engine.Tokenizer.VocabSize),
            _ => throw ApiException.BadType("tokens", "a list of token ids"),
        };
        await WriteJson(ctx, new JsonObject { ["content"] = engine.Tokenizer.Decode(ids) }).ConfigureAwait(false);
    }
}
