using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Http;

/// <summary>Builds HTTP/1.1 server connection services.</summary>
public static class HttpServer
{
    /// <summary>
    /// An HTTP/1.1 server (RFC 9112) as a connection service: parses requests, calls
    /// <paramref name="application"/>, writes each response with its framing, and keeps the
    /// connection for the next request while both sides want it.
    /// </summary>
    /// <param name="application">The request service.</param>
    /// <param name="limits">Codec limits; default <see cref="HttpLimits"/>'s.</param>
    /// <param name="loggerFactory">Diagnostic loggers.</param>
    /// <param name="time">The clock of the timeouts.</param>
    /// <param name="accessLog">Where one entry per request goes; null: <see cref="AccessLogs.ToLogger"/> of <paramref name="loggerFactory"/> (the lines of before).</param>
    /// <param name="kind">The <see cref="AccessLogEntry.Kind"/> of this server's entries. Default <see cref="AccessKind.Http"/>.</param>
    public static IService<ConnectionContext, Unit> Create(IService<HttpRequest, HttpResponse> application, HttpLimits? limits = null,
        ILoggerFactory? loggerFactory = null, TimeProvider? time = null, IAccessLog? accessLog = null, AccessKind kind = AccessKind.Http)
    {
        limits ??= new HttpLimits();
        limits.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        return new Http1Server(application, limits, loggerFactory.CreateLogger("Rama.Proxy.Http.Http1Server"),
            accessLog ?? AccessLogs.ToLogger(loggerFactory), kind, time ?? TimeProvider.System);
    }
}

/// <summary>The HTTP/1.1 server: one shared instance; per-connection state lives in <see cref="Http1Connection"/>.</summary>
internal sealed class Http1Server(IService<HttpRequest, HttpResponse> application, HttpLimits limits, ILogger logger, IAccessLog accessLog, AccessKind kind,
    TimeProvider time)
    : IService<ConnectionContext, Unit>
{
    public IService<HttpRequest, HttpResponse> Application { get; } = application;

    public HttpLimits Limits { get; } = limits;

    public ILogger Logger { get; } = logger;

    public IAccessLog AccessLog { get; } = accessLog;

    /// <summary>The kind of this server's access entries (a CONNECT is <see cref="AccessKind.Connect"/> whatever the server).</summary>
    public AccessKind Kind { get; } = kind;

    public TimeProvider Time { get; } = time;

    /// <summary>
    /// The HTTP/2 server of this port, or null (HTTP/1.1 only): a new connection whose first octets are the HTTP/2
    /// preface (h2c with prior knowledge, RFC 9113 §3.3) is handed to it, within the header timeout, on the same port.
    /// </summary>
    public IService<ConnectionContext, Unit>? Http2 { get; init; }

    public async ValueTask<Unit> ServeAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        var session = new Http1Connection(this, connection);
        bool http2;
        try
        {
            await session.RunAsync(cancellationToken).ConfigureAwait(false);
            http2 = session.PrefaceSeen;
        }
        finally
        {
            session.Dispose();
        }

        if (http2)
        {
            await Http2!.ServeAsync(connection, cancellationToken).ConfigureAwait(false);
        }

        return Unit.Value;
    }
}

/// <summary>
/// Set on a connection that the epoll transport handed to the pipes after it served requests on it: the pipe server
/// continues an HTTP/1.1 connection there, so an HTTP/2 preface is no longer a preface (RFC 9113 §3.3: prior knowledge
/// starts a connection), and is parsed (and rejected) as an HTTP/1.1 request.
/// </summary>
internal sealed class Http1Continued
{
    public static readonly Http1Continued Instance = new();
}

/// <summary>
/// One client connection: the keep-alive loop (RFC 9112 §9.3). Timers: before the first byte of a
/// request the idle timeout (the header timeout for the first request, the keep-alive timeout
/// after that); from the first byte the header timeout, which later bytes do not extend.
/// </summary>
internal sealed partial class Http1Connection : IDisposable
{
    private readonly Http1Server _server;
    private readonly ConnectionContext _connection;
    private readonly HttpLimits _limits;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _timer;
    private readonly CancellationTokenSource _idleToken;
    private readonly CancellationTokenSource _headToken;
    private readonly SemaphoreSlim _writeGate = new(1, 1);
    private PipeReader _input = null!;
    private PipeWriter _output = null!;
    private bool _responseStarted;
    private HttpRequest? _current; // the request being served, for the access line of a rejection (413 and the like)
    private long _currentStartedAt;
    private Http1BodyReader? _currentBody;
    private bool _continueArmed;

