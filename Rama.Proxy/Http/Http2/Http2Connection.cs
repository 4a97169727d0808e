using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// The HTTP/2 engine both roles share (RFC 9113): the read loop and frame dispatch, stream states (§5.1), stream
/// identifier rules (§5.1.1), flow control both ways (§5.2, §6.9), SETTINGS (§6.5), PING, GOAWAY (§6.8), and the
/// limits that answer abuse (rapid reset, CONTINUATION flood, HPACK bomb). A role (<see cref="Http2ServerConnection"/>,
/// <see cref="Http2ClientSession"/>) decides what a header block means. One instance per connection; frames are
/// read by one loop, written through one lock (<see cref="Http2Connection"/>.Output.cs).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification =
    "The semaphore never creates its wait handle and the token sources have no timer: nothing to release, and late writers must not meet a disposed lock.")]
internal abstract partial class Http2Connection
{
    private readonly PipeReader _input;
    private readonly HpackDecoder _decoder;
    private readonly List<Http2Setting> _settingsScratch = [];
    private readonly CancellationTokenSource _closing = new();
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Header block being assembled from HEADERS + CONTINUATION (§4.3): the only frames allowed in between are its CONTINUATIONs.
    private readonly ArrayBufferWriter<byte> _headerBlock = new(1024);
    private int _headerBlockStream;
    private bool _headerBlockEndStream;
    private int _continuationFrames;

    private bool _firstFrameSeen;
    private bool _settingsAcked;
    private ITimer? _settingsTimer;

    // Rapid reset (CVE-2023-44487): resets and refusals counted per window.
    private long _resetWindowStart;
    private int _resetsInWindow;

    // Akamai fingerprint inputs, captured until the first HEADERS (server role).
    private List<Http2Setting>? _firstSettings;
    private int _firstWindowUpdate;
    private List<Http2PriorityFrame>? _priorityFrames;
    private Http2Fingerprint? _fingerprint;

    protected Http2Connection(IDuplexPipe transport, bool isServer, Http2Limits limits, ILogger logger, TimeProvider time, long connectionId)
    {
        limits.Validate();
        IsServer = isServer;
        Limits = limits;
        Logger = logger;
        Time = time;
        ConnectionId = connectionId;
        _input = transport.Input;
        _output = transport.Output;
        _decoder = new HpackDecoder(limits.Hpack);
        _encoder = new HpackEncoder();
        _connectionReceiveWindow = limits.InitialConnectionWindowSize;
        _resetWindowStart = time.GetTimestamp();
    }

    public bool IsServer { get; }

    public Http2Limits Limits { get; }

    public ILogger Logger { get; }

    public TimeProvider Time { get; }

    public long ConnectionId { get; }

    /// <summary>Completes when the connection has ended (read loop gone, streams aborted, output completed).</summary>
    public Task Closed => _closed.Task;

    /// <summary>Server role: what the client's first frames say (available from its first HEADERS on).</summary>
    public Http2Fingerprint? Fingerprint => _fingerprint;

    /// <summary>The first close reason (first wins), for logs and tests.</summary>
    public string? CloseReason { get; private set; }

    protected CancellationToken Closing => _closing.Token;

    /// <summary>Peer's SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3).</summary>
    public bool PeerEnablesConnectProtocol { get; private set; }

    /// <summary>The role's answer to a complete header block that opens a stream or carries its head.</summary>
    protected abstract ValueTask OnHeadAsync(Http2Stream? stream, int streamId, Http2HeaderCollector block, bool endStream, bool tooLarge);

    /// <summary>Called once the last stream closed (the role may finish a drain).</summary>
    protected virtual void OnStreamClosed(Http2Stream stream)
    {
    }

    /// <summary>Called when GOAWAY arrives (§6.8).</summary>
    protected virtual void OnGoAway(int lastStreamId, Http2ErrorCode errorCode)
    {
    }

