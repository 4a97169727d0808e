using System.Buffers;
using System.Buffers.Binary;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// Writes RFC 9113 frames into an <see cref="IBufferWriter{T}"/>. The caller keeps to the peer's
/// SETTINGS_MAX_FRAME_SIZE for DATA; header blocks are split into HEADERS + CONTINUATION here (§4.3).
/// </summary>
internal static class Http2FrameWriter
{
    /// <summary>RFC 9113 §3.4: the client connection preface.</summary>
    public static ReadOnlySpan<byte> ClientPreface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

    public static void WriteHeader(Span<byte> destination, int length, Http2FrameType type, byte flags, int streamId)
    {
        destination[0] = (byte)(length >> 16);
        destination[1] = (byte)(length >> 8);
        destination[2] = (byte)length;
        destination[3] = (byte)type;
        destination[4] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(destination[5..], (uint)streamId & 0x7FFF_FFFF);
    }

    private static Span<byte> Begin(IBufferWriter<byte> output, int length, Http2FrameType type, byte flags, int streamId)
    {
        var span = output.GetSpan(Http2FrameReader.HeaderLength + length);
        WriteHeader(span, length, type, flags, streamId);
        return span.Slice(Http2FrameReader.HeaderLength, length);
    }

    /// <summary>§6.1: one DATA frame (data must fit the peer's frame size, minus padding).</summary>
    public static void WriteData(IBufferWriter<byte> output, int streamId, in ReadOnlySequence<byte> data, bool endStream, byte padLength = 0)
    {
        var padded = padLength > 0;
        var length = (int)data.Length + (padded ? 1 + padLength : 0);
        var flags = (byte)((endStream ? Http2Flags.EndStream : 0) | (padded ? Http2Flags.Padded : 0));
        var payload = Begin(output, length, Http2FrameType.Data, flags, streamId);
        var offset = 0;
        if (padded)
        {
            payload[0] = padLength;
            offset = 1;
        }

        data.CopyTo(payload[offset..]);
        payload.Slice(offset + (int)data.Length, padLength).Clear();
        output.Advance(Http2FrameReader.HeaderLength + length);
    }

    /// <summary>
    /// §6.2, §6.10: a header block as one HEADERS frame (optionally padded and with priority fields) followed by as
    /// many CONTINUATION frames as <paramref name="maxFrameSize"/> requires; END_HEADERS on the last.
    /// </summary>
    public static void WriteHeaders(IBufferWriter<byte> output, int streamId, ReadOnlySpan<byte> block, bool endStream, int maxFrameSize,
        Http2Priority? priority = null, byte padLength = 0)
    {
        var padded = padLength > 0;
        var overhead = (padded ? 1 + padLength : 0) + (priority is null ? 0 : 5);
        if (overhead >= maxFrameSize)
        {
            throw new ArgumentOutOfRangeException(nameof(padLength), "padding and priority fields do not fit a frame");
        }

        var first = Math.Min(block.Length, maxFrameSize - overhead);
        var flags = (byte)((endStream ? Http2Flags.EndStream : 0) | (first == block.Length ? Http2Flags.EndHeaders : 0)
            | (padded ? Http2Flags.Padded : 0) | (priority is null ? 0 : Http2Flags.Priority));
        var payload = Begin(output, first + overhead, Http2FrameType.Headers, flags, streamId);
        var offset = 0;
        if (padded)
        {
            payload[offset++] = padLength;
        }

        if (priority is { } p)
        {
            WritePriorityFields(payload[offset..], p);
            offset += 5;
        }

        block[..first].CopyTo(payload[offset..]);
        payload.Slice(offset + first, padLength).Clear();
        output.Advance(Http2FrameReader.HeaderLength + first + overhead);

        for (var sent = first; sent < block.Length;)
        {
            var chunk = Math.Min(block.Length - sent, maxFrameSize);
            WriteContinuation(output, streamId, block.Slice(sent, chunk), endHeaders: sent + chunk == block.Length);
            sent += chunk;
        }
    }

    /// <summary>§6.10: one CONTINUATION frame.</summary>
    public static void WriteContinuation(IBufferWriter<byte> output, int streamId, ReadOnlySpan<byte> fragment, bool endHeaders)
    {
        var payload = Begin(output, fragment.Length, Http2FrameType.Continuation, endHeaders ? Http2Flags.EndHeaders : Http2Flags.None, streamId);
        fragment.CopyTo(payload);
        output.Advance(Http2FrameReader.HeaderLength + fragment.Length);
    }

    /// <summary>§6.3: a PRIORITY frame.</summary>
    public static void WritePriority(IBufferWriter<byte> output, int streamId, Http2Priority priority)
    {
        WritePriorityFields(Begin(output, 5, Http2FrameType.Priority, Http2Flags.None, streamId), priority);
        output.Advance(Http2FrameReader.HeaderLength + 5);
    }

