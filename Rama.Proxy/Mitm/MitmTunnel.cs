using System.IO.Pipelines;
using System.Net.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Fingerprint;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Tls;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Mitm;

/// <summary>Options of the MITM proxy. Off unless configured.</summary>
public sealed record MitmOptions
{
    public required MitmAuthority Authority { get; init; }

    /// <summary>How the origin is verified when re-encrypting. Verification is on by default.</summary>
    public TlsClientOptions Upstream { get; init; } = new();

    /// <summary>Handshake timeout and ClientHello limit on the client side (certificates come from the authority).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public HttpLimits Limits { get; init; } = new();

    /// <summary>Layers over decrypted requests (hooks and filters see and change requests and responses), outermost first.</summary>
    public IReadOnlyList<ILayer<HttpRequest, HttpResponse>> RequestLayers { get; init; } = [];

    /// <summary>Longest wait for the origin's response head. Default 60 s (nginx's proxy_read_timeout).</summary>
    public TimeSpan UpstreamResponseHeaderTimeout { get; init; } = TimeSpan.FromSeconds(60);
}

/// <summary>
/// The MITM tunnel: when the first bytes of a CONNECT (HTTP or SOCKS5) tunnel are a ClientHello,
/// terminate TLS with a leaf minted for its SNI (or the CONNECT host), serve the decrypted HTTP/1.1
/// through the HTTP server (h2 when the client offers it in ALPN, else HTTP/1.1) and the configured request layers,
/// and forward each request to the origin over TLS (verified, SNI as the client sent it). Anything else is relayed untouched.
/// The first decrypted request uses the connection the tunnel was opened with; every later origin
/// connection (after the origin closed) is dialled with the tunnel's redial function, so it leaves
/// through the same upstream proxy as the first one, never directly.
/// </summary>
public sealed partial class MitmTunnel : ITunnelHandler
{
    private readonly MitmOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly IAccessLog _accessLog;

    /// <summary>A MITM tunnel handler; origin connections come from the tunnel (its first connection, then its redial function).</summary>
    /// <param name="options">The authority, origin verification, limits and request layers.</param>
    /// <param name="loggerFactory">Loggers of the tunnel, its HTTP server and its origin forwarder.</param>
    /// <param name="time">Time for handshake and response timeouts.</param>
    /// <param name="accessLog">
    /// Where one entry per decrypted request goes (<see cref="AccessKind.Mitm"/>, with the tunnel's host:port as its
    /// <see cref="AccessLogEntry.Authority"/>); null: the lines of before (events 2001 and 7100) through <paramref name="loggerFactory"/>.
    /// </param>
    public MitmTunnel(MitmOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? time = null, IAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Limits.Validate();
        _options = options;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger("Rama.Proxy.Tls.Mitm");
        _time = time ?? TimeProvider.System;
        _accessLog = accessLog ?? AccessLogs.ToLogger(_loggerFactory);
    }

