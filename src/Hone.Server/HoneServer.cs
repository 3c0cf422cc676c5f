using Hone.Tensors;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Hone.Batching;
using Hone.Tokenization;
using Hone.Tokenization.Templates;
using Hone.ToolCalls;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Hone.Server;

/// <summary>
/// The OpenAI-compatible HTTP server: Kestrel starts listening at once and the model loads in the background, so
/// <c>/health</c> answers 503 while it loads and 200 once requests are served. Endpoints: <c>/v1/chat/completions</c>,
/// <c>/v1/completions</c>, <c>/v1/embeddings</c>, <c>/v1/models</c>, vLLM's <c>/v1/load_lora_adapter</c> and
/// <c>/v1/unload_lora_adapter</c>, llama.cpp's <c>/tokenize</c> and <c>/detokenize</c>, <c>/health</c> (also
/// <c>/health/live</c>, <c>/health/ready</c>) and <c>/metrics</c> (Prometheus).
/// </summary>
public sealed class HoneServer : IAsyncDisposable
{
    readonly WebApplication _app;
    readonly TextWriter _log;
    readonly byte[]? _keyHash;
    readonly Task<BatchEngine> _loading;
    volatile BatchEngine? _engine;
    volatile Exception? _loadError;
    (ChatTemplate? Template, string? Error) _chatTemplate;
    ToolCallFormat? _toolFormat;

