using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>Why forwarding did not produce the origin's answer: expected outcomes, as values (YARP's ForwarderError).</summary>
public enum ForwardError
{
    None,
    /// <summary>The target could not be dialled (refused, unreachable, name does not resolve): 502.</summary>
    ConnectFailed,
    /// <summary>The dial timed out: 504.</summary>
    ConnectTimedOut,
    /// <summary>Our egress policy forbids the target: 403.</summary>
    NotAllowed,
    /// <summary>The origin's answer was not HTTP/1.1: 502.</summary>
    UpstreamProtocolError,
    /// <summary>The origin closed or reset before a response head: 502.</summary>
    UpstreamClosed,
    /// <summary>No response head within the upstream timeout: 504.</summary>
    UpstreamTimedOut,
    /// <summary>The client sent a target this proxy does not serve: 400.</summary>
    BadTarget,
    /// <summary>Every upstream that could carry the request is at its connection or rate limit: 503 with Retry-After and the limit named.</summary>
    UpstreamBusy,
}

/// <summary>
/// The forward proxy as a request service (RFC 9110 §7.6, RFC 9112 §3.2.2/§3.2.3): CONNECT opens a
/// tunnel; an absolute-form request is forwarded in origin-form over a pooled connection; anything
/// else is refused with 400 (a reverse proxy is another service).
/// </summary>
internal sealed partial class ForwardProxyService(HttpProxyOptions options, ITcpConnector connector, Http1ConnectionPool pool, ILogger logger, TimeProvider time,
    ITunnelHandler? tunnel = null)
    : Core.IService<HttpRequest, HttpResponse>
{
    private static readonly byte[] s_hostName = "Host"u8.ToArray();
    private static readonly byte[] s_viaName = "Via"u8.ToArray();
    private static readonly byte[] s_transferEncodingName = "Transfer-Encoding"u8.ToArray();
    private static readonly byte[] s_chunked = "chunked"u8.ToArray();
    private readonly byte[]? _via = options.Via is null ? null : Encoding.ASCII.GetBytes(options.Via);
    private readonly HttpProxyOptions _options = options;
    private readonly Http1ConnectionPool _pool = pool;
    private readonly ILogger _logger = logger;
    private readonly TimeProvider _time = time;
    private readonly Core.TimeoutSources _timeouts = new(time);

    public ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (request.IsConnect)
        {
            return ConnectAsync(request, cancellationToken);
        }

        if (request.TargetForm != RequestTargetForm.Absolute)
        {
            return ValueTask.FromResult(Fail(request, ForwardError.BadTarget, "this is a forward proxy: send an absolute-form target or CONNECT"));
        }

        if (!TrySplitAbsoluteTarget(request.Target, out var target, out var authority, out var pathAndQuery))
        {
            return ValueTask.FromResult(Fail(request, ForwardError.BadTarget, "only http:// targets with a valid authority are forwarded"));
        }

        return ForwardAsync(request, target, authority, pathAndQuery, cancellationToken);
    }

    // ---- CONNECT ------------------------------------------------------------------------------

    private async ValueTask<HttpResponse> ConnectAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        if (!HostPort.TryParse(request.Target, 0, out var target))
        {
            return Fail(request, ForwardError.BadTarget, "CONNECT needs host:port");
        }

        var dial = await connector.ConnectAsync(target.Value, request.Extensions, cancellationToken).ConfigureAwait(false);
        if (!dial.IsSuccess)
        {
            return DialFailed(request, dial);
        }

        var upstream = dial.Connection!;

        // A tunnel handler that needs the target again (MITM after the origin closed) dials it as the CONNECT was dialled: same request bag, so same upstream.
        ValueTask<ConnectResult> Redial(CancellationToken token) => connector.ConnectAsync(target.Value, request.Extensions, token);

        // Safety net: if the 200 never reaches the client (it went away), the tunnel's target is closed with it.
        var closeWithClient = cancellationToken.Register(static state => ((SocketConnection)state!).Abort("client connection closed"), upstream);
        // The tunnel's task is a Task<RelayResult>: the HTTP server reads the bytes moved for the access log.
        async Task<RelayResult> RunTunnelAsync(System.IO.Pipelines.IDuplexPipe client, CancellationToken token)
        {
            try
            {
                // Bytes the client pipelined after the CONNECT head are still in its input: the relay forwards them first.
                var moved = tunnel is not null && request.Connection is { } connection
                    ? await tunnel.RunAsync(connection, client, upstream, target.Value, Redial, token).ConfigureAwait(false)
                    : await Relay.RunAsync(client, upstream, token, _options.TunnelIdleTimeout, _time).ConfigureAwait(false);
                LogTunnelClosed(_logger, target.Value.ToString(), moved.ClientToTarget, moved.TargetToClient);
                return moved;
            }
            finally
            {
                await closeWithClient.DisposeAsync().ConfigureAwait(false);
                await upstream.DisposeAsync().ConfigureAwait(false);
            }
        }

        return new HttpResponse(200)
        {
            Reason = "Connection established",
            OnUpgrade = RunTunnelAsync,
        };
    }

    // ---- absolute-form forwarding -------------------------------------------------------------

    /// <summary>
    /// Forwards <paramref name="request"/> to <paramref name="target"/> over a pooled connection. With an
    /// <paramref name="authority"/> Host is set to it (forward proxy, RFC 9112 §3.2.2); with null the
    /// client's Host is kept (reverse proxy) and only added, as the target's authority, when missing.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<HttpResponse> ForwardAsync(HttpRequest request, HostPort target, string? authority, string pathAndQuery, CancellationToken cancellationToken)
    {
        var (response, error, detail, _) = await TryForwardAsync(request, target, authority, pathAndQuery, cancellationToken).ConfigureAwait(false);
        return response ?? (error == ForwardError.UpstreamBusy ? Busy(request, detail) : Fail(request, error, detail));
    }

    /// <summary>
    /// <see cref="ForwardAsync"/> with the failure as a value instead of an error response: the reverse proxy's routing
    /// retries on another destination and ejects the failed one. <c>BodyBytesSent</c>: whether any request-body byte
    /// reached the origin (a retry elsewhere is safe only without one, RFC 9110 §9.2.2).
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<(HttpResponse? Response, ForwardError Error, string Detail, bool BodyBytesSent)> TryForwardAsync(HttpRequest request, HostPort target,
        string? authority, string pathAndQuery, CancellationToken cancellationToken)
    {
        var key = Http1ConnectionPool.Key(target, request.Extensions.Get<ConnectionPoolPartition>());
        var retryable = HttpMethods.IsIdempotent(request.Method);
        while (true)
        {
            var upstream = _pool.TryTake(key);
            var reused = upstream is not null;
            if (upstream is null)
            {
                var dial = await connector.ConnectAsync(target, request.Extensions, cancellationToken).ConfigureAwait(false);
                if (!dial.IsSuccess)
                {
                    return dial.Error switch
                    {
                        ConnectError.TimedOut => (null, ForwardError.ConnectTimedOut, dial.Detail ?? "connect timed out", false),
                        ConnectError.NotAllowed => (null, ForwardError.NotAllowed, dial.Detail ?? "destination not allowed", false),
                        ConnectError.Busy => (null, ForwardError.UpstreamBusy, dial.Detail ?? "every upstream is at its limit", false),
                        _ => (null, ForwardError.ConnectFailed, $"{dial.Error}: {dial.Detail}", false),
                    };
                }

                upstream = dial.Connection!;
            }

            var exchange = new UpstreamExchange(this, request, upstream, key);
            var outcome = await exchange.SendAsync(pathAndQuery, target, authority, cancellationToken).ConfigureAwait(false);
            if (outcome.Response is not null)
            {
                return (outcome.Response, ForwardError.None, "", exchange.BodyBytesSent > 0);
            }

            // RFC 9110 §9.2.2 / RFC 9112 §9.3.1: a pooled connection the origin closed before
            // answering; retry on a fresh one only if idempotent and no body byte was sent.
            if (outcome.Error == ForwardError.UpstreamClosed && reused && retryable && exchange.BodyBytesSent == 0)
            {
                LogRetry(_logger, request.Method, request.Target);
                continue;
            }

            return (null, outcome.Error, outcome.Detail, exchange.BodyBytesSent > 0);
        }
    }

    /// <summary>
    /// The request head for the origin, written straight to <paramref name="output"/> (no copy of the field list):
    /// hop-by-hop fields removed (RFC 9110 §7.6.1), Host set to <paramref name="authority"/> or added first as the
    /// target's when missing (RFC 9112 §3.2.2), framing normalised (one Content-Length with the parsed value, or
    /// Transfer-Encoding: chunked), Via added (§7.6.3); the order and case of everything else kept.
    /// </summary>
    private void WriteUpstreamRequestHead(PipeWriter output, HttpRequest request, string pathAndQuery, HostPort target, string? authority)
    {
        var source = request.Headers;
        Http1Writer.WriteLatin1(output, request.Method);
        output.Write(" "u8);
        Http1Writer.WriteLatin1(output, pathAndQuery);
        output.Write(" HTTP/1.1\r\n"u8);
        if (!source.Contains(HeaderNames.Host))
        {
            WriteTextField(output, s_hostName, authority ?? target.ToString());
        }

        var namesOtherFields = NamesOtherFields(source);
        var wroteLength = false;
        foreach (var field in source)
        {
            if (IsDropped(source, namesOtherFields, field))
            {
                continue;
            }

            if (authority is not null && field.NameIs(HeaderNames.Host))
            {
                WriteTextField(output, field.Name.Span, authority);
                continue;
            }

            if (request.BodyFraming == BodyFraming.ContentLength && field.NameIs(HeaderNames.ContentLength))
            {
                // One Content-Length with the value we parsed ("5, 5" or repeated lines become one).
                if (!wroteLength)
                {
                    output.Write(field.Name.Span);
                    output.Write(": "u8);
                    Http1Writer.WriteNumber(output, request.ContentLength);
                    output.Write("\r\n"u8);
                    wroteLength = true;
                }

                continue;
            }

            Http1Writer.WriteField(output, field.Name.Span, field.Value.Span);
        }

        if (request.BodyFraming == BodyFraming.Chunked)
        {
            Http1Writer.WriteField(output, s_transferEncodingName, s_chunked);
        }

        if (_via is not null)
        {
            Http1Writer.WriteField(output, s_viaName, _via);
        }

        output.Write("\r\n"u8);
    }

    private static void WriteTextField(PipeWriter output, ReadOnlySpan<byte> name, string value)
    {
        output.Write(name);
        output.Write(": "u8);
        Http1Writer.WriteLatin1(output, value);
        output.Write("\r\n"u8);
    }

    private void AddVia(HttpHeaders headers)
    {
        if (_via is not null)
        {
            headers.Add(s_viaName, _via);
        }
    }

    /// <summary>RFC 9110 §7.6.1: drop Connection, the fields it names, and the known connection-specific fields.</summary>
    internal static HttpHeaders CopyEndToEnd(HttpHeaders source)
    {
        var copy = new HttpHeaders(source.Count + 2);
        var namesOtherFields = NamesOtherFields(source);
        foreach (var field in source)
        {
            if (!IsDropped(source, namesOtherFields, field))
            {
                copy.Add(field.Name, field.Value);
            }
        }

        return copy;
    }

    /// <summary>The same rule as <see cref="CopyEndToEnd"/>, applied in place to fields this proxy owns (a parsed response head).</summary>
    internal static void RemoveHopByHop(HttpHeaders headers)
    {
        var namesOtherFields = NamesOtherFields(headers);
        Span<bool> drop = headers.Count <= 128 ? stackalloc bool[headers.Count] : new bool[headers.Count];
        for (var i = 0; i < headers.Count; i++)
        {
            drop[i] = IsDropped(headers, namesOtherFields, headers[i]); // decided before any removal: Connection names fields
        }

        for (var i = headers.Count - 1; i >= 0; i--)
        {
            if (drop[i])
            {
                headers.RemoveAt(i);
            }
        }
    }

    // The one rule of all three: a known connection-specific field, or one that Connection / Proxy-Connection names.
    internal static bool IsDropped(HttpHeaders source, bool namesOtherFields, HttpHeaderField field) =>
        IsHopByHop(field) || (namesOtherFields && IsNamedByConnection(source, field.Name.Span));

    private static bool IsHopByHop(HttpHeaderField field) =>
        field.NameIs(HeaderNames.Connection) || field.NameIs(HeaderNames.ProxyConnection) || field.NameIs(HeaderNames.KeepAlive)
        || field.NameIs(HeaderNames.TE) || field.NameIs(HeaderNames.TransferEncoding) || field.NameIs(HeaderNames.Trailer)
        || field.NameIs(HeaderNames.Upgrade) || field.NameIs(HeaderNames.ProxyAuthorization) || field.NameIs(HeaderNames.ProxyAuthenticate);

    /// <summary>
    /// Whether Connection / Proxy-Connection name any field to drop: not when they carry only "close" and
    /// "keep-alive" (the usual case; Keep-Alive is dropped as hop-by-hop anyway), so the per-field check is skipped.
    /// </summary>
    internal static bool NamesOtherFields(HttpHeaders headers)
    {
        foreach (var field in headers)
        {
            if (field.NameIs(HeaderNames.Connection) || field.NameIs(HeaderNames.ProxyConnection))
            {
                var list = new HttpListEnumerator(field.Value.Span);
                while (list.MoveNext())
                {
                    if (!Ascii.EqualsIgnoreCase(list.Current, "close"u8) && !Ascii.EqualsIgnoreCase(list.Current, "keep-alive"u8))
                    {
                        return true;
                    }
                }
            }
        }

        return false;
    }

    private static bool IsNamedByConnection(HttpHeaders headers, ReadOnlySpan<byte> name)
    {
        // Never let Connection strip the fields that frame the message or route it (request smuggling).
        if (Ascii.EqualsIgnoreCase(name, HeaderNames.ContentLength) || Ascii.EqualsIgnoreCase(name, HeaderNames.Host))
        {
            return false;
        }

        return headers.ContainsToken(HeaderNames.Connection, name) || headers.ContainsToken(HeaderNames.ProxyConnection, name);
    }

    /// <summary>Splits <c>http://authority/path?query</c>; the authority keeps its text for Host.</summary>
    internal static bool TrySplitAbsoluteTarget(string target, out HostPort hostPort, out string authority, out string pathAndQuery)
    {
        hostPort = default;
        authority = "";
        pathAndQuery = "/";
        const string scheme = "http://";
        if (!target.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var rest = target.AsSpan(scheme.Length);
        var end = rest.IndexOfAny('/', '?', '#');
        var authoritySpan = end < 0 ? rest : rest[..end];
        if (authoritySpan.IsEmpty || authoritySpan.Contains('@') || !HostPort.TryParse(authoritySpan, 80, out var parsed))
        {
            return false; // RFC 9110 §4.2.4: userinfo in an http URI is deprecated; we refuse it
        }

        hostPort = parsed.Value;
        authority = authoritySpan.ToString();
        if (end >= 0)
        {
            var path = rest[end..];
            var fragment = path.IndexOf('#');
            path = fragment >= 0 ? path[..fragment] : path;
            pathAndQuery = path.IsEmpty ? "/" : path[0] == '?' ? "/" + path.ToString() : path.ToString();
        }

        return true;
    }

    // ---- errors as values ---------------------------------------------------------------------

    private HttpResponse DialFailed(HttpRequest request, ConnectResult dial) => dial.Error switch
    {
        ConnectError.TimedOut => Fail(request, ForwardError.ConnectTimedOut, dial.Detail ?? "connect timed out"),
        ConnectError.NotAllowed => Fail(request, ForwardError.NotAllowed, dial.Detail ?? "destination not allowed"),
        ConnectError.Busy => Busy(request, dial.Detail ?? "every upstream is at its limit"),
        _ => Fail(request, ForwardError.ConnectFailed, $"{dial.Error}: {dial.Detail}"),
    };

    // The body names the limit (a client that pays for a plan needs to know which); Retry-After: the rate's next token or 1 s.
    private HttpResponse Busy(HttpRequest request, string detail)
    {
        _ = Fail(request, ForwardError.UpstreamBusy, detail); // the debug line
        var response = HttpResponse.Text(503, "Service Unavailable: " + detail);
        response.Headers.Add("Retry-After", "1");
        return response;
    }

    internal HttpResponse Fail(HttpRequest request, ForwardError error, string detail)
    {
        var status = StatusFor(error);
        LogForwardFailed(_logger, request.Method, request.Target, error, status, detail);
        return HttpResponse.Text(status, $"{ReasonPhrases.For(status)}: {error}");
    }

    public static int StatusFor(ForwardError error) => error switch
    {
        ForwardError.ConnectTimedOut or ForwardError.UpstreamTimedOut => 504,
        ForwardError.NotAllowed => 403,
        ForwardError.UpstreamBusy => 503,
        ForwardError.BadTarget => 400,
        ForwardError.None => 200,
        _ => 502,
    };

    [LoggerMessage(EventId = 2010, Level = LogLevel.Debug, Message = "{Method} {Target}: {Error} -> {Status} ({Detail})")]
    private static partial void LogForwardFailed(ILogger logger, string method, string target, ForwardError error, int status, string detail);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Debug, Message = "{Method} {Target}: pooled connection was closed by the origin; retrying on a new one")]
    private static partial void LogRetry(ILogger logger, string method, string target);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Debug, Message = "Tunnel to {Target} closed: {Up} bytes up, {Down} bytes down")]
    private static partial void LogTunnelClosed(ILogger logger, string target, long up, long down);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Debug, Message = "Upstream {Target}: response body ended early or failed ({Detail})")]
    private static partial void LogUpstreamBodyFailed(ILogger logger, string target, string detail);

    /// <summary>One request/response over one origin connection; owns the connection until the response body completes.</summary>
