using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Destinations;
using Rama.Proxy.Socks5;
using Rama.Proxy.Upstream;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Stacks;

/// <summary>Everything a forward-proxy endpoint needs, in one validated record.</summary>
public sealed record ForwardProxyOptions
{
    public HttpProxyOptions Http { get; init; } = new();

    public Socks5ServerOptions Socks5 { get; init; } = new();

    public TcpConnectorOptions Connector { get; init; } = new();

    public DnsResolverOptions Dns { get; init; } = new();

    /// <summary>Upstream routing (used when the stack is given a proxy database).</summary>
    public UpstreamRoutingOptions Upstream { get; init; } = new();

    /// <summary>Connection and rate limits of upstreams, and per-user concurrency. All off by default.</summary>
    public LimitOptions Limits { get; init; } = new();

    /// <summary>
    /// The transport of reverse-proxy ports. Default <see cref="ReverseProxyTransport.Auto"/>: the epoll event loops on
    /// Linux x86-64, the socket pipes elsewhere (measured in benchmarks/: the event loops need about half the CPU per request).
    /// </summary>
    public ReverseProxyTransport ReverseTransport { get; init; } = ReverseProxyTransport.Auto;

    /// <summary>
    /// Where CONNECT and SOCKS5 tunnels relay their bytes once established. Default <see cref="ReverseProxyTransport.Auto"/>:
    /// the epoll event loops on Linux x86-64 for a tunnel straight on the accepted socket, the socket pipes elsewhere and for
    /// tunnels inside TLS (the HTTPS proxy) or run by a tunnel handler (MITM).
    /// </summary>
    public ReverseProxyTransport TunnelTransport { get; init; } = ReverseProxyTransport.Auto;

    /// <summary>
    /// The destination rules of clients' dials (HTTP forward, CONNECT, SOCKS5, chained targets), see
    /// <see cref="DestinationPolicy"/>. Null (default): none, every destination the host can reach. Reverse-proxy upstreams
    /// and upstream proxies are the operator's own and never checked.
    /// </summary>
    public DestinationPolicy? Destinations { get; init; }

    /// <summary>How long a new connection may stay silent before we know its protocol. Default: the HTTP header timeout.</summary>
    public TimeSpan? FirstBytesTimeout { get; init; }

    public void Validate()
    {
        Http.Limits.Validate();
        Socks5.Validate();
        Upstream.Validate();
        Limits.Validate();
        if (Connector.ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("ConnectTimeout must be positive", nameof(Connector));
        }
    }
}

/// <summary>How a reverse-proxy port (<see cref="ForwardProxyOptions.ReverseTransport"/>) or a tunnel (<see cref="ForwardProxyOptions.TunnelTransport"/>) moves its bytes.</summary>
public enum ReverseProxyTransport
{
    /// <summary><see cref="Epoll"/> where supported (Linux x86-64), else <see cref="Sockets"/>.</summary>
    Auto,
    /// <summary>Event-loop threads over epoll, one per core; each connection a state machine on one loop (Linux x86-64 only).</summary>
    Epoll,
    /// <summary>.NET sockets with System.IO.Pipelines and the async HTTP/1.1 server (portable).</summary>
    Sockets,
}

internal static class ReverseProxyTransportExtensions
{
    /// <summary>
    /// Whether <paramref name="transport"/> means the epoll event loops here: <see cref="ReverseProxyTransport.Epoll"/> (an
    /// <see cref="ArgumentException"/> where they are not supported), or <see cref="ReverseProxyTransport.Auto"/> on Linux
    /// x86-64 with the system clock (the loops keep time with the monotonic clock; a test clock needs the pipes).
    /// </summary>
    public static bool UsesEventLoops(this ReverseProxyTransport transport, TimeProvider time, string what)
    {
        var supported = Net.Epoll.EpollNative.IsSupported;
        if (transport == ReverseProxyTransport.Epoll && !supported)
        {
            throw new ArgumentException($"the epoll {what} transport needs Linux on x86-64", nameof(transport));
        }

        return transport == ReverseProxyTransport.Epoll
            || (transport == ReverseProxyTransport.Auto && supported && ReferenceEquals(time, TimeProvider.System));
    }
}

/// <summary>Optional parts of a forward-proxy port (issue 5): absent, the port is plain HTTP + SOCKS5.</summary>
public sealed record ForwardProxyExtras
{
    /// <summary>Also accept TLS on the port (an HTTPS proxy: <c>curl --proxy https://...</c>).</summary>
    public Tls.TlsServerOptions? Https { get; init; }

    /// <summary>Runs CONNECT tunnels (HTTP and SOCKS5) instead of the byte relay: the MITM proxy.</summary>
    public ITunnelHandler? Tunnel { get; init; }

    /// <summary>
    /// Where the limits of <see cref="ForwardProxyOptions.Limits"/> are counted: the fleet's limit entities on a fleet node.
    /// Null: in this process (<see cref="LocalConcurrencyLimiter"/>), when any limit is set.
    /// </summary>
    public IConcurrencyLimiter? Limiter { get; init; }