    private static void WritePriorityFields(Span<byte> destination, Http2Priority priority)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, ((uint)priority.StreamDependency & 0x7FFF_FFFF) | (priority.Exclusive ? 0x8000_0000 : 0));
        destination[4] = priority.Weight;
    }

    /// <summary>§6.4: a RST_STREAM frame.</summary>
    public static void WriteRstStream(IBufferWriter<byte> output, int streamId, Http2ErrorCode errorCode)
    {
        BinaryPrimitives.WriteUInt32BigEndian(Begin(output, 4, Http2FrameType.RstStream, Http2Flags.None, streamId), (uint)errorCode);
        output.Advance(Http2FrameReader.HeaderLength + 4);
    }

    /// <summary>§6.5: a SETTINGS frame with the parameters in the order given.</summary>
    public static void WriteSettings(IBufferWriter<byte> output, ReadOnlySpan<Http2Setting> settings)
    {
        var payload = Begin(output, settings.Length * 6, Http2FrameType.Settings, Http2Flags.None, 0);
        for (var i = 0; i < settings.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(payload[(i * 6)..], settings[i].Id);
            BinaryPrimitives.WriteUInt32BigEndian(payload[(i * 6 + 2)..], settings[i].Value);
        }

        output.Advance(Http2FrameReader.HeaderLength + settings.Length * 6);
    }

    /// <summary>§6.5.3: the SETTINGS acknowledgement (empty, ACK).</summary>
    public static void WriteSettingsAck(IBufferWriter<byte> output)
    {
        Begin(output, 0, Http2FrameType.Settings, Http2Flags.Ack, 0);
        output.Advance(Http2FrameReader.HeaderLength);
    }

    /// <summary>§6.6: a PUSH_PROMISE frame (block in one frame: the caller keeps it within the frame size).</summary>
    public static void WritePushPromise(IBufferWriter<byte> output, int streamId, int promisedStreamId, ReadOnlySpan<byte> block)
    {
        var payload = Begin(output, 4 + block.Length, Http2FrameType.PushPromise, Http2Flags.EndHeaders, streamId);
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)promisedStreamId & 0x7FFF_FFFF);
        block.CopyTo(payload[4..]);
        output.Advance(Http2FrameReader.HeaderLength + 4 + block.Length);
    }

    /// <summary>§6.7: a PING (or its ACK, which echoes the opaque data).</summary>
    public static void WritePing(IBufferWriter<byte> output, ulong opaqueData, bool ack)
    {
        BinaryPrimitives.WriteUInt64BigEndian(Begin(output, 8, Http2FrameType.Ping, ack ? Http2Flags.Ack : Http2Flags.None, 0), opaqueData);
        output.Advance(Http2FrameReader.HeaderLength + 8);
    }

    /// <summary>§6.8: a GOAWAY with optional debug data.</summary>
    public static void WriteGoAway(IBufferWriter<byte> output, int lastStreamId, Http2ErrorCode errorCode, ReadOnlySpan<byte> debugData = default)
    {
        var payload = Begin(output, 8 + debugData.Length, Http2FrameType.GoAway, Http2Flags.None, 0);
        BinaryPrimitives.WriteUInt32BigEndian(payload, (uint)lastStreamId & 0x7FFF_FFFF);
        BinaryPrimitives.WriteUInt32BigEndian(payload[4..], (uint)errorCode);
        debugData.CopyTo(payload[8..]);
        output.Advance(Http2FrameReader.HeaderLength + 8 + debugData.Length);
    }

    /// <summary>§6.9: a WINDOW_UPDATE (0 for the connection window).</summary>
    public static void WriteWindowUpdate(IBufferWriter<byte> output, int streamId, int increment)
    {
        BinaryPrimitives.WriteUInt32BigEndian(Begin(output, 4, Http2FrameType.WindowUpdate, Http2Flags.None, streamId), (uint)increment & 0x7FFF_FFFF);
        output.Advance(Http2FrameReader.HeaderLength + 4);
    }
}

/// <summary>RFC 9113 §3.4: the client connection preface, and telling h2c prior knowledge from HTTP/1.1 on a new connection.</summary>
public static class Http2Preface
{
    /// <summary>The 24 octets <c>PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n</c>.</summary>
    public static ReadOnlySpan<byte> Bytes => Http2FrameWriter.ClientPreface;

    public const int Length = 24;

    /// <summary>
    /// What the first octets of a connection are: <see cref="PrefaceMatch.Match"/> when they start with the whole
    /// preface, <see cref="PrefaceMatch.NoMatch"/> as soon as one octet differs (an HTTP/1.1 request: the first
    /// octet already differs unless the method starts with 'P'), else <see cref="PrefaceMatch.NeedMore"/>.
    /// </summary>
    public static PrefaceMatch Detect(in ReadOnlySequence<byte> input)
    {
        Span<byte> head = stackalloc byte[Length];
        var available = (int)Math.Min(input.Length, Length);
        input.Slice(0, available).CopyTo(head);
        if (!head[..available].SequenceEqual(Bytes[..available]))
        {
            return PrefaceMatch.NoMatch;
        }

        return available == Length ? PrefaceMatch.Match : PrefaceMatch.NeedMore;
    }

    /// <summary>
    /// Peeks at a new connection's first octets without consuming them: true when they are the HTTP/2 preface (hand
    /// the transport to <see cref="Http2Server"/>), false for anything else or a connection closed early (HTTP/1.1).
    /// Waits for at most 24 octets; the caller bounds the wait with <paramref name="cancellationToken"/>.
    /// </summary>
    public static async ValueTask<bool> IsHttp2Async(System.IO.Pipelines.PipeReader input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var match = Detect(result.Buffer);
            if (match != PrefaceMatch.NeedMore || result.IsCompleted)
            {
                input.AdvanceTo(result.Buffer.Start); // nothing consumed, nothing examined: the next reader sees it all
                return match == PrefaceMatch.Match;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }
}

/// <summary>The answer of <see cref="Http2Preface.Detect"/>.</summary>
public enum PrefaceMatch
{
    NeedMore,
    Match,
    NoMatch,
}
