using System.Buffers;
using System.Buffers.Binary;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// Reads RFC 9113 frames from a <see cref="ReadOnlySequence{T}"/>: <see cref="TryReadFrame"/> returns false for
/// "need more data" and throws <see cref="Http2Exception"/> for a violation that the frame alone shows (its size
/// against SETTINGS_MAX_FRAME_SIZE, a fixed-length frame of the wrong length, a stream identifier the type
/// forbids, bad padding). The payload parsers below check the rest of each frame's layout (§6).
/// </summary>
internal static class Http2FrameReader
{
    public const int HeaderLength = 9;

    /// <summary>RFC 9113 §4.2: the frame size every endpoint must accept, and the initial SETTINGS_MAX_FRAME_SIZE.</summary>
    public const int MinMaxFrameSize = 16_384;

    /// <summary>RFC 9113 §4.2: 2^24-1, the largest SETTINGS_MAX_FRAME_SIZE.</summary>
    public const int MaxMaxFrameSize = 16_777_215;

    /// <summary>RFC 9113 §6.9.1: 2^31-1, the largest flow-control window.</summary>
    public const int MaxWindowSize = int.MaxValue;

    /// <summary>
    /// One frame: its header and its payload (a slice of <paramref name="buffer"/>, which is moved past the frame).
    /// The size check runs on the header alone (§4.2: FRAME_SIZE_ERROR), so an oversized frame is refused before
    /// its payload is buffered.
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxFrameSize, out Http2FrameHeader header, out ReadOnlySequence<byte> payload)
    {
        payload = default;
        if (!TryReadHeader(buffer, out header))
        {
            return false;
        }

        if (header.Length > maxFrameSize)
        {
            Http2Exception.Connection(Http2ErrorCode.FrameSizeError, $"{header.Type} frame of {header.Length} octets exceeds SETTINGS_MAX_FRAME_SIZE {maxFrameSize}");
        }

        if (buffer.Length < HeaderLength + header.Length)
        {
            return false;
        }

        payload = buffer.Slice(HeaderLength, header.Length);
        buffer = buffer.Slice(payload.End);
        Validate(header); // after the frame is consumed: a stream error lets the caller go on with the next frame
        return true;
    }

    /// <summary>RFC 9113 §4.1: 24-bit length, type, flags, R bit + 31-bit stream identifier.</summary>
    public static bool TryReadHeader(in ReadOnlySequence<byte> buffer, out Http2FrameHeader header)
    {
        Span<byte> bytes = stackalloc byte[HeaderLength];
        if (buffer.FirstSpan.Length >= HeaderLength)
        {
            buffer.FirstSpan[..HeaderLength].CopyTo(bytes);
        }
        else if (buffer.Length >= HeaderLength)
        {
            buffer.Slice(0, HeaderLength).CopyTo(bytes);
        }
        else
        {
            header = default;
            return false;
        }

        var length = (bytes[0] << 16) | (bytes[1] << 8) | bytes[2];
        var streamId = (int)(BinaryPrimitives.ReadUInt32BigEndian(bytes[5..]) & 0x7FFF_FFFF); // §4.1: R is ignored
        header = new Http2FrameHeader(length, (Http2FrameType)bytes[3], bytes[4], streamId);
        return true;
    }

    /// <summary>The checks of §6 that need only the header.</summary>
    private static void Validate(in Http2FrameHeader header)
    {
        switch (header.Type)
        {
            case Http2FrameType.Data:
            case Http2FrameType.Headers:
            case Http2FrameType.Continuation:
            case Http2FrameType.PushPromise:
                // §6.1, §6.2, §6.10, §6.6: stream 0 is a PROTOCOL_ERROR.
                RequireStream(header);
                break;
            case Http2FrameType.Priority:
                RequireStream(header);
                if (header.Length != 5)
                {
                    // §6.3: a stream error, the only frame size error that does not end the connection.
                    Http2Exception.Stream(header.StreamId, Http2ErrorCode.FrameSizeError, "PRIORITY length is not 5");
                }

                break;
            case Http2FrameType.RstStream:
                RequireStream(header);
                if (header.Length != 4)
                {
                    Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "RST_STREAM length is not 4"); // §6.4
                }

                break;
            case Http2FrameType.Settings:
                RequireConnection(header);
                if (header.HasFlag(Http2Flags.Ack) && header.Length != 0)
                {
                    Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "SETTINGS ACK with a payload"); // §6.5
                }

                if (header.Length % 6 != 0)
                {
                    Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "SETTINGS length is not a multiple of 6"); // §6.5
                }

                break;
            case Http2FrameType.Ping:
                RequireConnection(header);
                if (header.Length != 8)
                {
                    Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "PING length is not 8"); // §6.7
                }

                break;
            case Http2FrameType.GoAway:
                RequireConnection(header);
                if (header.Length < 8)
                {
                    Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "GOAWAY shorter than 8 octets"); // §6.8
                }

                break;
            case Http2FrameType.WindowUpdate:
                if (header.Length != 4)
                {
                    Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "WINDOW_UPDATE length is not 4"); // §6.9
                }

                break;
            default:
                // §4.1, §5.5: unknown types are ignored.
                break;
        }
    }

    private static void RequireStream(in Http2FrameHeader header)
    {
        if (header.StreamId == 0)
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, $"{header.Type} on stream 0");
        }
    }

    private static void RequireConnection(in Http2FrameHeader header)
    {
        if (header.StreamId != 0)
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, $"{header.Type} on stream {header.StreamId}");
        }
    }

    /// <summary>§6.1, §6.2, §6.6: removes the Pad Length octet and the padding; a pad length not below the payload is a PROTOCOL_ERROR.</summary>
    private static ReadOnlySequence<byte> RemovePadding(in Http2FrameHeader header, ReadOnlySequence<byte> payload, int fixedFields, out int padLength)
    {
        padLength = 0;
        if (!header.HasFlag(Http2Flags.Padded))
        {
            return payload;
        }

        if (payload.Length < 1)
        {
            Http2Exception.Connection(Http2ErrorCode.FrameSizeError, $"padded {header.Type} without a Pad Length");
        }

        padLength = payload.FirstSpan[0];
        if (padLength + 1 + fixedFields > payload.Length)
        {
            Http2Exception.Connection(Http2ErrorCode.ProtocolError, $"{header.Type} padding is not shorter than the payload");
        }

        return payload.Slice(1, payload.Length - 1 - padLength);
    }

    /// <summary>§6.1: the data of a DATA frame. The whole payload (padding included) counts for flow control.</summary>
    public static ReadOnlySequence<byte> ReadData(in Http2FrameHeader header, in ReadOnlySequence<byte> payload) =>
        RemovePadding(header, payload, 0, out _);

    /// <summary>§6.2: the header block fragment of a HEADERS frame and its priority fields, when PRIORITY is set.</summary>
    public static ReadOnlySequence<byte> ReadHeaders(in Http2FrameHeader header, in ReadOnlySequence<byte> payload, out Http2Priority? priority)
    {
        var hasPriority = header.HasFlag(Http2Flags.Priority);
        var rest = RemovePadding(header, payload, hasPriority ? 5 : 0, out _);
        priority = null;
        if (hasPriority)
        {
            if (rest.Length < 5)
            {
                Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "HEADERS too short for its priority fields");
            }

            priority = ReadPriorityFields(header.StreamId, rest.Slice(0, 5));
            rest = rest.Slice(5);
        }

        return rest;
    }

    /// <summary>§6.3: a PRIORITY frame (length checked by <see cref="TryReadFrame"/>).</summary>
    public static Http2Priority ReadPriority(in Http2FrameHeader header, in ReadOnlySequence<byte> payload) => ReadPriorityFields(header.StreamId, payload);

    private static Http2Priority ReadPriorityFields(int streamId, in ReadOnlySequence<byte> fields)
    {
        Span<byte> bytes = stackalloc byte[5];
        fields.Slice(0, 5).CopyTo(bytes);
        var word = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        var dependency = (int)(word & 0x7FFF_FFFF);
        if (dependency == streamId)
        {
            Http2Exception.Stream(streamId, Http2ErrorCode.ProtocolError, "stream depends on itself"); // §5.3.1
        }

        return new Http2Priority(dependency, (word & 0x8000_0000) != 0, bytes[4]);
    }

    /// <summary>§6.4: the error code of RST_STREAM.</summary>
    public static Http2ErrorCode ReadRstStream(in ReadOnlySequence<byte> payload) => (Http2ErrorCode)ReadUInt32(payload);

    /// <summary>
    /// §6.5: the parameters of a SETTINGS frame, in order, each value checked (§6.5.2): ENABLE_PUSH and
    /// ENABLE_CONNECT_PROTOCOL (RFC 8441 §3) 0 or 1, INITIAL_WINDOW_SIZE at most 2^31-1 (FLOW_CONTROL_ERROR),
    /// MAX_FRAME_SIZE within [2^14, 2^24-1]. Unknown identifiers are kept (the caller ignores them, §6.5.2).
    /// </summary>
    public static void ReadSettings(in ReadOnlySequence<byte> payload, List<Http2Setting> settings)
    {
        var reader = new SequenceReader<byte>(payload);
        while (reader.TryReadBigEndian(out short id) && reader.TryReadBigEndian(out int value))
        {
            var setting = new Http2Setting((ushort)id, (uint)value);
            switch ((Http2SettingId)setting.Id)
            {
                case Http2SettingId.EnablePush when setting.Value > 1:
                    Http2Exception.Connection(Http2ErrorCode.ProtocolError, "SETTINGS_ENABLE_PUSH is not 0 or 1");
                    break;
                case Http2SettingId.EnableConnectProtocol when setting.Value > 1:
                    Http2Exception.Connection(Http2ErrorCode.ProtocolError, "SETTINGS_ENABLE_CONNECT_PROTOCOL is not 0 or 1");
                    break;
                case Http2SettingId.InitialWindowSize when setting.Value > MaxWindowSize:
                    Http2Exception.Connection(Http2ErrorCode.FlowControlError, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                    break;
                case Http2SettingId.MaxFrameSize when setting.Value is < MinMaxFrameSize or > MaxMaxFrameSize:
                    Http2Exception.Connection(Http2ErrorCode.ProtocolError, "SETTINGS_MAX_FRAME_SIZE outside 2^14..2^24-1");
                    break;
            }

            settings.Add(setting);
        }
    }

    /// <summary>§6.7: the opaque data of a PING.</summary>
    public static ulong ReadPing(in ReadOnlySequence<byte> payload)
    {
        Span<byte> bytes = stackalloc byte[8];
        payload.Slice(0, 8).CopyTo(bytes);
        return BinaryPrimitives.ReadUInt64BigEndian(bytes);
    }

    /// <summary>§6.8: last stream identifier, error code and debug data of a GOAWAY.</summary>
    public static (int LastStreamId, Http2ErrorCode ErrorCode, ReadOnlySequence<byte> DebugData) ReadGoAway(in ReadOnlySequence<byte> payload)
    {
        var last = (int)(ReadUInt32(payload) & 0x7FFF_FFFF);
        var code = (Http2ErrorCode)ReadUInt32(payload.Slice(4));
        return (last, code, payload.Slice(8));
    }

    /// <summary>§6.9: the window size increment; 0 is a PROTOCOL_ERROR (a stream error on a stream, §6.9).</summary>
    public static int ReadWindowUpdate(in Http2FrameHeader header, in ReadOnlySequence<byte> payload)
    {
        var increment = (int)(ReadUInt32(payload) & 0x7FFF_FFFF);
        if (increment == 0)
        {
            if (header.StreamId == 0)
            {
                Http2Exception.Connection(Http2ErrorCode.ProtocolError, "WINDOW_UPDATE with a 0 increment");
            }

            Http2Exception.Stream(header.StreamId, Http2ErrorCode.ProtocolError, "WINDOW_UPDATE with a 0 increment");
        }

        return increment;
    }

    /// <summary>§6.6: the promised stream identifier and header block fragment of a PUSH_PROMISE.</summary>
    public static ReadOnlySequence<byte> ReadPushPromise(in Http2FrameHeader header, in ReadOnlySequence<byte> payload, out int promisedStreamId)
    {
        var rest = RemovePadding(header, payload, 4, out _);
        if (rest.Length < 4)
        {
            Http2Exception.Connection(Http2ErrorCode.FrameSizeError, "PUSH_PROMISE shorter than 4 octets");
        }

        promisedStreamId = (int)(ReadUInt32(rest) & 0x7FFF_FFFF);
        return rest.Slice(4);
    }

    private static uint ReadUInt32(in ReadOnlySequence<byte> payload)
    {
        Span<byte> bytes = stackalloc byte[4];
        payload.Slice(0, 4).CopyTo(bytes);
        return BinaryPrimitives.ReadUInt32BigEndian(bytes);
    }
}