    /// <summary>The node's view of upstream health: a fleet node passes one whose failures it shares. Null: a cache of this stack's own.</summary>
    public UpstreamFailureCache? UpstreamHealth { get; init; }
}

/// <summary>
/// The stack of a forward-proxy port: peek at the first byte, then SOCKS5 (0x05) or HTTP/1.1 (an
/// ASCII letter starting a method token) on the same port; anything else is closed. One access entry per request and per
/// tunnel goes to the stack's <see cref="IAccessLog"/> (default: the lines of before through the logger factory). Built once,
/// shared by every connection; dispose it (it is an <see cref="IAsyncDisposable"/>) to close pooled
/// origin connections.
/// </summary>
public static class ForwardProxyStack
{
    public static IService<ConnectionContext, Unit> Create(
        ForwardProxyOptions options,
        IProxyAuthenticator authenticator,
        ILoggerFactory? loggerFactory = null,
        TimeProvider? time = null,
        IProxyDatabase? proxyDatabase = null,
        ForwardProxyExtras? extras = null,
        IAccessLog? accessLog = null)
    {
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        time ??= TimeProvider.System;
        var dns = new DnsResolver(options.Dns);
        // Clients' targets are dialled under the destination rules; the operator's upstream proxies by a connector without them.
        var trusted = new TcpConnector(dns, options.Connector, time, loggerFactory.CreateLogger<TcpConnector>());
        var rules = options.Destinations is { IsOpen: false } policy ? policy : null;
        ITcpConnector connector = rules is null ? trusted
            : new TcpConnector(dns, options.Connector with { Destinations = rules }, time, loggerFactory.CreateLogger<TcpConnector>());
        ILayer<HttpRequest, HttpResponse>? routing = null;
        ILayer<HttpRequest, HttpResponse>? denials = rules is null ? null : new DestinationDenialLayer(rules, loggerFactory.CreateLogger<DestinationDenialLayer>());
        var limiter = extras?.Limiter ?? new LocalConcurrencyLimiter(time);
        if (proxyDatabase is not null)
        {
            // With a proxy database: labels in usernames, the filter header, and dials through upstreams.
            var upstream = UpstreamProxying.Create(proxyDatabase, options.Upstream, connector, authenticator, dns, options.Connector.ConnectTimeout,
                options.Http.Realm, loggerFactory, time, limiter, options.Limits, extras?.UpstreamHealth, trusted, rules);
            (connector, authenticator) = (upstream.Connector, upstream.Authenticator);
            routing = upstream.HttpLayer;
        }

        // Innermost, next to the forward service: it sees the upstream's pool partition and the dial's denial.
        routing = Then(routing, denials);
        UserLimits? userLimits = null;
        if (options.Limits.LimitsUsers)
        {
            // Per-user concurrency, inside the auth layer (the user is known) and before routing (a refused request picks no upstream).
            userLimits = new UserLimits(limiter, options.Limits);
            var userLayer = new UserLimitLayer(userLimits, loggerFactory.CreateLogger("Rama.Proxy.Limits"));
            routing = Then(userLayer, routing);
        }

        var eventLoops = options.TunnelTransport.UsesEventLoops(time, "tunnel");
        var httpTunnel = extras?.Tunnel ?? new RelayTunnel(options.Http.TunnelIdleTimeout, time, eventLoops);
        var socks5Tunnel = extras?.Tunnel ?? new RelayTunnel(options.Socks5.TunnelIdleTimeout, time, eventLoops);
        var http = HttpProxy.CreateForwardProxy(options.Http, connector, authenticator, loggerFactory, time, routing, httpTunnel, accessLog);
        var socks5 = Socks5Server.Create(options.Socks5, connector, authenticator, loggerFactory, time, socks5Tunnel, accessLog, userLimits);
        List<PeekRoute> routes =
        [
            PeekRoute.FirstByte("socks5", b => b == Socks5Protocol.Version, socks5),
            // RFC 9110 §9: a method is a token; every registered method starts with a letter.
            PeekRoute.FirstByte("http", b => char.IsAsciiLetter((char)b), http),
        ];
        if (extras?.Https is { } https)
        {
            // The HTTPS proxy: a TLS record first (RFC 8446 §5.1), then the same HTTP forward proxy inside (ALPN h2 or http/1.1).
            routes.Add(PeekRoute.FirstByte("https", b => b == TlsStacks.TlsRecordByte, new Tls.TlsServerLayer(https.ForHttp(), loggerFactory, time).Layer(http)));
        }

        var router = new PeekRouter(
            routes,
            fallback: null,
            options.FirstBytesTimeout ?? options.Http.Limits.HeaderTimeout,
            time,
            loggerFactory.CreateLogger("Rama.Proxy.Net.PeekRouter"));
        return Service.Owning<ConnectionContext, Unit>(router, http as IAsyncDisposable);
    }

    // outer, then inner (either may be absent).
    private static ILayer<HttpRequest, HttpResponse>? Then(ILayer<HttpRequest, HttpResponse>? outer, ILayer<HttpRequest, HttpResponse>? inner) =>
        outer is null ? inner : inner is null ? outer : Service.Layer<HttpRequest, HttpResponse>(service => outer.Layer(inner.Layer(service)));
}
