using System.Runtime.CompilerServices;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Inference;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Microsoft.Extensions.AI;

namespace Hone.Clients;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over an in-process <see cref="BatchEngine"/>: every call is one
/// sequence in the engine's batch, so concurrent callers share the model's steps. Messages go through the model's chat
/// template (<see cref="ChatPrompt.Encode"/>); <see cref="ChatOptions.ModelId"/> names an adapter loaded in the engine
/// (null or the base model's name: the base).
/// <para>Options that are not set take the sampler's defaults (those of <c>hone generate</c>: temperature 0.8, top-k 40,
/// top-p 0.95, min-p 0.05), a fresh random seed per call, and as many output tokens as the context leaves.
/// Temperature 0 is greedy. Tools, non-text message content and JSON response formats are refused with
/// <see cref="NotSupportedException"/> rather than ignored.</para>
/// </summary>
public sealed class HoneChatClient : IChatClient
{
    public const string ProviderName = "hone";

    readonly BatchEngine _engine;
    readonly bool _ownsEngine;
    readonly ChatTemplate _template;
    readonly ChatClientMetadata _metadata;

    /// <param name="engine">the engine the calls run on (it may serve other clients at the same time)</param>
    /// <param name="ownsEngine">dispose the engine with this client</param>
    /// <param name="template">a Jinja template file or a format name as <c>hone chat --template</c> takes; null = the model's own</param>
    public HoneChatClient(BatchEngine engine, bool ownsEngine = false, string? template = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
        _ownsEngine = ownsEngine;
        _template = ChatConversation.ResolveTemplate(engine.Tokenizer, template).Template;
        _metadata = new ChatClientMetadata(ProviderName, null, engine.ModelName);
    }

    public BatchEngine Engine => _engine;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (request, modelId) = Prepare(messages, options);
        var handle = _engine.Submit(request, cancellationToken);
        SequenceResult result;
        try { result = await handle.CompleteAsync(cancellationToken).ConfigureAwait(false); }
        catch { handle.Cancel(); throw; }
        if (result.FinishReason == "cancelled") throw new OperationCanceledException("the sequence was cancelled", null, cancellationToken);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ResponseId = NewId(), ModelId = modelId, CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = MapFinishReason(result.FinishReason), Usage = Usage(result.Usage),
        };
    }

    /// <summary>One update per piece of final text the engine reports; the last update carries the finish reason and a
    /// <see cref="UsageContent"/>. Stopping the enumeration early cancels the sequence.</summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (request, modelId) = Prepare(messages, options);
        string responseId = NewId();
        var created = DateTimeOffset.UtcNow;
        var handle = _engine.Submit(request, cancellationToken);
        bool ended = false;
        try
        {
            await foreach (var e in handle.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                switch (e)
                {
                    case SequenceUpdate u when u.Text.Length > 0:
                        yield return new ChatResponseUpdate(ChatRole.Assistant, u.Text)
                        {
                            ResponseId = responseId, MessageId = responseId, ModelId = modelId, CreatedAt = created,
                        };
                        break;
                    case SequenceEnd end:
                        ended = true;
                        if (end.FinishReason == "cancelled") throw new OperationCanceledException("the sequence was cancelled", null, cancellationToken);
                        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(end.Usage))])
                        {
                            ResponseId = responseId, MessageId = responseId, ModelId = modelId, CreatedAt = created,
                            FinishReason = MapFinishReason(end.FinishReason),
                        };
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

    (SequenceRequest Request, string ModelId) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        string? adapter = ResolveModel(_engine, options?.ModelId, "ChatOptions.ModelId");
        if (options?.Tools is { Count: > 0 })
            throw new NotSupportedException("HoneChatClient does not call tools: ChatOptions.Tools must be empty");
        if (options?.ResponseFormat is ChatResponseFormatJson)
            throw new NotSupportedException("HoneChatClient has no constrained decoding: ChatOptions.ResponseFormat must be text");

        var array = new JsonArray();
        if (!string.IsNullOrEmpty(options?.Instructions)) array.Add(Message("system", options.Instructions));
        int index = 0;
        foreach (var m in messages)
        {
            foreach (var c in m.Contents)
                if (c is not TextContent)
                    throw new NotSupportedException($"message {index} ({m.Role.Value}): content of type {c.GetType().Name} is not supported; HoneChatClient takes text only");
            array.Add(Message(m.Role.Value, m.Text));
            index++;
        }
        if (index == 0) throw new ArgumentException("there are no messages", nameof(messages));
        var prompt = ChatPrompt.Encode(_engine.Tokenizer, _template, array);

        var sampler = Sampler(options);
        int room = Math.Max(1, _engine.ContextLength - prompt.Length); // 1 at least, so that a prompt that fills the context is refused
        int maxTokens = options?.MaxOutputTokens is int max
            ? max >= 0 ? max : throw new ArgumentOutOfRangeException(nameof(options), $"ChatOptions.MaxOutputTokens must be at least 0, found {max}")
            : room;
        var request = new SequenceRequest
        {
            Prompt = prompt, Adapter = adapter, Sampler = sampler, MaxTokens = maxTokens,
            StopStrings = options?.StopSequences?.Where(s => !string.IsNullOrEmpty(s)).ToArray() ?? [],
        };
        return (request, adapter ?? _engine.ModelName);

        static JsonObject Message(string role, string content) => new() { ["role"] = role, ["content"] = content };
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

    static ChatFinishReason? MapFinishReason(string reason) => reason switch
    {
        "stop" => ChatFinishReason.Stop,
        "length" => ChatFinishReason.Length,
        _ => new ChatFinishReason(reason),
    };

    static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N");
}
