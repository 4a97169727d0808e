using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Socks5;

/// <summary>Options of the SOCKS5 server.</summary>
public sealed record Socks5ServerOptions
{
    /// <summary>Longest the whole negotiation (greeting, auth, request) may take. Default 10 s (dante's negotiate timeout is 30 s; a real client needs milliseconds).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>An established tunnel with no traffic either way for this long is closed. Default <see cref="Relay.DefaultIdleTimeout"/> (15 min); <see cref="Timeout.InfiniteTimeSpan"/> for none.</summary>
    public TimeSpan TunnelIdleTimeout { get; init; } = Relay.DefaultIdleTimeout;

    public void Validate()
    {
        if (TunnelIdleTimeout <= TimeSpan.Zero && TunnelIdleTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentException("Socks5 TunnelIdleTimeout must be positive (or infinite)", nameof(TunnelIdleTimeout));
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("Socks5 HandshakeTimeout must be positive", nameof(HandshakeTimeout));
        }
    }
}

/// <summary>The target a SOCKS5 client asked for, in the connection's extensions.</summary>
public sealed record Socks5Target(HostPort Target, Socks5Command Command);

/// <summary>
/// RFC 1928 SOCKS5 server (CONNECT; BIND and UDP ASSOCIATE answered 0x07) with RFC 1929
/// username/password authentication. One access entry (<see cref="AccessKind.Socks5"/>) per request that named a target:
/// when its tunnel ends (status 0), or when it was refused (status: the RFC 1928 §6 reply code).
/// </summary>
public static class Socks5Server
{
    public static IService<ConnectionContext, Unit> Create(
        Socks5ServerOptions options,
        ITcpConnector connector,
        IProxyAuthenticator authenticator,
        ILoggerFactory? loggerFactory = null,
        TimeProvider? time = null,
        ITunnelHandler? tunnel = null,
        IAccessLog? accessLog = null,
        Limits.UserLimits? userLimits = null)
    {
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        return new Socks5Service(options, connector, authenticator, loggerFactory.CreateLogger("Rama.Proxy.Socks5"), time ?? TimeProvider.System,
            tunnel ?? new RelayTunnel(options.TunnelIdleTimeout, time), accessLog ?? AccessLogs.ToLogger(loggerFactory), userLimits);
    }
}

