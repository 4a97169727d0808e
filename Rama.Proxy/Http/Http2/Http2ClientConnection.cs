using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Http.Http2;

/// <summary>Why <see cref="Http2ClientConnection.SendAsync"/> has no response.</summary>
public enum Http2ClientError
{
    None,
    /// <summary>
    /// The server did not process the request and it may be sent again on another connection: no stream could be
    /// opened (GOAWAY, connection closed first), RST_STREAM(REFUSED_STREAM), or the stream was above the last stream
    /// identifier of a GOAWAY (RFC 9113 §8.7).
    /// </summary>
    Retryable,
    /// <summary>The server reset the stream (<see cref="Http2ClientResult.ResetCode"/>).</summary>
    StreamReset,
    /// <summary>The connection ended while the request was in flight (it may have been processed).</summary>
    ConnectionClosed,
}

/// <summary>The outcome of a request: a response (head now; body and trailers stream) or why there is none.</summary>
public readonly record struct Http2ClientResult(HttpResponse? Response, Http2ClientError Error, Http2ErrorCode ResetCode = Http2ErrorCode.NoError)
{
    public bool IsRetryable => Error == Http2ClientError.Retryable;
}

/// <summary>Choices of the client role.</summary>
public sealed record Http2ClientOptions
{
    public Http2Limits Limits { get; init; } = new();

    /// <summary>:scheme of requests in origin form. Default "http" (h2c); "https" over TLS.</summary>
    public string Scheme { get; init; } = "http";

    /// <summary>
    /// Order of the request pseudo-headers by first letter (m :method, a :authority, s :scheme, p :path): part of a
    /// client's Akamai fingerprint. Default "masp": Chrome's order.
    /// </summary>
    public string PseudoHeaderOrder { get; init; } = "masp";
}

/// <summary>
/// An HTTP/2 client connection (RFC 9113, client role) over a transport the caller opened (TCP for h2c prior
/// knowledge, or TLS with ALPN h2). Many requests run at once as streams, within the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS (<see cref="SendAsync"/> waits for a slot). For pools: <see cref="IsUsable"/>
/// and <see cref="AvailableStreams"/>.
/// </summary>
public sealed class Http2ClientConnection : IAsyncDisposable
{
    private readonly Http2ClientSession _session;
    private readonly Task _running;

    private Http2ClientConnection(Http2ClientSession session, IAsyncDisposable? ownedTransport)
    {
        _session = session;
        _running = RunAsync(session, ownedTransport);
    }

    /// <summary>Starts the connection: writes the preface and our SETTINGS, and reads the server's frames in the background.</summary>
    public static Http2ClientConnection Start(IDuplexPipe transport, Http2ClientOptions? options = null, ILogger? logger = null, TimeProvider? time = null, long connectionId = 0)
    {
        ArgumentNullException.ThrowIfNull(transport);
        options ??= new Http2ClientOptions();
        return new Http2ClientConnection(new Http2ClientSession(transport, options, logger ?? NullLogger.Instance, time ?? TimeProvider.System, connectionId), null);
    }

    /// <summary>
    /// As <see cref="Start"/>, and the connection owns <paramref name="transport"/>: it is disposed (the socket closed) when the
    /// connection ends, before <see cref="Completion"/> and <see cref="DisposeAsync"/> complete.
    /// </summary>
    internal static Http2ClientConnection StartOwning<T>(T transport, Http2ClientOptions options, ILogger logger, TimeProvider time)
        where T : IDuplexPipe, IAsyncDisposable
    {
        ArgumentNullException.ThrowIfNull(transport);
        return new Http2ClientConnection(new Http2ClientSession(transport, options, logger, time, 0), transport);
    }