    /// <summary>True when the connection opened with the HTTP/2 preface (nothing consumed): the HTTP/2 server takes it.</summary>
    public bool PrefaceSeen { get; private set; }

    public Http1Connection(Http1Server server, ConnectionContext connection)
    {
        _server = server;
        _connection = connection;
        _limits = server.Limits;
        _logger = server.Logger;
        _timer = new CancellationTokenSource(Timeout.InfiniteTimeSpan, server.Time);
        _idleToken = CancellationTokenSource.CreateLinkedTokenSource(_timer.Token, connection.ShutdownRequested, connection.ConnectionClosed);
        _headToken = CancellationTokenSource.CreateLinkedTokenSource(_timer.Token, connection.ConnectionClosed);
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var first = true;
        try
        {
            while (true)
            {
                _input = _connection.Transport.Input;
                _output = _connection.Transport.Output;
                _responseStarted = false;
                _current = null;
                _continueArmed = false;
                var request = await ReadRequestHeadAsync(first ? _limits.HeaderTimeout : _limits.KeepAliveTimeout, first, cancellationToken).ConfigureAwait(false);
                if (request is null || !await ServeRequestAsync(request, cancellationToken).ConfigureAwait(false))
                {
                    return;
                }

                first = false;
            }
        }
        catch (HttpCodecException ex)
        {
            await RejectAsync(ex).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            LogClientGone(_logger, _connection.Id, ex.Message); // a peer reset is normal: Debug
            _connection.TrySetCloseReason("client reset");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested || _connection.ConnectionClosed.IsCancellationRequested)
        {
            _connection.TrySetCloseReason("aborted");
        }
    }

