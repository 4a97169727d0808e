using System.Diagnostics;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// A reverse proxy on 127.0.0.1:0 to one upstream whose scheme says the protocol. HTTP/1.1 clients: the stack of a reverse
/// listener (<see cref="ReverseProxyStack"/>). HTTP/2 clients (gRPC): our <see cref="Http2Server"/> in front of the same
/// reverse service, wired here so that these tests do not depend on the listeners' inbound h2.
/// </summary>
internal sealed class H2ReverseHarness : IAsyncDisposable
{
    private readonly IService<ConnectionContext, Unit> _service;
    private readonly IAsyncDisposable? _pools;

    private H2ReverseHarness(IService<ConnectionContext, Unit> service, IAsyncDisposable? pools, ForwardProxyService? forwarder)
    {
        _service = service;
        _pools = pools;
        Forwarder = forwarder;
        Server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Server.Start(service);
    }

    public TcpServer Server { get; }

    public ForwardProxyService? Forwarder { get; }

    public int Port => Server.LocalEndPoint.Port;

    public string Url(string path) => $"http://127.0.0.1:{Port}{path}";

    /// <summary>HTTP/1.1 clients, the reverse listener's stack.</summary>
    public static H2ReverseHarness Http1Clients(UpstreamTarget upstream, TlsClientOptions? upstreamTls = null, HttpProxyOptions? http = null) =>
        new(ReverseProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
            Http = http ?? new HttpProxyOptions(),
        }, upstream, upstreamTls: upstreamTls), null, null);

    /// <summary>HTTP/2 clients (prior knowledge): Http2Server over the reverse service.</summary>
    public static H2ReverseHarness Http2Clients(UpstreamTarget upstream, HttpProxyOptions? http = null)
    {
        http ??= new HttpProxyOptions();
        var connector = new TcpConnector(new DnsResolver(new DnsResolverOptions()), new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) });
        var (forwarder, pools) = ReverseProxyStack.Forwarder(http, connector, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System, null);
        var service = new ReverseProxyService(forwarder, upstream);
        return new H2ReverseHarness(Http2Server.Create(service), pools, forwarder);
    }

    public async ValueTask DisposeAsync()
    {
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

        if (_pools is not null)
        {
            await _pools.DisposeAsync();
        }

        Assert.Equal(0, open);
    }
}