    private static async Task RunAsync(Http2ClientSession session, IAsyncDisposable? ownedTransport)
    {
        await session.RunAsync(CancellationToken.None).ConfigureAwait(false);
        if (ownedTransport is not null)
        {
            try
            {
                await ownedTransport.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception error) when (error is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
            {
                Http2Log.TransportGone(session.Logger, session.ConnectionId, error.Message); // the socket was gone already
            }
        }
    }

    /// <summary>False once the connection can take no new request (GOAWAY either way, closed, identifiers used up).</summary>
    public bool IsUsable => !_session.IsGoingAway;

    /// <summary>Streams that may start now without waiting (the server's limit minus those open); 0 when not usable.</summary>
    public int AvailableStreams => IsUsable ? Math.Max(0, _session.PeerMaxConcurrentStreams - _session.ActiveLocalStreams) : 0;

    /// <summary>Requests in flight.</summary>
    public int ActiveStreams => _session.ActiveLocalStreams;

    /// <summary>Completes when the connection has ended (and its owned transport is closed).</summary>
    public Task Completion => _running;

    /// <summary>
    /// Sends a request: head from <paramref name="request"/> (Method; Target in origin form with Host, or absolute
    /// form; CONNECT with an authority target; an <see cref="Http2RequestInfo"/> with a Protocol in its extensions
    /// sends an extended CONNECT, RFC 8441), then its Body and Trailers. Returns at the response head; the
    /// response's Body streams and its Trailers are set when the body ends. Cancelling before the head, or completing
    /// the response body before its end, resets the stream with CANCEL.
    /// </summary>
    public Task<Http2ClientResult> SendAsync(HttpRequest request, CancellationToken cancellationToken = default) => _session.SendAsync(request, cancellationToken);

    /// <summary>
    /// Sends GOAWAY(NO_ERROR) and closes at once, also when the server keeps the connection open (the GOAWAY write is bounded
    /// in time); requests in flight end with <see cref="Http2ClientError.ConnectionClosed"/>.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _session.Abort(Http2ErrorCode.NoError, "client connection disposed");
        await _running.ConfigureAwait(false);
    }
}

