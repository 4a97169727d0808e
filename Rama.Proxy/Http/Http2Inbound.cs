using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Http;

/// <summary>
/// HTTP/2 from clients on the ports that serve HTTP/1.1 (issue 14): h2c with prior knowledge on the same port
/// (<see cref="Http1Server.Http2"/>), or ALPN h2 after TLS. The same request service answers both protocols; this
/// adds what the HTTP/1.1 server does around it: one access entry per request (with the protocol and the Akamai
/// fingerprint), and RFC 8441 WebSockets turned into HTTP/1.1 upgrades for HTTP/1.1 origins.
/// </summary>
internal static class Http2Inbound
{
    /// <summary>An HTTP/1.1 server for <paramref name="application"/> that hands h2c prior-knowledge connections to an HTTP/2 server over the same application.</summary>
    public static Http1Server Server(IService<HttpRequest, HttpResponse> application, HttpLimits limits, ILoggerFactory loggerFactory, IAccessLog accessLog,
        AccessKind kind, TimeProvider time, bool webSocketsToHttp1, Http2Limits? http2Limits = null) =>
        new(application, limits, loggerFactory.CreateLogger("Rama.Proxy.Http.Http1Server"), accessLog, kind, time)
        {
            Http2 = Create(application, loggerFactory, accessLog, kind, time, webSocketsToHttp1, http2Limits, limits.MaxRequestBodySize),
        };

    /// <summary>
    /// After TLS: ALPN h2 goes to <paramref name="server"/>'s HTTP/2 server (RFC 9113 §3.2), anything else (http/1.1, no
    /// ALPN) to the HTTP/1.1 server.
    /// </summary>
    public static IService<ConnectionContext, Unit> ByAlpn(Http1Server server)
    {
        var http2 = server.Http2 ?? throw new ArgumentException("the server has no HTTP/2 side", nameof(server));
        return Service.FromFunc<ConnectionContext, Unit>((connection, token) =>
            connection.Extensions.Get<Tls.TlsConnectionInfo>()?.ApplicationProtocol == "h2" ? http2.ServeAsync(connection, token) : server.ServeAsync(connection, token));
    }

    /// <summary>
    /// The HTTP/2 connection service over <paramref name="application"/> (for ALPN h2, or a preface seen by the HTTP/1.1 server).
    /// <paramref name="maxRequestBodySize"/>: <see cref="HttpLimits.MaxRequestBodySize"/>, held on every stream's body.
    /// </summary>
    public static IService<ConnectionContext, Unit> Create(IService<HttpRequest, HttpResponse> application, ILoggerFactory loggerFactory, IAccessLog accessLog,
        AccessKind kind, TimeProvider time, bool webSocketsToHttp1, Http2Limits? http2Limits = null, long? maxRequestBodySize = null) =>
        Http2Server.Create(new Http2InboundApplication(application, accessLog, kind, time, webSocketsToHttp1, maxRequestBodySize), http2Limits, loggerFactory, time);
}

