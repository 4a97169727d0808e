using System.Buffers;
using System.IO.Pipelines;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// One stream of a connection (RFC 9113 §5.1). Only open and half-closed streams have an object: idle streams are
/// the identifiers above the last one opened, closed streams those below it without an object. Every mutable field
/// is guarded by the connection's lock.
/// </summary>
internal sealed class Http2Stream
{
    private static readonly PipeOptions InboundOptions = new(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false);

    /// <param name="withoutPeerBody">The peer's message ended with its head (END_STREAM on HEADERS: a GET): no DATA can
    /// follow (§5.1), so the stream has no inbound pipe and no body reader (no allocation for them).</param>
    public Http2Stream(Http2Connection connection, int id, long sendWindow, int receiveWindow, bool withoutPeerBody = false)
    {
        Connection = connection;
        Id = id;
        SendWindow = sendWindow;
        ReceiveWindow = receiveWindow;
        if (!withoutPeerBody)
        {
            Inbound = new Pipe(InboundOptions);
            Body = new Http2BodyReader(this, Inbound.Reader);
        }
    }

    public Http2Connection Connection { get; }

    public int Id { get; }

    /// <summary>
    /// The peer's bytes (request body on a server, response body on a client). It never pauses: flow control bounds
    /// what it holds to our stream window (§5.2), which the reader reopens as it consumes.
    /// </summary>
    public Pipe? Inbound { get; }

    /// <summary>What the application reads: <see cref="Inbound"/>, reporting consumed bytes for WINDOW_UPDATE; null when the peer's message had no body.</summary>
    public Http2BodyReader? Body { get; }

    /// <summary>Completes <see cref="Body"/> (the application is done reading), if there is one.</summary>
    public ValueTask CompleteBodyAsync() => Body?.CompleteAsync() ?? default;

    /// <summary>Cancelled when the stream is reset (by either side) or the connection ends.</summary>
    public CancellationTokenSource Aborted { get; } = new();

    /// <summary>§5.1: END_STREAM received (half-closed remote).</summary>
    public bool RemoteClosed { get; set; }

    /// <summary>§5.1: END_STREAM sent (half-closed local).</summary>
    public bool LocalClosed { get; set; }

    /// <summary>RST_STREAM sent or received: closed at once.</summary>
    public bool Reset { get; set; }

    /// <summary>The error code of a reset received, for the client's result.</summary>
    public Http2ErrorCode ResetCode { get; set; }

    /// <summary>The head (request or response) has been received; the next HEADERS are trailers.</summary>
    public bool HeadReceived { get; set; }

    /// <summary>Our HEADERS went out.</summary>
    public bool HeadSent { get; set; }

    public long SendWindow { get; set; }

    public int ReceiveWindow { get; set; }

    /// <summary>Bytes the reader consumed that have not been given back to the peer by a WINDOW_UPDATE yet.</summary>
    public int UnannouncedConsumed { get; set; }

    /// <summary>Bytes in <see cref="Inbound"/> not consumed yet (given back to the connection window when the stream ends unread).</summary>
    public long Buffered { get; set; }

    /// <summary>content-length of the peer's message, or -1 (§8.1.1).</summary>
    public long ExpectedLength { get; set; } = -1;

    public long ReceivedLength { get; set; }

    /// <summary>A sender waiting for window (completed by WINDOW_UPDATE, SETTINGS, reset or close).</summary>
    public TaskCompletionSource? WindowWaiter { get; set; }

    /// <summary>Client role: the response, or the reason there is none.</summary>
    public TaskCompletionSource<Http2ClientResult>? ResponseHead { get; set; }

    /// <summary>Client role: the response being received (its trailers are set here).</summary>
    public HttpResponse? Response { get; set; }

    /// <summary>Client role: the request was HEAD (its response's content-length announces no DATA, §8.1.1).</summary>
    public bool RequestIsHead { get; set; }

    /// <summary>Server role: the request being served (its trailers are set here).</summary>
    public HttpRequest? Request { get; set; }

    public bool IsClosed => Reset || (RemoteClosed && LocalClosed);

    public override string ToString() => $"stream {Id}";
}

/// <summary>The body of a stream as the application reads it: each consumed byte is reported so the window reopens (§6.9).</summary>
internal sealed class Http2BodyReader(Http2Stream stream, PipeReader inner) : PipeReader
{
    private ReadOnlySequence<byte> _last;

    public override bool TryRead(out ReadResult result)
    {
        var read = inner.TryRead(out result);
        if (read)
        {
            _last = result.Buffer;
        }

        return read;
    }

    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
        _last = result.Buffer;
        return result;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        var bytes = _last.Slice(0, consumed).Length;
        _last = default;
        inner.AdvanceTo(consumed, examined);
        if (bytes > 0)
        {
            stream.Connection.OnBodyConsumed(stream, (int)bytes);
        }
    }

    public override void CancelPendingRead() => inner.CancelPendingRead();

    public override void Complete(Exception? exception = null)
    {
        inner.Complete(exception);
        stream.Connection.OnBodyReaderCompleted(stream);
    }
}
