using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using static Rama.Proxy.Http.HttpForwardRules;

namespace Rama.Proxy.Http;

/// <summary>
/// Forwarding over HTTP/2 to an origin (an h2c upstream, or an https one whose ALPN chose h2): the request becomes a stream on a
/// pooled <see cref="Http2ClientConnection"/>, its body streams up with flow control and its trailers follow, the response
/// streams back with its trailers (gRPC's grpc-status). Cancellation passes on: the client going away before the response head
/// cancels the send, and a response body the server stops reading resets the stream, both with RST_STREAM(CANCEL).
/// </summary>
internal sealed partial class ForwardProxyService
{
    /// <summary>Sends of one request at most (the first and two more) when the origin refuses it unprocessed (GOAWAY, REFUSED_STREAM; RFC 9113 §8.7).</summary>
    private const int Http2Attempts = 3;

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(HttpResponse? Response, ForwardError Error, string Detail, bool BodyBytesSent)> ForwardHttp2Async(HttpRequest request, HostPort key,
        HostPort target, string? authority, string pathAndQuery, bool tls, CancellationToken cancellationToken, Http2ClientConnection? first = null)
    {
        if (_http2 is null)
        {
            return (null, ForwardError.UpstreamProtocolError, "this forwarder has no HTTP/2 pool", false);
        }

        var upload = request.BodyFraming == BodyFraming.None && ReferenceEquals(request.Body, EmptyBody.Instance) ? null : new UploadReader(request);
        var outbound = Http2RequestFor(request, target, authority, pathAndQuery, upload);
        var lastDetail = "";
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

            var timeout = _timeouts.Rent(_options.UpstreamResponseHeaderTimeout);
            var clientGone = cancellationToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timeout);
            Http2ClientResult result;
            try
            {
                result = await connection.SendAsync(outbound, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return (null, ForwardError.UpstreamTimedOut, "no response head in time", upload?.BytesRead > 0);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or Http2Exception && !cancellationToken.IsCancellationRequested)
            {
                return (null, ForwardError.UpstreamClosed, "HTTP/2: " + ex.Message, upload?.BytesRead > 0);
            }
            finally
            {
                clientGone.Dispose();
                _timeouts.Return(timeout); // a source that fired is disposed there
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (result.Response is { } response)
            {
                // RFC 9110 §7.6.1 / RFC 9113 §8.2.2: nothing connection-specific goes back; Via added (§7.6.3).
                RemoveHopByHop(response.Headers);
                AddVia(response.Headers);
                if (request.Version == HttpProtocolVersion.Http11 && !request.IsHead && request.Headers.ContainsToken(HeaderNames.TE, "trailers"u8))
                {
                    // RFC 9110 §10.1.4: this HTTP/1.1 client accepts trailers, which only a chunked body carries (RFC 9112 §7.1.2):
                    // the origin's length is dropped so its trailers (HEADERS after DATA) reach the client.
                    response.BodyLength = null;
                }

                return (response, ForwardError.None, "", upload?.BytesRead > 0);
            }

            // RFC 9113 §8.7: a request the origin did not process goes again on another connection, when none of its body is gone.
            if (result.IsRetryable && (upload is null || upload.BytesRead == 0))
            {
                LogHttp2Retry(_logger, request.Method, request.Target, attempt + 1);
                lastDetail = "refused unprocessed (GOAWAY or REFUSED_STREAM)";
                continue;
            }

            return result.Error switch
            {
                Http2ClientError.StreamReset => (null, ForwardError.UpstreamClosed, $"the origin reset the stream ({result.ResetCode})", upload?.BytesRead > 0),
                Http2ClientError.Retryable => (null, ForwardError.UpstreamClosed, "refused unprocessed after part of the body was sent", true),
                _ => (null, ForwardError.UpstreamClosed, "the HTTP/2 connection closed before a response head", upload?.BytesRead > 0),
            };
        }

        return (null, ForwardError.UpstreamClosed, $"{lastDetail}, {Http2Attempts} times", false);
    }

