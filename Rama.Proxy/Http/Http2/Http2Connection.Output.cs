using System.Buffers;
using System.IO.Pipelines;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// The write side: every frame goes through one lock (<see cref="_writeLock"/>) into the transport's writer and is
/// flushed there, so a peer that stops reading holds writers back (the pipe's pause threshold) instead of growing a
/// queue. Writes coalesce: a writer that sees another one queued behind it leaves its frames unflushed and the last
/// writer of the burst flushes them all (one send, one TLS record, instead of one per frame); the queue is bounded by the
/// writers themselves (one frame each), and a writer that gives up waiting flushes what it was expected to. Send windows (§6.9) are reserved before DATA is written; a window the peer keeps shut past
/// <see cref="Http2Limits.SendWindowTimeout"/> ends the stream (or the connection, for the connection window).
/// </summary>
internal abstract partial class Http2Connection
{
    private static readonly TimeSpan GoAwayWriteTimeout = TimeSpan.FromSeconds(2);

    private readonly object _sync = new();
    private readonly Dictionary<int, Http2Stream> _streams = [];
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _writesAborted = new();
    private readonly PipeWriter _output;
    private readonly HpackEncoder _encoder;
    private readonly ArrayBufferWriter<byte> _headerScratch = new(512);
    private readonly Queue<TaskCompletionSource<bool>> _slotWaiters = new();
    private readonly TaskCompletionSource _peerSettingsSeen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _outputDone;
    private bool _closed_;

    // Write coalescing: counted writers queued for or holding the write lock; the holder flushes only when it is the last.
    private int _queuedWriters;
    private bool _holderCounted; // under the write lock: the holder came through EnterWriterAsync and has not ended its write
    private volatile bool _unflushed; // frames in the writer that no flush has taken yet

    private int _lastPeerStreamId;
    private int _nextLocalStreamId;
    private int _activePeerStreams;
    private int _activeLocalStreams;
    // The last stream identifier of the (final) GOAWAY sent and of the lowest GOAWAY received; NoGoAway until one is. Kept
    // wider than a stream identifier: a GOAWAY with 2^31-1 (the first of a graceful shutdown, §6.8) is a GOAWAY too.
    private const long NoGoAway = long.MaxValue;
    private long _goAwaySent = NoGoAway;
    private long _goAwayReceived = NoGoAway;

    private int _connectionReceiveWindow;
    private int _connectionUnannounced;
    private long _connectionSendWindow = 65_535; // §6.9.2: every window starts at 65,535

    private long _peerInitialWindow = 65_535;
    private int _peerMaxFrameSize = Http2FrameReader.MinMaxFrameSize;
    private int _peerMaxConcurrentStreams = int.MaxValue; // §6.5.2: unlimited until the peer says otherwise

    /// <summary>The peer's SETTINGS_MAX_CONCURRENT_STREAMS (int.MaxValue until it sends one).</summary>
    public int PeerMaxConcurrentStreams
    {
        get
        {
            lock (_sync)
            {
                return _peerMaxConcurrentStreams;
            }
        }
    }

    /// <summary>Streams we opened that are still open.</summary>
    public int ActiveLocalStreams
    {
        get
        {
            lock (_sync)
            {
                return _activeLocalStreams;
            }
        }
    }

    /// <summary>Streams the peer opened that are still open.</summary>
    public int ActivePeerStreams
    {
        get
        {
            lock (_sync)
            {
                return _activePeerStreams;
            }
        }
    }

    /// <summary>The last stream identifier of a GOAWAY received, or int.MaxValue.</summary>
    public int GoAwayLastStreamId
    {
        get
        {
            lock (_sync)
            {
                return (int)Math.Min(_goAwayReceived, int.MaxValue);
            }
        }
    }

    /// <summary>The last stream identifier of a GOAWAY we sent, or int.MaxValue.</summary>
    protected int GoAwaySentLastStreamId
    {
        get
        {
            lock (_sync)
            {
                return (int)Math.Min(_goAwaySent, int.MaxValue);
            }
        }
    }

