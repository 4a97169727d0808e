using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace Rama.Proxy.Net;

/// <summary>
/// A TCP socket exposed as a duplex pipe (Kestrel's socket transport shape): a receive loop fills
/// <see cref="Input"/> and a send loop drains <see cref="Output"/>. Both pipes are bounded
/// (<see cref="SocketConnectionOptions"/>), so a slow peer back-pressures the other side instead
/// of growing memory. Completing <see cref="Output"/> sends FIN (half-close) after the data.
/// </summary>
public sealed class SocketConnection : IDuplexPipe, IAsyncDisposable, IOriginConnection
{
    // Not readonly: a tunnel that takes the socket over (ReleaseDetached) leaves these pointing at closed placeholders,
    // so that a long-lived tunnel keeps neither the socket engine's objects nor the pipes.
    private Socket _socket;
    private Pipe _input;
    private Pipe _output;
    private readonly CancellationTokenSource _closed = new();
    private readonly SocketConnectionOptions _options;
    private List<ArraySegment<byte>>? _gather;
    private PipeReader? _relaySource;
    private RelaySend? _relaySend;
    private Task? _receiving;
    private Task? _sending;
    // Detach (another transport takes the socket over): both loops stop without closing it or sending FIN.
    private readonly CancellationTokenSource _stopReceiving = new();
    private volatile bool _detaching;
    private bool _started;
    private bool _peerClosed;
    private string? _closeReason;
    private int _disposed;
    private IDisposable? _heldWhileOpen;
    private int _ended; // set by Abort and DisposeAsync before they release what is held

    public SocketConnection(Socket socket, SocketConnectionOptions? options = null)
    {
        _socket = socket;
        _options = options ?? SocketConnectionOptions.Default;
        var pool = System.Buffers.MemoryPool<byte>.Shared;

        // Inline scheduling (Kestrel's UnsafePreferInlineScheduling): the code reading Input runs on the
        // receive completion, and the send loop runs on the flush that fed it, instead of a thread-pool
        // hop each way. Safe because nothing in a pipeline blocks a thread; it halves context switches.
        var application = _options.InlineScheduling ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        _input = new Pipe(new PipeOptions(pool, application, PipeScheduler.Inline,
            _options.MaxBufferedBytes, _options.MaxBufferedBytes / 2, _options.MinimumReadSize, useSynchronizationContext: false));
        _output = new Pipe(new PipeOptions(pool, PipeScheduler.Inline, application,
            _options.MaxBufferedBytes, _options.MaxBufferedBytes / 2, _options.MinimumReadSize, useSynchronizationContext: false));
        LocalEndPoint = socket.LocalEndPoint as IPEndPoint;
        RemoteEndPoint = socket.RemoteEndPoint as IPEndPoint;
    }

    public PipeReader Input => _input.Reader;

    public PipeWriter Output => _output.Writer;

    public IPEndPoint? LocalEndPoint { get; }

    public IPEndPoint? RemoteEndPoint { get; }

    /// <summary>Cancelled when the connection is aborted or closed.</summary>
    public CancellationToken ConnectionClosed => _closed.Token;

    /// <summary>Why the connection closed; the first reason recorded wins.</summary>
    public string? CloseReason => Volatile.Read(ref _closeReason);

    /// <summary>Records a close reason unless one is already recorded.</summary>
    public bool TrySetCloseReason(string reason) => Interlocked.CompareExchange(ref _closeReason, reason, null) is null;

    /// <summary>Starts the receive and send loops. Called once by whoever created the connection.</summary>
    public void Start() => Start(default);

    /// <summary>
    /// Starts the loops with <paramref name="prefix"/> already in <see cref="Input"/>: bytes a transport that
    /// owned the socket before (the epoll reverse proxy handing a connection over) had read and not consumed.
    /// </summary>
    internal void Start(ReadOnlySpan<byte> prefix)
    {
        if (!prefix.IsEmpty)
        {
            System.Buffers.BuffersExtensions.Write(_input.Writer, prefix);
            // Below the pause threshold (the caller's buffer is smaller than MaxBufferedBytes): completes at once.
            var flush = _input.Writer.FlushAsync();
            System.Diagnostics.Debug.Assert(flush.IsCompleted, "a prefix larger than the input pipe's pause threshold");
            flush.GetAwaiter().GetResult();
        }

        _started = true;
        _receiving = ReceiveLoopAsync();
        _sending = SendLoopAsync();
    }

