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
            upload?.BeginAttempt();
            try
            {
                result = await connection.SendAsync(outbound, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                await UploadEnded(upload).ConfigureAwait(false); // the send was cancelled: its stream reset, its upload stops
                return (null, ForwardError.UpstreamTimedOut, "no response head in time", upload?.BytesRead > 0);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or Http2Exception && !cancellationToken.IsCancellationRequested)
            {
                await UploadEnded(upload).ConfigureAwait(false);
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
                if (upload is not null)
                {
                    if (ReferenceEquals(response.Body, EmptyBody.Instance))
                    {
                        await upload.EndedAsync().ConfigureAwait(false); // a response ended with its head: the client reset the stream if the upload was going on
                    }
                    else
                    {
                        response.Body = new UploadFencedBody(response.Body, upload);
                    }
                }

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

            // No response: the stream was reset or the connection closed, so its upload (if one started) is stopping; the client's
            // body is read again only once it has stopped (a retry, or the server draining it).
            await UploadEnded(upload).ConfigureAwait(false);

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

    private static Task UploadEnded(UploadReader? upload) => upload?.EndedAsync() ?? Task.CompletedTask;

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
    /// The HTTP/2 client's upload runs on its own, beside the response: <see cref="EndedAsync"/> tells when it has stopped, and a
    /// read it held when it stopped (a buffer waiting for send window when the stream was reset) is given back then, so the server
    /// can read the client's connection again (drain the rest of the body, RFC 9112 §9.3; the next request) without a second
    /// reader on it.
    /// </summary>
    private sealed class UploadReader(HttpRequest inbound) : PipeReader
    {
        private ReadOnlySequence<byte> _last;
        private long _bytesRead;
        private bool _holding;
        private bool _started;
        private TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public HttpRequest? Outbound { get; set; }

        public long BytesRead => Interlocked.Read(ref _bytesRead);

        /// <summary>Before each send: the upload of that send has not started.</summary>
        public void BeginAttempt()
        {
            _started = false;
            _ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        /// <summary>
        /// Completes when the upload of the current send has stopped (the HTTP/2 client completes its body reader when its upload
        /// ends, whichever way); at once when it never started (the send opened no stream). It stops once its stream is done or
        /// reset, which the caller has seen to.
        /// </summary>
        public Task EndedAsync() => Volatile.Read(ref _started) ? _ended.Task : Task.CompletedTask;

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            // Set before the first await: the client starts its upload inside SendAsync, so a send that started one has set this.
            Volatile.Write(ref _started, true);
            return ReadCoreAsync(cancellationToken);
        }

        private async ValueTask<ReadResult> ReadCoreAsync(CancellationToken cancellationToken) =>
            Seen(await inbound.Body.ReadAsync(cancellationToken).ConfigureAwait(false));

        public override bool TryRead(out ReadResult result)
        {
            Volatile.Write(ref _started, true);
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
            _holding = true;
            if (result.IsCompleted && Outbound is { } outbound)
            {
                outbound.Trailers = inbound.Trailers; // set by the server before the body completes
            }

            return result;
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            _holding = false;
            Interlocked.Add(ref _bytesRead, _last.Slice(_last.Start, consumed).Length);
            inbound.Body.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inbound.Body.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            // The server owns the request body and completes it; what this reader still holds is given back, nothing consumed.
            if (_holding)
            {
                _holding = false;
                inbound.Body.AdvanceTo(_last.Start);
            }

            _last = default;
            _ended.TrySetResult();
        }
    }

    /// <summary>
    /// An HTTP/2 origin's response body while the request's upload may still be going: completing it (which resets the stream when
    /// the upload has not finished, <see cref="Http2ClientConnection"/>) completes only once the upload has stopped, so the server
    /// that writes the response never reads the client's connection while the upload still does.
    /// </summary>
    private sealed class UploadFencedBody(PipeReader inner, UploadReader upload) : PipeReader
    {
        private Task? _completing;

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => inner.ReadAsync(cancellationToken);

        public override bool TryRead(out ReadResult result) => inner.TryRead(out result);

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => _ = CompleteAsync(exception).AsTask();

        public override ValueTask CompleteAsync(Exception? exception = null) => new(_completing ??= CompleteCoreAsync(exception));

        private async Task CompleteCoreAsync(Exception? exception)
        {
            await inner.CompleteAsync(exception).ConfigureAwait(false);
            await upload.EndedAsync().ConfigureAwait(false);
        }
    }
}