    /// <summary>True once GOAWAY was sent or received, or the connection ended: no new stream may start.</summary>
    public bool IsGoingAway
    {
        get
        {
            lock (_sync)
            {
                return _closed_ || _goAwaySent != NoGoAway || _goAwayReceived != NoGoAway || _nextLocalStreamId > int.MaxValue - 2;
            }
        }
    }

    private async Task SendPrefaceAndSettingsAsync()
    {
        _nextLocalStreamId = IsServer ? 2 : 1;
        Http2Setting[] settings = IsServer
            ?
            [
                new((ushort)Http2SettingId.MaxConcurrentStreams, (uint)Limits.MaxConcurrentStreams),
                new((ushort)Http2SettingId.InitialWindowSize, (uint)Limits.InitialStreamWindowSize),
                new((ushort)Http2SettingId.MaxFrameSize, (uint)Limits.MaxFrameSize),
                new((ushort)Http2SettingId.MaxHeaderListSize, (uint)Limits.Hpack.MaxHeaderListSize),
                new((ushort)Http2SettingId.EnableConnectProtocol, Limits.EnableConnectProtocol ? 1u : 0u),
            ]
            :
            [
                new((ushort)Http2SettingId.EnablePush, 0),
                new((ushort)Http2SettingId.MaxConcurrentStreams, (uint)Limits.MaxConcurrentStreams),
                new((ushort)Http2SettingId.InitialWindowSize, (uint)Limits.InitialStreamWindowSize),
                new((ushort)Http2SettingId.MaxFrameSize, (uint)Limits.MaxFrameSize),
                new((ushort)Http2SettingId.MaxHeaderListSize, (uint)Limits.Hpack.MaxHeaderListSize),
            ];
        await _writeLock.WaitAsync(_writesAborted.Token).ConfigureAwait(false);
        try
        {
            if (!IsServer)
            {
                _output.Write(Http2Preface.Bytes);
            }

            Http2FrameWriter.WriteSettings(_output, settings);
            var increment = Limits.InitialConnectionWindowSize - 65_535;
            if (increment > 0)
            {
                Http2FrameWriter.WriteWindowUpdate(_output, 0, increment);
            }

            StartSettingsTimer();
            await FlushLockedAsync(_writesAborted.Token).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Flushes under the write lock; false when the transport's reader is gone.</summary>
    private async ValueTask<bool> FlushLockedAsync(CancellationToken cancellationToken)
    {
        _unflushed = false;
        var flush = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            _outputDone = true;
            return false;
        }

        return true;
    }

    /// <summary>
    /// Takes the write lock as a counted writer; false when output is done (the caller must not write, and holds no lock).
    /// A true return is paired with <see cref="EndWriteLockedAsync"/> (optional) and then <see cref="ExitWriter"/> (always).
    /// </summary>
    private async ValueTask<bool> EnterWriterAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _queuedWriters);
        try
        {
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            LeaveWriterQueue(); // gave up waiting: the holder before us may have counted on us to flush
            throw;
        }

        if (!_outputDone)
        {
            _holderCounted = true;
            return true;
        }