    /// <summary>Reads one request head; null when the connection should close quietly (idle, shutdown, client closed).</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HttpRequest?> ReadRequestHeadAsync(TimeSpan idleTimeout, bool first, CancellationToken cancellationToken)
    {
        var state = default(HeadScanState);
        var started = false;
        var detect = first && _server.Http2 is not null && !_connection.Extensions.Contains<Http1Continued>();
        // A first request still on its way when the shutdown starts gets a short grace, not the whole idle or header timeout:
        // a connection that stays silent (a browser's preconnect) or trickles its head must not hold the drain.
        using var grace = first ? new FirstRequestDeadline(_timer, _connection.ShutdownRequested, _server.Time) : null;
        Arm(idleTimeout);
        while (true)
        {
            ReadResult result;
            try
            {
                // A connection's first request is read even while the node shuts down: the client sent it (or is sending it)
                // on a connection we accepted, before it could see any sign of the shutdown. Only an idle keep-alive
                // connection between requests is closed by the shutdown.
                result = await _input.ReadAsync(started || first ? _headToken.Token : _idleToken.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                if (started && _timer.IsCancellationRequested)
                {
                    // Slowloris: the head did not complete within HeaderTimeout of its first byte.
                    HttpRejection.Throw(HttpRejectReason.HeaderTimeout);
                }

                var reason = _connection.ConnectionClosed.IsCancellationRequested ? "aborted"
                    : _connection.ShutdownRequested.IsCancellationRequested ? "shutting down while idle" : "idle timeout";
                _connection.TrySetCloseReason(reason);
                LogIdleClose(_logger, _connection.Id, reason);
                return null;
            }

            var buffer = result.Buffer;
            var firstBytes = !started && !buffer.IsEmpty;
            started |= firstBytes;
            if (detect && !buffer.IsEmpty)
            {
                // RFC 9113 §3.3: h2c with prior knowledge starts with the preface; an HTTP/1.1 method differs within its first octets.
                switch (Http2.Http2Preface.Detect(buffer))
                {
                    case Http2.PrefaceMatch.Match:
                        _input.AdvanceTo(buffer.Start); // nothing consumed or examined: the HTTP/2 server reads the preface
                        grace?.Release();
                        _timer.CancelAfter(Timeout.InfiniteTimeSpan);
                        PrefaceSeen = true;
                        return null;
                    case Http2.PrefaceMatch.NoMatch:
                        detect = false;
                        break;
                    default:
                        if (firstBytes)
                        {
                            Arm(_limits.HeaderTimeout);
                        }

                        _input.AdvanceTo(buffer.Start, buffer.End);
                        if (result.IsCompleted)
                        {
                            _connection.TrySetCloseReason("client closed inside a request head");
                            LogIdleClose(_logger, _connection.Id, "client closed inside a request head");
                            return null;
                        }

                        continue;
                }
            }

            bool parsed;
            HttpRequest? request;
            SequencePosition consumed;
            try
            {
                parsed = Http1Parser.TryParseRequest(buffer, _limits, ref state, _connection.Extensions, out request, out consumed);
            }
            catch (HttpCodecException)
            {
                _input.AdvanceTo(buffer.Start, buffer.End);
                throw;
            }

            if (parsed)
            {
                _input.AdvanceTo(consumed);
                grace?.Release();
                _timer.CancelAfter(Timeout.InfiniteTimeSpan);
                request!.Connection = _connection;
                return request;
            }

            if (firstBytes)
            {
                // The head is incomplete: the header timeout runs from its first byte; later bytes do not extend it.
                // (A head that arrives whole, the usual case, is parsed without re-arming the timer.)
                Arm(_limits.HeaderTimeout);
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                var reason = buffer.IsEmpty ? "client closed" : "client closed inside a request head";
                _connection.TrySetCloseReason(reason);
                LogIdleClose(_logger, _connection.Id, reason);
                return null;
            }
        }

        void Arm(TimeSpan after)
        {
            if (grace is null)
            {
                _timer.CancelAfter(after);
            }
            else
            {
                grace.Arm(after);
            }
        }
    }

    /// <summary>Serves one request; true when the connection stays open for the next.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ServeRequestAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var startedAt = _server.Time.GetTimestamp();
        using var activity = HttpTracing.StartRequest(request, _connection, _server.Kind); // null unless traced; lasts as long as the request or its tunnel
        Http1BodyReader? body = null;
        (_current, _currentStartedAt, _currentBody) = (request, startedAt, null);
        if (request.BodyFraming != BodyFraming.None)
        {
            if (request.BodyFraming == BodyFraming.ContentLength && request.ContentLength > _limits.MaxRequestBodySize)
            {
                ThrowBodyTooLarge(request.ContentLength); // before any body byte is read: no 100 Continue
            }

            body = new Http1BodyReader(_input, request.BodyFraming, request.ContentLength, _limits, _limits.MaxRequestBodySize);
            body.OnTrailers(trailers => request.Trailers = trailers); // RFC 9112 §7.1.2: a chunked request's trailer section
            request.Body = _currentBody = body;

            // RFC 9110 §10.1.1: answer "100-continue" when the body is first read, so a request refused
            // before (407, 502) never makes the client send its body.
            if (request.Version == HttpProtocolVersion.Http11 && !body.IsEnd && request.Headers.ContainsToken(HeaderNames.Expect, "100-continue"u8))
            {
                _continueArmed = true;
                body.OnFirstRead(() => SendContinueAsync(cancellationToken));
            }
        }

        HttpResponse response;
        try
        {
            response = await _server.Application.ServeAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpCodecException)
        {
            throw; // a bad request body found by the application: answered as a rejection
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not IOException)
        {
            LogApplicationFault(_logger, ex, _connection.Id, request.Method, request.Target);
            response = HttpResponse.Text(500, "internal error", close: true);
        }

        HttpTracing.SetResponse(activity, request, response.Status);

        var keepAlive = !response.CloseConnection
            && Http1Parser.IsPersistent(request.Version, request.Headers)
            && !_connection.ShutdownRequested.IsCancellationRequested
            && !response.Headers.ContainsToken(HeaderNames.Connection, "close"u8);
        var lingering = false;
        if (body is not null && !body.IsEnd)
        {
            // Unread request body: drain it after the response when it is short and the client is
            // sending it; otherwise close (after lingering, so the client reads the response).
            var continuePending = body.CancelFirstRead();
            if (continuePending || body.Remaining < 0 || body.Remaining > _limits.MaxDrainBytes)
            {
                keepAlive = false;
                lingering = true;
            }
        }

        long bytes = 0;
        var tunnel = response.OnUpgrade is not null && response.Status is 101 or (>= 200 and < 300);
        var written = false;
        try
        {
            (bytes, keepAlive) = await WriteResponseAsync(request, response, keepAlive, cancellationToken).ConfigureAwait(false);
            written = true;
        }
        finally
        {
            await response.Body.CompleteAsync().ConfigureAwait(false); // idempotent: also when the head never went out
            if (!(tunnel && written))
            {
                WriteAccess(request, response.Status, body?.BytesConsumed ?? 0, bytes, startedAt);
            }
        }

        if (tunnel)
        {
            _connection.TrySetCloseReason("upgraded");
            DisposeTimers(); // no request head is read on this connection again: a long-lived tunnel holds no timer
            _input = null!; // nor the pipes: a tunnel that takes the socket over (the epoll tunnel) lets them go
            _output = null!;
            // One access entry per tunnel, when it ends: a tunnel that reports its bytes (Task<RelayResult>) adds them.
            var run = response.OnUpgrade!(_connection.Transport, cancellationToken);
            try
            {
                await run.ConfigureAwait(false);
            }
            finally
            {
                var moved = run is Task<RelayResult> { IsCompletedSuccessfully: true } relayed ? relayed.Result : default;
                WriteAccess(request, response.Status, (body?.BytesConsumed ?? 0) + moved.ClientToTarget, bytes + moved.TargetToClient, startedAt);
            }

            return false;
        }

        if (keepAlive && body is not null && !body.IsEnd)
        {
            using var drainTimeout = new CancellationTokenSource(_limits.LingeringCloseTimeout, _server.Time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(drainTimeout.Token, cancellationToken);
            try
            {
                keepAlive = await body.DrainAsync(_limits.MaxDrainBytes, linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (drainTimeout.IsCancellationRequested)
            {
                keepAlive = false;
            }

            lingering = !keepAlive;
        }

        if (!keepAlive)
        {
            _connection.TrySetCloseReason("connection: close");
            await CloseAsync(lingering || HasBufferedInput()).ConfigureAwait(false);
        }

        return keepAlive;
    }

    // Bytes the client already sent past this request (pipelined): closing on them would reset the connection.
    private bool HasBufferedInput()
    {
        if (!_input.TryRead(out var result))
        {
            return false;
        }

        _input.AdvanceTo(result.Buffer.Start);
        return !result.Buffer.IsEmpty;
    }

    private async ValueTask SendContinueAsync(CancellationToken cancellationToken)
    {
        await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!_responseStarted)
            {
                _output.Write("HTTP/1.1 100 Continue\r\n\r\n"u8);
                await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _writeGate.Release();
        }
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(long Bytes, bool KeepAlive)> WriteResponseAsync(HttpRequest request, HttpResponse response, bool keepAlive, CancellationToken cancellationToken)
    {
        var status = response.Status;
        var connect2xx = request.IsConnect && status is >= 200 and < 300;

        // RFC 9112 §6.3 (1)/(2): no body in answers to HEAD, in 1xx/204/304, or in a 2xx to CONNECT.
        var bodyAllowed = !(request.IsHead || status < 200 || status is 204 or 304 || connect2xx);
        var chunked = false;
        var length = -1L;
        if (bodyAllowed)
        {
            if (response.BodyLength is { } known)
            {
                length = known;
            }
            else if (request.Version == HttpProtocolVersion.Http11)
            {
                chunked = true;
            }
            else
            {
                keepAlive = false; // HTTP/1.0 client, unknown length: delimited by close (§6.3 (8))
            }
        }

        if (response.OnUpgrade is not null)
        {
            keepAlive = true; // the connection is handed over, not closed by a header
        }

        if (_continueArmed)
        {
            // A 100 Continue may be being written on the body reader's first read: the head goes after it.
            await _writeGate.WaitAsync(cancellationToken).ConfigureAwait(false);
            _responseStarted = true;
            _writeGate.Release();
        }
        else
        {
            _responseStarted = true;
        }

        Http1Writer.WriteStatusLine(_output, status, response.Reason);
        var wroteLength = false;
        foreach (var field in response.Headers)
        {
            var name = field.Name.Span;
            if (field.NameIs(HeaderNames.Connection) || field.NameIs(HeaderNames.KeepAlive) || field.NameIs(HeaderNames.TransferEncoding)
                || field.NameIs(HeaderNames.ProxyConnection))
            {
                continue; // RFC 9110 §7.6.1: connection management is this hop's, written below
            }

            if (field.NameIs(HeaderNames.ContentLength))
            {
                if (bodyAllowed ? length < 0 || wroteLength : status < 200 || status == 204 || connect2xx || wroteLength)
                {
                    continue;
                }

                if (bodyAllowed)
                {
                    WriteContentLength(length);
                    wroteLength = true;
                    continue;
                }

                wroteLength = true; // HEAD / 304: the length the GET would have had, as given
            }

            Http1Writer.WriteField(_output, name, field.Value.Span);
        }

        if (bodyAllowed && length >= 0 && !wroteLength)
        {
            WriteContentLength(length);
        }

        if (chunked)
        {
            _output.Write("Transfer-Encoding: chunked\r\n"u8);
        }

        if (!keepAlive)
        {
            _output.Write("Connection: close\r\n"u8);
        }
        else if (status == 101)
        {
            _output.Write("Connection: Upgrade\r\n"u8); // RFC 9110 §7.8: a sender of Upgrade sends the "upgrade" option
        }
        else if (request.Version == HttpProtocolVersion.Http10 && response.OnUpgrade is null)
        {
            _output.Write("Connection: keep-alive\r\n"u8);
        }

        _output.Write("\r\n"u8);

        long bytes = 0;
        Exception? failure = null;
        try
        {
            if (bodyAllowed)
            {
                // A chunked response carries the trailers (RFC 9112 §7.1.2); a Content-Length one cannot, and they are dropped.
                bytes = await Http1Writer.CopyBodyAsync(response.Body, _output, chunked, length, cancellationToken, () => response.Trailers).ConfigureAwait(false);
            }
            else
            {
                await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or HttpCodecException or InvalidOperationException)
        {
            // The head is out: no status can be sent any more. Abort so the client sees a broken
            // response, never a truncated one that looks complete.
            failure = ex;
            LogResponseAborted(_logger, _connection.Id, request.Method, request.Target, ex.Message);
            _connection.Abort("response body failed: " + ex.Message);
            throw new IOException("response aborted", ex);
        }
        finally
        {
            await response.Body.CompleteAsync(failure).ConfigureAwait(false);
        }

        return (bytes, keepAlive);

        void WriteContentLength(long value)
        {
            _output.Write("Content-Length: "u8);
            Http1Writer.WriteNumber(_output, value);
            _output.Write("\r\n"u8);
        }
    }

    /// <summary>Answers a rejected request with its status, <c>Connection: close</c> and a short text, then closes cleanly.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowBodyTooLarge(long length) => throw new HttpCodecException(HttpRejectReason.BodyTooLarge, string.Create(
        System.Globalization.CultureInfo.InvariantCulture, $"Content Too Large: the request body of {length} bytes is larger than the limit of {_limits.MaxRequestBodySize} bytes"));

    private async Task RejectAsync(HttpCodecException ex)
    {
        LogRejected(_logger, _connection.Id, ex.StatusCode, ex.Reason, ex.Message);
        _connection.TrySetCloseReason($"rejected: {ex.StatusCode} {ex.Reason}");
        if (_responseStarted)
        {
            _connection.Abort("protocol error after the response started");
            return;
        }

        try
        {
            var text = System.Text.Encoding.UTF8.GetBytes(ex.Message + "\n");
            Http1Writer.WriteStatusLine(_output, ex.StatusCode, null);
            _output.Write("Content-Type: text/plain; charset=utf-8\r\nContent-Length: "u8);
            Http1Writer.WriteNumber(_output, text.Length);
            _output.Write("\r\nConnection: close\r\n\r\n"u8);
            _output.Write(text);
            await _output.FlushAsync().ConfigureAwait(false);
            if (_current is { } request)
            {
                // A request the server had read (a body over the limit, a bad chunk): its access line, with the reason.
                WriteAccess(request, ex.StatusCode, _currentBody?.BytesConsumed ?? 0, text.Length, _currentStartedAt, ex.Message);
            }

            await CloseAsync(lingering: true).ConfigureAwait(false);
        }
        catch (Exception io) when (io is IOException or InvalidOperationException or OperationCanceledException)
        {
            LogClientGone(_logger, _connection.Id, io.Message);
        }
    }

    /// <summary>
    /// Sends FIN after what was written. With <paramref name="lingering"/>, keeps reading and
    /// discarding what the client still sends (bounded in time and bytes) so that closing does not
    /// reset the connection before the client read our answer (nginx's lingering close).
    /// </summary>
    private async Task CloseAsync(bool lingering)
    {
        await _output.CompleteAsync().ConfigureAwait(false);
        if (!lingering)
        {
            return;
        }

        using var timeout = new CancellationTokenSource(_limits.LingeringCloseTimeout, _server.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _connection.ConnectionClosed);
        long discarded = 0;
        try
        {
            while (discarded <= _limits.MaxDrainBytes)
            {
                var result = await _input.ReadAsync(linked.Token).ConfigureAwait(false);
                discarded += result.Buffer.Length;
                _input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // lingering is best effort
        }
    }

    private void DisposeTimers()
    {
        _idleToken.Dispose();
        _headToken.Dispose();
        _timer.Dispose();
    }

    /// <summary>One access entry for <paramref name="request"/>: values the connection has, no formatting.</summary>
    private void WriteAccess(HttpRequest request, int status, long fromClient, long toClient, long startedAt, string? reason = null)
    {
        ProxyMetrics.RequestCompleted(request.IsConnect ? AccessKind.Connect : _server.Kind, _connection.Listener, null, request.Method, status, fromClient, toClient, _server.Time, startedAt);
        var sink = _server.AccessLog;
        if (!sink.IsEnabled)
        {
            return;
        }

        var time = _server.Time;
        sink.Write(new AccessLogEntry
        {
            Time = time.GetUtcNow(),
            Kind = request.IsConnect ? AccessKind.Connect : _server.Kind,
            Client = _connection.RemoteEndPoint,
            User = request.Extensions.Get<ProxyUser>()?.Name,
            Method = request.Method,
            Target = request.Target,
            Status = status,
            BytesFromClient = fromClient,
            BytesToClient = toClient,
            Duration = time.GetElapsedTime(startedAt),
            Upstream = request.Extensions.Get<Upstream.SelectedUpstream>()?.Id,
            ConnectionId = _connection.Id,
            Reason = reason ?? request.Extensions.Get<AccessRefusal>()?.Reason,
        });
    }

    public void Dispose()
    {
        DisposeTimers(); // idempotent
        _writeGate.Dispose();
    }

    [LoggerMessage(EventId = 2000, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: rejected with {Status} ({Reason}): {Detail}")]
    private static partial void LogRejected(ILogger logger, long connectionId, int status, HttpRejectReason reason, string detail);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: closing, {Reason}")]
    private static partial void LogIdleClose(ILogger logger, long connectionId, string reason);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: client gone ({Detail})")]
    private static partial void LogClientGone(ILogger logger, long connectionId, string detail);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Error, Message = "Connection {ConnectionId}: the application failed on {Method} {Target}")]
    private static partial void LogApplicationFault(ILogger logger, Exception exception, long connectionId, string method, string target);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: response to {Method} {Target} aborted mid-body: {Detail}")]
    private static partial void LogResponseAborted(ILogger logger, long connectionId, string method, string target, string detail);
}
