using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Http;

/// <summary>Options of the HTTP forward proxy. Every default names where it comes from. Validated by <see cref="HttpProxy.CreateForwardProxy"/>.</summary>
public sealed record HttpProxyOptions
{
    /// <summary>Codec and client-connection limits.</summary>
    public HttpLimits Limits { get; init; } = new();

    /// <summary>The realm of <c>Proxy-Authenticate: Basic realm="..."</c> (RFC 7617 §2). Default "rama".</summary>
    public string Realm { get; init; } = "rama";

    /// <summary>
    /// The <c>Via</c> entry added to forwarded requests and responses (RFC 9110 §7.6.3: a proxy MUST
    /// send one); null adds none (for an anonymising proxy). Default "1.1 rama" (a pseudonym, as the
    /// RFC allows, rather than the host name).
    /// </summary>
    public string? Via { get; init; } = "1.1 rama";

    /// <summary>
    /// Idle origin connections kept per target (host:port). Default 64 (SocketsHttpHandler keeps unbounded
    /// idle connections; nginx's <c>keepalive</c> is per worker): measured in benchmarks/, 16 made 50 busy
    /// clients of one origin churn connections (forward /1k: 8-10k -> 17-18k req/s with 64).
    /// </summary>
    public int MaxIdleConnectionsPerTarget { get; init; } = 64;

    /// <summary>How long an idle origin connection is kept. Default 60 s: SocketsHttpHandler's <c>PooledConnectionIdleTimeout</c> (1 min), below nginx's 75 s <c>keepalive_timeout</c> so we usually close first.</summary>
    public TimeSpan PooledConnectionIdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest wait for the origin's response head after the request was sent; then 504. Default 60 s: nginx's <c>proxy_read_timeout</c>, which the epoll reverse transport also applies between two reads of a response body (then the client connection is reset).</summary>
    public TimeSpan UpstreamResponseHeaderTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>A CONNECT tunnel with no traffic either way for this long is closed. Default <see cref="Relay.DefaultIdleTimeout"/> (15 min, squid's read_timeout); <see cref="Timeout.InfiniteTimeSpan"/> for none.</summary>
    public TimeSpan TunnelIdleTimeout { get; init; } = Relay.DefaultIdleTimeout;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        if (TunnelIdleTimeout <= TimeSpan.Zero && TunnelIdleTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentException($"{nameof(TunnelIdleTimeout)} must be positive (or infinite)", nameof(TunnelIdleTimeout));
        }

        Limits.Validate();
        if (string.IsNullOrEmpty(Realm) || Realm.Contains('"', StringComparison.Ordinal) || Realm.Any(char.IsControl))
        {
            throw new ArgumentException($"{nameof(Realm)} must be non-empty without quotes or control characters", nameof(Realm));
        }

        if (Via is not null && (Via.Length == 0 || Via.Any(c => c > 0x7E || char.IsControl(c))))
        {
            throw new ArgumentException($"{nameof(Via)} must be printable ASCII or null", nameof(Via));
        }

        if (MaxIdleConnectionsPerTarget < 0)
        {
            throw new ArgumentException($"{nameof(MaxIdleConnectionsPerTarget)} must be 0 or more, was {MaxIdleConnectionsPerTarget}", nameof(MaxIdleConnectionsPerTarget));
        }

        HttpLimits.PositiveTime(PooledConnectionIdleTimeout, nameof(PooledConnectionIdleTimeout));
        HttpLimits.PositiveTime(UpstreamResponseHeaderTimeout, nameof(UpstreamResponseHeaderTimeout));
    }
}

