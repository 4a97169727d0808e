using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using static Rama.Proxy.Http.HttpForwardRules;

namespace Rama.Proxy.Http;

/// <summary>
/// A WebSocket to an HTTP/2 origin (RFC 8441): the client's HTTP/1.1 upgrade (an h2 client's extended CONNECT arrives here as
/// one too, <see cref="Http2InboundApplication"/>) becomes an extended CONNECT with <c>:protocol websocket</c> on a pooled
/// connection whose server announced SETTINGS_ENABLE_CONNECT_PROTOCOL (§3; else 502). The origin's 2xx is the client's
/// 101 (§5, with the Sec-WebSocket-Accept of the client's key, RFC 6455 §4.2.2), and the stream carries the WebSocket both
/// ways with the CONNECT tunnel's idle timeout and drain rules; any other answer goes to the client as it is.
/// </summary>
internal sealed partial class ForwardProxyService
{
    private static readonly byte[] s_websocket = "websocket"u8.ToArray();

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(HttpResponse? Response, ForwardError Error, string Detail, bool BodyBytesSent)> ForwardWebSocketHttp2Async(HttpRequest request,
        byte[] offer, HostPort key, HostPort target, string? authority, string pathAndQuery, bool tls, CancellationToken cancellationToken,
        Http2ClientConnection? first = null)
    {
        if (!ContainsProtocol(offer, s_websocket))
        {
            return (null, ForwardError.UpstreamProtocolError,
                $"the origin speaks HTTP/2, which carries no HTTP/1.1 upgrade to '{Encoding.Latin1.GetString(offer)}' (RFC 8441 tunnels websocket only)", false);
        }

        if (_http2 is null)
        {
            return (null, ForwardError.UpstreamProtocolError, "this forwarder has no HTTP/2 pool", false);
        }

        if (request.BodyFraming == BodyFraming.Chunked || (request.BodyFraming == BodyFraming.ContentLength && request.ContentLength > 0))
        {
            return (null, ForwardError.UpstreamProtocolError, "a WebSocket handshake with a request body cannot become an extended CONNECT", false);
        }

        for (var attempt = 0; attempt < Http2Attempts; attempt++)
        {
            var connection = first;
            first = null;
            if (connection is null)
            {
                var got = await _http2.GetAsync(key, () => DialHttp2Async(request, target, tls), cancellationToken).ConfigureAwait(false);
                if (got.Connection is null)
                {
                    return (null, got.Error, got.Detail, false);
                }

                connection = got.Connection;
            }

            var up = new Pipe();
            var outbound = ExtendedConnectFor(request, target, authority, pathAndQuery, tls, up.Reader);
            var timeout = _timeouts.Rent(_options.UpstreamResponseHeaderTimeout);
            var clientGone = cancellationToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timeout);
            Http2ClientResult result;
            try
            {
                result = await connection.SendAsync(outbound, timeout.Token).ConfigureAwait(false);
            }
            catch (NotSupportedException)
            {
                await up.Writer.CompleteAsync().ConfigureAwait(false);
                return (null, ForwardError.UpstreamProtocolError,
                    "the HTTP/2 origin did not announce SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3): it takes no WebSocket", false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                await up.Writer.CompleteAsync().ConfigureAwait(false);
                return (null, ForwardError.UpstreamTimedOut, "no response head in time", false);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or Http2Exception && !cancellationToken.IsCancellationRequested)
            {
                await up.Writer.CompleteAsync().ConfigureAwait(false);
                return (null, ForwardError.UpstreamClosed, "HTTP/2: " + ex.Message, false);
            }
            finally
            {
                clientGone.Dispose();
                _timeouts.Return(timeout);
            }

            if (result.Response is not { } response)
            {
                await up.Writer.CompleteAsync().ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
                if (result.IsRetryable)
                {
                    LogHttp2Retry(_logger, request.Method, request.Target, attempt + 1);
                    continue;
                }

                return (null, ForwardError.UpstreamClosed, result.Error == Http2ClientError.StreamReset
                    ? $"the origin reset the extended CONNECT ({result.ResetCode})" : "the HTTP/2 connection closed before a response head", false);
            }

            RemoveHopByHop(response.Headers);
            if (response.Status is < 200 or >= 300)
            {
                // RFC 8441 §5: the origin refused the WebSocket; its answer is an ordinary response, and our side of the stream ends.
                await up.Writer.CompleteAsync().ConfigureAwait(false);
                AddVia(response.Headers);
                return (response, ForwardError.None, "", false);
            }

            return (SwitchedOverHttp2(request, response, up.Writer, cancellationToken), ForwardError.None, "", false);
        }

        return (null, ForwardError.UpstreamClosed, $"the extended CONNECT was refused unprocessed {Http2Attempts} times", false);
    }

