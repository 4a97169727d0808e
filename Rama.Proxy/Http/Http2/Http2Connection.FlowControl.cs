namespace Rama.Proxy.Http.Http2;

/// <summary>
/// Flow control (RFC 9113 §5.2, §6.9): send windows reserved before DATA (waiting while the peer keeps them shut, bounded
/// by <see cref="Http2Limits.SendWindowTimeout"/>), receive windows reopened as the application consumes, and the client's
/// stream slots under the peer's SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2).
/// </summary>
internal abstract partial class Http2Connection
{
    private void WakeAllSendersLocked()
    {
        foreach (var stream in _streams.Values)
        {
            stream.WindowWaiter?.TrySetResult();
            stream.WindowWaiter = null;
        }
    }

    /// <summary>Client role: waits for a stream slot under the peer's SETTINGS_MAX_CONCURRENT_STREAMS; false when the connection can take no new stream.</summary>
    protected async ValueTask<bool> AcquireLocalSlotAsync(CancellationToken cancellationToken)
    {
        // The peer's first SETTINGS says how many streams it takes (§6.5.2): wait for it rather than be refused.
        await _peerSettingsSeen.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        TaskCompletionSource<bool> waiter;
        lock (_sync)
        {
            if (_closed_ || _goAwayReceived != NoGoAway || _goAwaySent != NoGoAway)
            {
                return false;
            }

            if (_activeLocalStreams < _peerMaxConcurrentStreams)
            {
                _activeLocalStreams++;
                return true;
            }

            waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            _slotWaiters.Enqueue(waiter);
        }

        using (cancellationToken.Register(static w => ((TaskCompletionSource<bool>)w!).TrySetCanceled(), waiter))
        {
            try
            {
                return await waiter.Task.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                throw new OperationCanceledException(cancellationToken);
            }
        }
    }

    /// <summary>A slot taken by <see cref="AcquireLocalSlotAsync"/> whose stream never opened, or a local stream closed.</summary>
    protected void ReleaseLocalSlot()
    {
        lock (_sync)
        {
            ReleaseSlotLocked();
        }
    }

    private void ReleaseSlotLocked()
    {
        _activeLocalStreams--;
        GrantSlotsLocked();
    }

    private void GrantSlotsLocked()
    {
        while (_activeLocalStreams < _peerMaxConcurrentStreams && _slotWaiters.TryDequeue(out var waiter))
        {
            if (waiter.TrySetResult(true))
            {
                _activeLocalStreams++;
            }
        }
    }

