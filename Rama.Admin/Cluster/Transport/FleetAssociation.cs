using System.Buffers;
using System.Buffers.Binary;
using Akka.Actor;
using Akka.Remote.Transport;
using Google.Protobuf;
using Microsoft.Extensions.Logging;

namespace Rama.Admin.Cluster.Transport;

/// <summary>
/// One association over an admitted connection (TLS or plain): frames are a 4-byte little-endian length and the payload.
/// <para>
/// Writes queue the payload and return at once (Akka calls <see cref="Write"/> from its endpoint writer and it must not
/// block); one writer drains the queue, coalescing the queued frames into one write of up to
/// <see cref="FleetTransportSettings.WriteBatchSize"/> bytes (one TLS record run instead of one per message). Above
/// <see cref="FleetTransportSettings.SendHighWaterMark"/> unwritten bytes <see cref="Write"/> answers false and drops the
/// payload, as the SPI asks: Akka's endpoint writer keeps it and retries after a back-off. A read buffer grows to one
/// frame at most; a frame over <see cref="FleetTransportSettings.MaximumFrameSize"/> closes the association.
/// </para>
/// </summary>
internal sealed class FleetAssociation : AssociationHandle
{
    private const int ReadBufferSize = 64 * 1024;
    private const int HeaderSize = 4;

    private readonly Stream _stream;
    private readonly FleetTransportSettings _settings;
    private readonly ILogger _logger;
    private readonly Action<FleetAssociation> _removed;
    private readonly Lock _gate = new();
    private readonly Queue<ByteString> _queue = new();
    private readonly List<ByteString> _batch = [];
    private readonly TaskCompletionSource _writerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _readerDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly System.Net.Sockets.Socket _socket;
    private long _unwritten;
    private bool _writing;
    private bool _closing;
    private int _notified;
    private int _disposed;
    private IHandleEventListener? _listener;

    public FleetAssociation(Address localAddress, Address remoteAddress, System.Net.Sockets.Socket socket, Stream stream, FleetTransportSettings settings, ILogger logger, Action<FleetAssociation> removed)
        : base(localAddress, remoteAddress)
    {
        _socket = socket;
        _stream = stream;
        _settings = settings;
        _logger = logger;
        _removed = removed;
    }

    /// <summary>Completes when the connection is closed and its resources released.</summary>
    public Task Closed => _closed.Task;

    /// <summary>Starts reading once Akka has registered its listener (until then the peer's frames wait in the socket).</summary>
    public void Start() => _ = ReadLoopAsync();

    public override bool Write(ByteString payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        if (payload.Length > _settings.MaximumFrameSize)
        {
            // Akka's endpoint writer refuses these before they get here (OversizedPayloadException); never put one on the wire.
            FleetTransportLog.FrameTooLarge(_logger, FleetTransport.Describe(LocalAddress), FleetTransport.Describe(RemoteAddress), payload.Length, _settings.MaximumFrameSize);
            Fail("an outbound frame over the limit");
            return false;
        }

        lock (_gate)
        {
            if (_closing)
            {
                return false;
            }

            if (_unwritten > 0 && _unwritten + payload.Length > _settings.SendHighWaterMark)
            {
                return false;
            }

            _queue.Enqueue(payload);
            _unwritten += payload.Length;
            if (_writing)
            {
                return true;
            }

            _writing = true;
        }

        // Started here, it writes at once when the socket takes it (no hop to another thread for one small message).
        _ = WriteLoopAsync();
        return true;
    }

#pragma warning disable CS0672 // the SPI's abstract Disassociate() is what the reasoned overload calls
    public override void Disassociate()
#pragma warning restore CS0672
    {
        bool idle;
        lock (_gate)
        {
            if (_closing)
            {
                return;
            }

            _closing = true;
            idle = !_writing;
        }

        if (idle)
        {
            _writerDone.TrySetResult();
        }

        _ = CloseGracefullyAsync();
    }

    /// <summary>Closes at once (transport shutdown after the flush wait, protocol errors).</summary>
    public void Abort(string why) => Fail(why);