    // The client's 101 for the origin's 2xx (RFC 8441 §5, RFC 6455 §4.2.2), and the relay of the stream once it is written.
    private HttpResponse SwitchedOverHttp2(HttpRequest request, HttpResponse origin, PipeWriter up, CancellationToken clientGone)
    {
        var headers = new HttpHeaders(origin.Headers.Count + 3);
        foreach (var field in origin.Headers)
        {
            if (!field.NameIs(HeaderNames.ContentLength))
            {
                headers.Add(field.Name, field.Value);
            }
        }

        headers.Add(s_upgradeName, s_websocket);
        if (request.Headers.GetText("Sec-WebSocket-Key") is { } key)
        {
#pragma warning disable CA5350 // RFC 6455 §4.2.2 defines the accept value with SHA-1: a handshake check, not security
            var accept = SHA1.HashData(Encoding.ASCII.GetBytes(key.Trim() + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
#pragma warning restore CA5350
            headers.Add("Sec-WebSocket-Accept"u8.ToArray(), Encoding.ASCII.GetBytes(Convert.ToBase64String(accept)));
        }

        AddVia(headers);
        var stream = new StreamPipe(origin.Body, up);
        LogSwitched(_logger, request.Target, "websocket (RFC 8441 extended CONNECT)");

        // If the 101 never reaches the client (it went away), the origin's stream is cancelled with it.
        var closeWithClient = clientGone.Register(static state => ((PipeReader)state!).Complete(), origin.Body);
        return new HttpResponse(101, headers) { OnUpgrade = RunAsync };

        async Task<RelayResult> RunAsync(IDuplexPipe client, CancellationToken token)
        {
            var moved = default(RelayResult);
            try
            {
                await closeWithClient.DisposeAsync().ConfigureAwait(false);
                moved = await Relay.RunAsync(client, stream, token, _options.TunnelIdleTimeout, _time).ConfigureAwait(false);
                return moved;
            }
            finally
            {
                // Ends the stream whichever side stopped: END_STREAM up, the origin's DATA no longer read (RST_STREAM(CANCEL) if open).
                await up.CompleteAsync().ConfigureAwait(false);
                await origin.Body.CompleteAsync().ConfigureAwait(false);
                LogUpgradeClosed(_logger, request.Target, moved.ClientToTarget, moved.TargetToClient, moved.IdleTimedOut);
            }
        }
    }

    /// <summary>
    /// The extended CONNECT (RFC 8441 §4, §5): :method CONNECT, :protocol websocket, :scheme, :path and :authority as for a
    /// request; the handshake's fields pass except those HTTP/2 does not use (Sec-WebSocket-Key, and the connection-specific
    /// ones: Connection, Upgrade; RFC 9113 §8.2.2), Via added. Its body is the client's side of the WebSocket.
    /// </summary>
    private HttpRequest ExtendedConnectFor(HttpRequest request, HostPort target, string? authority, string pathAndQuery, bool tls, PipeReader up)
    {
        var source = request.Headers;
        var headers = new HttpHeaders(source.Count + 2);
        var namesOtherFields = NamesOtherFields(source);
        var host = authority;
        foreach (var field in source)
        {
            if (field.NameIs(HeaderNames.Host))
            {
                host ??= Encoding.Latin1.GetString(field.Value.Span);
                continue;
            }

            if (IsDropped(source, namesOtherFields, field) || field.NameIs(HeaderNames.ContentLength) || field.NameIs("Sec-WebSocket-Key"u8))
            {
                continue;
            }

            headers.Add(field.Name, field.Value);
        }

        host ??= target.ToString();
        headers.Insert(0, "host"u8.ToArray(), Encoding.Latin1.GetBytes(host)); // sent as :authority
        AddVia(headers);
        var outbound = new HttpRequest(HttpMethods.Connect, pathAndQuery, RequestTargetForm.Origin, HttpProtocolVersion.Http2, headers) { Body = up };
        outbound.Extensions.Set(new Http2RequestInfo(0, tls ? "https" : "http", host, "websocket"));
        return outbound;
    }

    private sealed class StreamPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