    // A new HTTP/2 connection: TCP (h2c, prior knowledge) or TLS that must have chosen h2. Runs for every request waiting on it, so
    // without a caller's token; the connector and the TLS handshake bound it in time.
    private async Task<(Http2ClientConnection? Connection, ForwardError Error, string Detail)> DialHttp2Async(HttpRequest request, HostPort target, bool tls)
    {
        var dial = await connector.ConnectAsync(target, request.Extensions, CancellationToken.None).ConfigureAwait(false);
        if (!dial.IsSuccess)
        {
            var error = ErrorFor(dial.Error);
            return (null, error, error == ForwardError.UpstreamBusy ? dial.Detail ?? "every upstream is at its limit" : Describe(dial));
        }

        IOriginConnection origin = dial.Connection!;
        if (tls)
        {
            var secured = await secure!(request, target, dial.Connection!, CancellationToken.None).ConfigureAwait(false);
            if (secured.Connection is null)
            {
                return (null, secured.Error, secured.Detail);
            }

            if (!secured.IsHttp2)
            {
                await secured.Connection.DisposeAsync().ConfigureAwait(false);
                return (null, ForwardError.UpstreamProtocolError, "the origin no longer chooses h2 by ALPN");
            }

            origin = secured.Connection;
        }

        return (StartHttp2(origin, tls ? "https" : "http"), ForwardError.None, "");
    }

    /// <summary>Starts the client role over <paramref name="origin"/>; the origin connection is closed when the HTTP/2 connection ends.</summary>
    private Http2ClientConnection StartHttp2(IOriginConnection origin, string scheme) =>
        Http2ClientConnection.StartOwning(origin, new Http2ClientOptions { Scheme = scheme }, _logger, _time);

    /// <summary>
    /// The request for the origin (RFC 9113 §8.2.2, §8.3.1): connection-specific fields removed by the shared rule (Connection and
    /// the fields it names, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade), TE only as "trailers" (gRPC needs it),
    /// :authority from <paramref name="authority"/> or the client's Host, :path the origin-form target, Via added.
    /// </summary>
    private HttpRequest Http2RequestFor(HttpRequest request, HostPort target, string? authority, string pathAndQuery, UploadReader? upload)
    {
        var source = request.Headers;
        var headers = new HttpHeaders(source.Count + 2);
        var namesOtherFields = NamesOtherFields(source);
        string? host = authority;
        foreach (var field in source)
        {
            if (field.NameIs(HeaderNames.Host))
            {
                host ??= System.Text.Encoding.Latin1.GetString(field.Value.Span);
                continue;
            }

            if (IsDropped(source, namesOtherFields, field)
                || (field.NameIs(HeaderNames.ContentLength) && request.BodyFraming != BodyFraming.ContentLength))
            {
                continue;
            }

            headers.Add(field.Name, field.Value);
        }

        host ??= request.Extensions.Get<Http2RequestInfo>()?.Authority ?? target.ToString();
        headers.Insert(0, "host"u8.ToArray(), System.Text.Encoding.Latin1.GetBytes(host)); // the client sends it as :authority
        if (source.ContainsToken(HeaderNames.TE, "trailers"u8))
        {
            headers.Add("te"u8.ToArray(), "trailers"u8.ToArray());
        }

        AddVia(headers);
        var outbound = new HttpRequest(request.Method, request.IsConnect ? request.Target : pathAndQuery,
            request.IsConnect ? RequestTargetForm.Authority : RequestTargetForm.Origin, HttpProtocolVersion.Http2, headers)
        {
            BodyFraming = request.BodyFraming,
            ContentLength = request.ContentLength,
        };
        if (upload is not null)
        {
            upload.Outbound = outbound;
            outbound.Body = upload;
        }

        return outbound;
    }

    [LoggerMessage(EventId = 2014, Level = LogLevel.Debug, Message = "{Method} {Target}: the HTTP/2 origin refused the request unprocessed; sending it again (attempt {Attempt})")]
    private static partial void LogHttp2Retry(ILogger logger, string method, string target, int attempt);

    /// <summary>
    /// The client's request body as the HTTP/2 client reads it: counts what went up (a retry is safe only at zero), hands the
    /// client's trailers over when the body ends, and leaves completing the client's body to the server that owns it.
    /// </summary>
    private sealed class UploadReader(HttpRequest inbound) : PipeReader
    {
        private ReadOnlySequence<byte> _last;
        private long _bytesRead;

        public HttpRequest? Outbound { get; set; }

        public long BytesRead => Interlocked.Read(ref _bytesRead);

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) =>
            Seen(await inbound.Body.ReadAsync(cancellationToken).ConfigureAwait(false));

        public override bool TryRead(out ReadResult result)
        {
            var read = inbound.Body.TryRead(out result);
            if (read)
            {
                result = Seen(result);
            }

            return read;
        }

        private ReadResult Seen(ReadResult result)
        {
            _last = result.Buffer;
            if (result.IsCompleted && Outbound is { } outbound)
            {
                outbound.Trailers = inbound.Trailers; // set by the server before the body completes
            }

            return result;
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            Interlocked.Add(ref _bytesRead, _last.Slice(_last.Start, consumed).Length);
            inbound.Body.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inbound.Body.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            // the server owns the request body
        }
    }
}