internal sealed partial class Socks5Service(
    Socks5ServerOptions options,
    ITcpConnector connector,
    IProxyAuthenticator authenticator,
    ILogger logger,
    TimeProvider time,
    ITunnelHandler tunnel,
    IAccessLog accessLog,
    Limits.UserLimits? userLimits = null) : IService<ConnectionContext, Unit>
{
    private delegate Socks5ParseStatus Parser<T>(ReadOnlySequence<byte> input, out SequencePosition consumed, out T value);

    public async ValueTask<Unit> ServeAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        var started = time.GetTimestamp();
        using var activity = Socks5Tracing.Start(connection); // null unless traced; lasts as long as the tunnel
        var transport = connection.Transport;
        SocketConnection? upstream = null;
        Socks5Request request;
        // The user's lease (per-user concurrency): taken before the dial, held until the tunnel ends.
        using var userLease = new LeaseHolder();
        using (var handshake = new CancellationTokenSource(options.HandshakeTimeout, time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, handshake.Token))
        {
            try
            {
                // RFC 1928 §3: method selection.
                var (status, methods) = await ReadAsync<byte[]>(transport.Input, Socks5Protocol.TryParseGreeting, linked.Token).ConfigureAwait(false);
                if (status != Socks5ParseStatus.Done)
                {
                    return Reject(connection, $"greeting: {status}");
                }

                var method = ChooseMethod(methods);
                await WriteAsync(transport.Output, [Socks5Protocol.Version, (byte)method], linked.Token).ConfigureAwait(false);
                if (method == Socks5AuthMethod.NoAcceptableMethods)
                {
                    return Reject(connection, "no acceptable authentication method");
                }

                if (method == Socks5AuthMethod.UsernamePassword)
                {
                    // RFC 1929 §2: any non-zero status means failure, and the server closes the connection.
                    var (authStatus, credentials) = await ReadAsync<(string User, string Password)>(transport.Input, ParseUserPass, linked.Token).ConfigureAwait(false);
                    if (authStatus != Socks5ParseStatus.Done)
                    {
                        return Reject(connection, $"auth message: {authStatus}");
                    }

                    // Offered credentials are always checked: on an open proxy the username may still carry labels (or bad ones).
                    var user = authenticator.Authenticate(credentials.User, credentials.Password, connection.Extensions)
                        ?? (authenticator.IsRequired || connection.Extensions.Contains<ProxyAuthFailure>() ? null : new ProxyUser(credentials.User));
                    await WriteAsync(transport.Output, [Socks5Protocol.AuthVersion, user is null ? (byte)0x01 : (byte)0x00], linked.Token).ConfigureAwait(false);
                    if (user is null)
                    {
                        var why = connection.Extensions.Get<ProxyAuthFailure>()?.Reason ?? "wrong user or password";
                        LogAuthFailed(logger, connection.Id, credentials.User, why);
                        return Reject(connection, "authentication failed: " + why);
                    }

                    connection.Extensions.Set(user);
                }

                // RFC 1928 §4: the request.
                (status, request) = await ReadAsync<Socks5Request>(transport.Input, Socks5Protocol.TryParseRequest, linked.Token).ConfigureAwait(false);
                switch (status)
                {
                    case Socks5ParseStatus.Done:
                        break;
                    case Socks5ParseStatus.UnsupportedAddressType:
                        await ReplyAsync(transport.Output, Socks5Reply.AddressTypeNotSupported, linked.Token).ConfigureAwait(false);
                        WriteAccess(connection, default, Socks5Reply.AddressTypeNotSupported, default, started);
                        return Reject(connection, "address type not supported");
                    case Socks5ParseStatus.Malformed:
                        await ReplyAsync(transport.Output, Socks5Reply.GeneralFailure, linked.Token).ConfigureAwait(false);
                        return Reject(connection, "malformed request");
                    default:
                        return Reject(connection, $"request: {status}");
                }

                connection.Extensions.Set(new Socks5Target(request.Target, request.Command));
                if (request.Command != Socks5Command.Connect)
                {
                    await ReplyAsync(transport.Output, Socks5Reply.CommandNotSupported, linked.Token).ConfigureAwait(false);
                    WriteAccess(connection, request.Target, Socks5Reply.CommandNotSupported, default, started);
                    return Reject(connection, $"command {request.Command} not supported");
                }

                if (userLimits is not null)
                {
                    userLease.Lease = await userLimits.AcquireAsync(connection.Extensions.Get<ProxyUser>(), linked.Token).ConfigureAwait(false);
                    if (!userLease.Lease.IsGranted)
                    {
                        // RFC 1928 has no field for a reason: 0x02 (not allowed by ruleset), the reason in the log and access log.
                        await ReplyAsync(transport.Output, Socks5Reply.NotAllowedByRuleset, linked.Token).ConfigureAwait(false);
                        connection.Extensions.Set(new AccessRefusal(userLease.Lease.Reason));
                        WriteAccess(connection, request.Target, Socks5Reply.NotAllowedByRuleset, default, started);
                        LogUserLimited(logger, connection.Id, request.Target.ToString(), userLease.Lease.Reason);
                        return Reject(connection, userLease.Lease.Reason);
                    }
                }

                var result = await connector.ConnectAsync(request.Target, connection.Extensions, linked.Token).ConfigureAwait(false);
                if (!result.IsSuccess)
                {
                    var reply = Socks5Protocol.ToReply(result.Error);
                    await ReplyAsync(transport.Output, reply, linked.Token).ConfigureAwait(false);
                    WriteAccess(connection, request.Target, reply, default, started);
                    LogConnectFailed(logger, connection.Id, request.Target.ToString(), result.Error, reply);
                    return Reject(connection, $"connect {request.Target}: {result.Error}");
                }

                upstream = result.Connection!;
                await WriteAsync(transport.Output, Socks5Protocol.FormatReply(Socks5Reply.Succeeded, upstream.LocalEndPoint), linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (handshake.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                if (upstream is not null)
                {
                    await upstream.DisposeAsync().ConfigureAwait(false);
                }

                return Reject(connection, "handshake timeout");
            }
        }

        await using (upstream.ConfigureAwait(false))
        {
            // Bytes the client sent after the request are already in the pipe: the relay forwards them.
            // A tunnel handler that needs the target again (MITM after the origin closed) dials it as above: same connection bag, so same upstream.
            var target = request.Target;
            RelayResult moved = default;
            var opened = ProxyMetrics.TunnelOpened(AccessKind.Socks5);
            try
            {
                moved = await tunnel.RunAsync(connection, transport, upstream, target,
                    token => connector.ConnectAsync(target, connection.Extensions, token), cancellationToken).ConfigureAwait(false);
                connection.TrySetCloseReason("tunnel closed");
            }
            finally
            {
                ProxyMetrics.TunnelClosed(AccessKind.Socks5, opened);
                WriteAccess(connection, target, Socks5Reply.Succeeded, moved, started);
            }
        }

        return Unit.Value;
    }

    private static Socks5ParseStatus ParseUserPass(ReadOnlySequence<byte> input, out SequencePosition consumed, out (string, string) value)
    {
        var status = Socks5Protocol.TryParseUserPass(input, out consumed, out var user, out var password);
        value = (user, password);
        return status;
    }

    private Socks5AuthMethod ChooseMethod(byte[] offered)
    {
        // Prefer username/password whenever offered: even an open proxy reads the username (it carries routing labels).
        if (Array.IndexOf(offered, (byte)Socks5AuthMethod.UsernamePassword) >= 0)
        {
            return Socks5AuthMethod.UsernamePassword;
        }

        if (!authenticator.IsRequired && Array.IndexOf(offered, (byte)Socks5AuthMethod.NoAuthentication) >= 0)
        {
            return Socks5AuthMethod.NoAuthentication;
        }

        return Socks5AuthMethod.NoAcceptableMethods;
    }

    private static async ValueTask<(Socks5ParseStatus Status, T Value)> ReadAsync<T>(PipeReader input, Parser<T> parse, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var status = parse(buffer, out var consumed, out var value);
            if (status == Socks5ParseStatus.NeedMore)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    return (Socks5ParseStatus.NeedMore, value);
                }

                continue;
            }

            input.AdvanceTo(status == Socks5ParseStatus.Done ? consumed : buffer.Start, status == Socks5ParseStatus.Done ? consumed : buffer.End);
            return (status, value);
        }
    }

    private static async ValueTask WriteAsync(PipeWriter output, byte[] bytes, CancellationToken cancellationToken)
    {
        await output.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
    }

    private static ValueTask ReplyAsync(PipeWriter output, Socks5Reply reply, CancellationToken cancellationToken) =>
        WriteAsync(output, Socks5Protocol.FormatReply(reply, null), cancellationToken);

    /// <summary>One access entry: values the connection has, no formatting (the target's text is made by the writer).</summary>
    private void WriteAccess(ConnectionContext connection, HostPort target, Socks5Reply reply, RelayResult moved, long started)
    {
        ProxyMetrics.Bytes(AccessKind.Socks5, moved.ClientToTarget, moved.TargetToClient);
        Socks5Tracing.SetReply(ProxyTracing.Current, connection, target, (int)reply);
        if (!accessLog.IsEnabled)
        {
            return;
        }

        accessLog.Write(new AccessLogEntry
        {
            Time = time.GetUtcNow(),
            Kind = AccessKind.Socks5,
            Client = connection.RemoteEndPoint,
            User = connection.Extensions.Get<ProxyUser>()?.Name,
            Method = "CONNECT",
            Authority = target,
            Status = (int)reply,
            BytesFromClient = moved.ClientToTarget,
            BytesToClient = moved.TargetToClient,
            Duration = time.GetElapsedTime(started),
            Upstream = connection.Extensions.Get<Upstream.SelectedUpstream>()?.Id,
            ConnectionId = connection.Id,
            Reason = connection.Extensions.Get<AccessRefusal>()?.Reason,
        });
    }

    private sealed class LeaseHolder : IDisposable
    {
        public Limits.LimitLease Lease { get; set; } = Limits.LimitLease.Unlimited;

        public void Dispose() => Lease.Dispose();
    }

    private Unit Reject(ConnectionContext connection, string reason)
    {
        connection.TrySetCloseReason("socks5: " + reason);
        LogRejected(logger, connection.Id, reason);
        return Unit.Value;
    }

    [LoggerMessage(EventId = 3000, Level = LogLevel.Debug, Message = "SOCKS5 connection {ConnectionId} closed: {Reason}")]
    private static partial void LogRejected(ILogger logger, long connectionId, string reason);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "SOCKS5 connection {ConnectionId}: authentication failed for user '{User}': {Reason}")]
    private static partial void LogAuthFailed(ILogger logger, long connectionId, string user, string reason);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Debug, Message = "SOCKS5 connection {ConnectionId}: {Target} refused with 0x02: {Reason}")]
    private static partial void LogUserLimited(ILogger logger, long connectionId, string target, string reason);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Debug, Message = "SOCKS5 connection {ConnectionId}: connect to {Target} failed ({Error}), replied {Reply}")]
    private static partial void LogConnectFailed(ILogger logger, long connectionId, string target, ConnectError error, Socks5Reply reply);
}
