using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Net;
using static Rama.Proxy.Http.HttpForwardRules;

namespace Rama.Proxy.Http;

/// <summary>
/// Protocol upgrades through the forwarder (RFC 9110 §7.8, RFC 6455 §4): the client's <c>Upgrade</c> passes to the
/// origin with <c>Connection: Upgrade</c>, a <c>101 Switching Protocols</c> naming a protocol the client offered is
/// relayed, and the two connections become a tunnel with the CONNECT tunnel's idle timeout and drain rules.
/// </summary>
internal sealed partial class ForwardProxyService
{
    private static readonly byte[] s_upgradeName = "Upgrade"u8.ToArray();

    /// <summary>
    /// The <c>Upgrade</c> value to send to the origin, or null when the request asks for no upgrade we pass on. RFC 9110
    /// §7.8: only an HTTP/1.1 request's Upgrade counts (a server ignores it in HTTP/1.0), and only with the "upgrade"
    /// connection option (a sender of Upgrade MUST send it). <c>h2c</c> is dropped from the list: this proxy does not speak
    /// h2 to origins over an upgrade, so such a request goes on as plain HTTP/1.1.
    /// </summary>
    internal static byte[]? UpgradeOffer(HttpRequest request)
    {
        var headers = request.Headers;
        if (request.Version != HttpProtocolVersion.Http11 || !headers.Contains(HeaderNames.Upgrade)
            || !headers.ContainsToken(HeaderNames.Connection, "upgrade"u8))
        {
            return null;
        }

        var offer = new StringBuilder();
        foreach (var field in headers)
        {
            if (!field.NameIs(HeaderNames.Upgrade))
            {
                continue;
            }

            var list = new HttpListEnumerator(field.Value.Span);
            while (list.MoveNext())
            {
                if (Ascii.EqualsIgnoreCase(ProtocolName(list.Current), "h2c"u8))
                {
                    continue;
                }

                offer.Append(offer.Length == 0 ? "" : ", ").Append(Encoding.Latin1.GetString(list.Current));
            }
        }

        return offer.Length == 0 ? null : Encoding.Latin1.GetBytes(offer.ToString());
    }

    /// <summary>
    /// RFC 9110 §7.8: a server MUST NOT switch to a protocol the client did not indicate, and a 101 MUST name what it
    /// switches to. True when <paramref name="answer"/>'s Upgrade is present and every member of it is one of
    /// <paramref name="offer"/>'s (names compare case-insensitively; a version, when both give one, must match).
    /// </summary>
    internal static bool IsOffered(ReadOnlySpan<byte> offer, HttpHeaders answer)
    {
        var any = false;
        foreach (var field in answer)
        {
            if (!field.NameIs(HeaderNames.Upgrade))
            {
                continue;
            }

            var chosen = new HttpListEnumerator(field.Value.Span);
            while (chosen.MoveNext())
            {
                any = true;
                if (!ContainsProtocol(offer, chosen.Current))
                {
                    return false;
                }
            }
        }

        return any;
    }

    private static bool ContainsProtocol(ReadOnlySpan<byte> offer, ReadOnlySpan<byte> protocol)
    {
        var list = new HttpListEnumerator(offer);
        while (list.MoveNext())
        {
            var asked = list.Current;
            if (Ascii.EqualsIgnoreCase(asked, protocol))
            {
                return true;
            }

            // "websocket" asked, "websocket" answered with no version, or the reverse: the same protocol.
            var askedHasVersion = asked.IndexOf((byte)'/') >= 0;
            var answerHasVersion = protocol.IndexOf((byte)'/') >= 0;
            if (askedHasVersion != answerHasVersion && Ascii.EqualsIgnoreCase(ProtocolName(asked), ProtocolName(protocol)))
            {
                return true;
            }
        }

        return false;
    }

    // protocol = protocol-name ["/" protocol-version] (RFC 9110 §7.8)
    private static ReadOnlySpan<byte> ProtocolName(ReadOnlySpan<byte> protocol)
    {
        var slash = protocol.IndexOf((byte)'/');
        return slash < 0 ? protocol : protocol[..slash];
    }

    /// <summary>
    /// The head of a relayed 101: hop-by-hop fields removed as for any response (RFC 9110 §7.6.1) except Upgrade,
    /// which the 101 MUST carry (§7.8; the server writes <c>Connection: Upgrade</c> beside it), and Via added (§7.6.3).
    /// </summary>
    private HttpHeaders SwitchingProtocolsHeaders(HttpHeaders origin)
    {
        var upgrades = new List<ReadOnlyMemory<byte>>(1);
        foreach (var field in origin)
        {
            if (field.NameIs(HeaderNames.Upgrade))
            {
                upgrades.Add(field.Value);
            }
        }

        RemoveHopByHop(origin);
        foreach (var value in upgrades)
        {
            origin.Add(s_upgradeName, value);
        }

        AddVia(origin);
        return origin;
    }