    /// <summary>The socket, for a transport that runs it itself before (or instead of) the pipes.</summary>
    internal Socket Socket => _socket;

    /// <summary>Whether <see cref="Start()"/> ran (the pipes own the socket).</summary>
    internal bool IsStarted => _started;

    private async Task ReceiveLoopAsync()
    {
        var writer = _input.Writer;
        Exception? error = null;
        try
        {
            var lastReadFilledBuffer = false;
            var readSize = _options.MinimumReadSize;
            while (true)
            {
                // After a read that filled its buffer more data is likely queued: read straight away.
                if (_options.WaitForDataBeforeAllocatingBuffer && !lastReadFilledBuffer)
                {
                    // Zero-byte read: an idle connection holds no buffer (Kestrel does the same). A detach cancels it:
                    // it takes no byte, so none is lost.
                    await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, _stopReceiving.Token).ConfigureAwait(false);
                }

                if (_detaching)
                {
                    break;
                }

                var memory = writer.GetMemory(readSize);
                var read = await _socket.ReceiveAsync(memory, SocketFlags.None, _stopReceiving.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    _peerClosed = true;
                    TrySetCloseReason("peer closed");
                    break;
                }

                lastReadFilledBuffer = read == memory.Length;

                // Adaptive read size: a stream that fills its reads gets bigger ones (fewer syscalls per MiB),
                // up to MaximumReadSize; one that sends less than half falls back to the minimum.
                if (lastReadFilledBuffer)
                {
                    readSize = Math.Max(_options.MinimumReadSize, Math.Min(readSize * 2, _options.MaximumReadSize));
                }
                else if (read < readSize / 2)
                {
                    readSize = _options.MinimumReadSize;
                }
                writer.Advance(read);
                var flush = await writer.FlushAsync().ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled || _detaching)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (_detaching)
        {
            // Stopped for a detach: the socket stays open for the transport that takes it over.
        }
        catch (SocketException ex) when (IsNormalClose(ex.SocketErrorCode))
        {
            TrySetCloseReason("peer reset");
            error = new ConnectionResetException(ex.Message, ex);
        }
        catch (ObjectDisposedException)
        {
            TrySetCloseReason("closed locally");
        }
        catch (SocketException ex)
        {
            TrySetCloseReason($"receive failed: {ex.SocketErrorCode}");
            error = new ConnectionResetException(ex.Message, ex);
        }
        finally
        {
            await writer.CompleteAsync(error).ConfigureAwait(false);
        }
    }

