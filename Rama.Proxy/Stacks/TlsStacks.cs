using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Fingerprint;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Tls;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Stacks;

/// <summary>How terminated traffic is forwarded.</summary>
public enum TerminationMode
{
    /// <summary>Raw bytes, relayed both ways (any protocol inside TLS).</summary>
    Tcp,
    /// <summary>Parsed as HTTP/1.1 and forwarded request by request (fingerprints logged per request).</summary>
    Http,
}

/// <summary>Where and how a TLS termination proxy forwards.</summary>
public sealed record TlsTerminationOptions
{
    public required HostPort Upstream { get; init; }

    public TerminationMode Mode { get; init; } = TerminationMode.Tcp;

    /// <summary>Re-encrypt to the upstream with these options; null: plain TCP upstream.</summary>
    public TlsClientOptions? UpstreamTls { get; init; }

    /// <summary>Send a PROXY header to the upstream first (it must expect one); null: none.</summary>
    public ProxyProtocolVersion? SendProxyProtocol { get; init; }

    public HttpLimits Limits { get; init; } = new();

    public TcpConnectorOptions Connector { get; init; } = new();

    /// <summary>Longest wait for the upstream's response head in HTTP mode. Default 60 s (nginx's proxy_read_timeout).</summary>
    public TimeSpan UpstreamResponseHeaderTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>Connection stacks built from the TLS, fingerprint and PROXY protocol layers.</summary>
public static class TlsStacks
{
    /// <summary>Puts the connection's (possibly PROXY-protocol-corrected) addresses in the extensions bag as <see cref="PeerAddresses"/>.</summary>
    public static ILayer<ConnectionContext, Unit> PeerAddressesLayer { get; } = Service.Layer<ConnectionContext, Unit>(inner => Service.FromFunc<ConnectionContext, Unit>((connection, token) =>
    {
        connection.Extensions.Set(new PeerAddresses(connection.RemoteEndPoint, connection.LocalEndPoint));
        return inner.ServeAsync(connection, token);
    }));