    public ServerOptions Options { get; }
    public ServerMetrics Metrics { get; } = new();
    /// <summary>The addresses Kestrel is bound to (with the real port when <see cref="ServerOptions.Port"/> is 0).</summary>
    public IReadOnlyList<Uri> Addresses { get; private set; } = [];
    /// <summary>Completes with the engine once the model is loaded, or fails with the reason it could not be.</summary>
    public Task<BatchEngine> Ready => _loading;
    internal long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    HoneServer(ServerOptions options, TextWriter log)
    {
        Options = options;
        _log = log;
        if (options.ApiKey != null) _keyHash = SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = TransportLimit(options);
            k.AddServerHeader = false;
            foreach (var address in ListenAddresses(options.Host)) k.Listen(address, options.Port);
        });
        _app = builder.Build();
        _app.Use(CountAndGuard);
        _app.Use(Authenticate);
        _app.MapGet("/health", Health);
        _app.MapGet("/health/ready", Health);
        _app.MapGet("/health/live", () => Results.Text("{\"status\":\"ok\"}", "application/json"));
        _app.MapMetrics("/metrics", Metrics.Registry);
        OpenAiApi.Map(_app, this);
        _app.MapFallback(ctx => throw new ApiException(404, $"no endpoint {ctx.Request.Method} {ctx.Request.Path}", null, "not_found"));
        _loading = new Task<BatchEngine>(Load, TaskCreationOptions.LongRunning);
    }

    /// <summary>Kestrel's body limit: above the server's own (checked as bodies are read), so that Kestrel drains a
    /// refused body of modest size and the client reads the 413; past this it closes the connection.</summary>
    internal static long TransportLimit(ServerOptions options) => Math.Max(options.MaxRequestBytes, 64L << 20);

    static IPAddress[] ListenAddresses(string host)
    {
        if (IPAddress.TryParse(host.Trim('[', ']'), out var ip)) return [ip];
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return [IPAddress.Loopback];
        var resolved = Dns.GetHostAddresses(host);
        return resolved.Length > 0 ? [resolved[0]] : throw new ArgumentException($"--host {host}: the name resolves to no address");
    }

    /// <summary>Starts listening, then loads the model in the background (see <see cref="Ready"/>). Start-up notes
    /// (where it listens, whether a key is needed) go to <paramref name="log"/>.</summary>
    public static async Task<HoneServer> StartAsync(ServerOptions options, TextWriter log, CancellationToken cancel = default)
    {
        options.Validate();
        var server = new HoneServer(options, log);
        try { await server._app.StartAsync(cancel).ConfigureAwait(false); }
        catch { await server._app.DisposeAsync().ConfigureAwait(false); throw; }
        var feature = server._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>();
        server.Addresses = (feature?.Addresses ?? []).Select(a => new Uri(a.Replace("://[::]", "://[::1]", StringComparison.Ordinal))).ToList();
        bool loopback = ListenAddresses(options.Host).All(IPAddress.IsLoopback);
        log.WriteLine($"hone serve: listening on {string.Join(", ", server.Addresses)}; loading {options.ModelPath} …");
        if (options.ApiKey == null)
            log.WriteLine(loopback
                ? "hone serve: no API key set, so only this machine can connect (loopback); give --api-key and --host to serve others"
                : $"hone serve: WARNING: no API key set and listening on {options.Host}: anyone who can reach this address can use the model");
        server._loading.Start();
        return server;
    }

    BatchEngine Load()
    {
        try
        {
            var engine = (Options.OpenEngine ?? (o => BatchEngine.Open(o.ModelPath, o.Adapters, o.EngineOptions)))(Options);
            try
            {
                _chatTemplate = (ChatConversation.ResolveTemplate(engine.Tokenizer, Options.ChatTemplate).Template, null);
                _toolFormat = ToolCallFormat.Detect(_chatTemplate.Template!);
            }
            catch (Exception e) when (e is ArgumentException or TemplateException or IOException)
            {
                _chatTemplate = (null, Options.ChatTemplate != null ? $"the chat template {Options.ChatTemplate} cannot be used: {e.Message}"
                                                                      : $"the model's chat template cannot be used: {e.Message}");
            }
            var anchor = engine.Tokenizer.Encode("a", addSpecialTokens: false, parseSpecialTokens: false);
            if (anchor.Length == 1) _tokenAnchor = (anchor[0], engine.Tokenizer.Decode(anchor).Length);
            if (Options.Router != null)
            {
                var router = Experts.RequestRouter.Load(Options.Router);
                if (router.Dimension != engine.Config.HiddenSize)
                    throw new ArgumentException($"{Options.Router}: the router's embeddings have {router.Dimension} values, the model's {engine.Config.HiddenSize}; build it with this model");
                foreach (var r in router.Routes)
                    if (r.Name != Experts.RequestRouter.BaseRoute && engine.AdapterPath(r.Name) == null)
                        throw new ArgumentException($"{Options.Router}: route '{r.Name}' is no adapter of this server (serve it with --adapter {r.Name}=DIR) nor '{Experts.RequestRouter.BaseRoute}'");
                Router = router;
            }
            Metrics.Attach(engine);
            _engine = engine;
            _log.WriteLine($"hone serve: ready: model '{engine.ModelName}'" +
                           (engine.AdapterNames.Count > 0 ? $", adapters {string.Join(", ", engine.AdapterNames)}" : "") +
                           (Router != null ? $", model '{ServerOptions.AutoModel}' routed to {string.Join(", ", Router.Routes.Select(r => r.Name))}" : "") +
                           $"; {engine.Parallel} sequences of {engine.ContextLength} tokens, KV cache {engine.CacheType.Name()}"
                           + (engine.ExpertCacheStatistics is { } experts ? $"; {experts.Resident}" : ""));
            if (_chatTemplate.Error != null) _log.WriteLine($"hone serve: {_chatTemplate.Error} (chat completions will be refused)");
            return engine;
        }
        catch (Exception e)
        {
            _loadError = e;
            _log.WriteLine($"hone serve: the model could not be loaded: {e.Message}");
            throw;
        }
    }

    /// <summary>The engine, or a 503 while it loads (or when it could not be loaded).</summary>
    /// <summary>The request router, when the server has one.</summary>
    internal Experts.RequestRouter? Router { get; private set; }

    internal BatchEngine Engine => _engine ?? throw (_loadError is { } e
        ? new ApiException(503, $"the model could not be loaded: {e.Message}", null, "model_load_failed")
        : new ApiException(503, "the model is still loading; try again shortly", null, "model_loading") { RetryAfterSeconds = 1 });

    internal ChatTemplate ChatTemplate => _chatTemplate.Template ?? throw new ApiException(400, _chatTemplate.Error ?? "no chat template", "messages", "no_chat_template");

    /// <summary>How the chat template writes tool calls; null when it renders none Hone knows (tools are then refused).</summary>
    internal ToolCallFormat? ToolFormat => _toolFormat;

    (int Id, int Length)? _tokenAnchor;

    /// <summary>One token's text as it reads inside a text (with its leading space, which a SentencePiece decoder
    /// drops at the start of a text): decoded after a plain one-character token, which is then cut off.</summary>
    internal string TokenText(BatchEngine engine, int id) => _tokenAnchor is var (anchor, length)
        ? engine.Tokenizer.Decode([anchor, id])[length..]
        : engine.Tokenizer.Decode([id]);

    internal void Log(string line) { lock (_log) _log.WriteLine(line); }

    IResult Health()
    {
        if (_engine != null) return Results.Text("{\"status\":\"ok\"}", "application/json");
        var body = new JsonObject { ["status"] = _loadError == null ? "loading" : "error" };
        if (_loadError != null) body["message"] = _loadError.Message;
        return Results.Text(body.ToJsonString(OpenAiApi.Output), "application/json", statusCode: 503);
    }

    static readonly HashSet<string> Endpoints =
    [
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
        "/tokenize", "/detokenize", "/health", "/health/live", "/health/ready", "/metrics",
    ];

    /// <summary>The outermost step: counts every answer by endpoint and status, and turns an <see cref="ApiException"/>
    /// (or anything unexpected) into OpenAI's error shape.</summary>
    async Task CountAndGuard(HttpContext ctx, RequestDelegate next)
    {
        string path = ctx.Request.Path.Value ?? "";
        string endpoint = Endpoints.Contains(path) ? path : path.StartsWith("/v1/models/", StringComparison.Ordinal) ? "/v1/models/{id}" : "other";
        try { await next(ctx).ConfigureAwait(false); }
        catch (ApiException e) { await WriteError(ctx, e).ConfigureAwait(false); }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            await WriteError(ctx, new ApiException(413, $"the request body is larger than this server's limit of {TransportLimit(Options)} bytes", null, "request_too_large")).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) { await WriteError(ctx, new ApiException(e.StatusCode, $"bad request: {e.Message}")).ConfigureAwait(false); }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { }
        catch (IOException) when (ctx.RequestAborted.IsCancellationRequested) { }
        catch (Exception e)
        {
            Log($"hone serve: unexpected {e.GetType().Name} answering {ctx.Request.Method} {path}: {e}");
            await WriteError(ctx, new ApiException(500, $"internal error: {e.GetType().Name}: {e.Message}")).ConfigureAwait(false);
        }
        // 499 (nginx's "client closed request"): the client left before the answer was complete, streamed or not.
        Metrics.Request(endpoint, ctx.RequestAborted.IsCancellationRequested ? 499 : ctx.Response.StatusCode);
    }

    static async Task WriteError(HttpContext ctx, ApiException e)
    {
        if (ctx.Response.HasStarted) return; // a stream already under way: it reports its own errors
        ctx.Response.StatusCode = e.Status;
        if (e.RetryAfterSeconds is int seconds) ctx.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        ctx.Response.ContentType = "application/json";
        try { await ctx.Response.WriteAsync(e.ToJson().ToJsonString(OpenAiApi.Output), ctx.RequestAborted).ConfigureAwait(false); }
        catch (Exception ex) when (ex is OperationCanceledException or IOException) { }
    }

    /// <summary>With a key set, every request but the health checks must carry it (compared in constant time).</summary>
    Task Authenticate(HttpContext ctx, RequestDelegate next)
    {
        if (_keyHash == null || ctx.Request.Path.StartsWithSegments("/health")) return next(ctx);
        string header = ctx.Request.Headers.Authorization.ToString();
        const string bearer = "Bearer ";
        bool ok = header.StartsWith(bearer, StringComparison.OrdinalIgnoreCase)
                  && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(header[bearer.Length..].Trim())), _keyHash);
        if (!ok)
            throw new ApiException(401, header.Length == 0
                ? "no API key given: send the header 'Authorization: Bearer KEY'"
                : "incorrect API key provided", null, "invalid_api_key");
        return next(ctx);
    }

    /// <summary>Runs until <paramref name="cancel"/> fires (Ctrl-C in <c>hone serve</c>).</summary>
    public async Task WaitAsync(CancellationToken cancel)
    {
        try { await Task.Delay(Timeout.Infinite, cancel).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
    }

    public async ValueTask DisposeAsync()
    {
        try { await _app.StopAsync(CancellationToken.None).ConfigureAwait(false); }
        finally
        {
            await _app.DisposeAsync().ConfigureAwait(false);
            if (_loading.Status != TaskStatus.Created)
            {
                try { (await _loading.ConfigureAwait(false)).Dispose(); }
                catch (Exception) { /* the load failed: nothing to dispose; the failure was logged */ }
            }
        }
    }
}
