using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Routing;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Stacks;

/// <summary>
/// The stack of a reverse-proxy port: HTTP/1.1 and h2c with prior knowledge on the same port, every request forwarded to one upstream
/// (HTTP/1.1, h2c or https by its scheme), or, with routes, to the
/// clusters its routes choose (<see cref="Create(ForwardProxyOptions, ReverseRoutingOptions, out IReverseRouteTable, ILoggerFactory?, TimeProvider?, IAccessLog?)"/>).
/// It shares the forward stack's options (limits, connector, DNS); the idle pool per upstream is raised to
/// <see cref="MinIdleConnections"/> because few upstreams take all the traffic, and one h2 client multiplexes up to
/// 100 streams, each an HTTP/1.1 origin request at once (a cap below the concurrency closes connections it just used).
/// </summary>
public static class ReverseProxyStack
{
    /// <summary>
    /// Idle upstream connections kept at least, even if the forward options ask for fewer (one upstream takes all the traffic).
    /// 256: h2load -c 16 -m 10 keeps 160 origin requests in flight; with 64, the rest closed after each request (measured:
    /// 159 origin connections established and 17 in TIME_WAIT during such a run with 256).
    /// </summary>
    public const int MinIdleConnections = 256;

    /// <summary>Builds the stack; one access entry per request goes to <paramref name="accessLog"/> (null: the lines of before through <paramref name="loggerFactory"/>).</summary>
    public static IService<ConnectionContext, Unit> Create(ForwardProxyOptions options, HostPort upstream, ILoggerFactory? loggerFactory = null, TimeProvider? time = null,
        IAccessLog? accessLog = null) =>
        Create(options, UpstreamTarget.Http1(upstream), loggerFactory, time, accessLog);

    /// <summary>
    /// Builds the stack for an upstream whose scheme says the protocol: HTTP/1.1 (the event-loop transport when the options
    /// choose it), or h2c / https (the pipe transport; HTTP/2 connections to the origin multiplexed and pooled; https verifies
    /// the origin with <paramref name="upstreamTls"/>, null: the system's roots, and offers ALPN h2 and http/1.1).
    /// </summary>
    public static IService<ConnectionContext, Unit> Create(ForwardProxyOptions options, UpstreamTarget upstream, ILoggerFactory? loggerFactory = null, TimeProvider? time = null,
        IAccessLog? accessLog = null, TlsClientOptions? upstreamTls = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (upstream.Protocol != OriginProtocol.Http1)
        {
            return CreateMultiProtocol(options, upstream, loggerFactory, time, accessLog, upstreamTls);
        }

        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        time ??= TimeProvider.System;
        var dns = new DnsResolver(options.Dns);
        var connector = new TcpConnector(dns, options.Connector, time, loggerFactory.CreateLogger<TcpConnector>());
        var http = options.Http with { MaxIdleConnectionsPerTarget = Math.Max(options.Http.MaxIdleConnectionsPerTarget, MinIdleConnections) };
        http.Validate();
        var pool = new Http1ConnectionPool(http.MaxIdleConnectionsPerTarget, http.PooledConnectionIdleTimeout, time);
        var forwarder = new ForwardProxyService(http, connector, pool, loggerFactory.CreateLogger("Rama.Proxy.Http.ReverseProxy"), time);
        var application = new ReverseProxyService(forwarder, Http1ConnectionPool.Key(upstream.Target));
        // HTTP/1.1 and h2c with prior knowledge on one port (the preface is seen by the HTTP/1.1 server, or by the epoll
        // transport, which hands such a connection to this one).
        var pipes = Service.Owning<ConnectionContext, Unit>(
            Http2Inbound.Server(application, http.Limits, loggerFactory, accessLog, AccessKind.Reverse, time, webSocketsToHttp1: true), pool);
        return options.ReverseTransport.UsesEventLoops(time, "reverse-proxy")
            ? new EpollReverseProxy(pipes, http, Http1ConnectionPool.Key(upstream.Target), options.Connector, dns, loggerFactory, accessLog, time)
            : pipes;
    }