    /// <summary>
    /// A TLS termination reverse proxy: TCP server -> TLS server (SNI, ALPN, mTLS, handshake timeout) ->
    /// TCP (or TLS) client to one upstream, raw or HTTP-aware. One access entry (<see cref="AccessKind.Tls"/>) per request
    /// in HTTP mode, per connection in TCP mode, to <paramref name="accessLog"/> (null: the lines of before through <paramref name="loggerFactory"/>).
    /// </summary>
    public static IService<ConnectionContext, Unit> Termination(TlsServerOptions tls, TlsTerminationOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? time = null,
        IAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        loggerFactory ??= NullLoggerFactory.Instance;
        time ??= TimeProvider.System;
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        options.Limits.Validate();
        ITcpConnector connector = new TcpConnector(new DnsResolver(), options.Connector, time, loggerFactory.CreateLogger<TcpConnector>());
        if (options.SendProxyProtocol is { } version)
        {
            connector = new ProxyProtocolConnector(connector, version);
        }

        IService<ConnectionContext, Unit> forward;
        if (options.Mode == TerminationMode.Tcp)
        {
            forward = Service.FromFunc<ConnectionContext, Unit>(async (connection, token) =>
            {
                var started = time.GetTimestamp();
                var dial = await DialAsync(connector, options, time, token).ConfigureAwait(false);
                if (dial.Pipe is null)
                {
                    connection.TrySetCloseReason($"upstream {options.Upstream}: {dial.Error} {dial.Detail}");
                    WriteRelayAccess(accessLog, connection, options.Upstream, status: 502, default, time, started);
                    return Unit.Value;
                }

                RelayResult moved = default;
                try
                {
                    await using (dial.Owner!.ConfigureAwait(false))
                    {
                        moved = await Relay.RunAsync(connection.Transport, dial.Pipe, token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    WriteRelayAccess(accessLog, connection, options.Upstream, status: 0, moved, time, started);
                }

                return Unit.Value;
            });
        }
        else
        {
            forward = HttpForwarding(options, connector, loggerFactory, time, accessLog);
        }

        var layers = new List<ILayer<ConnectionContext, Unit>>();
        if (options.SendProxyProtocol is not null)
        {
            layers.Add(ProxyProtocolConnector.ScopeLayer);
        }

        // HTTP mode serves h2 (ALPN) as well; TCP mode relays bytes it does not parse, so it offers only what it was given.
        layers.Add(new TlsServerLayer(options.Mode == TerminationMode.Http ? tls.ForHttp() : tls, loggerFactory, time));
        return Service.Owning(Service.Stack(forward, [.. layers]), forward as IAsyncDisposable);
    }

    /// <summary>
    /// HTTP mode: each request goes to the upstream through the forwarder of the proxies (<see cref="ForwardProxyService"/> under
    /// <see cref="ReverseProxyService"/>): bodies streamed both ways (an early answer is read while the upload still runs), the
    /// shared rules (<see cref="HttpForwardRules"/>: hop-by-hop fields, retry once, failures as statuses), origin connections pooled
    /// across client connections, re-encrypted when <see cref="TlsTerminationOptions.UpstreamTls"/> is set (the TLS stream is pooled).
    /// The client's Host is kept and no Via is added (the terminator stands in for the origin, as before).
    /// </summary>
    private static IService<ConnectionContext, Unit> HttpForwarding(TlsTerminationOptions options, ITcpConnector connector, ILoggerFactory loggerFactory,
        TimeProvider time, IAccessLog accessLog)
    {
        var http = new HttpProxyOptions
        {
            Limits = options.Limits,
            UpstreamResponseHeaderTimeout = options.UpstreamResponseHeaderTimeout,
            Via = null,
            MaxIdleConnectionsPerTarget = ReverseProxyStack.MinIdleConnections, // one upstream takes all the traffic
        };
        var secure = options.UpstreamTls is { } upstreamTls ? TlsOrigin.Securer(upstreamTls, (_, _) => options.Upstream.Host, time) : null;
        var logger = loggerFactory.CreateLogger("Rama.Proxy.Tls.Termination");
        var fingerprints = new FingerprintLogLayer(loggerFactory.CreateLogger("Rama.Proxy.Fingerprint"));
        var upstream = new UpstreamTarget(secure is null ? OriginProtocol.Http1 : OriginProtocol.Https, Http1ConnectionPool.Key(options.Upstream));
        IService<HttpRequest, HttpResponse> Application(Http1ConnectionPool pool) => Service.Stack<HttpRequest, HttpResponse>(
            new ReverseProxyService(new ForwardProxyService(http, connector, pool, logger, time, tunnel: null, secure), upstream), fingerprints);
        // ALPN h2 or HTTP/1.1 over the same application (h2 requests become HTTP/1.1 to the upstream).
        IService<ConnectionContext, Unit> Server(IService<HttpRequest, HttpResponse> application) =>
            Http2Inbound.ByAlpn(Http2Inbound.Server(application, options.Limits, loggerFactory, accessLog, AccessKind.Tls, time, webSocketsToHttp1: true));

        if (options.SendProxyProtocol is null)
        {
            var pool = new Http1ConnectionPool(http.MaxIdleConnectionsPerTarget, http.PooledConnectionIdleTimeout, time);
            return Service.Owning(Server(Application(pool)), pool);
        }

        // A PROXY header names one client: an origin connection serves that client's connection only (a pool of one per connection).
        return Service.FromFunc<ConnectionContext, Unit>(async (connection, token) =>
        {
            var pool = new Http1ConnectionPool(1, http.PooledConnectionIdleTimeout, time);
            await using (pool.ConfigureAwait(false))
            {
                return await Server(Application(pool)).ServeAsync(connection, token).ConfigureAwait(false);
            }
        });
    }

    /// <summary>The entry of a raw relayed connection: no method or target; the upstream as authority; status 0, or 502 when it could not be dialled.</summary>
    private static void WriteRelayAccess(IAccessLog accessLog, ConnectionContext connection, HostPort upstream, int status, RelayResult moved, TimeProvider time, long started)
    {
        if (accessLog.IsEnabled)
        {
            accessLog.Write(new AccessLogEntry
            {
                Time = time.GetUtcNow(),
                Kind = AccessKind.Tls,
                Client = connection.RemoteEndPoint,
                Authority = upstream,
                Status = status,
                BytesFromClient = moved.ClientToTarget,
                BytesToClient = moved.TargetToClient,
                Duration = time.GetElapsedTime(started),
                ConnectionId = connection.Id,
            });
        }
    }

    /// <summary>Dials the upstream: TCP, then TLS when asked for (SNI and verification against the upstream's host name).</summary>
    internal static async ValueTask<OriginDial> DialAsync(ITcpConnector connector, TlsTerminationOptions options, TimeProvider time, CancellationToken cancellationToken)
    {
        var result = await connector.ConnectAsync(options.Upstream, cancellationToken).ConfigureAwait(false);
        if (result.Connection is not { } socket)
        {
            return OriginDial.Failed(HttpForwardRules.ErrorFor(result.Error), HttpForwardRules.Describe(result));
        }

        if (options.UpstreamTls is null)
        {
            return new OriginDial(socket, socket, ForwardError.None, "");
        }

        try
        {
            var tls = await TlsClient.ConnectAsync(socket, options.Upstream.Host, options.UpstreamTls, socket, cancellationToken, time).ConfigureAwait(false);
            return new OriginDial(tls, tls, ForwardError.None, "");
        }
        catch (Exception ex) when (ex is System.Security.Authentication.AuthenticationException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            await socket.DisposeAsync().ConfigureAwait(false);
            return OriginDial.Failed(ForwardError.ConnectFailed, "upstream TLS: " + ex.Message);
        }
    }

    /// <summary>
    /// The echo server: HTTP/1.1 and h2c (prior knowledge), and HTTPS (ALPN h2 or http/1.1) on the same port when
    /// <paramref name="tls"/> is given (a first byte 0x16 is a TLS record). Every request is answered by <see cref="EchoService"/>.
    /// </summary>
    public static IService<ConnectionContext, Unit> Echo(TlsServerOptions? tls, HttpLimits? limits = null, ILoggerFactory? loggerFactory = null, TimeProvider? time = null,
        IAccessLog? accessLog = null)
    {
        loggerFactory ??= NullLoggerFactory.Instance;
        time ??= TimeProvider.System;
        limits ??= new HttpLimits();
        var app = Service.Stack<HttpRequest, HttpResponse>(EchoService.Instance, new FingerprintLogLayer(loggerFactory.CreateLogger("Rama.Proxy.Fingerprint")));
        limits.Validate();
        // HTTP/1.1 and h2c with prior knowledge in clear; after TLS, ALPN h2 or http/1.1: the Akamai fingerprint is seen on h2.
        var http = Http2Inbound.Server(app, limits, loggerFactory, accessLog ?? AccessLogs.ToLogger(loggerFactory), AccessKind.Echo, time, webSocketsToHttp1: false);
        var routes = new List<PeekRoute>();
        if (tls is not null)
        {
            routes.Add(PeekRoute.FirstByte("tls", b => b == TlsRecordByte, new TlsServerLayer(tls.ForHttp(), loggerFactory, time).Layer(Http2Inbound.ByAlpn(http))));
        }

        routes.Add(PeekRoute.FirstByte("http", b => char.IsAsciiLetter((char)b), http));
        var router = new PeekRouter(routes, fallback: null, limits.HeaderTimeout, time, loggerFactory.CreateLogger("Rama.Proxy.Net.PeekRouter"));
        return Service.Stack(router, PeerAddressesLayer);
    }

    /// <summary>RFC 8446 §5.1: content type 22 (handshake) starts every ClientHello.</summary>
    public const byte TlsRecordByte = 0x16;
}
