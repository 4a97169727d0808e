using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Rama.Proxy.Net;

/// <summary>Why an outbound connection could not be made: an expected outcome, a value, not an exception.</summary>
public enum ConnectError
{
    None,
    /// <summary>The target actively refused (RST to our SYN).</summary>
    Refused,
    /// <summary>The name does not resolve.</summary>
    NameNotResolved,
    /// <summary>No answer within the connect timeout.</summary>
    TimedOut,
    HostUnreachable,
    NetworkUnreachable,
    /// <summary>Our own policy forbids this destination.</summary>
    NotAllowed,
    Failed,
    /// <summary>Every upstream that could carry it is at a limit (connections or rate): HTTP 503 with Retry-After, SOCKS5 0x01.</summary>
    Busy,
}

/// <summary>The result of a dial: a started connection, or why not.</summary>
public readonly record struct ConnectResult(SocketConnection? Connection, ConnectError Error, string? Detail)
{
    public bool IsSuccess => Connection is not null;

    public static ConnectResult Failure(ConnectError error, string detail) => new(null, error, detail);
}

/// <summary>Dials TCP targets.</summary>
public interface ITcpConnector
{
    ValueTask<ConnectResult> ConnectAsync(HostPort target, CancellationToken cancellationToken);

    /// <summary>
    /// Dials on behalf of a request or connection whose <paramref name="extensions"/> may steer the dial
    /// (an upstream filter, a session) and receive facts about it (the upstream used). Default: ignores them.
    /// </summary>
    ValueTask<ConnectResult> ConnectAsync(HostPort target, Core.Extensions extensions, CancellationToken cancellationToken) =>
        ConnectAsync(target, cancellationToken);
}

/// <summary>Options of <see cref="TcpConnector"/>.</summary>
public sealed record TcpConnectorOptions
{
    /// <summary>Longest a TCP connect (all addresses together) may take. Default 10 s (haproxy's commonly configured <c>timeout connect</c> is 5 s, nginx's proxy_connect_timeout 60 s; 10 s is a middle ground for a forward proxy).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Disable Nagle on outbound sockets. Default on: a proxy forwards what it has at once.</summary>
    public bool NoDelay { get; init; } = true;

    /// <summary>Optional egress policy: return false to refuse dialing an address.</summary>
    public Func<IPAddress, bool>? AllowDestination { get; init; }

    /// <summary>
    /// The destination rules of dials made for clients (<see cref="Destinations.DestinationPolicy"/>): checked after name
    /// resolution for every resolved address; only allowed addresses are dialled, and the denial is the answer
    /// (<see cref="ConnectError.NotAllowed"/>, <see cref="Destinations.DestinationDenied"/> in the extensions) when none is.
    /// Null (default): no rules. Operator-configured destinations (reverse upstreams, upstream proxies) are dialled by a
    /// connector without them.
    /// </summary>
    public Destinations.DestinationPolicy? Destinations { get; init; }

    public SocketConnectionOptions Connection { get; init; } = SocketConnectionOptions.Default;
}

/// <summary>Direct TCP connector: resolve, then try each address in turn within one connect timeout.</summary>
public sealed partial class TcpConnector : ITcpConnector
{
    private readonly IDnsResolver _dns;
    private readonly TcpConnectorOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public TcpConnector(IDnsResolver? dns = null, TcpConnectorOptions? options = null, TimeProvider? time = null, ILogger<TcpConnector>? logger = null)
    {
        _dns = dns ?? new DnsResolver();
        _options = options ?? new TcpConnectorOptions();
        _time = time ?? TimeProvider.System;
        _logger = logger ?? (ILogger)NullLogger.Instance;
    }

    public ValueTask<ConnectResult> ConnectAsync(HostPort target, CancellationToken cancellationToken) =>
        DialAsync(target, null, cancellationToken);

    /// <summary>A dial for a client: the destination rules see its user (<see cref="Core.ProxyUser"/>), a denial goes in its extensions.</summary>
    public ValueTask<ConnectResult> ConnectAsync(HostPort target, Core.Extensions extensions, CancellationToken cancellationToken) =>
        DialAsync(target, extensions, cancellationToken);

    private async ValueTask<ConnectResult> DialAsync(HostPort target, Core.Extensions? extensions, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        if (_options.Destinations is { IsOpen: false } byName && DialPolicy.DeniedByName(target, extensions, byName, out var refused))
        {
            LogConnectFailed(_logger, target.ToString(), refused.Error, refused.Detail ?? "");
            return refused; // a name or port rule: no lookup needed
        }

        IPAddress[] addresses;
        try
        {
            addresses = await _dns.ResolveAsync(target.Host, linked.Token).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            LogConnectFailed(_logger, target.ToString(), ConnectError.NameNotResolved, ex.Message);
            return ConnectResult.Failure(ConnectError.NameNotResolved, ex.Message);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return ConnectResult.Failure(ConnectError.TimedOut, $"resolving {target.Host} timed out");
        }

        if (addresses.Length == 0)
        {
            LogConnectFailed(_logger, target.ToString(), ConnectError.NameNotResolved, "no addresses");
            return DialPolicy.NoAddress(target.Host);
        }

        if (_options.Destinations is { IsOpen: false } rules)
        {
            // Every resolved address is checked (no DNS-rebinding bypass); only the allowed ones are dialled.
            addresses = DialPolicy.Permitted(addresses, target, extensions, rules, out var denied);
            if (addresses.Length == 0)
            {
                LogConnectFailed(_logger, target.ToString(), denied.Error, denied.Detail ?? "");
                return denied;
            }
        }

        var last = DialPolicy.NothingTried;
        for (var i = DialPolicy.NextAllowed(addresses, 0, _options, ref last); i >= 0; i = DialPolicy.NextAllowed(addresses, i + 1, _options, ref last))
        {
            var address = addresses[i];
            var socket = DialPolicy.CreateSocket(address, _options);
            try
            {
                await socket.ConnectAsync(new IPEndPoint(address, target.Port), linked.Token).ConfigureAwait(false);
                var connection = new SocketConnection(socket, _options.Connection);
                connection.Start();
                return new ConnectResult(connection, ConnectError.None, null);
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                last = DialPolicy.Failed(address, target.Port, ex.SocketErrorCode);
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                if (cancellationToken.IsCancellationRequested)
                {
                    throw;
                }

                last = ConnectResult.Failure(ConnectError.TimedOut,
                    $"{target} did not answer within {_options.ConnectTimeout.TotalSeconds:0.###} s");
                break;
            }
        }

        LogConnectFailed(_logger, target.ToString(), last.Error, last.Detail ?? "");
        return last;
    }

    [LoggerMessage(EventId = 1100, Level = LogLevel.Debug, Message = "Connect to {Target} failed: {Error} ({Detail})")]
    private static partial void LogConnectFailed(ILogger logger, string target, ConnectError error, string detail);
}