    /// <summary>True when <paramref name="streamId"/> is one the peer initiates (§5.1.1: clients odd, servers even).</summary>
    protected bool IsPeerInitiated(int streamId) => (streamId & 1) == (IsServer ? 1 : 0);

    /// <summary>
    /// Runs the connection until it ends: the preface (read as a server, written as a client), our SETTINGS, then
    /// the frame loop. Never throws for protocol or transport trouble: those end the connection with the right
    /// GOAWAY and a recorded reason.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var link = cancellationToken.Register(static s => ((Http2Connection)s!).Abort(Http2ErrorCode.NoError, "connection cancelled"), this);
        try
        {
            if (IsServer)
            {
                await ReadPrefaceAsync().ConfigureAwait(false);
            }

            await SendPrefaceAndSettingsAsync().ConfigureAwait(false);
            await ReadFramesAsync().ConfigureAwait(false);
            Close("peer closed the connection");
        }
        catch (Http2Exception error) when (error.IsConnectionError)
        {
            Http2Log.ConnectionError(Logger, ConnectionId, error.ErrorCode, error.Message);
            await SendGoAwayAsync(error.ErrorCode, error.Message).ConfigureAwait(false);
            Close(error.Message);
        }
        catch (OperationCanceledException) when (_closing.IsCancellationRequested)
        {
            Close("closed");
        }
        catch (Exception error) when (error is IOException or ObjectDisposedException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, error.Message);
            Close("transport: " + error.Message);
        }
        catch (Exception error)
        {
            // A defect of ours: the peer gets a clean INTERNAL_ERROR and the connection ends, nothing crashes.
            Http2Log.InternalError(Logger, error, ConnectionId);
            await SendGoAwayAsync(Http2ErrorCode.InternalError, "internal error").ConfigureAwait(false);
            Close("internal error: " + error.Message);
        }
        finally
        {
            await FinishAsync().ConfigureAwait(false);
        }
    }

    private async Task ReadPrefaceAsync()
    {
        using var timeout = new CancellationTokenSource(Limits.PrefaceTimeout, Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _closing.Token);
        while (true)
        {
            ReadResult result;
            try
            {
                result = await _input.ReadAsync(linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                Http2Exception.Connection(Http2ErrorCode.ProtocolError, "no connection preface in time");
                throw;
            }

            var buffer = result.Buffer;
            switch (Http2Preface.Detect(buffer))
            {
                case PrefaceMatch.Match:
                    _input.AdvanceTo(buffer.GetPosition(Http2Preface.Length));
                    return;
                case PrefaceMatch.NoMatch:
                    _input.AdvanceTo(buffer.Start, buffer.End);
                    Http2Exception.Connection(Http2ErrorCode.ProtocolError, "invalid connection preface"); // §3.4
                    break;
                default:
                    _input.AdvanceTo(buffer.Start, buffer.End);
                    if (result.IsCompleted)
                    {
                        throw new IOException("connection closed inside the preface");
                    }

                    break;
            }
        }
    }

    private async Task ReadFramesAsync()
    {
        while (true)
        {
            var result = await _input.ReadAsync(_closing.Token).ConfigureAwait(false);
            var buffer = result.Buffer;
            try
            {
                while (true)
                {
                    Http2FrameHeader header;
                    ReadOnlySequence<byte> payload;
                    try
                    {
                        if (!Http2FrameReader.TryReadFrame(ref buffer, Limits.MaxFrameSize, out header, out payload))
                        {
                            break;
                        }

                        Http2Log.FrameReceived(Logger, ConnectionId, header.Type, header.StreamId, header.Length, header.Flags);
                        await ProcessFrameAsync(header, payload).ConfigureAwait(false);
                    }
                    catch (Http2Exception error) when (!error.IsConnectionError)
                    {
                        Http2Log.StreamError(Logger, ConnectionId, error.StreamId, error.ErrorCode, error.Message);
                        await ResetStreamAsync(error.StreamId, error.ErrorCode).ConfigureAwait(false);
                    }

                    if (_closing.IsCancellationRequested)
                    {
                        return;
                    }
                }
            }
            finally
            {
                _input.AdvanceTo(buffer.Start, buffer.End);
            }

            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private ValueTask ProcessFrameAsync(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        // §3.4: the first frame of the peer is its SETTINGS.
        if (!_firstFrameSeen)
        {
            if (header.Type != Http2FrameType.Settings || header.HasFlag(Http2Flags.Ack))
            {
                Http2Exception.Connection(Http2ErrorCode.ProtocolError, "first frame is not SETTINGS");
            }

            _firstFrameSeen = true;
        }

        // §6.10: nothing may come between HEADERS and the CONTINUATION that ends its block.
        if (_headerBlockStream != 0 && (header.Type != Http2FrameType.Continuation || header.StreamId != _headerBlockStream))
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, $"{header.Type} on stream {header.StreamId} inside a header block of stream {_headerBlockStream}");
        }

        switch (header.Type)
        {
            case Http2FrameType.Data:
                return OnDataAsync(header, payload);
            case Http2FrameType.Headers:
                return OnHeadersFrameAsync(header, payload);
            case Http2FrameType.Continuation:
                return OnContinuationAsync(header, payload);
            case Http2FrameType.Priority:
                OnPriority(header, payload);
                return ValueTask.CompletedTask;
            case Http2FrameType.RstStream:
                OnRstStream(header, payload);
                return ValueTask.CompletedTask;
            case Http2FrameType.Settings:
                return OnSettingsAsync(header, payload);
            case Http2FrameType.PushPromise:
                // §8.4: clients never push; we announce SETTINGS_ENABLE_PUSH 0 as a client (§6.5.2).
                Http2Exception.Connection(Http2ErrorCode.ProtocolError, "PUSH_PROMISE received");
                return ValueTask.CompletedTask;
            case Http2FrameType.Ping:
                return header.HasFlag(Http2Flags.Ack) ? ValueTask.CompletedTask : SendPingAckAsync(Http2FrameReader.ReadPing(payload));
            case Http2FrameType.GoAway:
                OnGoAwayFrame(payload);
                return ValueTask.CompletedTask;
            case Http2FrameType.WindowUpdate:
                OnWindowUpdate(header, payload);
                return ValueTask.CompletedTask;
            default:
                return ValueTask.CompletedTask; // §5.5: unknown frame types are ignored
        }
    }

    /// <summary>§5.1: a stream identifier the peer has not opened yet (or we have not, for ours).</summary>
    private bool IsIdle(int streamId) => IsPeerInitiated(streamId) ? streamId > _lastPeerStreamId : streamId >= _nextLocalStreamId;

    private Http2Stream? FindStream(int streamId)
    {
        lock (_sync)
        {
            return _streams.GetValueOrDefault(streamId);
        }
    }

    private async ValueTask OnDataAsync(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        var length = header.Length;
        Http2Stream? stream;
        lock (_sync)
        {
            // §6.9.1: the whole payload, padding included, counts against both windows.
            if (length > _connectionReceiveWindow)
            {
                Http2Exception.Connection(Http2ErrorCode.FlowControlError, "DATA beyond the connection window");
            }

            _connectionReceiveWindow -= length;
            stream = _streams.GetValueOrDefault(header.StreamId);
        }

        if (stream is null && IsIdle(header.StreamId))
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, "DATA on an idle stream"); // §5.1
        }

        var data = Http2FrameReader.ReadData(header, payload);
        if ((stream is null && WasReset(header.StreamId)) || stream is { Reset: true })
        {
            // §5.1: frames the peer sent before it saw our RST_STREAM are ignored (their bytes go back to the connection window).
            GiveBackConnectionWindow(length);
            return;
        }

        if (stream is null || stream.RemoteClosed)
        {
            // §5.1: closed or half-closed (remote): STREAM_CLOSED; the bytes still go back to the connection window.
            GiveBackConnectionWindow(length);
            Http2Exception.Stream(header.StreamId, Http2ErrorCode.StreamClosed, "DATA on a closed stream");
        }

        bool overflow;
        lock (_sync)
        {
            overflow = length > stream.ReceiveWindow;
            if (!overflow)
            {
                stream.ReceiveWindow -= length;
                stream.ReceivedLength += data.Length;
                stream.Buffered += data.Length;
            }
        }

        if (overflow)
        {
            GiveBackConnectionWindow(length); // never buffered
            Http2Exception.Stream(stream.Id, Http2ErrorCode.FlowControlError, "DATA beyond the stream window"); // §6.9.1
        }

        if (stream.ExpectedLength >= 0 && stream.ReceivedLength > stream.ExpectedLength)
        {
            Http2Exception.Stream(stream.Id, Http2ErrorCode.ProtocolError, "DATA beyond content-length"); // §8.1.1
        }

        var padding = length - (int)data.Length;
        if (padding > 0)
        {
            // Padding is never read by anyone: give it back at once.
            OnPaddingReceived(stream, padding);
        }

        if (!data.IsEmpty)
        {
            // Under the stream's lock: another thread may reset the stream (and complete this writer) at any time.
            lock (stream)
            {
                if (!stream.Reset)
                {
                    foreach (var segment in data)
                    {
                        stream.Inbound.Writer.Write(segment.Span);
                    }

                    var flush = stream.Inbound.Writer.FlushAsync(CancellationToken.None); // never pauses (threshold 0)
                    Debug.Assert(flush.IsCompleted, "the inbound pipe never pauses");
                }
            }
        }

        if (header.HasFlag(Http2Flags.EndStream))
        {
            EndOfPeerMessage(stream, trailers: null);
        }
    }

    /// <summary>END_STREAM from the peer: the content-length check (§8.1.1), trailers published, then the body completed.</summary>
    private void EndOfPeerMessage(Http2Stream stream, HttpHeaders? trailers)
    {
        if (stream.ExpectedLength >= 0 && stream.ReceivedLength != stream.ExpectedLength)
        {
            Http2Exception.Stream(stream.Id, Http2ErrorCode.ProtocolError, "DATA shorter than content-length");
        }

        if (trailers is not null)
        {
            if (stream.Request is { } request)
            {
                request.Trailers = trailers;
            }
            else if (stream.Response is { } response)
            {
                response.Trailers = trailers;
            }
        }

        lock (_sync)
        {
            stream.RemoteClosed = true;
        }

        lock (stream)
        {
            if (!stream.Reset)
            {
                stream.Inbound.Writer.Complete();
            }
        }

        CloseIfDone(stream);
    }

    private ValueTask OnHeadersFrameAsync(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        if (IsServer && !IsPeerInitiated(header.StreamId))
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, "HEADERS on an even stream from a client"); // §5.1.1
        }

        var fragment = Http2FrameReader.ReadHeaders(header, payload, out var priority);
        if (_fingerprint is null && IsServer && priority is { } p)
        {
            (_priorityFrames ??= []).Add(new Http2PriorityFrame(header.StreamId, p.Exclusive, p.StreamDependency, p.Weight + 1, InHeaders: true));
        }

        _headerBlock.ResetWrittenCount();
        _continuationFrames = 0;
        AppendFragment(fragment);
        _headerBlockEndStream = header.HasFlag(Http2Flags.EndStream);
        if (header.HasFlag(Http2Flags.EndHeaders))
        {
            return OnHeaderBlockAsync(header.StreamId);
        }

        _headerBlockStream = header.StreamId;
        return ValueTask.CompletedTask;
    }

    private ValueTask OnContinuationAsync(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        if (_headerBlockStream == 0)
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, "CONTINUATION without HEADERS"); // §6.10
        }

        if (++_continuationFrames > Limits.MaxContinuationFrames)
        {
            Http2Exception.Connection(Http2ErrorCode.EnhanceYourCalm, "too many CONTINUATION frames");
        }

        AppendFragment(payload);
        if (!header.HasFlag(Http2Flags.EndHeaders))
        {
            return ValueTask.CompletedTask;
        }

        var streamId = _headerBlockStream;
        _headerBlockStream = 0;
        return OnHeaderBlockAsync(streamId);
    }

    private void AppendFragment(in ReadOnlySequence<byte> fragment)
    {
        if (_headerBlock.WrittenCount + fragment.Length > Limits.MaxHeaderBlockSize)
        {
            Http2Exception.Connection(Http2ErrorCode.EnhanceYourCalm, "header block larger than the limit");
        }

        foreach (var segment in fragment)
        {
            _headerBlock.Write(segment.Span);
        }
    }

    private async ValueTask OnHeaderBlockAsync(int streamId)
    {
        var endStream = _headerBlockEndStream;
        var stream = FindStream(streamId);
        var isNew = stream is null && IsIdle(streamId);
        if (stream is null && !isNew)
        {
            // Decode anyway: the HPACK table must follow every block (§4.3).
            DecodeBlock(new Http2HeaderCollector(IsServer, trailers: false), out _);
            if (IsServer)
            {
                // §5.1: a stream that was open is closed (STREAM_CLOSED); a lower identifier never used is a PROTOCOL_ERROR (§5.1.1).
                Http2Exception.Connection(WasOpened(streamId) ? Http2ErrorCode.StreamClosed : Http2ErrorCode.ProtocolError,
                    "HEADERS on a closed or lower stream identifier");
            }

            return; // client: a response to a stream we reset
        }

        var trailers = stream is { HeadReceived: true };
        var block = new Http2HeaderCollector(IsServer, trailers);
        DecodeBlock(block, out var tooLarge);
        if (trailers)
        {
            if (stream!.RemoteClosed)
            {
                Http2Exception.Stream(streamId, Http2ErrorCode.StreamClosed, "HEADERS after END_STREAM");
            }

            if (!endStream || tooLarge || block.Malformed is not null)
            {
                Http2Exception.Stream(streamId, Http2ErrorCode.ProtocolError, block.Malformed ?? "trailers without END_STREAM or too large"); // §8.1
            }

            EndOfPeerMessage(stream, block.Headers);
            return;
        }

        if (isNew && IsServer)
        {
            _lastPeerStreamId = streamId;
            CaptureFingerprint(block);
        }

        await OnHeadAsync(stream, streamId, block, endStream, tooLarge).ConfigureAwait(false);
        if (endStream && stream is { RemoteClosed: false, Reset: false, HeadReceived: true })
        {
            EndOfPeerMessage(stream, trailers: null);
        }
    }

    private void DecodeBlock(Http2HeaderCollector block, out bool tooLarge)
    {
        tooLarge = false;
        try
        {
            _decoder.Decode(new ReadOnlySequence<byte>(_headerBlock.WrittenMemory), block);
        }
        catch (HpackDecodingException error) when (!error.IsConnectionError)
        {
            tooLarge = true; // the HPACK bomb: decoded to the end without handing out fields, table in step
        }
        catch (HpackDecodingException error)
        {
            Http2Exception.Connection(Http2ErrorCode.CompressionError, error.Message); // §4.3
        }
    }

    private void OnPriority(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        var priority = Http2FrameReader.ReadPriority(header, payload);
        if (_fingerprint is null && IsServer && (_priorityFrames ??= []).Count < 64)
        {
            _priorityFrames.Add(new Http2PriorityFrame(header.StreamId, priority.Exclusive, priority.StreamDependency, priority.Weight + 1, InHeaders: false));
        }
    }

    private void OnRstStream(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        var code = Http2FrameReader.ReadRstStream(payload);
        if (IsIdle(header.StreamId))
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, "RST_STREAM on an idle stream"); // §6.4
        }

        var stream = FindStream(header.StreamId);
        if (stream is null)
        {
            return; // §5.1: closed; frames in flight are ignored
        }

        Http2Log.StreamResetByPeer(Logger, ConnectionId, stream.Id, code);
        CountReset("RST_STREAM flood (rapid reset)");
        AbortStream(stream, code, new IOException($"stream reset by peer ({code})"));
    }

    private async ValueTask OnSettingsAsync(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        if (header.HasFlag(Http2Flags.Ack))
        {
            // §6.5.3: our settings are in force.
            _settingsAcked = true;
            _settingsTimer?.Dispose();
            return;
        }

        _settingsScratch.Clear();
        Http2FrameReader.ReadSettings(payload, _settingsScratch);
        if (IsServer && _firstSettings is null)
        {
            _firstSettings = [.. _settingsScratch];
        }

        await ApplyPeerSettingsAndAckAsync(_settingsScratch).ConfigureAwait(false);
    }

    private void OnGoAwayFrame(ReadOnlySequence<byte> payload)
    {
        var (last, code, debug) = Http2FrameReader.ReadGoAway(payload);
        Http2Log.GoAwayReceived(Logger, ConnectionId, last, code, System.Text.Encoding.ASCII.GetString((debug.Length > 256 ? debug.Slice(0, 256) : debug).ToArray()));
        lock (_sync)
        {
            _goAwayReceived = Math.Min(_goAwayReceived, last);
        }

        OnGoAway(last, code);
        CloseWhenIdle();
    }

    private void OnWindowUpdate(Http2FrameHeader header, ReadOnlySequence<byte> payload)
    {
        var increment = Http2FrameReader.ReadWindowUpdate(header, payload);
        if (header.StreamId == 0)
        {
            if (IsServer && _fingerprint is null && _firstWindowUpdate == 0)
            {
                _firstWindowUpdate = increment;
            }

            lock (_sync)
            {
                _connectionSendWindow += increment;
                if (_connectionSendWindow > Http2FrameReader.MaxWindowSize)
                {
                    Http2Exception.Connection(Http2ErrorCode.FlowControlError, "connection window above 2^31-1"); // §6.9.1
                }

                WakeAllSendersLocked();
            }

            return;
        }

        if (IsIdle(header.StreamId))
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, "WINDOW_UPDATE on an idle stream");
        }

        lock (_sync)
        {
            if (!_streams.TryGetValue(header.StreamId, out var stream))
            {
                return;
            }

            stream.SendWindow += increment;
            if (stream.SendWindow > Http2FrameReader.MaxWindowSize)
            {
                Http2Exception.Stream(stream.Id, Http2ErrorCode.FlowControlError, "stream window above 2^31-1"); // §6.9.1
            }

            stream.WindowWaiter?.TrySetResult();
            stream.WindowWaiter = null;
        }
    }

    private void CaptureFingerprint(Http2HeaderCollector firstHead)
    {
        if (_fingerprint is not null)
        {
            return;
        }

        _fingerprint = new Http2Fingerprint(
            _firstSettings ?? [],
            _firstWindowUpdate,
            _priorityFrames is null ? [] : [.. _priorityFrames],
            firstHead.PseudoHeaderOrder);
        _priorityFrames = null;
    }

    /// <summary>Counts one reset or refusal; past <see cref="Http2Limits.MaxResetsPerWindow"/> per window the connection ends with ENHANCE_YOUR_CALM.</summary>
    protected void CountReset(string what)
    {
        var now = Time.GetTimestamp();
        lock (_sync)
        {
            if (Time.GetElapsedTime(_resetWindowStart, now) > Limits.ResetWindow)
            {
                _resetWindowStart = now;
                _resetsInWindow = 0;
            }

            if (++_resetsInWindow <= Limits.MaxResetsPerWindow)
            {
                return;
            }
        }

        Http2Exception.Connection(Http2ErrorCode.EnhanceYourCalm, what);
    }

    /// <summary>Starts the SETTINGS ACK timer (§6.5.3).</summary>
    private void StartSettingsTimer()
    {
        _settingsTimer = Time.CreateTimer(static s =>
        {
            var connection = (Http2Connection)s!;
            if (!connection._settingsAcked)
            {
                connection.Abort(Http2ErrorCode.SettingsTimeout, "SETTINGS not acknowledged in time");
            }
        }, this, Limits.SettingsAckTimeout, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Ends the connection from outside the read loop: GOAWAY with <paramref name="code"/>, then close.</summary>
    public void Abort(Http2ErrorCode code, string reason)
    {
        if (_closing.IsCancellationRequested)
        {
            return;
        }

        Http2Log.ConnectionError(Logger, ConnectionId, code, reason);
        _ = AbortAsync(code, reason);
    }

    private async Task AbortAsync(Http2ErrorCode code, string reason)
    {
        await SendGoAwayAsync(code, reason).ConfigureAwait(false);
        Close(reason);
    }

    /// <summary>Records the reason (first wins) and stops the read loop.</summary>
    protected void Close(string reason)
    {
        lock (_sync)
        {
            CloseReason ??= reason;
        }

        try
        {
            _closing.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async Task FinishAsync()
    {
        _settingsTimer?.Dispose();
        Http2Stream[] streams;
        lock (_sync)
        {
            _closed_ = true;
            streams = [.. _streams.Values];
            WakeAllSendersLocked();
            foreach (var waiter in _slotWaiters)
            {
                waiter.TrySetResult(false);
            }

            _slotWaiters.Clear();
            _peerSettingsSeen.TrySetResult();
        }

        foreach (var stream in streams)
        {
            AbortStream(stream, Http2ErrorCode.Cancel, new IOException("HTTP/2 connection closed: " + CloseReason));
        }

        await OnConnectionClosedAsync().ConfigureAwait(false);
        await _writesAborted.CancelAsync().ConfigureAwait(false); // a flush stuck on a peer that does not read lets go
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            _outputDone = true;
            await _output.CompleteAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }

        await _input.CompleteAsync().ConfigureAwait(false);
        _closed.TrySetResult();
    }

    /// <summary>The role's last word (the server waits for its stream tasks here).</summary>
    protected virtual Task OnConnectionClosedAsync() => Task.CompletedTask;

    /// <summary>Resets a stream from our side (RST_STREAM) and aborts it locally.</summary>
    protected async ValueTask ResetStreamAsync(int streamId, Http2ErrorCode code)
    {
        var stream = FindStream(streamId);
        if (stream is not null)
        {
            AbortStream(stream, code, new IOException($"stream reset ({code})"));
        }

        if (code != Http2ErrorCode.StreamClosed)
        {
            // Frames still in flight on a stream we closed are not abuse (§5.1); every other stream error counts.
            CountReset("too many stream errors");
        }

        await SendRstStreamAsync(streamId, code).ConfigureAwait(false);
    }

    /// <summary>Closes a stream at once (reset by either side or the connection ended): the application sees the abort.</summary>
    protected void AbortStream(Http2Stream stream, Http2ErrorCode code, Exception reason)
    {
        long unread;
        lock (_sync)
        {
            if (stream.Reset)
            {
                return;
            }

            stream.Reset = true;
            stream.ResetCode = code;
            RememberResetLocked(stream.Id);
            unread = stream.Buffered;
            stream.Buffered = 0;
            stream.WindowWaiter?.TrySetResult();
            stream.WindowWaiter = null;
        }

        GiveBackConnectionWindow((int)unread);
        lock (stream)
        {
            stream.Inbound.Writer.Complete(reason); // completing twice is a no-op
        }

        try
        {
            stream.Aborted.Cancel();
        }
        catch (AggregateException)
        {
            // a callback of the application threw; the stream is gone anyway
        }

        OnStreamAborted(stream, code);
        CloseIfDone(stream);
    }

    /// <summary>Peer stream identifiers recently closed (bounded), to tell STREAM_CLOSED from PROTOCOL_ERROR for a late HEADERS.</summary>
    private readonly Queue<int> _recentlyClosedOrder = new();
    private readonly HashSet<int> _recentlyClosed = [];

    private void RememberClosedLocked(int streamId)
    {
        if (!_recentlyClosed.Add(streamId))
        {
            return;
        }

        _recentlyClosedOrder.Enqueue(streamId);
        if (_recentlyClosedOrder.Count > 4 * Limits.MaxConcurrentStreams)
        {
            _recentlyClosed.Remove(_recentlyClosedOrder.Dequeue());
        }
    }

    /// <summary>A stream the peer opened and we refused with RST_STREAM: closed, and its frames in flight are ignored.</summary>
    protected void RememberRefused(int streamId)
    {
        lock (_sync)
        {
            RememberClosedLocked(streamId);
            RememberResetLocked(streamId);
        }
    }

    private readonly Queue<int> _recentlyResetOrder = new();
    private readonly HashSet<int> _recentlyReset = [];

    private void RememberResetLocked(int streamId)
    {
        if (!_recentlyReset.Add(streamId))
        {
            return;
        }

        _recentlyResetOrder.Enqueue(streamId);
        if (_recentlyResetOrder.Count > 4 * Limits.MaxConcurrentStreams)
        {
            _recentlyReset.Remove(_recentlyResetOrder.Dequeue());
        }
    }

    private bool WasReset(int streamId)
    {
        lock (_sync)
        {
            return _recentlyReset.Contains(streamId);
        }
    }

    private bool WasOpened(int streamId)
    {
        lock (_sync)
        {
            return _recentlyClosed.Contains(streamId);
        }
    }

    /// <summary>Our side gives up a stream (cancellation): RST_STREAM(CANCEL), not counted against the peer.</summary>
    internal void CancelStream(Http2Stream stream)
    {
        if (stream.Reset)
        {
            return;
        }

        AbortStream(stream, Http2ErrorCode.Cancel, new OperationCanceledException("stream cancelled"));
        _ = CancelStreamAsync(stream.Id);
    }

    private async Task CancelStreamAsync(int streamId)
    {
        try
        {
            await SendRstStreamAsync(streamId, Http2ErrorCode.Cancel).ConfigureAwait(false);
        }
        catch (Exception error) when (error is OperationCanceledException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, "RST_STREAM not sent: " + error.Message);
        }
    }

    /// <summary>Open streams with an identifier above <paramref name="streamId"/>.</summary>
    protected Http2Stream[] StreamsAbove(int streamId)
    {
        lock (_sync)
        {
            return [.. _streams.Values.Where(s => s.Id > streamId)];
        }
    }

    /// <summary>True once the connection has ended.</summary>
    protected bool HasClosed
    {
        get
        {
            lock (_sync)
            {
                return _closed_;
            }
        }
    }

    /// <summary>The application completed a stream's body reader (it will read no more).</summary>
    internal virtual void OnBodyReaderCompleted(Http2Stream stream)
    {
    }

    /// <summary>The role's reaction to a stream ending abnormally (the client fails the pending response).</summary>
    protected virtual void OnStreamAborted(Http2Stream stream, Http2ErrorCode code)
    {
    }

    /// <summary>Removes a stream once both sides are done or it was reset.</summary>
    protected void CloseIfDone(Http2Stream stream)
    {
        lock (_sync)
        {
            if (!stream.IsClosed || !_streams.Remove(stream.Id))
            {
                return;
            }

            if (IsPeerInitiated(stream.Id))
            {
                _activePeerStreams--;
                RememberClosedLocked(stream.Id);
            }
            else
            {
                ReleaseSlotLocked();
            }
        }

        OnStreamClosed(stream);
        CloseWhenIdle();
    }

    /// <summary>After a GOAWAY (either way), the connection closes once no stream is left (§6.8: graceful drain).</summary>
    protected void CloseWhenIdle()
    {
        bool close;
        lock (_sync)
        {
            close = (_goAwaySent < int.MaxValue || _goAwayReceived < int.MaxValue) && _streams.Count == 0;
        }

        if (close)
        {
            Close("drained after GOAWAY");
        }
    }
}
