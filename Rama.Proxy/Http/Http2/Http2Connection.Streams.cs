namespace Rama.Proxy.Http.Http2;

/// <summary>Stream lifecycle (RFC 9113 §5.1): resets either way, closing, the bounded memory of closed and reset streams, and the reset counter against rapid reset.</summary>
internal abstract partial class Http2Connection
{
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
            stream.Inbound?.Writer.Complete(reason); // completing twice is a no-op
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
            close = (_goAwaySent != NoGoAway || _goAwayReceived != NoGoAway) && _streams.Count == 0;
        }

        if (close)
        {
            Close("drained after GOAWAY");
        }
    }
}
