using System.Net;
using System.Net.Sockets;

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

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(10));
    }
}
