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
    private ITimer? _idleTimer;
    private long _lastActivity;

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

    /// <summary>Called when the ACK of a PING arrives, with its opaque data (§6.7).</summary>
    protected virtual void OnPingAck(ulong data)
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
            StartIdleTimer();
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
            Volatile.Write(ref _lastActivity, Time.GetTimestamp());
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
                if (header.HasFlag(Http2Flags.Ack))
                {
                    OnPingAck(Http2FrameReader.ReadPing(payload));
                    return ValueTask.CompletedTask;
                }

                return SendPingAsync(Http2FrameReader.ReadPing(payload), ack: true);
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

    /// <summary>
    /// A connection without streams and without a frame from the peer for <see cref="Http2Limits.IdleTimeout"/> ends with
    /// GOAWAY(NO_ERROR) (§6.8; Kestrel's keep-alive timeout): idle connections are not kept forever.
    /// </summary>
    private void StartIdleTimer()
    {
        Volatile.Write(ref _lastActivity, Time.GetTimestamp());
        var period = Limits.IdleTimeout / 4;
        _idleTimer = Time.CreateTimer(static s =>
        {
            var connection = (Http2Connection)s!;
            if (connection.ActivePeerStreams == 0 && connection.ActiveLocalStreams == 0
                && connection.Time.GetElapsedTime(Volatile.Read(ref connection._lastActivity)) >= connection.Limits.IdleTimeout)
            {
                connection.Abort(Http2ErrorCode.NoError, "idle timeout");
            }
        }, this, period, period);
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
        _idleTimer?.Dispose();
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

}
