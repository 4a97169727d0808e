using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using static Rama.Proxy.Http.HttpForwardRules;

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
    ITunnelHandler? tunnel = null, OriginSecurer? secure = null, Http2ConnectionPool? http2 = null)
    : Core.IService<HttpRequest, HttpResponse>
{
    private readonly byte[]? _via = ViaBytes(options.Via);
    private readonly HttpProxyOptions _options = options;
    private readonly Http1ConnectionPool _pool = pool;
    private readonly ILogger _logger = logger;
    private readonly TimeProvider _time = time;
    private readonly Core.TimeoutSources _timeouts = new(time);
    private readonly Http2ConnectionPool? _http2 = http2;

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
            var opened = ProxyMetrics.TunnelOpened(AccessKind.Connect);
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
                ProxyMetrics.TunnelClosed(AccessKind.Connect, opened);
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
    internal ValueTask<(HttpResponse? Response, ForwardError Error, string Detail, bool BodyBytesSent)> TryForwardAsync(HttpRequest request, HostPort target,
        string? authority, string pathAndQuery, CancellationToken cancellationToken) =>
        TryForwardAsync(request, UpstreamTarget.Http1(target), authority, pathAndQuery, cancellationToken);

    /// <summary><see cref="ForwardAsync(HttpRequest, HostPort, string?, string, CancellationToken)"/> in the protocol <paramref name="upstream"/>'s scheme says.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))] // the reverse proxy's per-request entry: no box per request
    internal async ValueTask<HttpResponse> ForwardAsync(HttpRequest request, UpstreamTarget upstream, string? authority, string pathAndQuery, CancellationToken cancellationToken)
    {
        var (response, error, detail, _) = await TryForwardAsync(request, upstream, authority, pathAndQuery, cancellationToken).ConfigureAwait(false);
        return response ?? (error == ForwardError.UpstreamBusy ? Busy(request, detail) : Fail(request, error, detail));
    }

    /// <summary>
    /// <see cref="TryForwardAsync(HttpRequest, HostPort, string?, string, CancellationToken)"/> in the protocol of <paramref name="upstream"/>:
    /// HTTP/1.1 for http, HTTP/2 with prior knowledge for h2c, and for https TLS (the securer this forwarder was built with)
    /// then HTTP/2 when the origin chose h2 by ALPN, else HTTP/1.1.
    /// </summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<(HttpResponse? Response, ForwardError Error, string Detail, bool BodyBytesSent)> TryForwardAsync(HttpRequest request, UpstreamTarget upstreamTarget,
        string? authority, string pathAndQuery, CancellationToken cancellationToken)
    {
        var target = upstreamTarget.Target;
        var key = Http1ConnectionPool.Key(target, request.Extensions.Get<ConnectionPoolPartition>());
        var protocol = upstreamTarget.Protocol;
        var upgrade = request.Headers.Contains(HeaderNames.Upgrade) ? UpgradeOffer(request) : null; // RFC 9110 §7.8
        if (protocol != OriginProtocol.Http1 && upgrade is not null && !request.IsConnect)
        {
            // A WebSocket to an HTTP/2 origin: extended CONNECT (RFC 8441). An https origin not yet known to choose h2 is dialled below.
            if (protocol == OriginProtocol.H2c)
            {
                return await ForwardWebSocketHttp2Async(request, upgrade, key, target, authority, pathAndQuery, tls: false, cancellationToken).ConfigureAwait(false);
            }

            if (_http2?.TryTake(key) is { } pooledHttp2)
            {
                return await ForwardWebSocketHttp2Async(request, upgrade, key, target, authority, pathAndQuery, tls: true, cancellationToken, pooledHttp2).ConfigureAwait(false);
            }

            if (_http2?.ChoseHttp2(key) == true)
            {
                return await ForwardWebSocketHttp2Async(request, upgrade, key, target, authority, pathAndQuery, tls: true, cancellationToken).ConfigureAwait(false);
            }
        }
        else if (protocol != OriginProtocol.Http1 && !request.IsConnect)
        {
            // No upgrade this proxy passes on (none asked, or only h2c, or Upgrade without the connection option): a plain request.
            if (protocol == OriginProtocol.H2c)
            {
                return await ForwardHttp2Async(request, key, target, authority, pathAndQuery, tls: false, cancellationToken).ConfigureAwait(false);
            }

            if (_http2?.TryTake(key) is { } pooledHttp2)
            {
                return await ForwardHttp2Async(request, key, target, authority, pathAndQuery, tls: true, cancellationToken, pooledHttp2).ConfigureAwait(false);
            }

            if (_http2?.ChoseHttp2(key) == true)
            {
                // Known to speak h2: concurrent requests share the next dial instead of each opening a TLS connection.
                return await ForwardHttp2Async(request, key, target, authority, pathAndQuery, tls: true, cancellationToken).ConfigureAwait(false);
            }
        }

        var retried = false;
        while (true)
        {
            var upstream = retried ? null : _pool.TryTake(key); // a retry goes on a fresh connection
            var reused = upstream is not null;
            if (upstream is null)
            {
                if (protocol == OriginProtocol.H2c)
                {
                    return (null, ForwardError.UpstreamProtocolError, "an h2c origin takes no CONNECT", false);
                }

                var dial = await connector.ConnectAsync(target, request.Extensions, cancellationToken).ConfigureAwait(false);
                if (!dial.IsSuccess)
                {
                    var error = ErrorFor(dial.Error); // the shared mapping; a busy answer names the limit
                    return (null, error, error == ForwardError.UpstreamBusy ? dial.Detail ?? "every upstream is at its limit" : Describe(dial), false);
                }

                upstream = dial.Connection!;
                if (protocol == OriginProtocol.Https)
                {
                    // An https origin (TLS termination re-encrypting, a MITM tunnel, an https upstream): the pooled connection is the TLS stream.
                    if (secure is null)
                    {
                        await upstream.DisposeAsync().ConfigureAwait(false);
                        return (null, ForwardError.ConnectFailed, "no TLS client configured for https origins", false);
                    }

                    var secured = await secure(request, target, dial.Connection!, cancellationToken).ConfigureAwait(false);
                    if (secured.Connection is null)
                    {
                        return (null, secured.Error, secured.Detail, false);
                    }

                    if (secured.IsHttp2)
                    {
                        // ALPN chose h2 (RFC 9113 §3.2): the connection joins the HTTP/2 pool and carries this request as a stream.
                        var h2 = StartHttp2(secured.Connection, "https");
                        if (_http2 is null)
                        {
                            await h2.DisposeAsync().ConfigureAwait(false);
                            return (null, ForwardError.UpstreamProtocolError, "the origin chose h2 where HTTP/1.1 was needed", false);
                        }

                        _http2.RememberHttp2(key);
                        _http2.Add(key, h2);
                        return upgrade is not null
                            ? await ForwardWebSocketHttp2Async(request, upgrade, key, target, authority, pathAndQuery, tls: true, cancellationToken, h2).ConfigureAwait(false)
                            : await ForwardHttp2Async(request, key, target, authority, pathAndQuery, tls: true, cancellationToken, h2).ConfigureAwait(false);
                    }

                    upstream = secured.Connection;
                }
            }

            var exchange = new UpstreamExchange(this, request, upstream, key, upgrade);
            var outcome = await exchange.SendAsync(pathAndQuery, target, authority, cancellationToken).ConfigureAwait(false);
            if (outcome.Response is not null)
            {
                return (outcome.Response, ForwardError.None, "", exchange.BodyBytesSent > 0);
            }

            // RFC 9110 §9.2.2 / RFC 9112 §9.3.1: a pooled connection the origin closed before answering (the shared rule).
            if (MayRetry(outcome.Error, reused, retried, request.Method, bodyStarted: exchange.BodyBytesSent != 0))
            {
                LogRetry(_logger, request.Method, request.Target);
                retried = true;
                continue;
            }

            return (null, outcome.Error, outcome.Detail, exchange.BodyBytesSent > 0);
        }
    }

    // The head for the origin: HttpForwardRules.WriteRequestHead with this proxy's Via and the upgrade offer, if any.
    private void WriteUpstreamRequestHead(PipeWriter output, HttpRequest request, string pathAndQuery, HostPort target, string? authority, byte[]? upgrade = null) =>
        WriteRequestHead(output, request, pathAndQuery, target, authority, _via, upgrade);

    private void AddVia(HttpHeaders headers) => HttpForwardRules.AddVia(headers, _via);

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

    private HttpResponse DialFailed(HttpRequest request, ConnectResult dial) => ErrorFor(dial.Error) switch
    {
        ForwardError.UpstreamBusy => Busy(request, dial.Detail ?? "every upstream is at its limit"),
        var error => Fail(request, error, Describe(dial)),
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

    /// <summary>The status answering <paramref name="error"/>: <see cref="HttpForwardRules.StatusFor"/>, kept here for its callers.</summary>
    public static int StatusFor(ForwardError error) => HttpForwardRules.StatusFor(error);

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
    private sealed partial class UpstreamExchange(ForwardProxyService owner, HttpRequest request, IOriginConnection upstream, HostPort key, byte[]? upgrade)
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
                owner.WriteUpstreamRequestHead(upstream.Output, request, pathAndQuery, target, authority, upgrade);
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

            if (head.Status == 101)
            {
                return await SwitchProtocolsAsync(head, target, cancellationToken).ConfigureAwait(false);
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
            body.OnTrailers(trailers => response.Trailers = trailers); // a chunked origin's trailers go on (RFC 9110 §6.5)
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
                return await Http1Writer.CopyBodyAsync(counting, upstream.Output, chunked, length, linked.Token, () => request.Trailers).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is HttpCodecException or IOException && !_uploadCancel.IsCancellationRequested)
            {
                _uploadError = ex;
                await _uploadFailed!.CancelAsync().ConfigureAwait(false);
                throw;
            }
        }

        // A 101 is refused unless we asked for an upgrade (RFC 9110 §15.2.2: only in answer to an Upgrade).
        private ValueTask<ResponseHead?> ReadResponseHeadAsync(CancellationToken cancellationToken) =>
            Http1ResponseReader.ReadFinalHeadAsync(upstream.Input, owner._options.Limits, request.Method, rejectSwitchingProtocols: upgrade is null, cancellationToken);

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
