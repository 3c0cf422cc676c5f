using Hone.Batching;
using Hone.Clients;
using Microsoft.Extensions.AI;

namespace Hone.Synthesis;

/// <summary>
/// A teacher or judge: any Microsoft.Extensions.AI <see cref="IChatClient"/> — a local Hone model (<see cref="HoneChatClient"/>
/// over a <see cref="BatchEngine"/>, an adapter selected by <see cref="ChatOptions.ModelId"/>) or an OpenAI-compatible
/// endpoint (<see cref="OpenAiEndpoint"/>) — as <c>hone agent run</c> uses its agents.
/// </summary>
public sealed class SynthChat : IDisposable
{
    readonly IChatClient _client;
    readonly string? _modelId;
    readonly List<IDisposable> _owned;

    /// <param name="modelId">sent as <see cref="ChatOptions.ModelId"/> (an adapter's name for a local engine, the model for an endpoint)</param>
    /// <param name="name">how the report and the provenance name it</param>
    public SynthChat(IChatClient client, string? modelId, string name, IEnumerable<IDisposable>? owned = null)
    {
        _client = client;
        _modelId = modelId;
        Name = name;
        _owned = owned?.ToList() ?? [];
    }

    public string Name { get; }

    /// <summary>A local model, with an adapter (PEFT folder or GGUF) when given. One sequence at a time: the run asks
    /// one question after another, so every answer depends only on its prompt and seed.</summary>
    public static SynthChat Local(string model, string? adapter, int context = 0, int threads = 0)
    {
        var adapters = adapter == null ? [] : new[] { ("adapter", Path.GetFullPath(adapter)) };
        var engine = BatchEngine.Open(model, adapters, new EngineOptions { Parallel = 1, Context = context, Threads = threads });
        try
        {
            var client = new HoneChatClient(engine);
            return new SynthChat(client, adapter == null ? null : "adapter", adapter == null ? model : $"{model} + {adapter}", [client, engine]);
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    /// <summary>An OpenAI-compatible endpoint serving <paramref name="model"/>.</summary>
    public static SynthChat Endpoint(string url, string model, string? apiKey, string option)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"{option} {url}: expected an http:// or https:// address (e.g. http://127.0.0.1:8080/v1)");
        var client = OpenAiEndpoint.CreateChatClient(uri, model, apiKey);
        return new SynthChat(client, model, $"{model} at {url}", [client]);
    }

    /// <summary>One turn: an optional system message and the user's message; the reply's text.</summary>
    public async Task<string> AskAsync(string? system, string user, ChatOptions options, CancellationToken cancel)
    {
        var messages = new List<ChatMessage>(2);
        if (!string.IsNullOrEmpty(system)) messages.Add(new ChatMessage(ChatRole.System, system));
        messages.Add(new ChatMessage(ChatRole.User, user));
        options.ModelId ??= _modelId;
        var response = await _client.GetResponseAsync(messages, options, cancel).ConfigureAwait(false);
        return response.Text;
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}