/// <summary>
/// The request service of an HTTP/2 server: access entries, the request body limit (<see cref="Http2BodyLimit"/>), and
/// extended CONNECT to an HTTP/1.1 upgrade when asked.
/// </summary>
internal sealed class Http2InboundApplication(IService<HttpRequest, HttpResponse> inner, IAccessLog accessLog, AccessKind kind, TimeProvider time,
    bool webSocketsToHttp1, long? maxRequestBodySize = null) : IService<HttpRequest, HttpResponse>
{
    public const string Protocol = "HTTP/2";

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))] // once per h2 request: no box per request
    public async ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        var startedAt = _time.GetTimestamp();
        var logged = _accessLog.IsEnabled || ProxyMetrics.Io.Enabled || ProxyMetrics.Requests.Enabled;
        string? tooLarge = null;
        Http2BodyLimit? bodyLimit = null;
        if (maxRequestBodySize is { } maxBody && !request.IsConnect && !ReferenceEquals(request.Body, EmptyBody.Instance))
        {
            if (request.BodyFraming == BodyFraming.ContentLength && request.ContentLength > maxBody)
            {
                // Before any DATA is read: the stream's window stays shut, the server resets the rest after the 413 (RFC 9113 §8.1).
                tooLarge = Http2BodyLimit.TooLargeText(request.ContentLength, maxBody);
            }
            else
            {
                request.Body = bodyLimit = new Http2BodyLimit(request.Body, maxBody);
            }
        }

        CountingReader? upload = null;
        if (logged && !ReferenceEquals(request.Body, EmptyBody.Instance))
        {
            request.Body = upload = new CountingReader(request.Body, null);
        }

        var info = request.Extensions.Get<Http2RequestInfo>();
        if (_kind == AccessKind.Forward && !request.IsConnect && info is { Scheme: { } scheme, Authority: { } authority })
        {
            // A forward proxy's h2 request (RFC 9113 §8.3.1): :scheme, :authority and :path name the target as the
            // absolute form does in HTTP/1.1 (RFC 9112 §3.2.2), which the forwarder expects.
            request.Target = $"{scheme}://{authority}{request.Target}";
            request.TargetForm = RequestTargetForm.Absolute;
        }

        var activity = HttpTracing.StartRequest(request, request.Connection, _kind); // null unless traced; stopped with the access entry
        HttpResponse response;
        try
        {
            if (tooLarge is not null)
            {
                response = BodyTooLarge(request, tooLarge);
            }
            else if (request.IsConnect && info?.Protocol is { } protocol && webSocketsToHttp1)
            {
                response = await UpgradeAsync(request, info, protocol, cancellationToken).ConfigureAwait(false);
            }
            else if (bodyLimit is null)
            {
                response = await inner.ServeAsync(request, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                response = await ServeLimitedAsync(request, bodyLimit, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ProxyTracing.Fail(activity, ex))
        {
            throw; // never reached: Fail stops the span and returns false
        }

        if (!logged && activity is null)
        {
            return response;
        }

        // The status the client sees: an origin's 101 to an extended CONNECT is a 200 on the stream (RFC 8441 §5).
        var status = response.Status == 101 && request.IsConnect ? 200 : response.Status;
        var entry = new Pending(this, request, status, startedAt, upload, activity);
        if (response.OnUpgrade is { } run)
        {
            // One entry per tunnel, when it ends, with what the relay moved.
            response.OnUpgrade = async (pipe, token) =>
            {
                var task = run(pipe, token);
                try
                {
                    await task.ConfigureAwait(false);
                }
                finally
                {
                    var moved = task is Task<RelayResult> { IsCompletedSuccessfully: true } relayed ? relayed.Result : default;
                    entry.Write(moved.ClientToTarget, moved.TargetToClient);
                }
            };
            if (!ReferenceEquals(response.Body, EmptyBody.Instance))
            {
                response.Body = new CountingReader(response.Body, null);
            }

            return response;
        }

        if (ReferenceEquals(response.Body, EmptyBody.Instance) || request.IsHead || response.Status is 204 or 304)
        {
            entry.Write(0, 0);
            return response;
        }

        response.Body = new CountingReader(response.Body, entry);
        return response;
    }

    /// <summary>
    /// A request whose body is held to the limit: the body crossing it before the response (the forwarder fails its upload,
    /// however it reports that) is a 413; after the response started, the response body fails, so the server resets the
    /// stream (the status is gone). The upstream exchange is aborted either way, so the origin never sees a whole request.
    /// </summary>
    private async ValueTask<HttpResponse> ServeLimitedAsync(HttpRequest request, Http2BodyLimit bodyLimit, CancellationToken cancellationToken)
    {
        HttpResponse response;
        try
        {
            response = await inner.ServeAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception) when (bodyLimit.Exceeded && !cancellationToken.IsCancellationRequested)
        {
            return BodyTooLarge(request, bodyLimit.Message);
        }

        if (bodyLimit.Exceeded)
        {
            await response.Body.CompleteAsync().ConfigureAwait(false); // a 502 for the failed upload, or an answer to part of the body
            return BodyTooLarge(request, bodyLimit.Message);
        }

        if (response.OnUpgrade is null && !ReferenceEquals(response.Body, EmptyBody.Instance))
        {
            response.Body = bodyLimit.Guard(response.Body);
        }

        return response;
    }

    private static HttpResponse BodyTooLarge(HttpRequest request, string text)
    {
        request.Extensions.Set(new AccessRefusal(text));
        return HttpResponse.Text(413, text);
    }

    /// <summary>
    /// RFC 8441 §5: an extended CONNECT with :protocol websocket is the HTTP/1.1 upgrade GET (RFC 6455 §4.1) to the
    /// origin: Upgrade, Connection and a fresh Sec-WebSocket-Key (an h2 client sends none); the origin's 101 is answered
    /// with 200 by the HTTP/2 server and the stream becomes the relayed tunnel. Other protocols: 501.
    /// </summary>
    private async ValueTask<HttpResponse> UpgradeAsync(HttpRequest request, Http2RequestInfo info, string protocol, CancellationToken cancellationToken)
    {
        if (!protocol.Equals("websocket", StringComparison.OrdinalIgnoreCase))
        {
            return HttpResponse.Text(501, $"extended CONNECT for '{protocol}' is not served");
        }

        var headers = new HttpHeaders(request.Headers.Count + 4);
        foreach (var field in request.Headers)
        {
            if (!field.NameIs("sec-websocket-key"u8))
            {
                headers.Add(field.Name, field.Value);
            }
        }

        headers.Add("Upgrade"u8.ToArray(), "websocket"u8.ToArray());
        headers.Add("Connection"u8.ToArray(), "Upgrade"u8.ToArray());
        Span<byte> nonce = stackalloc byte[16];
        RandomNumberGenerator.Fill(nonce);
        headers.Add("Sec-WebSocket-Key"u8.ToArray(), Encoding.ASCII.GetBytes(Convert.ToBase64String(nonce)));
        var upgrade = new HttpRequest(HttpMethods.Get, request.Target, RequestTargetForm.Origin, HttpProtocolVersion.Http11, headers, request.Extensions)
        {
            Connection = request.Connection,
        };
        upgrade.Extensions.Set(info with { Protocol = null }); // an HTTP/1.1 upgrade from here on, not an extended CONNECT
        var response = await inner.ServeAsync(upgrade, cancellationToken).ConfigureAwait(false);
        if (response.Status == 101)
        {
            response.Headers.Remove("Sec-WebSocket-Accept"u8); // the answer to our key, not the h2 client's (RFC 8441 §5: none)
        }

        return response;
    }

    /// <summary>An access entry waiting for the end of its response body.</summary>
    private sealed class Pending(Http2InboundApplication owner, HttpRequest request, int status, long startedAt, CountingReader? upload,
        System.Diagnostics.Activity? activity)
    {
        private int _written;

        public void Write(long tunnelUp, long bytesDown)
        {
            if (Interlocked.Exchange(ref _written, 1) != 0)
            {
                return;
            }

            if (activity is not null)
            {
                HttpTracing.SetResponse(activity, request, status);
                activity.Stop();
            }

            var clock = owner._time;
            var fromClient = (upload?.Count ?? 0) + tunnelUp;
            ProxyMetrics.RequestCompleted(owner._kind, request.Connection?.Listener, Protocol, request.Method, status, fromClient, bytesDown, clock, startedAt);
            if (!owner._accessLog.IsEnabled)
            {
                return;
            }

            owner._accessLog.Write(new AccessLogEntry
            {
                Time = clock.GetUtcNow(),
                Kind = owner._kind,
                Client = request.Connection?.RemoteEndPoint,
                User = request.Extensions.Get<ProxyUser>()?.Name,
                Method = request.Method,
                Target = request.Target,
                Status = status,
                BytesFromClient = fromClient,
                BytesToClient = bytesDown,
                Duration = clock.GetElapsedTime(startedAt),
                Upstream = request.Extensions.Get<Upstream.SelectedUpstream>()?.Id,
                ConnectionId = request.Connection?.Id ?? 0,
                Protocol = Protocol,
                Http2Fingerprint = request.Extensions.Get<Http2Fingerprint>() is { } fingerprint ? AkamaiOf(fingerprint) : null,
                Reason = request.Extensions.Get<AccessRefusal>()?.Reason,
            });
        }
    }

    // One fingerprint per connection, shared by its requests: its Akamai text is built once (Akamai builds a new string per call).
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Http2Fingerprint, string> s_akamai = [];

    private static string AkamaiOf(Http2Fingerprint fingerprint) => s_akamai.GetValue(fingerprint, static f => f.Akamai);

    private readonly IAccessLog _accessLog = accessLog;
    private readonly AccessKind _kind = kind;
    private readonly TimeProvider _time = time;

    /// <summary>A body reader that counts what its reader consumed, and writes the access entry when it completes.</summary>
    private sealed class CountingReader(PipeReader inner, Pending? entry) : PipeReader
    {
        private ReadOnlySequence<byte> _last;

        public long Count { get; private set; }

        public override bool TryRead(out ReadResult result)
        {
            var read = inner.TryRead(out result);
            _last = read ? result.Buffer : default;
            return read;
        }

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
            _last = result.Buffer;
            return result;
        }

        public override void AdvanceTo(SequencePosition consumed)
        {
            Count += _last.Slice(0, consumed).Length;
            inner.AdvanceTo(consumed);
        }

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            Count += _last.Slice(0, consumed).Length;
            inner.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null)
        {
            inner.Complete(exception);
            entry?.Write(0, Count);
        }

        public override async ValueTask CompleteAsync(Exception? exception = null)
        {
            await inner.CompleteAsync(exception).ConfigureAwait(false);
            entry?.Write(0, Count);
        }
    }
}