    // An h2c or https upstream: the forwarder on the pipes with an HTTP/2 pool (the event loops speak HTTP/1.1 to one upstream only).
    private static IService<ConnectionContext, Unit> CreateMultiProtocol(ForwardProxyOptions options, UpstreamTarget upstream, ILoggerFactory? loggerFactory,
        TimeProvider? time, IAccessLog? accessLog, TlsClientOptions? upstreamTls)
    {
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        time ??= TimeProvider.System;
        var connector = new TcpConnector(new DnsResolver(options.Dns), options.Connector, time, loggerFactory.CreateLogger<TcpConnector>());
        var http = options.Http with { MaxIdleConnectionsPerTarget = Math.Max(options.Http.MaxIdleConnectionsPerTarget, MinIdleConnections) };
        var (forwarder, owned) = Forwarder(http, connector, loggerFactory, time, upstreamTls);
        var service = new ReverseProxyService(forwarder, upstream with { Target = Http1ConnectionPool.Key(upstream.Target) });
        // HTTP/1.1 and h2c with prior knowledge on one port, as for an HTTP/1.1 upstream (gRPC clients speak h2c).
        var server = Http2Inbound.Server(service, http.Limits, loggerFactory, accessLog, AccessKind.Reverse, time, webSocketsToHttp1: true);
        return Service.Owning<ConnectionContext, Unit>(server, owned);
    }

    /// <summary>
    /// The reverse proxy's forwarder for every upstream protocol: the HTTP/1.1 pool, the HTTP/2 pool, and TLS (ALPN h2, http/1.1)
    /// for https origins, verified with <paramref name="upstreamTls"/> (null: the system's roots). The second value owns both pools.
    /// </summary>
    internal static (ForwardProxyService Forwarder, IAsyncDisposable Owned) Forwarder(HttpProxyOptions http, ITcpConnector connector, ILoggerFactory loggerFactory,
        TimeProvider time, TlsClientOptions? upstreamTls)
    {
        var pool = new Http1ConnectionPool(http.MaxIdleConnectionsPerTarget, http.PooledConnectionIdleTimeout, time);
        var http2 = new Http2ConnectionPool(http.PooledConnectionIdleTimeout, time);
        var secure = TlsOrigin.Securer(upstreamTls ?? new TlsClientOptions(), (request, target) => target.Host, time, offerHttp2: true);
        var forwarder = new ForwardProxyService(http, connector, pool, loggerFactory.CreateLogger("Rama.Proxy.Http.ReverseProxy"), time, tunnel: null, secure, http2);
        return (forwarder, new Owned(pool, http2));
    }

    /// <summary>
    /// Builds a routed stack: routes, clusters, load balancing and health checks (Rama.Proxy.Http.Routing), on the
    /// pipe transport. <paramref name="routes"/> swaps the route table (a reload). Throws <see cref="ArgumentException"/>
    /// when <paramref name="routing"/> is invalid (<see cref="ReverseRoutingOptions.Validate"/>).
    /// </summary>
    public static IService<ConnectionContext, Unit> Create(ForwardProxyOptions options, ReverseRoutingOptions routing, out IReverseRouteTable routes,
        ILoggerFactory? loggerFactory = null, TimeProvider? time = null, IAccessLog? accessLog = null, TlsClientOptions? upstreamTls = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(routing);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        time ??= TimeProvider.System;
        var connector = new TcpConnector(new DnsResolver(options.Dns), options.Connector, time, loggerFactory.CreateLogger<TcpConnector>());
        var http = options.Http with { MaxIdleConnectionsPerTarget = Math.Max(options.Http.MaxIdleConnectionsPerTarget, MinIdleConnections) };
        var (forwarder, pools) = Forwarder(http, connector, loggerFactory, time, upstreamTls);
        var service = new RoutingProxyService(forwarder, routing, connector, http.Limits, loggerFactory.CreateLogger("Rama.Proxy.Http.Routing"), time);
        routes = service;
        var server = Http2Inbound.Server(service, http.Limits, loggerFactory, accessLog, AccessKind.Reverse, time, webSocketsToHttp1: true);
        return Service.Owning<ConnectionContext, Unit>(server, new Owned(service, pools));
    }

    private sealed class Owned(IAsyncDisposable first, IAsyncDisposable second) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await first.DisposeAsync().ConfigureAwait(false);
            await second.DisposeAsync().ConfigureAwait(false);
        }
    }
}