    /// <summary>
    /// Takes up to <paramref name="wanted"/> bytes (and at most one frame) of both send windows, waiting while either
    /// is shut (§6.9.1). A peer that keeps a window shut past <see cref="Http2Limits.SendWindowTimeout"/>: the stream
    /// is reset with CANCEL, or the connection ends when it is the connection window.
    /// </summary>
    private async ValueTask<int> ReserveSendWindowAsync(Http2Stream stream, int wanted, CancellationToken cancellationToken)
    {
        while (true)
        {
            TaskCompletionSource waiter;
            lock (_sync)
            {
                if (stream.Reset || _closed_)
                {
                    throw new IOException($"stream {stream.Id} was reset or the connection closed");
                }

                var size = (int)Math.Min(Math.Min(wanted, _peerMaxFrameSize), Math.Min(stream.SendWindow, _connectionSendWindow));
                if (size > 0)
                {
                    stream.SendWindow -= size;
                    _connectionSendWindow -= size;
                    return size;
                }

                waiter = stream.WindowWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            try
            {
                await waiter.Task.WaitAsync(Limits.SendWindowTimeout, Time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                bool connectionStalled;
                lock (_sync)
                {
                    connectionStalled = _connectionSendWindow <= 0;
                }

                Http2Log.WindowStalled(Logger, ConnectionId, stream.Id, connectionStalled);
                if (connectionStalled)
                {
                    Abort(Http2ErrorCode.EnhanceYourCalm, "connection send window kept shut"); // holding streams open costs us; not a protocol violation
                }
                else
                {
                    // Our decision, not the peer's error: not counted against it.
                    AbortStream(stream, Http2ErrorCode.Cancel, new IOException("send window stalled"));
                    await SendRstStreamAsync(stream.Id, Http2ErrorCode.Cancel).ConfigureAwait(false);
                }

                throw new IOException($"stream {stream.Id}: the peer kept its flow-control window shut");
            }
        }
    }

    /// <summary>Takes up to <paramref name="wanted"/> bytes (and at most one frame) of both send windows without waiting; 0 when either is shut.</summary>
    private int TryReserveSendWindow(Http2Stream stream, long wanted)
    {
        lock (_sync)
        {
            if (stream.Reset || _closed_)
            {
                return 0;
            }

            var size = (int)Math.Min(Math.Min(wanted, _peerMaxFrameSize), Math.Min(stream.SendWindow, _connectionSendWindow));
            if (size <= 0)
            {
                return 0;
            }

            stream.SendWindow -= size;
            _connectionSendWindow -= size;
            return size;
        }
    }

    /// <summary>The application consumed <paramref name="bytes"/> of a stream's body: reopen both windows by half-window steps (§6.9).</summary>
    internal void OnBodyConsumed(Http2Stream stream, int bytes)
    {
        int streamIncrement = 0, connectionIncrement;
        lock (_sync)
        {
            if (stream.Reset)
            {
                return; // given back in full when it was reset
            }

            stream.Buffered -= bytes;
            if (!stream.RemoteClosed)
            {
                stream.UnannouncedConsumed += bytes;
                if (stream.UnannouncedConsumed >= Limits.InitialStreamWindowSize / 2)
                {
                    streamIncrement = stream.UnannouncedConsumed;
                    stream.UnannouncedConsumed = 0;
                    stream.ReceiveWindow += streamIncrement;
                }
            }

            connectionIncrement = TakeConnectionIncrementLocked(bytes);
        }

        SendWindowUpdates(stream.Id, streamIncrement, connectionIncrement);
    }

    private void OnPaddingReceived(Http2Stream stream, int bytes)
    {
        int connectionIncrement;
        lock (_sync)
        {
            stream.ReceiveWindow += bytes;
            connectionIncrement = TakeConnectionIncrementLocked(bytes);
        }

        SendWindowUpdates(stream.Id, stream.RemoteClosed ? 0 : bytes, connectionIncrement);
    }

    /// <summary>Bytes that no stream will read (a closed stream's DATA, a reset stream's unread body): back to the connection window.</summary>
    private void GiveBackConnectionWindow(int bytes)
    {
        if (bytes <= 0)
        {
            return;
        }

        int increment;
        lock (_sync)
        {
            increment = TakeConnectionIncrementLocked(bytes);
        }

        SendWindowUpdates(0, 0, increment);
    }

    private int TakeConnectionIncrementLocked(int bytes)
    {
        _connectionUnannounced += bytes;
        if (_connectionUnannounced < Limits.InitialConnectionWindowSize / 2)
        {
            return 0;
        }

        var increment = _connectionUnannounced;
        _connectionUnannounced = 0;
        _connectionReceiveWindow += increment;
        return increment;
    }

    private void SendWindowUpdates(int streamId, int streamIncrement, int connectionIncrement)
    {
        if (streamIncrement > 0 || connectionIncrement > 0)
        {
            _ = SendWindowUpdatesAsync(streamId, streamIncrement, connectionIncrement);
        }
    }

    private async Task SendWindowUpdatesAsync(int streamId, int streamIncrement, int connectionIncrement)
    {
        try
        {
            if (!await EnterWriterAsync(_writesAborted.Token).ConfigureAwait(false))
            {
                return;
            }

            try
            {
                if (connectionIncrement > 0)
                {
                    Http2FrameWriter.WriteWindowUpdate(_output, 0, connectionIncrement);
                }

                if (streamIncrement > 0)
                {
                    Http2FrameWriter.WriteWindowUpdate(_output, streamId, streamIncrement);
                }

                await EndWriteLockedAsync(_writesAborted.Token).ConfigureAwait(false);
            }
            finally
            {
                ExitWriter();
            }
        }
        catch (Exception error) when (error is OperationCanceledException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, "WINDOW_UPDATE not sent: " + error.Message);
        }
    }
}