    private async Task WriteLoopAsync()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(_settings.WriteBatchSize);
        try
        {
            while (true)
            {
                _batch.Clear();
                var length = 0;
                lock (_gate)
                {
                    while (_queue.TryPeek(out var next) && (length == 0 || length + HeaderSize + next.Length <= buffer.Length))
                    {
                        _batch.Add(_queue.Dequeue());
                        length += HeaderSize + next.Length;
                    }

                    if (_batch.Count == 0)
                    {
                        _writing = false;
                        if (_closing)
                        {
                            _writerDone.TrySetResult();
                        }

                        return;
                    }
                }

                if (length > buffer.Length)
                {
                    // One frame bigger than a batch: a buffer of its own (at most the frame limit).
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(length);
                }

                var at = 0;
                foreach (var frame in _batch)
                {
                    BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(at), frame.Length);
                    frame.Span.CopyTo(buffer.AsSpan(at + HeaderSize));
                    at += HeaderSize + frame.Length;
                }

                await _stream.WriteAsync(buffer.AsMemory(0, at)).ConfigureAwait(false);
                lock (_gate)
                {
                    _unwritten -= at - (HeaderSize * _batch.Count);
                }

                if (buffer.Length > _settings.WriteBatchSize * 2)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(_settings.WriteBatchSize);
                }
            }
        }
        catch (Exception ex)
        {
            lock (_gate)
            {
                _writing = false;
                _closing = true;
                _queue.Clear();
            }

            _writerDone.TrySetResult();
            Fail(Volatile.Read(ref _disposed) != 0 ? "closed" : "write failed: " + ex.GetBaseException().Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task ReadLoopAsync()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ReadBufferSize);
        var why = "the peer closed the connection";
        try
        {
            // Closing the association before Akka registered its listener ends the wait (nothing to tell anyone).
            if (await Task.WhenAny(ReadHandlerSource.Task, _closed.Task).ConfigureAwait(false) != ReadHandlerSource.Task)
            {
                return;
            }

            _listener = await ReadHandlerSource.Task.ConfigureAwait(false);
            int start = 0, end = 0;
            while (true)
            {
                while (end - start >= HeaderSize)
                {
                    var length = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(start));
                    if (length < 0 || length > _settings.MaximumFrameSize)
                    {
                        FleetTransportLog.FrameTooLarge(_logger, FleetTransport.Describe(LocalAddress), FleetTransport.Describe(RemoteAddress), (uint)length, _settings.MaximumFrameSize);
                        why = "an inbound frame over the limit";
                        return;
                    }

                    if (end - start - HeaderSize < length)
                    {
                        if (buffer.Length < HeaderSize + length)
                        {
                            var bigger = ArrayPool<byte>.Shared.Rent(HeaderSize + length);
                            buffer.AsSpan(start, end - start).CopyTo(bigger);
                            ArrayPool<byte>.Shared.Return(buffer);
                            buffer = bigger;
                            (start, end) = (0, end - start);
                        }

                        break;
                    }

                    if (length > 0 && !Volatile.Read(ref _closing))
                    {
                        _listener.Notify(new InboundPayload(ByteString.CopyFrom(buffer, start + HeaderSize, length)));
                    }

                    start += HeaderSize + length;
                }

                if (start == end)
                {
                    (start, end) = (0, 0);
                    if (buffer.Length > ReadBufferSize * 2)
                    {
                        // Back to the small buffer once a big frame is through: memory per association stays bounded and small.
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = ArrayPool<byte>.Shared.Rent(ReadBufferSize);
                    }
                }
                else if (buffer.Length - end < HeaderSize || (start > 0 && buffer.Length - end < ReadBufferSize / 4))
                {
                    buffer.AsSpan(start, end - start).CopyTo(buffer);
                    (start, end) = (0, end - start);
                }

                var read = await _stream.ReadAsync(buffer.AsMemory(end)).ConfigureAwait(false);
                if (read == 0)
                {
                    return;
                }

                end += read;
            }
        }
        catch (Exception ex)
        {
            // Closing this side disposes the stream under a pending read.
            why = Volatile.Read(ref _disposed) != 0 ? "closed by this member" : ex.GetBaseException().Message;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            NotifyDisassociated();
            _readerDone.TrySetResult();
            Fail(why);
        }
    }

    private void NotifyDisassociated()
    {
        if (Interlocked.Exchange(ref _notified, 1) == 0)
        {
            _listener?.Notify(new Disassociated(DisassociateInfo.Unknown));
        }
    }

    /// <summary>Akka closed the association: flush what is queued, say goodbye (TLS close_notify, FIN), give the peer the flush wait to close its side.</summary>
    private async Task CloseGracefullyAsync()
    {
        try
        {
            using var wait = new CancellationTokenSource(_settings.FlushWait);
            await _writerDone.Task.WaitAsync(wait.Token).ConfigureAwait(false);
            if (_stream is System.Net.Security.SslStream ssl)
            {
                await ssl.ShutdownAsync().WaitAsync(wait.Token).ConfigureAwait(false);
            }

            await _stream.FlushAsync(wait.Token).ConfigureAwait(false);
            _socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            // Reading goes on (and discards) until the peer closes: closing with unread data would reset the connection.
            await _readerDone.Task.WaitAsync(wait.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            // The peer did not close in time or the stream is already gone: close outright below.
        }
        finally
        {
            Fail("disassociated");
        }
    }

    private void Fail(string why)
    {
        lock (_gate)
        {
            _closing = true;
            _queue.Clear();
        }

        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        FleetTransportLog.Closed(_logger, FleetTransport.Describe(LocalAddress), FleetTransport.Describe(RemoteAddress), why);
        _stream.Dispose();
        _removed(this);
        _closed.TrySetResult();
    }
}