/// <summary>The client role of <see cref="Http2Connection"/>.</summary>
internal sealed class Http2ClientSession(IDuplexPipe transport, Http2ClientOptions options, ILogger logger, TimeProvider time, long connectionId)
    : Http2Connection(transport, isServer: false, options.Limits, logger, time, connectionId)
{
    public async Task<Http2ClientResult> SendAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!await AcquireLocalSlotAsync(cancellationToken).ConfigureAwait(false))
        {
            return new Http2ClientResult(null, Http2ClientError.Retryable);
        }

        if (request.Extensions.Get<Http2RequestInfo>()?.Protocol is not null && !PeerEnablesConnectProtocol)
        {
            ReleaseLocalSlot();
            throw new NotSupportedException("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL: no extended CONNECT (RFC 8441 §3)");
        }

        var hasBody = request.IsConnect || !ReferenceEquals(request.Body, EmptyBody.Instance);
        Http2Stream? stream;
        try
        {
            stream = await OpenLocalStreamAsync(BuildHead(request), endStream: !hasBody, s =>
            {
                s.ResponseHead = new TaskCompletionSource<Http2ClientResult>(TaskCreationOptions.RunContinuationsAsynchronously);
                s.RequestIsHead = request.IsHead;
            }, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            ReleaseLocalSlot();
            throw;
        }

        if (stream is null)
        {
            ReleaseLocalSlot();
            return new Http2ClientResult(null, Http2ClientError.Retryable);
        }

        if (hasBody)
        {
            _ = SendRequestBodyAsync(stream, request);
        }

        using (cancellationToken.Register(static s => ((Http2Stream)s!).Connection.CancelStream((Http2Stream)s), stream))
        {
            var result = await stream.ResponseHead!.Task.ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            return result;
        }
    }

    private async Task SendRequestBodyAsync(Http2Stream stream, HttpRequest request)
    {
        try
        {
            await SendBodyAsync(stream, request.Body, TrailerSource.Of(request), stream.Aborted.Token).ConfigureAwait(false);
            await request.Body.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception error)
        {
            await request.Body.CompleteAsync(error).ConfigureAwait(false);
            if (!stream.Reset)
            {
                Http2Log.ResponseAborted(Logger, ConnectionId, stream.Id, "request body: " + error.Message);
                CancelStream(stream);
            }
        }
    }

    private HpackHeaderField[] BuildHead(HttpRequest request)
    {
        // RFC 9113 §8.3.1: :method, :scheme, :authority, :path; §8.5: CONNECT has :method and :authority only.
        var protocol = request.Extensions.Get<Http2RequestInfo>()?.Protocol;
        string? scheme = options.Scheme, authority = request.Headers.GetText("host"), path = request.Target;
        if (request.TargetForm == RequestTargetForm.Absolute && Uri.TryCreate(request.Target, UriKind.Absolute, out var uri))
        {
            scheme = uri.Scheme;
            authority = uri.IsDefaultPort ? uri.Host : $"{uri.Host}:{uri.Port}";
            path = uri.PathAndQuery;
        }
        else if (request.IsConnect && protocol is null)
        {
            authority = request.Target;
            scheme = path = null;
        }

        var pseudo = new List<HpackHeaderField>(5);
        foreach (var letter in options.PseudoHeaderOrder)
        {
            var (name, value) = letter switch
            {
                'm' => (":method", request.Method),
                'a' => (":authority", authority),
                's' => (":scheme", scheme),
                'p' => (":path", path),
                _ => (null, null),
            };
            if (name is not null && value is not null)
            {
                pseudo.Add(new HpackHeaderField(Encoding.ASCII.GetBytes(name), Encoding.Latin1.GetBytes(value)));
            }
        }

        if (protocol is not null)
        {
            pseudo.Add(new HpackHeaderField(":protocol"u8.ToArray(), Encoding.Latin1.GetBytes(protocol)));
        }

        return ToFields(request.Headers, status: null, pseudo: pseudo);
    }

    protected override ValueTask OnHeadAsync(Http2Stream? stream, int streamId, Http2HeaderCollector block, bool endStream, bool tooLarge)
    {
        if (stream is null)
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, $"HEADERS on stream {streamId} the client did not open"); // §5.1.1
        }

        if (tooLarge || block.Complete(connectProtocolEnabled: false) is not null)
        {
            Http2Exception.Stream(streamId, Http2ErrorCode.ProtocolError, block.Malformed ?? "response header list too large");
        }

        if (block.Status < 200)
        {
            // §8.1: informational heads come before the final one; 101 does not exist in HTTP/2 (§8.6).
            if (endStream || block.Status == 101)
            {
                Http2Exception.Stream(streamId, Http2ErrorCode.ProtocolError, "informational response with END_STREAM, or 101");
            }

            return ValueTask.CompletedTask;
        }

        stream.HeadReceived = true;
        stream.ExpectedLength = stream.RequestIsHead || block.Status is 204 or 304 ? -1 : block.ContentLength;
        var response = new HttpResponse(block.Status, block.Headers)
        {
            Body = endStream ? EmptyBody.Instance : stream.Body!,
            BodyLength = block.ContentLength >= 0 ? block.ContentLength : null,
        };
        stream.Response = response;
        stream.ResponseHead!.TrySetResult(new Http2ClientResult(response, Http2ClientError.None));
        if (endStream && !stream.LocalClosed)
        {
            // A response complete with its head while the request body is still going up: as OnBodyReaderCompleted, the upload stops.
            CancelStream(stream);
        }

        return ValueTask.CompletedTask;
    }

    protected override void OnStreamAborted(Http2Stream stream, Http2ErrorCode code)
    {
        var error = code == Http2ErrorCode.RefusedStream || stream.Id > GoAwayLastStreamId ? Http2ClientError.Retryable
            : HasClosed ? Http2ClientError.ConnectionClosed
            : Http2ClientError.StreamReset;
        stream.ResponseHead?.TrySetResult(new Http2ClientResult(null, error, code));
    }

    protected override void OnGoAway(int lastStreamId, Http2ErrorCode errorCode)
    {
        // §6.8: streams above lastStreamId were not processed: they fail as retryable.
        foreach (var stream in StreamsAbove(lastStreamId))
        {
            AbortStream(stream, Http2ErrorCode.RefusedStream, new IOException("stream refused by GOAWAY"));
        }
    }

    internal override void OnBodyReaderCompleted(Http2Stream stream)
    {
        // The application stopped reading the response: the stream is reset. Or it read the response to its end while the
        // request body is still going up (an origin that answered before reading it, RFC 9113 §8.1): nobody reads a further
        // answer, and an origin that never reads would hold the upload at a zero window, so the upload stops too.
        if (!stream.Reset && (!stream.RemoteClosed || !stream.LocalClosed))
        {
            CancelStream(stream);
        }
    }
}
