using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Proxy.ProxyProtocol;

/// <summary>Options of the PROXY protocol accept side.</summary>
public sealed record ProxyProtocolOptions
{
    /// <summary>
    /// Peers allowed to send a header (the load balancers). A trusted peer must send one; an
    /// untrusted peer that sends one is closed; an untrusted peer that does not is served as it is
    /// (its own address stands). Default: loopback only (127.0.0.0/8, ::1).
    /// </summary>
    public IReadOnlyList<IPNetwork> TrustedSources { get; init; } = [IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128")];

    /// <summary>Longest wait for the complete header. Default 5 s: haproxy's commonly configured <c>timeout client-fin</c>-sized budget; a balancer sends the header with its first packet.</summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest v2 header accepted. Default 4 KiB: room for SSL and custom TLVs (haproxy's own limit is its buffer size).</summary>
    public int MaxV2HeaderBytes { get; init; } = 4096;

    public void Validate()
    {
        if (HeaderTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("HeaderTimeout must be positive", nameof(HeaderTimeout));
        }

        if (MaxV2HeaderBytes is < 16 + 216 or > 65535 + 16)
        {
            throw new ArgumentException($"MaxV2HeaderBytes must be within 232..65551, was {MaxV2HeaderBytes}", nameof(MaxV2HeaderBytes));
        }
    }

    public bool IsTrusted(IPAddress address)
    {
        var plain = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        return TrustedSources.Any(n => n.Contains(plain));
    }
}

/// <summary>
/// The accept side, first layer of a listener: reads a v1 or v2 header from a trusted peer within
/// the header timeout, replaces <see cref="ConnectionContext.RemoteEndPoint"/> with the original
/// client's address, keeps the header (TLVs included) as <see cref="ProxyHeader"/> in the
/// extensions bag and consumes it; then calls the inner service. Anything wrong closes the
/// connection before the inner service (and so any upstream) sees it.
/// </summary>
public sealed class ProxyProtocolLayer(ProxyProtocolOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? time = null) : ILayer<ConnectionContext, Unit>
{
    public IService<ConnectionContext, Unit> Layer(IService<ConnectionContext, Unit> inner)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new ProxyProtocolService(inner, options, (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Rama.Proxy.ProxyProtocol"), time ?? TimeProvider.System);
    }
}

internal sealed partial class ProxyProtocolService(IService<ConnectionContext, Unit> inner, ProxyProtocolOptions options, ILogger logger, TimeProvider time)
    : IService<ConnectionContext, Unit>
{
    public async ValueTask<Unit> ServeAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        var trusted = connection.RemoteEndPoint is { } peer && options.IsTrusted(peer.Address);
        var input = connection.Transport.Input;
        using (var timeout = new CancellationTokenSource(options.HeaderTimeout, time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
        {
            try
            {
                while (true)
                {
                    var result = await input.ReadAsync(linked.Token).ConfigureAwait(false);
                    var buffer = result.Buffer;
                    if (!trusted)
                    {
                        var looks = ProxyProtocolCodec.LooksLikeHeader(buffer);
                        if (looks == true)
                        {
                            input.AdvanceTo(buffer.Start, buffer.End);
                            throw new ProxyProtocolException(ProxyProtocolRejectReason.UntrustedSource, $"{connection.RemoteEndPoint} is not a trusted PROXY source");
                        }

                        if (looks == false || (result.IsCompleted && !buffer.IsEmpty))
                        {
                            input.AdvanceTo(buffer.Start);
                            break; // a direct client: served as it is
                        }
                    }
                    else
                    {
                        bool parsed;
                        ProxyHeader? header;
                        SequencePosition consumed;
                        try
                        {
                            parsed = ProxyProtocolCodec.TryParse(buffer, options.MaxV2HeaderBytes, out header, out consumed);
                        }
                        catch (ProxyProtocolException)
                        {
                            input.AdvanceTo(buffer.Start, buffer.End);
                            throw;
                        }

                        if (parsed)
                        {
                            input.AdvanceTo(consumed);
                            connection.Extensions.Set(header!);
                            if (header!.Source is { } source)
                            {
                                LogAccepted(logger, connection.Id, connection.RemoteEndPoint?.ToString() ?? "?", source.ToString());
                                connection.RemoteEndPoint = source;
                            }

                            break;
                        }
                    }

                    input.AdvanceTo(buffer.Start, buffer.End);
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        connection.TrySetCloseReason("closed before a PROXY header");
                        return Unit.Value;
                    }
                }
            }
            catch (ProxyProtocolException ex)
            {
                return Refuse(connection, ex.Reason, ex.Message);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return Refuse(connection, ProxyProtocolRejectReason.Timeout, $"no complete header within {options.HeaderTimeout.TotalSeconds:0.#} s");
            }
        }

        return await inner.ServeAsync(connection, cancellationToken).ConfigureAwait(false);
    }

    private Unit Refuse(ConnectionContext connection, ProxyProtocolRejectReason reason, string detail)
    {
        LogRefused(logger, connection.Id, reason, detail);
        connection.Listener?.Rejected("proxy_protocol");
        connection.TrySetCloseReason($"proxy protocol: {reason}");
        return Unit.Value;
    }

    [LoggerMessage(EventId = 7300, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: PROXY header from {Peer}: client {Client}")]
    private static partial void LogAccepted(ILogger logger, long connectionId, string peer, string client);

    [LoggerMessage(EventId = 7301, Level = LogLevel.Information, Message = "Connection {ConnectionId}: PROXY header refused ({Reason}): {Detail}")]
    private static partial void LogRefused(ILogger logger, long connectionId, ProxyProtocolRejectReason reason, string detail);
}

/// <summary>
/// The send side: a connector decorator that writes a PROXY header first on every connection it
/// dials, carrying the addresses of the client connection being served. The addresses travel in an
/// async-local scope opened by <see cref="BeginScope"/> around the serving of one connection (a
/// connector has no other way to learn whom it dials for).
/// </summary>
public sealed class ProxyProtocolConnector(ITcpConnector inner, ProxyProtocolVersion version) : ITcpConnector
{
    private static readonly AsyncLocal<ConnectionContext?> s_current = new();

    /// <summary>Marks <paramref name="connection"/> as the client whose addresses go into headers dialled in this async flow.</summary>
    public static IDisposable BeginScope(ConnectionContext connection)
    {
        var previous = s_current.Value;
        s_current.Value = connection;
        return new Scope(previous);
    }

    /// <summary>A layer opening the scope for each connection.</summary>
    public static ILayer<ConnectionContext, Unit> ScopeLayer { get; } = Service.Layer<ConnectionContext, Unit>(inner => Service.FromFunc<ConnectionContext, Unit>(async (connection, token) =>
    {
        using var scope = BeginScope(connection);
        return await inner.ServeAsync(connection, token).ConfigureAwait(false);
    }));

    public async ValueTask<ConnectResult> ConnectAsync(HostPort target, CancellationToken cancellationToken)
    {
        var result = await inner.ConnectAsync(target, cancellationToken).ConfigureAwait(false);
        if (result.Connection is { } connection)
        {
            var client = s_current.Value;
            var header = Header(version, client?.RemoteEndPoint, client?.LocalEndPoint);
            await connection.Output.WriteAsync(header, cancellationToken).ConfigureAwait(false);
        }

        return result;
    }

    /// <summary>The header for a client (null addresses: LOCAL / UNKNOWN).</summary>
    public static byte[] Header(ProxyProtocolVersion version, IPEndPoint? source, IPEndPoint? destination) =>
        version == ProxyProtocolVersion.V1 ? ProxyProtocolCodec.WriteV1(source, destination) : ProxyProtocolCodec.WriteV2(source, destination);

    private sealed class Scope(ConnectionContext? previous) : IDisposable
    {
        public void Dispose() => s_current.Value = previous;
    }
}