    private async Task SendLoopAsync()
    {
        var reader = _output.Reader;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync().ConfigureAwait(false);
                var relay = result.IsCanceled ? Interlocked.Exchange(ref _relaySource, null) : null;
                if (result.IsCanceled && relay is null)
                {
                    if (_detaching && !result.Buffer.IsEmpty)
                    {
                        // A detach: what was written before it is still sent, then the loop stops without FIN.
                        await SendGatheredAsync(result.Buffer).ConfigureAwait(false);
                        reader.AdvanceTo(result.Buffer.End);
                    }

                    break;
                }

                var buffer = result.Buffer;
                if (buffer.IsSingleSegment)
                {
                    await SendAllAsync(buffer.First).ConfigureAwait(false);
                }
                else if (!buffer.IsEmpty)
                {
                    await SendGatheredAsync(buffer).ConfigureAwait(false);
                }

                reader.AdvanceTo(buffer.End);
                if (relay is not null)
                {
                    // Everything written to Output before is sent: now the relay's source, straight from its buffers.
                    if (!await SendRelayedAsync(relay).ConfigureAwait(false))
                    {
                        break;
                    }

                    continue;
                }

                if (result.IsCompleted)
                {
                    // Half-close: everything written has been sent; tell the peer we are done.
                    _socket.Shutdown(SocketShutdown.Send);
                    break;
                }
            }
        }
        catch (SocketException ex) when (IsNormalClose(ex.SocketErrorCode))
        {
            TrySetCloseReason("peer reset");
        }
        catch (ObjectDisposedException)
        {
            TrySetCloseReason("closed locally");
        }
        catch (SocketException ex)
        {
            TrySetCloseReason($"send failed: {ex.SocketErrorCode}");
        }
        catch (InvalidOperationException)
        {
            // reader completed by DisposeAsync while a read was pending
        }
        catch (IOException ex)
        {
            // Output was completed with an error: a relay passing on a reset from the other side. Reset this
            // side too (RST), so the peer learns the tunnel broke instead of waiting on a half-open connection.
            Abort("reset passed on: " + ex.Message);
        }
        finally
        {
            // A relay asked for after the loop stopped gets its answer here (nothing sent), never a hang.
            if (Interlocked.Exchange(ref _relaySource, null) is not null)
            {
                _relaySend?.Done.TrySetResult(0);
            }

            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A request to send a relay's source straight from its buffers (see <see cref="SendFromAsync"/>).</summary>
    private sealed class RelaySend(Action? onData, CancellationToken cancellationToken)
    {
        public Action? OnData { get; } = onData;

        public CancellationToken CancellationToken { get; } = cancellationToken;

        public TaskCompletionSource<long> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Sends what <paramref name="source"/> yields to this socket from the source's own buffers, on the send
    /// loop (after everything already written to <see cref="Output"/>): a relay's destination without the copy
    /// into <see cref="Output"/> and the hop through it. Completes with the bytes sent when the source ends, the
    /// socket fails or <paramref name="cancellationToken"/> fires; throws what reading the source threw (a reset
    /// there). The caller must not write to <see cref="Output"/> meanwhile, and completes it afterwards (FIN).
    /// </summary>
    internal Task<long> SendFromAsync(PipeReader source, Action? onData, CancellationToken cancellationToken)
    {
        var send = new RelaySend(onData, cancellationToken);
        _relaySend = send;
        Interlocked.Exchange(ref _relaySource, source);
        if (_sending is null || _sending.IsCompleted)
        {
            // No send loop to take it: nothing can be sent.
            if (Interlocked.Exchange(ref _relaySource, null) is not null)
            {
                send.Done.TrySetResult(0);
            }
        }
        else
        {
            _output.Reader.CancelPendingRead();
        }

        return send.Done.Task;
    }

    // The relay mode of the send loop; false when the socket can no longer send (the loop ends).
    private async ValueTask<bool> SendRelayedAsync(PipeReader source)
    {
        var send = _relaySend!;
        long total = 0;
        var token = send.CancellationToken;
        try
        {
            while (true)
            {
                var result = await source.ReadAsync(token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    send.OnData?.Invoke();
                    foreach (var segment in buffer)
                    {
                        await SendAllAsync(segment, token).ConfigureAwait(false);
                    }

                    total += buffer.Length;
                }

                source.AdvanceTo(buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    send.Done.TrySetResult(total);
                    return true;
                }
            }
        }
        catch (OperationCanceledException)
        {
            send.Done.TrySetResult(total);
            return true;
        }
        catch (SocketException ex)
        {
            TrySetCloseReason(IsNormalClose(ex.SocketErrorCode) ? "peer reset" : $"send failed: {ex.SocketErrorCode}");
            send.Done.TrySetResult(total);
            return false;
        }
        catch (ObjectDisposedException)
        {
            TrySetCloseReason("closed locally");
            send.Done.TrySetResult(total);
            return false;
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
            // Reading the source failed (its peer reset) or it was completed under us: the relay passes it on.
            send.Done.TrySetException(ex);
            return true;
        }
    }

    /// <summary>
    /// Hands the socket to another transport (the epoll tunnel): everything written to <see cref="Output"/> is sent
    /// first, both loops stop without closing the socket or sending FIN, and the bytes the receive loop took from the
    /// socket and nobody read come back as <see cref="DetachedSocket.Pending"/>, with how the input ended if it did.
    /// The socket is left non-blocking. Afterwards the pipes are done; <see cref="Abort"/> and
    /// <see cref="DisposeAsync"/> still close the socket. Call once, with nobody reading <see cref="Input"/> or writing
    /// <see cref="Output"/>.
    /// </summary>
    internal async Task<DetachedSocket> DetachAsync()
    {
        _detaching = true;
        if (_sending is not null)
        {
            _output.Reader.CancelPendingRead();
            await _sending.ConfigureAwait(false);
        }

        try
        {
            await _stopReceiving.CancelAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
        }

        // Drain Input until the receive loop completes it: this also frees a loop waiting on a full pipe.
        var pending = new System.Buffers.ArrayBufferWriter<byte>(256);
        var reset = false;
        var reader = _input.Reader;
        if (_receiving is not null)
        {
            try
            {
                while (true)
                {
                    var result = await reader.ReadAsync().ConfigureAwait(false);
                    foreach (var segment in result.Buffer)
                    {
                        System.Buffers.BuffersExtensions.Write(pending, segment.Span);
                    }

                    reader.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        break;
                    }
                }
            }
            catch (IOException)
            {
                reset = true; // the receive loop ended on a reset
            }
            catch (InvalidOperationException)
            {
                // Input was already completed by its reader: nothing more to take.
            }

            await _receiving.ConfigureAwait(false);
        }

        try
        {
            _socket.Blocking = false;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            reset = true; // closed under us: the new transport sees a dead socket and ends at once
        }

        return new DetachedSocket(pending.WrittenSpan.ToArray(), _peerClosed, reset);
    }

    /// <summary>
    /// After <see cref="DetachAsync"/>, once the transport that took the socket over holds its own descriptor for it
    /// (a <c>dup</c>): closes this connection's descriptor (no FIN or RST: the socket lives on in the other one) and drops
    /// the <see cref="System.Net.Sockets.Socket"/> (with the socket engine's context and cached event args), both pipes
    /// and the finished loops, so that a long-lived tunnel holds none of them. <see cref="ConnectionClosed"/>,
    /// <see cref="Abort"/> (which then only cancels it: the new transport resets the socket) and <see cref="DisposeAsync"/>
    /// keep working; <see cref="Input"/> and <see cref="Output"/> are completed.
    /// </summary>
    internal void ReleaseDetached()
    {
        var socket = _socket;
        _socket = ReleasedSocket.Value;
        _input = _output = ReleasedPipe.Value;
        _receiving = _sending = null;
        _gather = null;
        _relaySend = null;
        socket.Dispose(); // the descriptor only: no async operation is pending after the detach, so close(2) sends nothing
    }

    // What a released connection points at: a closed socket (its calls throw ObjectDisposedException, which Abort and
    // DisposeAsync expect) and a pipe completed at both ends (nothing to read or write, completing again does nothing).
    private static readonly Lazy<Socket> ReleasedSocket = new(static () =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Dispose();
        return socket;
    });

    private static readonly Lazy<Pipe> ReleasedPipe = new(static () =>
    {
        var pipe = new Pipe(new PipeOptions(useSynchronizationContext: false));
        pipe.Writer.Complete();
        pipe.Reader.Complete();
        return pipe;
    });

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendAllAsync(ReadOnlyMemory<byte> remaining, CancellationToken cancellationToken = default)
    {
        while (!remaining.IsEmpty)
        {
            var sent = await _socket.SendAsync(remaining, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            remaining = remaining[sent..];
        }
    }

    // One gathered send (sendmsg with an iovec) for a multi-segment buffer instead of a syscall per segment.
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendGatheredAsync(System.Buffers.ReadOnlySequence<byte> buffer)
    {
        var segments = _gather ??= new List<ArraySegment<byte>>(16);
        segments.Clear();
        foreach (var memory in buffer)
        {
            if (!System.Runtime.InteropServices.MemoryMarshal.TryGetArray(memory, out var array))
            {
                // Not array-backed: fall back to one send per segment.
                foreach (var segment in buffer)
                {
                    await SendAllAsync(segment).ConfigureAwait(false);
                }

                return;
            }

            segments.Add(array);
        }

        var total = buffer.Length;
        var sent = (long)await _socket.SendAsync(segments, SocketFlags.None).ConfigureAwait(false);
        if (sent < total)
        {
            // Partial gathered send (rare: the socket buffer filled); send the rest in order.
            foreach (var segment in buffer.Slice(sent))
            {
                await SendAllAsync(segment).ConfigureAwait(false);
            }
        }
    }

    internal static bool IsNormalClose(SocketError error) => error is SocketError.ConnectionReset or SocketError.ConnectionAborted
        or SocketError.Shutdown or SocketError.OperationAborted or SocketError.Interrupted or SocketError.NotConnected
        or SocketError.Disconnecting;

    /// <summary>
    /// Ties <paramref name="held"/> (a limit's lease) to this connection: disposed once, when the connection is disposed or
    /// aborted, whichever comes first. One per connection; a second replaces nothing and is disposed at once.
    /// </summary>
    public void HoldWhileOpen(IDisposable held)
    {
        ArgumentNullException.ThrowIfNull(held);
        if (Interlocked.CompareExchange(ref _heldWhileOpen, held, null) is not null)
        {
            held.Dispose();
        }
        else if (Volatile.Read(ref _ended) != 0)
        {
            ReleaseHeld(); // closed while it was being attached
        }
    }

    private void ReleaseHeld()
    {
        Volatile.Write(ref _ended, 1);
        Interlocked.Exchange(ref _heldWhileOpen, null)?.Dispose();
    }

    /// <summary>Closes at once (RST), whatever is buffered. Safe to call many times and from any thread.</summary>
    public void Abort(string reason)
    {
        TrySetCloseReason(reason);
        try
        {
            _socket.LingerState = new LingerOption(true, 0);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }

        _socket.Dispose();
        ReleaseHeld(); // after the close: whoever gets the slot next never overlaps this connection at the peer
        CancelClosed();
        _input.Writer.CancelPendingFlush();
        _output.Reader.CancelPendingRead();
    }

    private void CancelClosed()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Graceful close: flushes what was written, sends FIN, waits a bounded time for the send to
    /// finish, then releases the socket.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        TrySetCloseReason("closed locally");
        try
        {
            await _output.Writer.CompleteAsync().ConfigureAwait(false);
            if (_sending is not null)
            {
                try
                {
                    await _sending.WaitAsync(_options.CloseTimeout).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    TrySetCloseReason("close timed out");
                }
            }
        }
        finally
        {
            _socket.Dispose();
            ReleaseHeld(); // after the close: whoever gets the slot next never overlaps this connection at the peer
        }

        CancelClosed();
        if (_receiving is not null)
        {
            // A receive loop held at a full input (bytes the service never read: a request body it left there before failing,
            // a response body a vanished client abandoned, found by benchmarks/soak) waits in its flush, which only a reader
            // frees: it is released here, or this close would never end.
            _input.Writer.CancelPendingFlush();
            await _receiving.ConfigureAwait(false);
        }

        await _input.Reader.CompleteAsync().ConfigureAwait(false);
        if (_sending is not null)
        {
            _output.Reader.CancelPendingRead();
            await _sending.ConfigureAwait(false);
        }

        _closed.Dispose();
        _stopReceiving.Dispose();
    }
}

