using System.Buffers;
using System.Diagnostics;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Http.Http2;

/// <summary>Frame handlers of the read loop: one method per frame type (RFC 9113 §6), and header block assembly (§4.3).</summary>
internal abstract partial class Http2Connection
{
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
                    var inbound = stream.Inbound!.Writer; // DATA reaches only a stream open on the peer's side, which has its pipe
                    foreach (var segment in data)
                    {
                        inbound.Write(segment.Span);
                    }

                    var flush = inbound.FlushAsync(CancellationToken.None); // never pauses (threshold 0)
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
                stream.Inbound?.Writer.Complete();
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
}
