using System.ClientModel;
using System.ClientModel.Primitives;
using Microsoft.Extensions.AI;
using OpenAI;

namespace Hone.Clients;

/// <summary>
/// An <see cref="IChatClient"/> for any OpenAI-compatible chat endpoint (<c>hone serve</c>, vLLM, llama.cpp's server, a
/// hosted model), through the official OpenAI .NET SDK and Microsoft.Extensions.AI's adapter for it: what a team would
/// deploy is what gets measured. Tools, tool choice, seeds and temperatures travel as the SDK sends them.
/// </summary>
public static class OpenAiEndpoint
{
    /// <summary>The environment variable read for the key when none is given (the SDK's own convention).</summary>
    public const string ApiKeyVariable = "OPENAI_API_KEY";

    /// <param name="server">the server (<c>http://127.0.0.1:8080</c>) or its API root (<c>…/v1</c>)</param>
    /// <param name="model">the model name the endpoint serves (for <c>hone serve</c>: the base's or an adapter's name)</param>
    /// <param name="apiKey">the bearer key; null: <see cref="ApiKeyVariable"/>, else none (a local server without a key
    /// accepts any)</param>
    /// <param name="timeout">per request (default 10 minutes: a long turn on a slow CPU server)</param>
    public static IChatClient CreateChatClient(Uri server, string model, string? apiKey = null, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentException.ThrowIfNullOrWhiteSpace(model);
        if (!server.IsAbsoluteUri || server.Scheme is not ("http" or "https"))
            throw new ArgumentException($"{server}: the endpoint must be an absolute http:// or https:// address", nameof(server));
        string key = apiKey ?? (Environment.GetEnvironmentVariable(ApiKeyVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : "none");
        var options = new OpenAIClientOptions
        {
            Endpoint = ServeBenchmark.ApiRoot(server),
            NetworkTimeout = timeout ?? TimeSpan.FromMinutes(10),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 2),
        };
        return new OpenAIClient(new ApiKeyCredential(key), options).GetChatClient(model).AsIChatClient();
    }
}