/// <summary>What <see cref="SocketConnection.DetachAsync"/> hands over: bytes received and not read, and whether the input had ended (FIN) or reset.</summary>
internal readonly record struct DetachedSocket(byte[] Pending, bool InputEnded, bool InputReset);

/// <summary>Buffering and close settings of a socket connection.</summary>
public sealed record SocketConnectionOptions
{
    public static readonly SocketConnectionOptions Default = new();

    /// <summary>
    /// Bytes buffered per direction before back-pressure applies. Default 128 KiB: two reads of
    /// <see cref="MaximumReadSize"/> (Kestrel's MaxRequestBufferSize is 1 MiB); measured in benchmarks/,
    /// 64 KiB reads with this bound took a 512 MiB tunnel transfer from ~650 to ~1,100 MB/s. Idle
    /// connections hold none of it (zero-byte reads).
    /// </summary>
    public long MaxBufferedBytes { get; init; } = 128 * 1024;

    /// <summary>Smallest buffer asked of the pool for one receive, and the pipes' segment size. Default 16 KiB: a 4 KiB read costs four times the syscalls on bulk transfers; idle connections hold no buffer either way (zero-byte reads).</summary>
    public int MinimumReadSize { get; init; } = 16 * 1024;

    /// <summary>
    /// Largest receive: a read that fills its buffer doubles the next one up to this size, a read under
    /// half of it falls back to <see cref="MinimumReadSize"/> (Netty's adaptive receive buffer). Default
    /// 64 KiB, loopback's segment size: a bulk stream costs a quarter of the syscalls of 16 KiB reads.
    /// </summary>
    public int MaximumReadSize { get; init; } = 64 * 1024;

    /// <summary>Wait for data with a zero-byte read so idle connections hold no buffer. Default on (Kestrel's default).</summary>
    public bool WaitForDataBeforeAllocatingBuffer { get; init; } = true;

    /// <summary>
    /// Run pipe continuations inline (receive completion -> reader; flush -> send loop) rather than
    /// through the thread pool. Default on: measured in benchmarks/ (fewer hops and context switches per
    /// request on a 2-core node); turn off if a service ever blocks a thread while reading.
    /// </summary>
    public bool InlineScheduling { get; init; } = true;

    /// <summary>How long a graceful close waits for buffered output to reach the peer. Default 5 s.</summary>
    public TimeSpan CloseTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>The peer reset or aborted the connection: normal, logged at Debug.</summary>
public sealed class ConnectionResetException(string message, Exception? inner = null) : IOException(message, inner);