/// <summary>
/// An HTTP/2 request body held to <see cref="HttpLimits.MaxRequestBodySize"/> (a stream has no framing to refuse before
/// its DATA, unless it announced a content-length, which the server checks first): a read that would hand over bytes past
/// the limit fails with <see cref="HttpRejectReason.BodyTooLarge"/> instead, so nothing past the limit is forwarded; what
/// the stream buffered goes back to the connection window when the stream ends (RFC 9113 §6.9).
/// </summary>
internal sealed class Http2BodyLimit(PipeReader inner, long limit) : PipeReader
{
    private ReadOnlySequence<byte> _last;
    private long _consumed;
    private int _exceeded;
    private Action? _onExceeded;

    public bool Exceeded => Volatile.Read(ref _exceeded) != 0;

    public string Message => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"Content Too Large: the request body grew past the limit of {limit} bytes");

    public static string TooLargeText(long length, long limit) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"Content Too Large: the request body of {length} bytes is larger than the limit of {limit} bytes");

    /// <summary>The response body, failed (at its next read, or its pending one at once) when the request body crosses the limit.</summary>
    public PipeReader Guard(PipeReader response)
    {
        var guarded = new GuardedResponse(response, this);
        Volatile.Write(ref _onExceeded, response.CancelPendingRead);
        return guarded;
    }

    public override bool TryRead(out ReadResult result)
    {
        if (!inner.TryRead(out result))
        {
            return false;
        }

        Check(result);
        return true;
    }

    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
        Check(result);
        return result;
    }

    private void Check(ReadResult result)
    {
        if (_consumed + result.Buffer.Length <= limit)
        {
            _last = result.Buffer;
            return;
        }

        inner.AdvanceTo(result.Buffer.Start); // nothing past the limit is handed over
        Interlocked.Exchange(ref _exceeded, 1);
        Volatile.Read(ref _onExceeded)?.Invoke();
        throw new HttpCodecException(HttpRejectReason.BodyTooLarge, Message);
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        _consumed += _last.Slice(0, consumed).Length;
        _last = default;
        inner.AdvanceTo(consumed, examined);
    }

    public override void CancelPendingRead() => inner.CancelPendingRead();

    public override void Complete(Exception? exception = null) => inner.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

    private sealed class GuardedResponse(PipeReader response, Http2BodyLimit limit) : PipeReader
    {
        public override bool TryRead(out ReadResult result)
        {
            ThrowIfExceeded();
            return response.TryRead(out result);
        }

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            ThrowIfExceeded();
            var result = await response.ReadAsync(cancellationToken).ConfigureAwait(false);
            ThrowIfExceeded();
            return result;
        }

        // An IOException: the HTTP/2 server resets the stream (CANCEL) and logs it at Debug, as a client's fault.
        private void ThrowIfExceeded()
        {
            if (limit.Exceeded)
            {
                throw new IOException(limit.Message);
            }
        }

        public override void AdvanceTo(SequencePosition consumed) => response.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => response.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => response.CancelPendingRead();

        public override void Complete(Exception? exception = null) => response.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => response.CompleteAsync(exception);
    }
}