    /// <summary>
    /// Relays an upgraded exchange: the client's connection and <paramref name="upstream"/> (never pooled again) both
    /// ways until both end, closed after <see cref="HttpProxyOptions.TunnelIdleTimeout"/> without traffic, as a CONNECT
    /// tunnel: on the event loops when the default relay tunnel runs them there, else on the pipes. A tunnel handler that
    /// does more than relay (MITM peeks for a ClientHello) is not used: the bytes after a 101 are the new protocol's.
    /// </summary>
    private async Task<RelayResult> RelayUpgradedAsync(HttpRequest request, IDuplexPipe client, IOriginConnection upstream, HostPort target,
        CancellationToken cancellationToken)
    {
        // A TLS origin (termination re-encrypting, MITM) is relayed on the pipes: its bytes pass through the TLS stream.
        var moved = tunnel is RelayTunnel relay && request.Connection is { } connection && upstream is SocketConnection socket
            ? await relay.RunAsync(connection, client, socket, target, static _ => ValueTask.FromResult(ConnectResult.Failure(ConnectError.Refused, "no redial after an upgrade")), cancellationToken).ConfigureAwait(false)
            : await Relay.RunAsync(client, upstream, cancellationToken, _options.TunnelIdleTimeout, _time).ConfigureAwait(false);
        LogUpgradeClosed(_logger, request.Target, moved.ClientToTarget, moved.TargetToClient, moved.IdleTimedOut);
        return moved;
    }

#pragma warning disable CA1001 // as in the other part: the upload's sources are disposed in StopUploadAsync
    private sealed partial class UpstreamExchange
#pragma warning restore CA1001
    {
        /// <summary>
        /// The origin switched protocols (RFC 9110 §15.2.2): to one the client offered, or the answer is a 502 (§7.8). A
        /// request body is part of the HTTP/1.1 request, so it is sent whole before the tunnel starts; then the 101 goes
        /// to the client and both connections are relayed. The origin connection belongs to the tunnel (never pooled).
        /// </summary>
        private async ValueTask<(HttpResponse?, ForwardError, string)> SwitchProtocolsAsync(ResponseHead head, HostPort target, CancellationToken cancellationToken)
        {
            if (!IsOffered(upgrade, head.Headers))
            {
                return await AbandonAsync(ForwardError.UpstreamProtocolError,
                    $"101 switched to '{head.Headers.GetText("Upgrade")}', which the client did not offer ('{Encoding.Latin1.GetString(upgrade!)}')").ConfigureAwait(false);
            }

            try
            {
                await _upload.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpCodecException or IOException or InvalidOperationException or OperationCanceledException)
            {
                var failure = await AbandonAsync(ForwardError.UpstreamClosed, "request body failed before the switch").ConfigureAwait(false);
                if (_uploadError is HttpCodecException error && !cancellationToken.IsCancellationRequested)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error); // the client's body was bad: 400
                }

                return failure;
            }

            await StopUploadAsync().ConfigureAwait(false); // completed: only disposes its sources
            LogSwitched(owner._logger, request.Target, head.Headers.GetText("Upgrade") ?? "");

            // If the 101 never reaches the client (it went away), the origin connection is closed with it.
            var closeWithClient = cancellationToken.Register(static state =>
            {
                if (state is SocketConnection socket)
                {
                    socket.Abort("client connection closed");
                }
                else
                {
                    _ = ((IOriginConnection)state!).DisposeAsync().AsTask();
                }
            }, upstream);
            async Task<RelayResult> RunAsync(IDuplexPipe client, CancellationToken token)
            {
                try
                {
                    return await owner.RelayUpgradedAsync(request, client, upstream, target, token).ConfigureAwait(false);
                }
                finally
                {
                    await closeWithClient.DisposeAsync().ConfigureAwait(false);
                    await upstream.DisposeAsync().ConfigureAwait(false);
                }
            }

            var response = new HttpResponse(101, owner.SwitchingProtocolsHeaders(head.Headers))
            {
                Reason = head.Reason,
                OnUpgrade = RunAsync,
            };
            return (response, ForwardError.None, "");
        }
    }

    [LoggerMessage(EventId = 2040, Level = LogLevel.Debug, Message = "{Target}: switched protocols to {Protocol}; relaying both ways")]
    private static partial void LogSwitched(ILogger logger, string target, string protocol);

    [LoggerMessage(EventId = 2041, Level = LogLevel.Debug, Message = "{Target}: upgraded connection closed: {Up} bytes up, {Down} bytes down, idle timeout {IdleTimedOut}")]
    private static partial void LogUpgradeClosed(ILogger logger, string target, long up, long down, bool idleTimedOut);
}