/// <summary>The HTTP proxies as connection services.</summary>
public static class HttpProxy
{
    /// <summary>
    /// An HTTP/1.1 forward proxy: absolute-form requests forwarded to the origin (origin-form, hop-by-hop
    /// fields removed, bodies streamed, origin connections pooled) and CONNECT tunnels, behind
    /// <c>Proxy-Authorization: Basic</c> when <paramref name="authenticator"/> requires it. The returned
    /// service also implements <see cref="IAsyncDisposable"/>: disposing it closes pooled origin connections.
    /// <paramref name="requestLayer"/> (e.g. upstream routing) runs after auth, before forwarding. A
    /// <paramref name="tunnel"/> handler (MITM) runs CONNECT tunnels instead of the byte relay, on the
    /// request's <see cref="HttpRequest.Connection"/>.
    /// </summary>
    /// <remarks>One access entry per request and per CONNECT tunnel goes to <paramref name="accessLog"/> (null: the lines of before through <paramref name="loggerFactory"/>).</remarks>
    public static IService<ConnectionContext, Unit> CreateForwardProxy(HttpProxyOptions options, ITcpConnector connector, IProxyAuthenticator authenticator,
        ILoggerFactory? loggerFactory = null, TimeProvider? time = null, ILayer<HttpRequest, HttpResponse>? requestLayer = null, ITunnelHandler? tunnel = null,
        IAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(authenticator);
        return Build(options, connector, "Rama.Proxy.Http.ForwardProxy",
            forwarder => Service.Stack(forwarder, new ProxyAuthLayer(authenticator, options.Realm), requestLayer ?? Service.Identity<HttpRequest, HttpResponse>()),
            loggerFactory, time, tunnel, accessLog, AccessKind.Forward, http2AfterTls: true);
    }

    /// <summary>
    /// An HTTP/1.1 reverse proxy to one <paramref name="upstream"/> (host:port): every request is
    /// forwarded there over pooled connections, whatever its Host; hop-by-hop fields removed, Via
    /// added, the client's Host kept. No <c>Proxy-Authorization</c> is asked: a reverse proxy is
    /// an origin to its clients (put an auth layer in front of it to protect it). Disposing the
    /// returned service closes pooled upstream connections.
    /// </summary>
    public static IService<ConnectionContext, Unit> CreateReverseProxy(HttpProxyOptions options, HostPort upstream, ITcpConnector connector,
        ILoggerFactory? loggerFactory = null, TimeProvider? time = null, IAccessLog? accessLog = null)
    {
        return Build(options, connector, "Rama.Proxy.Http.ReverseProxy", forwarder => new ReverseProxyService(forwarder, Http1ConnectionPool.Key(upstream)),
            loggerFactory, time, tunnel: null, accessLog, AccessKind.Reverse);
    }

    // The shared shape: validated options, one origin pool, the forwarder, an application over it, the HTTP/1.1 server. With
    // http2AfterTls, a connection whose TLS chose ALPN h2 (the HTTPS proxy port) is served by an HTTP/2 server over the same
    // application instead (RFC 9113 §3.2); plain connections stay HTTP/1.1.
    private static IService<ConnectionContext, Unit> Build(HttpProxyOptions options, ITcpConnector connector, string loggerName,
        Func<ForwardProxyService, IService<HttpRequest, HttpResponse>> application, ILoggerFactory? loggerFactory, TimeProvider? time, ITunnelHandler? tunnel,
        IAccessLog? accessLog, AccessKind kind, bool http2AfterTls = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(connector);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        time ??= TimeProvider.System;
        var pool = new Http1ConnectionPool(options.MaxIdleConnectionsPerTarget, options.PooledConnectionIdleTimeout, time);
        var forwarder = new ForwardProxyService(options, connector, pool, loggerFactory.CreateLogger(loggerName), time, tunnel);
        var app = application(forwarder);
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        var server = new Http1Server(app, options.Limits, loggerFactory.CreateLogger("Rama.Proxy.Http.Http1Server"), accessLog, kind, time);
        if (!http2AfterTls)
        {
            return Service.Owning<ConnectionContext, Unit>(server, pool);
        }

        var http2 = Http2Inbound.Create(app, loggerFactory, accessLog, kind, time, webSocketsToHttp1: false, maxRequestBodySize: options.Limits.MaxRequestBodySize);
        var byAlpn = Service.FromFunc<ConnectionContext, Unit>((connection, token) =>
            connection.Extensions.Get<Tls.TlsConnectionInfo>()?.ApplicationProtocol == "h2" ? http2.ServeAsync(connection, token) : server.ServeAsync(connection, token));
        return Service.Owning(byAlpn, pool);
    }
}