        Interlocked.Decrement(ref _queuedWriters);
        _writeLock.Release();
        return false;
    }

    /// <summary>
    /// Ends a counted write under the lock: flushes, unless another writer is queued (it flushes our frames with its
    /// own) and fewer than <see cref="DeferredFlushLimit"/> bytes wait unflushed. False when the transport's reader is gone.
    /// </summary>
    private ValueTask<bool> EndWriteLockedAsync(CancellationToken cancellationToken, bool deferFlush = false)
    {
        _holderCounted = false;
        _unflushed = true; // before the decrement: a queued writer that gives up after it sees this
        var others = Interlocked.Decrement(ref _queuedWriters) > 0;
        // Unflushed bytes are not held back by the transport's pause threshold (only a flush is): under steady contention
        // (streams sending bodies at once) every writer found another queued, none flushed, and the writer grew without
        // bound (300 MB of heap, 4 streams of 20 MB). Past the limit the holder flushes, and waits for the transport.
        var small = _output.CanGetUnflushedBytes && _output.UnflushedBytes < DeferredFlushLimit;
        if (others && small)
        {
            return ValueTask.FromResult(true);
        }

        if (deferFlush && small)
        {
            ScheduleDeferredFlush();
            return ValueTask.FromResult(true);
        }

        return FlushLockedAsync(cancellationToken);
    }

    /// <summary>
    /// Stream frames (heads, DATA, trailers) of a write that no other writer follows are flushed by a work item queued
    /// behind the work already waiting (the socket completions of other streams' origins, which write their responses
    /// first): responses that become ready together leave in one send (one TLS record) instead of one each. Measured with
    /// h2load -m 10 (benchmarks/results/2026-12-07-h2-3.md): sendto per request 1.97 -> 1.57 on h2c, 1.97 -> 1.44 over TLS
    /// (the transport's writer must report <c>UnflushedBytes</c>, or every write flushes). At most this many bytes wait unflushed; control frames
    /// (SETTINGS, PING, RST_STREAM, GOAWAY, WINDOW_UPDATE) are flushed at once.
    /// </summary>
    private const long DeferredFlushLimit = 64 * 1024;

    private int _deferredFlushQueued;

    private void ScheduleDeferredFlush()
    {
        if (Interlocked.Exchange(ref _deferredFlushQueued, 1) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static self =>
            {
                Volatile.Write(ref self._deferredFlushQueued, 0);
                _ = self.FlushDeferredAsync();
            }, this, preferLocal: false);
        }
    }

    /// <summary>Releases the write lock of a counted writer (in a finally); one that failed before ending its write flushes if it was the last.</summary>
    private void ExitWriter()
    {
        if (_holderCounted)
        {
            _holderCounted = false;
            _writeLock.Release();
            LeaveWriterQueue();
            return;
        }

        _writeLock.Release();
    }

    private void LeaveWriterQueue()
    {
        if (Interlocked.Decrement(ref _queuedWriters) == 0 && _unflushed)
        {
            _ = FlushDeferredAsync();
        }
    }

    /// <summary>Flushes frames whose writer left them to a writer that then gave up (cancelled while queued, or failed).</summary>
    private async Task FlushDeferredAsync()
    {
        if (_writesAborted.IsCancellationRequested || _outputDone)
        {
            // Nothing more can be sent (and a writer giving up on an aborted connection must not start another attempt
            // that gives up at once, and so on: that recursed until the stack overflowed).
            return;
        }

        try
        {
            if (!await EnterWriterAsync(_writesAborted.Token).ConfigureAwait(false))
            {
                return;
            }

            try
            {
                if (_unflushed)
                {
                    await EndWriteLockedAsync(_writesAborted.Token).ConfigureAwait(false);
                }
            }
            finally
            {
                ExitWriter();
            }
        }
        catch (Exception error) when (error is OperationCanceledException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, "deferred flush: " + error.Message);
        }
    }

    private CancellationTokenSource? Link(CancellationToken cancellationToken, out CancellationToken token)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            token = _writesAborted.Token;
            return null;
        }

        var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _writesAborted.Token);
        token = linked.Token;
        return linked;
    }

    /// <summary>PING (§6.7): an ACK of the peer's, or one of ours (its ACK comes to <see cref="OnPingAck"/>).</summary>
    protected async ValueTask SendPingAsync(ulong data, bool ack)
    {
        if (!await EnterWriterAsync(_writesAborted.Token).ConfigureAwait(false))
        {
            return;
        }

        try
        {
            Http2FrameWriter.WritePing(_output, data, ack); // §6.7
            await EndWriteLockedAsync(_writesAborted.Token).ConfigureAwait(false);
        }
        finally
        {
            ExitWriter();
        }
    }

    /// <summary>
    /// RST_STREAM, flushed at once. <paramref name="afterResponse"/>: the stream's complete response waits unflushed
    /// (a deferred flush) and goes out in a send of its own first. RFC 9113 §8.1's early response ends with RST_STREAM
    /// NO_ERROR, and curl (nghttp2) that receives the two in one read while it still uploads fails the transfer (exit 92,
    /// sometimes without the response) where it takes the response it read first.
    /// </summary>
    protected async ValueTask SendRstStreamAsync(int streamId, Http2ErrorCode code, bool afterResponse = false)
    {
        if (!await EnterWriterAsync(_writesAborted.Token).ConfigureAwait(false))
        {
            return;
        }

        try
        {
            if (afterResponse && _unflushed)
            {
                await FlushLockedAsync(_writesAborted.Token).ConfigureAwait(false);
            }

            Http2FrameWriter.WriteRstStream(_output, streamId, code);
            await EndWriteLockedAsync(_writesAborted.Token).ConfigureAwait(false);
        }
        finally
        {
            ExitWriter();
        }
    }

    /// <summary>
    /// GOAWAY (§6.8) with our last processed peer stream, never more than a GOAWAY sent before; never throws (best effort
    /// within a short timeout: a peer that does not read is not waited for).
    /// </summary>
    protected ValueTask SendGoAwayAsync(Http2ErrorCode code, string? debug)
    {
        int last;
        lock (_sync)
        {
            _goAwaySent = Math.Min(_goAwaySent, IsServer ? _lastPeerStreamId : 0);
            last = (int)_goAwaySent;
        }

        return WriteGoAwayAsync(last, code, debug);
    }

    /// <summary>
    /// The first GOAWAY of a graceful shutdown, with 2^31-1: the peer opens no new stream, and streams it sent before it saw
    /// this are still taken (nothing is refused until the final GOAWAY). False when a GOAWAY went out already: the
    /// identifier it sent must never grow (§6.8).
    /// </summary>
    protected async ValueTask<bool> AnnounceGoAwayAsync()
    {
        lock (_sync)
        {
            if (_goAwaySent != NoGoAway)
            {
                return false;
            }
        }

        await WriteGoAwayAsync(int.MaxValue, Http2ErrorCode.NoError, null).ConfigureAwait(false);
        return true;
    }

    private async ValueTask WriteGoAwayAsync(int last, Http2ErrorCode code, string? debug)
    {
        try
        {
            using var timeout = new CancellationTokenSource(GoAwayWriteTimeout, Time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _writesAborted.Token);
            if (!await EnterWriterAsync(linked.Token).ConfigureAwait(false))
            {
                return;
            }

            try
            {
                var text = code == Http2ErrorCode.NoError || debug is null ? [] : System.Text.Encoding.ASCII.GetBytes(debug.Length > 128 ? debug[..128] : debug);
                Http2FrameWriter.WriteGoAway(_output, last, code, text);
                await EndWriteLockedAsync(linked.Token).ConfigureAwait(false);
            }
            finally
            {
                ExitWriter();
            }
        }
        catch (Exception error) when (error is OperationCanceledException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, "GOAWAY not sent: " + error.Message);
        }
    }

    private async ValueTask ApplyPeerSettingsAndAckAsync(List<Http2Setting> settings)
    {
        await _writeLock.WaitAsync(_writesAborted.Token).ConfigureAwait(false);
        try
        {
            lock (_sync)
            {
                foreach (var setting in settings)
                {
                    ApplySettingLocked(setting);
                }
            }

            _peerSettingsSeen.TrySetResult();
            if (_outputDone)
            {
                return;
            }

            Http2FrameWriter.WriteSettingsAck(_output); // §6.5.3
            await FlushLockedAsync(_writesAborted.Token).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void ApplySettingLocked(Http2Setting setting)
    {
        switch ((Http2SettingId)setting.Id)
        {
            case Http2SettingId.HeaderTableSize:
                // Under the write lock: the size update goes at the start of the next block we encode (RFC 7541 §4.2).
                _encoder.SetPeerHeaderTableSize((int)Math.Min(setting.Value, int.MaxValue));
                break;
            case Http2SettingId.EnablePush when !IsServer && setting.Value != 0:
                Http2Exception.Connection(Http2ErrorCode.ProtocolError, "server sent SETTINGS_ENABLE_PUSH 1"); // §6.5.2
                break;
            case Http2SettingId.MaxConcurrentStreams:
                _peerMaxConcurrentStreams = (int)Math.Min(setting.Value, int.MaxValue);
                GrantSlotsLocked();
                break;
            case Http2SettingId.InitialWindowSize:
                // §6.9.2: the change applies to every open stream's send window; past 2^31-1 is a FLOW_CONTROL_ERROR.
                var delta = setting.Value - _peerInitialWindow;
                _peerInitialWindow = setting.Value;
                foreach (var stream in _streams.Values)
                {
                    stream.SendWindow += delta;
                    if (stream.SendWindow > Http2FrameReader.MaxWindowSize)
                    {
                        Http2Exception.Connection(Http2ErrorCode.FlowControlError, "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window");
                    }
                }

                WakeAllSendersLocked();
                break;
            case Http2SettingId.MaxFrameSize:
                _peerMaxFrameSize = (int)setting.Value;
                break;
            case Http2SettingId.EnableConnectProtocol:
                PeerEnablesConnectProtocol = setting.Value == 1;
                break;
            default:
                break; // MAX_HEADER_LIST_SIZE is advisory (§6.5.2); unknown settings are ignored
        }
    }

    /// <summary>Server role: registers a stream the peer opened; null when <see cref="Http2Limits.MaxConcurrentStreams"/> are open (§5.1.2).</summary>
    protected Http2Stream? TryOpenPeerStream(int streamId, bool endStream)
    {
        lock (_sync)
        {
            if (_activePeerStreams >= Limits.MaxConcurrentStreams)
            {
                return null;
            }

            var stream = new Http2Stream(this, streamId, _peerInitialWindow, Limits.InitialStreamWindowSize, withoutPeerBody: endStream) { HeadReceived = true, RemoteClosed = endStream };
            _streams.Add(streamId, stream);
            _activePeerStreams++;

            return stream;
        }
    }

    /// <summary>
    /// Client role: opens a stream (identifier chosen under the write lock, so identifiers go out in increasing order,
    /// §5.1.1) and sends its HEADERS. Null when the connection took no new stream.
    /// </summary>
    protected async ValueTask<Http2Stream?> OpenLocalStreamAsync(HpackHeaderField[] fields, bool endStream, Action<Http2Stream> prepare, CancellationToken cancellationToken)
    {
        using var linked = Link(cancellationToken, out var token);
        if (!await EnterWriterAsync(token).ConfigureAwait(false))
        {
            return null;
        }

        try
        {
            Http2Stream stream;
            lock (_sync)
            {
                if (_closed_ || _goAwayReceived != NoGoAway || _nextLocalStreamId > int.MaxValue - 2)
                {
                    return null;
                }

                stream = new Http2Stream(this, _nextLocalStreamId, _peerInitialWindow, Limits.InitialStreamWindowSize) { HeadSent = true, LocalClosed = endStream };
                _nextLocalStreamId += 2;
                prepare(stream);
                _streams.Add(stream.Id, stream);
            }

            WriteHeaderBlockLocked(stream.Id, fields, endStream);
            await EndWriteLockedAsync(token).ConfigureAwait(false);
            return stream;
        }
        finally
        {
            ExitWriter();
        }
    }

    private void WriteHeaderBlockLocked(int streamId, ReadOnlySpan<HpackHeaderField> fields, bool endStream)
    {
        _headerScratch.ResetWrittenCount();
        _encoder.Encode(fields, _headerScratch);
        int maxFrameSize;
        lock (_sync)
        {
            maxFrameSize = _peerMaxFrameSize;
        }

        Http2FrameWriter.WriteHeaders(_output, streamId, _headerScratch.WrittenSpan, endStream, maxFrameSize);
    }

    /// <summary>Sends a head or trailers on <paramref name="stream"/> (§8.1); END_STREAM half-closes it.</summary>
    protected async ValueTask SendHeadersAsync(Http2Stream stream, ReadOnlyMemory<HpackHeaderField> fields, bool endStream, CancellationToken cancellationToken)
    {
        using var linked = Link(cancellationToken, out var token);
        if (!await EnterWriterAsync(token).ConfigureAwait(false))
        {
            throw new IOException("HTTP/2 connection closed");
        }

        try
        {
            if (stream.Reset)
            {
                throw new IOException($"stream {stream.Id} was reset");
            }

            WriteHeaderBlockLocked(stream.Id, fields.Span, endStream);
            stream.HeadSent = true;
            if (endStream)
            {
                MarkLocalClosed(stream); // before the frame can reach the peer: its next frame on this stream meets a closed stream
            }

            await EndWriteLockedAsync(token, deferFlush: true).ConfigureAwait(false);
        }
        finally
        {
            ExitWriter();
        }
    }

    private void MarkLocalClosed(Http2Stream stream)
    {
        lock (_sync)
        {
            stream.LocalClosed = true;
        }

        CloseIfDone(stream);
    }

    /// <summary>
    /// Sends <paramref name="body"/> as DATA within the send windows until it completes, then the trailers
    /// <paramref name="trailers"/> returns (read after completion) or END_STREAM. Holds no more than one read of the
    /// body: what the peer does not let us send stays in the body's own pipe.
    /// </summary>
    protected async Task SendBodyAsync(Http2Stream stream, PipeReader body, TrailerSource trailers, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await body.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var trailerFields = result.IsCompleted ? trailers.Read() : null;
            var endWithData = result.IsCompleted && (trailerFields is null || trailerFields.Count == 0);
            while (!buffer.IsEmpty)
            {
                var size = await ReserveSendWindowAsync(stream, (int)Math.Min(buffer.Length, int.MaxValue), cancellationToken).ConfigureAwait(false);
                var chunk = buffer.Slice(0, size);
                buffer = buffer.Slice(size);
                await SendDataAsync(stream, chunk, endWithData && buffer.IsEmpty, cancellationToken).ConfigureAwait(false);
            }

            body.AdvanceTo(result.Buffer.End);
            if (!result.IsCompleted)
            {
                continue;
            }

            if (!endWithData)
            {
                await SendHeadersAsync(stream, ToFields(trailerFields!, status: null), endStream: true, cancellationToken).ConfigureAwait(false);
            }
            else if (result.Buffer.IsEmpty)
            {
                await SendDataAsync(stream, ReadOnlySequence<byte>.Empty, endStream: true, cancellationToken).ConfigureAwait(false);
            }

            return;
        }
    }

    /// <summary>
    /// A head followed by a body (<see cref="SendBodyAsync"/>'s rules): the HEADERS and what the body already holds, as
    /// far as the send windows allow, go out in one write (one flush, one send, one TLS record for a small response);
    /// the rest follows as <see cref="SendBodyAsync"/> sends it.
    /// </summary>
    protected async Task SendHeadAndBodyAsync(Http2Stream stream, ReadOnlyMemory<HpackHeaderField> fields, PipeReader body, TrailerSource trailers, CancellationToken cancellationToken)
    {
        bool ended;
        using (Link(cancellationToken, out var token))
        {
            if (!await EnterWriterAsync(token).ConfigureAwait(false))
            {
                throw new IOException("HTTP/2 connection closed");
            }

            try
            {
                if (stream.Reset)
                {
                    throw new IOException($"stream {stream.Id} was reset");
                }

                WriteHeaderBlockLocked(stream.Id, fields.Span, endStream: false);
                stream.HeadSent = true;
                ended = WriteReadyDataLocked(stream, body, trailers);
                await EndWriteLockedAsync(token, deferFlush: true).ConfigureAwait(false);
            }
            finally
            {
                ExitWriter();
            }
        }

        if (!ended)
        {
            await SendBodyAsync(stream, body, trailers, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Under the write lock: DATA for what <paramref name="body"/> holds now, within the send windows (no waiting). True
    /// when that ended the stream; otherwise the body's reader is left at the first byte not sent.
    /// </summary>
    private bool WriteReadyDataLocked(Http2Stream stream, PipeReader body, TrailerSource trailers)
    {
        if (!body.TryRead(out var result))
        {
            return false;
        }

        var buffer = result.Buffer;
        var endWithData = result.IsCompleted && trailers.Read() is not { Count: > 0 };
        while (!buffer.IsEmpty)
        {
            var size = TryReserveSendWindow(stream, buffer.Length);
            if (size == 0)
            {
                break;
            }

            var chunk = buffer.Slice(0, size);
            buffer = buffer.Slice(size);
            var end = endWithData && buffer.IsEmpty;
            Http2FrameWriter.WriteData(_output, stream.Id, chunk, end);
            if (end)
            {
                MarkLocalClosed(stream);
                body.AdvanceTo(result.Buffer.End);
                return true;
            }
        }

        if (endWithData && result.Buffer.IsEmpty)
        {
            Http2FrameWriter.WriteData(_output, stream.Id, ReadOnlySequence<byte>.Empty, endStream: true);
            MarkLocalClosed(stream);
            body.AdvanceTo(result.Buffer.End);
            return true;
        }

        body.AdvanceTo(buffer.Start); // consumed what went out; the rest (or the end of the body) is read again by SendBodyAsync
        return false;
    }

    /// <summary>One DATA frame (the caller reserved its window).</summary>
    protected async ValueTask SendDataAsync(Http2Stream stream, ReadOnlySequence<byte> data, bool endStream, CancellationToken cancellationToken)
    {
        using var linked = Link(cancellationToken, out var token);
        if (!await EnterWriterAsync(token).ConfigureAwait(false))
        {
            throw new IOException("HTTP/2 connection closed");
        }

        try
        {
            if (stream.Reset)
            {
                throw new IOException($"stream {stream.Id} was reset");
            }

            Http2FrameWriter.WriteData(_output, stream.Id, data, endStream);
            if (endStream)
            {
                MarkLocalClosed(stream);
            }

            await EndWriteLockedAsync(token, deferFlush: true).ConfigureAwait(false);
        }
        finally
        {
            ExitWriter();
        }
    }

    /// <summary>
    /// HTTP fields to HPACK fields (§8.2): names lowercased, connection-specific fields dropped (§8.2.2), :status first
    /// when given. Host is left to the caller (it becomes :authority in requests).
    /// </summary>
    protected static HpackHeaderField[] ToFields(HttpHeaders headers, int? status, int extra = 0, IEnumerable<HpackHeaderField>? pseudo = null)
    {
        var fields = new List<HpackHeaderField>(headers.Count + 1 + extra);
        if (status is { } s)
        {
            fields.Add(new HpackHeaderField(StatusName, StatusValue(s)));
        }

        if (pseudo is not null)
        {
            fields.AddRange(pseudo);
        }

        foreach (var field in headers)
        {
            if (IsForwardable(field))
            {
                fields.Add(new HpackHeaderField(Lower(field.Name), field.Value));
            }
        }

        return [.. fields];
    }

    /// <summary>
    /// <see cref="ToFields"/> for a response head into an array from the shared pool (no allocation per response): :status,
    /// the fields, then <paramref name="contentLength"/> when given. Encode it, then give it back with <see cref="ReturnFields"/>.
    /// </summary>
    protected static ArraySegment<HpackHeaderField> RentResponseFields(HttpHeaders headers, int status, byte[]? contentLength)
    {
        var array = ArrayPool<HpackHeaderField>.Shared.Rent(headers.Count + 2);
        var n = 0;
        array[n++] = new HpackHeaderField(StatusName, StatusValue(status));
        foreach (var field in headers)
        {
            if (!IsForwardable(field))
            {
                continue;
            }

            array[n++] = new HpackHeaderField(Lower(field.Name), field.Value);
        }

        if (contentLength is not null)
        {
            array[n++] = new HpackHeaderField(ContentLengthName, contentLength);
        }

        return new ArraySegment<HpackHeaderField>(array, 0, n);
    }

    /// <summary>Gives back an array of <see cref="RentResponseFields"/>, cleared (it holds references to header bytes).</summary>
    protected static void ReturnFields(ArraySegment<HpackHeaderField> fields)
    {
        if (fields.Array is { } array)
        {
            fields.AsSpan().Clear();
            ArrayPool<HpackHeaderField>.Shared.Return(array);
        }
    }

    // §8.2.2: connection-specific fields and pseudo-headers from HTTP/1.1 are not sent; TE only as "trailers".
    private static bool IsForwardable(HttpHeaderField field)
    {
        var name = field.Name.Span;
        return !(IsConnectionSpecific(name) || (name.Length > 0 && name[0] == (byte)':')
            || (System.Text.Ascii.EqualsIgnoreCase(name, "te"u8) && !field.Value.Span.SequenceEqual("trailers"u8)));
    }

    private static readonly byte[] ContentLengthName = "content-length"u8.ToArray();

    private static bool IsConnectionSpecific(ReadOnlySpan<byte> name) =>
        System.Text.Ascii.EqualsIgnoreCase(name, "connection"u8) || System.Text.Ascii.EqualsIgnoreCase(name, "keep-alive"u8)
        || System.Text.Ascii.EqualsIgnoreCase(name, "proxy-connection"u8) || System.Text.Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8)
        || System.Text.Ascii.EqualsIgnoreCase(name, "upgrade"u8) || System.Text.Ascii.EqualsIgnoreCase(name, "host"u8);

    private static readonly byte[] StatusName = ":status"u8.ToArray();

    // Per-response allocations avoided: the common statuses' values, and the lowercase names of the fields origins send most
    // (nginx, Apache and most frameworks capitalise them: "Content-Type"), shared read-only arrays.
    private static readonly byte[][] CommonStatuses = [.. new[] { 200, 204, 206, 301, 302, 304, 400, 401, 403, 404, 500, 502, 503, 504 }
        .Select(status => System.Text.Encoding.ASCII.GetBytes(status.ToString(System.Globalization.CultureInfo.InvariantCulture)))];

    private static readonly byte[][] CommonNames = [.. new[]
    {
        "content-type", "content-length", "date", "server", "last-modified", "etag", "accept-ranges", "via", "cache-control",
        "expires", "vary", "content-encoding", "location", "set-cookie", "age", "x-content-type-options", "strict-transport-security",
    }.Select(System.Text.Encoding.ASCII.GetBytes)];

    private static ReadOnlyMemory<byte> StatusValue(int status)
    {
        foreach (var common in CommonStatuses)
        {
            if (status == (common[0] - '0') * 100 + (common[1] - '0') * 10 + (common[2] - '0'))
            {
                return common;
            }
        }

        return System.Text.Encoding.ASCII.GetBytes(status.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    private static ReadOnlyMemory<byte> Lower(ReadOnlyMemory<byte> name)
    {
        var span = name.Span;
        var i = 0;
        while (i < span.Length && span[i] is not (>= (byte)'A' and <= (byte)'Z'))
        {
            i++;
        }

        if (i == span.Length)
        {
            return name;
        }

        foreach (var common in CommonNames)
        {
            if (common.Length == span.Length && System.Text.Ascii.EqualsIgnoreCase(span, common))
            {
                return common;
            }
        }

        var copy = span.ToArray();
        System.Text.Ascii.ToLowerInPlace(copy, out _);
        return copy;
    }
}

/// <summary>
/// Where the trailers of a message being sent come from once its body has ended: a static function of a state object,
/// so a response needs no closure and no delegate of its own.
/// </summary>
internal readonly struct TrailerSource(Func<object?, HttpHeaders?> read, object? state)
{
    /// <summary>No trailers.</summary>
    public static TrailerSource None => new(static _ => null, null);

    /// <summary>The trailers of <paramref name="response"/> that may go on (<see cref="HttpForwardRules.TrailersToSend"/>).</summary>
    public static TrailerSource Of(HttpResponse response) => new(static r => HttpForwardRules.TrailersToSend(((HttpResponse)r!).Trailers), response);

    /// <summary>The trailers of <paramref name="request"/> that may go on.</summary>
    public static TrailerSource Of(HttpRequest request) => new(static r => HttpForwardRules.TrailersToSend(((HttpRequest)r!).Trailers), request);

    public HttpHeaders? Read() => read(state);
}