#pragma warning disable CA1001 // _uploadCancel/_uploadFailed are disposed in StopUploadAsync, which every path reaches (AbandonAsync or FinishAsync)
    private sealed class UpstreamExchange(ForwardProxyService owner, HttpRequest request, SocketConnection upstream, HostPort key)
    {
        // Created only for a request with a body (most requests have none: no allocation then).
        private CancellationTokenSource? _uploadCancel;
        private CancellationTokenSource? _uploadFailed;
        private Exception? _uploadError;
        private Task<long> _upload = Task.FromResult(0L);
        private long _bodyBytesSent;

        public long BodyBytesSent => Interlocked.Read(ref _bodyBytesSent);

        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
        public async ValueTask<(HttpResponse? Response, ForwardError Error, string Detail)> SendAsync(string pathAndQuery, HostPort target, string? authority, CancellationToken cancellationToken)
        {
            ResponseHead? head;
            try
            {
                owner.WriteUpstreamRequestHead(upstream.Output, request, pathAndQuery, target, authority);
                var flush = await upstream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flush.IsCompleted)
                {
                    return await AbandonAsync(ForwardError.UpstreamClosed, "origin stopped reading").ConfigureAwait(false);
                }

                // The body goes up while we wait for the answer: an origin may answer early (RFC 9112 §9.3).
                if (request.BodyFraming != BodyFraming.None)
                {
                    _uploadCancel = new CancellationTokenSource();
                    _uploadFailed = new CancellationTokenSource();
                    _upload = UploadAsync(cancellationToken);
                }

                // One pooled timer source per exchange; the client's token and a failed upload cancel it too
                // (registrations instead of a linked source: no second allocation per request).
                var timeout = owner._timeouts.Rent(owner._options.UpstreamResponseHeaderTimeout);
                var clientGone = cancellationToken.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timeout);
                var uploadBroke = _uploadFailed?.Token.UnsafeRegister(static s => ((CancellationTokenSource)s!).Cancel(), timeout) ?? default;
                try
                {
                    head = await ReadResponseHeadAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (_uploadFailed?.IsCancellationRequested == true && !cancellationToken.IsCancellationRequested)
                {
                    // The client's body broke (bad chunk, reset) before the origin answered: the client's fault
                    // is answered to the client (400 via the server), the origin connection is dropped.
                    var failure = await AbandonAsync(ForwardError.UpstreamClosed, "request body failed").ConfigureAwait(false);
                    if (_uploadError is { } error)
                    {
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
                    }

                    return failure;
                }
                catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    return await AbandonAsync(ForwardError.UpstreamTimedOut, "no response head in time").ConfigureAwait(false);
                }
                finally
                {
                    clientGone.Dispose();
                    uploadBroke.Dispose();
                    owner._timeouts.Return(timeout);
                }
            }
            catch (HttpCodecException ex) when (!ReferenceEquals(ex, _uploadError))
            {
                return await AbandonAsync(ForwardError.UpstreamProtocolError, ex.Message).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException && !ReferenceEquals(ex, _uploadError))
            {
                return await AbandonAsync(ForwardError.UpstreamClosed, ex.Message).ConfigureAwait(false);
            }
            catch (Exception ex) when (!ReferenceEquals(ex, _uploadError))
            {
                await AbandonAsync(ForwardError.UpstreamClosed, "cancelled").ConfigureAwait(false);
                throw;
            }

            if (head is null)
            {
                return await AbandonAsync(ForwardError.UpstreamClosed, "closed before a response").ConfigureAwait(false);
            }

            var body = new Http1BodyReader(upstream.Input, head.Framing, head.ContentLength, owner._options.Limits);
            var reusable = head.KeepAlive && head.Framing != BodyFraming.UntilClose; // before the Connection field goes
            body.OnCompleted(reachedEnd => FinishAsync(reachedEnd && reusable));
            var responseHeaders = head.Headers; // parsed for this exchange only: trimmed in place, not copied
            RemoveHopByHop(responseHeaders);
            owner.AddVia(responseHeaders);
            var response = new HttpResponse(head.Status, responseHeaders)
            {
                Reason = head.Reason,
                Body = body,
                BodyLength = head.KnownBodyLength,
            };
            return (response, ForwardError.None, "");
        }

        private async Task<long> UploadAsync(CancellationToken cancellationToken)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _uploadCancel!.Token);
            var chunked = request.BodyFraming == BodyFraming.Chunked;
            var length = chunked ? -1 : request.ContentLength;
            var counting = new CountingReader(request.Body, this);
            try
            {
                return await Http1Writer.CopyBodyAsync(counting, upstream.Output, chunked, length, linked.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpCodecException or IOException && !_uploadCancel.IsCancellationRequested)
            {
                _uploadError = ex;
                await _uploadFailed!.CancelAsync().ConfigureAwait(false);
                throw;
            }
        }

        // A 101 is refused: we never ask for an upgrade (Upgrade is not forwarded).
        private ValueTask<ResponseHead?> ReadResponseHeadAsync(CancellationToken cancellationToken) =>
            Http1ResponseReader.ReadFinalHeadAsync(upstream.Input, owner._options.Limits, request.Method, rejectSwitchingProtocols: true, cancellationToken);

        private async ValueTask<(HttpResponse?, ForwardError, string)> AbandonAsync(ForwardError error, string detail)
        {
            await StopUploadAsync().ConfigureAwait(false);
            await upstream.DisposeAsync().ConfigureAwait(false);
            return (null, error, detail);
        }

        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<bool> StopUploadAsync()
        {
            if (!_upload.IsCompleted)
            {
                await _uploadCancel!.CancelAsync().ConfigureAwait(false);
            }

            try
            {
                await _upload.ConfigureAwait(false);
                return true;
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException or HttpCodecException)
            {
                return false;
            }
            finally
            {
                _uploadCancel?.Dispose();
                _uploadFailed?.Dispose();
            }
        }

        // Runs when the server completes the response body: the connection goes back to the pool
        // only when both bodies ended cleanly and the origin keeps the connection.
        [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
        private async ValueTask FinishAsync(bool responseEndedCleanly)
        {
            var uploaded = await StopUploadAsync().ConfigureAwait(false);
            if (responseEndedCleanly && uploaded)
            {
                owner._pool.Return(key, upstream);
                return;
            }

            if (!responseEndedCleanly)
            {
                LogUpstreamBodyFailed(owner._logger, key.ToString(), "response not read to its end");
            }

            await upstream.DisposeAsync().ConfigureAwait(false);
        }

        /// <summary>Counts request-body bytes handed to the origin (a retry is safe only at zero).</summary>
#pragma warning restore CA1001
        private sealed class CountingReader(PipeReader inner, UpstreamExchange exchange) : PipeReader
        {
            private ReadOnlySequence<byte> _last;

            public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
            {
                var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
                _last = result.Buffer;
                return result;
            }

            public override bool TryRead(out ReadResult result)
            {
                var read = inner.TryRead(out result);
                _last = result.Buffer;
                return read;
            }

            public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

            public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
            {
                Interlocked.Add(ref exchange._bodyBytesSent, _last.Slice(_last.Start, consumed).Length);
                inner.AdvanceTo(consumed, examined);
            }

            public override void CancelPendingRead() => inner.CancelPendingRead();

            public override void Complete(Exception? exception = null)
            {
                // the server owns the request body
            }
        }
    }
}
