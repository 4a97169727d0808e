using System.Diagnostics;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// A reverse proxy on 127.0.0.1:0 to one upstream whose scheme says the protocol: the stack of a reverse listener
/// (<see cref="ReverseProxyStack"/>), which serves HTTP/1.1 and h2c with prior knowledge on the same port.
/// </summary>
internal sealed class H2ReverseHarness : IAsyncDisposable
{
    private readonly IService<ConnectionContext, Unit> _service;
    private bool _disposed;

    private H2ReverseHarness(IService<ConnectionContext, Unit> service)
    {
        _service = service;
        Server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Server.Start(service);
    }

    public TcpServer Server { get; }

    public int Port => Server.LocalEndPoint.Port;

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    /// <summary>The reverse listener's stack (<see cref="ReverseProxyStack"/>): HTTP/1.1 and h2c with prior knowledge on one port.</summary>
    public static H2ReverseHarness Listener(UpstreamTarget upstream, TlsClientOptions? upstreamTls = null, HttpProxyOptions? http = null) =>
        new(ReverseProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
            Http = http ?? new HttpProxyOptions(),
        }, upstream, upstreamTls: upstreamTls));

    /// <summary>Waits (10 s at most) for the client connections to end, then closes the listener and the stack; once.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        var deadline = Stopwatch.StartNew();
        while (Server.OpenConnections != 0 && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(20);
        }

        var open = Server.OpenConnections;
        await Server.DisposeAsync();
        if (_service is IAsyncDisposable disposable)
        {
            await disposable.DisposeAsync();
        }

        Assert.Equal(0, open);
    }
}