    /// <inheritdoc/>
    public async Task<RelayResult> RunAsync(ConnectionContext connection, IDuplexPipe client, SocketConnection upstream, HostPort target,
        Func<CancellationToken, ValueTask<ConnectResult>> redial, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(redial);
        if (!await StartsWithTlsAsync(client.Input, cancellationToken).ConfigureAwait(false))
        {
            return await Relay.RunAsync(client, upstream, cancellationToken).ConfigureAwait(false);
        }

        // The tunnel's own access entry counts what crossed the client's side (TLS records); each decrypted request has its own.
        var counted = new CountingDuplexPipe(client);
        var nested = connection.CreateNested(counted);
        var firstDial = upstream;
        var log = _logger;
        // The tunnel's origin connections: the one it was opened with first, then redials, which go out the way the tunnel
        // did (the stack's connector: same upstream proxy, same session), never directly.
        var connector = new TunnelConnector(() => Interlocked.Exchange(ref firstDial, null), redial);
        // ALPN offers h2 to the origin: decrypted requests go as HTTP/2 streams when the origin chooses it, else HTTP/1.1.
        var secure = TlsOrigin.Securer(_options.Upstream, (request, _) => request.Extensions.Get<TlsClientHello>()?.ServerName ?? target.Host, _time,
            (_, serverName, detail) => LogUpstreamTls(log, connection.Id, serverName, detail), offerHttp2: true);
        var forwarding = new HttpProxyOptions
        {
            Limits = _options.Limits,
            UpstreamResponseHeaderTimeout = _options.UpstreamResponseHeaderTimeout,
            Via = null, // a MITM proxy stays invisible to the origin
            MaxIdleConnectionsPerTarget = 1, // one client connection: its requests come one at a time
        };
        // Decrypted requests go through the proxies' forwarder: bodies streamed both ways, the shared rules, the origin connection kept while both keep it alive.
        var pool = new Http1ConnectionPool(forwarding.MaxIdleConnectionsPerTarget, forwarding.PooledConnectionIdleTimeout, _time);
        await using var poolOwner = pool.ConfigureAwait(false);
        var http2 = new Http2ConnectionPool(forwarding.PooledConnectionIdleTimeout, _time);
        await using var http2Owner = http2.ConfigureAwait(false);
        var forwarder = new ForwardProxyService(forwarding, connector, pool, _loggerFactory.CreateLogger("Rama.Proxy.Tls.Mitm.Forwarder"), _time, tunnel: null, secure, http2);
        var origin = new ReverseProxyService(forwarder, new UpstreamTarget(OriginProtocol.Https, target));
        var layers = new List<ILayer<HttpRequest, HttpResponse>> { new FingerprintLogLayer(_loggerFactory.CreateLogger("Rama.Proxy.Fingerprint")) };
        layers.AddRange(_options.RequestLayers);
        var accessLog = _accessLog.IsEnabled ? new TunnelAccessLog(_accessLog, target) : _accessLog;
        // h2 when the client offers it (ALPN), else HTTP/1.1; both over the same layers and forwarder, logged alike.
        var http = Http2Inbound.Server(Service.Stack<HttpRequest, HttpResponse>(origin, [.. layers]), _options.Limits, _loggerFactory, accessLog, AccessKind.Mitm,
            _time, webSocketsToHttp1: true);
        var tls = new TlsServerLayer(new TlsServerOptions
        {
            Certificates = new LeafSelector(_options.Authority, target.Host),
            ApplicationProtocols = ["h2", "http/1.1"],
            HandshakeTimeout = _options.HandshakeTimeout,
        }, _loggerFactory, _time).Layer(Http2Inbound.ByAlpn(http));
        try
        {
            await tls.ServeAsync(nested, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (Interlocked.Exchange(ref firstDial, null) is { } unused)
            {
                await unused.DisposeAsync().ConfigureAwait(false);
            }
        }

        return new RelayResult(counted.BytesRead, counted.BytesWritten);
    }

    /// <summary>The origin dials of one tunnel: the connection the tunnel was opened with (once), then the tunnel's redial.</summary>
    private sealed class TunnelConnector(Func<SocketConnection?> first, Func<CancellationToken, ValueTask<ConnectResult>> redial) : ITcpConnector
    {
        public ValueTask<ConnectResult> ConnectAsync(HostPort target, CancellationToken cancellationToken) =>
            first() is { } socket ? ValueTask.FromResult(new ConnectResult(socket, ConnectError.None, null)) : redial(cancellationToken);
    }

    /// <summary>Waits for the tunnel's first byte (bounded by the handshake timeout); true when it starts a TLS record.</summary>
    private async ValueTask<bool> StartsWithTlsAsync(PipeReader input, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            var result = await input.ReadAsync(linked.Token).ConfigureAwait(false);
            var first = result.Buffer.IsEmpty ? -1 : result.Buffer.FirstSpan[0];
            input.AdvanceTo(result.Buffer.Start);
            return first == 0x16;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return false; // a server-speaks-first protocol: relay
        }
    }

    private sealed class LeafSelector(MitmAuthority authority, string connectHost) : IServerCertificateSelector
    {
        public ValueTask<SslStreamCertificateContext?> SelectAsync(TlsClientHello hello, CancellationToken cancellationToken) =>
            new(authority.GetLeaf(hello.ServerName ?? connectHost));
    }

    /// <summary>Stamps the tunnel's host:port on the entries of the requests decrypted in it.</summary>
    private sealed class TunnelAccessLog(IAccessLog inner, HostPort target) : IAccessLog
    {
        public bool IsEnabled => inner.IsEnabled;

        public void Write(in AccessLogEntry entry) => inner.Write(entry with { Authority = target });
    }

    [LoggerMessage(EventId = 7101, Level = LogLevel.Information, Message = "Connection {ConnectionId}: MITM origin {ServerName} failed TLS verification: {Detail}")]
    private static partial void LogUpstreamTls(ILogger logger, long connectionId, string serverName, string detail);
}
