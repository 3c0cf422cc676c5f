using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hone.Clients;

/// <summary>Which OpenAI endpoint the load generator drives.</summary>
public enum ServeEndpoint { Chat, Completions }

/// <param name="Server">the server's base address (http://host:port, with or without /v1)</param>
/// <param name="Clients">concurrency levels, run one after another; at each, this many clients run at once</param>
/// <param name="RequestsPerClient">requests each client sends, one after another</param>
/// <param name="PromptTokens">prompt length to aim for, in words that are one token in common vocabularies; the server's
/// own count (usage.prompt_tokens) is what the result reports</param>
/// <param name="GenTokens">max_tokens of every request</param>
/// <param name="Model">the model field; null = the first id that /v1/models lists</param>
/// <param name="IgnoreEos">send "ignore_eos": true (llama.cpp and vLLM extension) so that every request generates GenTokens</param>
/// <param name="RequestTimeout">one request's limit, headers to the end of its stream</param>
public sealed record ServeBenchOptions(
    Uri Server, IReadOnlyList<int> Clients, int RequestsPerClient = 4, int PromptTokens = 128, int GenTokens = 128,
    string? Model = null, string? ApiKey = null, ServeEndpoint Endpoint = ServeEndpoint.Chat, bool IgnoreEos = false,
    TimeSpan? RequestTimeout = null)
{
    public void Validate()
    {
        if (!Server.IsAbsoluteUri || Server.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--serve: '{Server}' is not an http:// or https:// address");
        if (Clients.Count == 0) throw new ArgumentException("--clients: give at least one number of clients");
        foreach (var c in Clients)
            if (c is < 1 or > 4096) throw new ArgumentException($"--clients: each must be 1 to 4096, found {c}");
        if (RequestsPerClient is < 1 or > 1_000_000) throw new ArgumentException($"--requests must be 1 to 1000000, found {RequestsPerClient}");
        if (PromptTokens is < 1 or > 1 << 20) throw new ArgumentException($"--prompt-tokens must be 1 to {1 << 20}, found {PromptTokens}");
        if (GenTokens is < 1 or > 1 << 20) throw new ArgumentException($"--gen-tokens must be 1 to {1 << 20}, found {GenTokens}");
        if (RequestTimeout is { } t && t <= TimeSpan.Zero) throw new ArgumentException($"the request timeout must be positive, found {t}");
    }
}

/// <summary>One streamed request, timed on the client. Times are seconds from the request's start; FirstToken is NaN when
/// no text came.</summary>
public sealed record RequestSample(double FirstTokenSeconds, double TotalSeconds, int PromptTokens, int CompletionTokens);

/// <summary>One concurrency level: TTFT is the time to the first token, TPOT the time per output token after it. Percentiles are over requests (linear interpolation between order statistics, as
/// numpy's default); NaN when no request qualifies.</summary>
public sealed record ServeBenchLevel(
    int Clients, int Requests, int Failed, string? FirstError, double WallSeconds, long PromptTokens, long GeneratedTokens,
    double GeneratedTokensPerSecond, double RequestsPerSecond,
    double TtftP50Seconds, double TtftP99Seconds, double TpotP50Seconds, double TpotP99Seconds, double MeanPromptTokens, double MeanGeneratedTokens);

public sealed record ServeBenchResult(string Server, string Model, string Endpoint, int RequestsPerClient, int PromptTokens, int GenTokens,
    IReadOnlyList<ServeBenchLevel> Levels, string Protocol);

/// <summary>
/// A load generator for OpenAI-compatible servers (hone serve, llama-server, vLLM): at each concurrency level N, N
/// clients each send their requests one after another, all streaming (stream=true with stream_options.include_usage),
/// and the level reports generated tokens/s over its wall time, time to first token and time per output token.
/// </summary>
public static class ServeBenchmark
{
    public const string ProtocolText =
        "Protocol: one warm-up request first (not counted). At each level N, N clients start together and each sends its " +
        "requests one after another (streaming, temperature 0, max_tokens = gen tokens, a distinct prompt per request so no " +
        "prefix is shared, a new connection per request). Times are taken on the client from sending the request: TTFT = until the first chunk with text; " +
        "TPOT = (end of stream - first text) / (completion tokens - 1), for requests with 2 or more tokens. Tokens are the " +
        "server's usage counts (stream_options.include_usage), not chunks. Generated tokens/s = all completion tokens of the " +
        "level / its wall time (first request sent to last stream ended). p50/p99 interpolate between order statistics. " +
        "The client runs on the same machine as the server unless the URL says otherwise, and takes its CPU share.";

    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromMinutes(10);

    public static async Task<ServeBenchResult> RunAsync(ServeBenchOptions options, Action<string>? log = null, CancellationToken cancel = default)
    {
        options.Validate();
        int maxClients = options.Clients.Max();
        using var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = maxClients + 1, PooledConnectionLifetime = TimeSpan.FromMinutes(30),
            AutomaticDecompression = DecompressionMethods.None,
        };
        using var http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan }; // each request has its own limit, stream included
        if (options.ApiKey != null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKey);
        var root = ApiRoot(options.Server);

        string model = options.Model ?? await FirstModelAsync(http, root, cancel).ConfigureAwait(false);
        log?.Invoke($"server {root}, model {model}, {options.Endpoint.ToString().ToLowerInvariant()} endpoint; warming up...");
        var warm = await SendAsync(http, root, options, model, Prompt(options.PromptTokens, -1), cancel).ConfigureAwait(false);
        if (warm.Error != null) throw new InvalidOperationException($"the warm-up request failed: {warm.Error}");

        var levels = new List<ServeBenchLevel>();
        int serial = 0;
        foreach (int n in options.Clients)
        {
            var outcomes = new RequestOutcome[n * options.RequestsPerClient];
            int first = serial;
            serial += outcomes.Length;
            long start = Stopwatch.GetTimestamp();
            await Task.WhenAll(Enumerable.Range(0, n).Select(c => Task.Run(async () =>
            {
                for (int r = 0; r < options.RequestsPerClient; r++)
                {
                    int index = c * options.RequestsPerClient + r;
                    outcomes[index] = await SendAsync(http, root, options, model, Prompt(options.PromptTokens, first + index), cancel).ConfigureAwait(false);
                }
            }, cancel))).ConfigureAwait(false);
            double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var level = Summarize(n, outcomes, wall);
            levels.Add(level);
            log?.Invoke($"{n} clients: {level.GeneratedTokensPerSecond:F1} generated tokens/s, TTFT p50 {level.TtftP50Seconds * 1000:F0} ms, " +
                        $"TPOT p50 {level.TpotP50Seconds * 1000:F1} ms" + (level.Failed > 0 ? $", {level.Failed} failed: {level.FirstError}" : ""));
        }
        return new ServeBenchResult(root.ToString(), model, options.Endpoint == ServeEndpoint.Chat ? "/v1/chat/completions" : "/v1/completions",
            options.RequestsPerClient, options.PromptTokens, options.GenTokens, levels, ProtocolText);
    }

    /// <summary>A request's outcome: its sample, or why it failed.</summary>
    public sealed record RequestOutcome(RequestSample? Sample, string? Error);

    /// <summary>The level's statistics from its requests (failed ones count only as failures).</summary>
    public static ServeBenchLevel Summarize(int clients, IReadOnlyList<RequestOutcome> outcomes, double wallSeconds)
    {
        var ok = outcomes.Where(o => o.Sample != null).Select(o => o.Sample!).ToList();
        long generated = ok.Sum(s => (long)s.CompletionTokens), prompt = ok.Sum(s => (long)s.PromptTokens);
        var firstToken = ok.Where(s => !double.IsNaN(s.FirstTokenSeconds)).Select(s => s.FirstTokenSeconds).ToArray();
        var perToken = ok.Where(s => s.CompletionTokens >= 2 && !double.IsNaN(s.FirstTokenSeconds))
            .Select(s => (s.TotalSeconds - s.FirstTokenSeconds) / (s.CompletionTokens - 1)).ToArray();
        int failed = outcomes.Count - ok.Count;
        return new ServeBenchLevel(clients, outcomes.Count, failed, outcomes.FirstOrDefault(o => o.Error != null)?.Error, wallSeconds, prompt, generated,
            generated / wallSeconds, ok.Count / wallSeconds,
            Percentile(firstToken, 50), Percentile(firstToken, 99), Percentile(perToken, 50), Percentile(perToken, 99),
            ok.Count > 0 ? (double)prompt / ok.Count : double.NaN, ok.Count > 0 ? (double)generated / ok.Count : double.NaN);
    }

    /// <summary>The p-th percentile with linear interpolation between order statistics (numpy's default); NaN for none.</summary>
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        double rank = p / 100 * (sorted.Length - 1);
        int low = (int)Math.Floor(rank), high = (int)Math.Ceiling(rank);
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
    }

    /// <summary>The /v1 root the endpoints hang from.</summary>
    public static Uri ApiRoot(Uri server)
    {
        string s = server.ToString().TrimEnd('/');
        if (!s.EndsWith("/v1", StringComparison.Ordinal)) s += "/v1";
        return new Uri(s + "/");
    }

    static readonly string[] Words =
        ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or"];

    /// <summary>About <paramref name="tokens"/> tokens of text, led by the request's number so that no two requests share
    /// a prefix (a prefix cache would otherwise skip their prompts).</summary>
    public static string Prompt(int tokens, int serial)
    {
        var text = new StringBuilder();
        text.Append(serial < 0 ? "warm" : serial.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var random = new Random(serial);
        for (int i = 1; i < tokens; i++) text.Append(' ').Append(Words[random.Next(Words.Length)]);
        return text.ToString();
    }

    static async Task<string> FirstModelAsync(HttpClient http, Uri root, CancellationToken cancel)
    {
        using var response = await http.GetAsync(new Uri(root, "models"), cancel).ConfigureAwait(false);
        string body = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"GET {root}models answered {(int)response.StatusCode}: {Snippet(body)} (give --model to skip it)");
        string? id = null;
        try { id = JsonNode.Parse(body)?["data"]?.AsArray().FirstOrDefault()?["id"]?.GetValue<string>(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidOperationException($"GET {root}models: not an OpenAI model list: {Snippet(body)}", e);
        }
        return id ?? throw new InvalidOperationException($"GET {root}models lists no model (give --model)");
    }

    internal static JsonObject RequestBody(ServeBenchOptions options, string model, string prompt)
    {
        var body = new JsonObject { ["model"] = model };
        if (options.Endpoint == ServeEndpoint.Chat) body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = prompt });
        else body["prompt"] = prompt;
        body["max_tokens"] = options.GenTokens;
        body["temperature"] = 0;
        body["stream"] = true;
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        if (options.IgnoreEos) body["ignore_eos"] = true;
        return body;
    }

    /// <summary>Sends one streaming request and times it; a failure is returned, not thrown (cancellation is thrown).</summary>
    public static async Task<RequestOutcome> SendAsync(HttpClient http, Uri root, ServeBenchOptions options, string model, string prompt, CancellationToken cancel)
    {
        var uri = new Uri(root, options.Endpoint == ServeEndpoint.Chat ? "chat/completions" : "completions");
        using var request = new HttpRequestMessage(HttpMethod.Post, uri)
        {
            Content = new StringContent(RequestBody(options, model, prompt).ToJsonString(), Encoding.UTF8, "application/json"),
        };
        // A connection of its own: llama-server closes kept-alive connections under load without saying so, and a
        // request sent on one fails (measured: 1 of 8 to 9 of 32 requests at 4 to 16 clients; none this way).
        request.Headers.ConnectionClose = true;
        var timeout = options.RequestTimeout ?? DefaultRequestTimeout;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        limit.CancelAfter(timeout);
        long start = Stopwatch.GetTimestamp();
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, limit.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
                return new RequestOutcome(null, $"HTTP {(int)response.StatusCode}: {Snippet(await response.Content.ReadAsStringAsync(limit.Token).ConfigureAwait(false))}");
            await using var stream = await response.Content.ReadAsStreamAsync(limit.Token).ConfigureAwait(false);
            return await ReadStreamAsync(stream, options.Endpoint, start, limit.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            return new RequestOutcome(null, $"the request did not finish within {timeout.TotalSeconds:F0} s");
        }
        catch (Exception e) when (e is HttpRequestException or IOException or InvalidDataException or DecoderFallbackException)
        {
            var message = new StringBuilder(e.Message);
            for (var inner = e.InnerException; inner != null; inner = inner.InnerException) message.Append(": ").Append(inner.Message);
            return new RequestOutcome(null, message.ToString());
        }
    }

    /// <summary>Reads an OpenAI stream: the time of the first chunk with text, and the usage chunk's counts.</summary>
    public static async Task<RequestOutcome> ReadStreamAsync(Stream stream, ServeEndpoint endpoint, long startTimestamp, CancellationToken cancel)
    {
        double firstToken = double.NaN;
        int? promptTokens = null, completionTokens = null;
        bool done = false;
        int events = 0;
        await foreach (var data in ServerSentEvents.ReadDataAsync(stream, cancel).ConfigureAwait(false))
        {
            events++;
            if (data == "[DONE]") { done = true; break; }
            JsonNode? chunk;
            try { chunk = JsonNode.Parse(data); }
            catch (JsonException e) { return new RequestOutcome(null, $"event {events} is not JSON ({e.Message}): {Snippet(data)}"); }
            if (chunk is not JsonObject o) return new RequestOutcome(null, $"event {events} is not a JSON object: {Snippet(data)}");
            if (o["error"] is JsonNode error) return new RequestOutcome(null, $"the stream reported an error: {Snippet(error.ToJsonString())}");
            if (double.IsNaN(firstToken) && o["choices"] is JsonArray choices)
                foreach (var choice in choices)
                {
                    var text = endpoint == ServeEndpoint.Chat ? choice?["delta"]?["content"] : choice?["text"];
                    if (text is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0)
                    {
                        firstToken = Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
                        break;
                    }
                }
            if (o["usage"] is JsonObject usage)
            {
                if (!TryCount(usage, "prompt_tokens", out int p) || !TryCount(usage, "completion_tokens", out int c))
                    return new RequestOutcome(null, $"event {events}: usage without whole prompt_tokens and completion_tokens: {Snippet(usage.ToJsonString())}");
                promptTokens = p;
                completionTokens = c;
            }
        }
        double total = Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
        if (!done) return new RequestOutcome(null, $"the stream ended after {events} events without data: [DONE]");
        if (completionTokens is not int completion || promptTokens is not int promptCount)
            return new RequestOutcome(null, "the stream had no usage: the server ignores stream_options.include_usage, and chunks are not tokens");
        if (completion > 0 && double.IsNaN(firstToken))
            return new RequestOutcome(null, $"usage says {completion} tokens were generated but no chunk carried text");
        return new RequestOutcome(new RequestSample(firstToken, total, promptCount, completion), null);
    }

    static bool TryCount(JsonObject usage, string key, out int value)
    {
        value = 0;
        return usage[key] is JsonValue v && v.TryGetValue(out value) && value >= 0;
    }

    static string Snippet(string s) => s.Length <= 300 ? s : s[..300] + "…";
}
