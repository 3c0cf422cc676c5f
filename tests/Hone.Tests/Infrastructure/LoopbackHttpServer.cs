using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Hone.Tests.Infrastructure;

/// <summary>An HttpListener on a free loopback port that hands every request to <see cref="Serve"/> on a task of its own:
/// the base of the tests' fake servers.</summary>
public abstract class LoopbackHttpServer : IDisposable
{
    readonly HttpListener _listener = new();
    readonly Task _loop;

    /// <summary>http://127.0.0.1:PORT/</summary>
    public Uri Root { get; }

    protected LoopbackHttpServer()
    {
        for (int attempt = 0; ; attempt++)
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            try
            {
                _listener.Prefixes.Clear();
                _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
                _listener.Start();
                Root = new Uri($"http://127.0.0.1:{port}");
                break;
            }
            catch (HttpListenerException) when (attempt < 5) { }
        }
        _loop = Task.Run(async () =>
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try { context = await _listener.GetContextAsync(); }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
                _ = Task.Run(() => Serve(context));
            }
        });
    }

    protected abstract Task Serve(HttpListenerContext context);

    /// <summary>Answer with a non-streaming OpenAI chat completion of one choice carrying <paramref name="message"/>.</summary>
    protected static async Task WriteChatCompletionAsync(HttpListenerContext context, string model, JsonObject message, string finishReason)
    {
        var response = new JsonObject
        {
            ["id"] = "chatcmpl-1", ["object"] = "chat.completion", ["created"] = 1, ["model"] = model,
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = message, ["finish_reason"] = finishReason }),
            ["usage"] = new JsonObject { ["prompt_tokens"] = 5, ["completion_tokens"] = 5, ["total_tokens"] = 10 },
        };
        var bytes = Encoding.UTF8.GetBytes(response.ToJsonString());
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength64 = bytes.Length;
        await context.Response.OutputStream.WriteAsync(bytes);
        context.Response.Close();
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(10));
    }
}
