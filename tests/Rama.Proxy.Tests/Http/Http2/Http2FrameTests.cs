using System.Buffers;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http.Http2;

public class Http2FrameTests
{
    private static byte[] Frames(Action<ArrayBufferWriter<byte>> write)
    {
        var output = new ArrayBufferWriter<byte>();
        write(output);
        return output.WrittenSpan.ToArray();
    }

    private static List<(Http2FrameHeader Header, byte[] Payload)> ReadAll(ReadOnlySequence<byte> input, int maxFrameSize = 16_384)
    {
        var frames = new List<(Http2FrameHeader, byte[])>();
        while (Http2FrameReader.TryReadFrame(ref input, maxFrameSize, out var header, out var payload))
        {
            frames.Add((header, payload.ToArray()));
        }

        Assert.Equal(0, input.Length);
        return frames;
    }

    [Fact]
    public void Every_frame_type_round_trips_one_byte_per_segment()
    {
        var block = Enumerable.Range(0, 40_000).Select(i => (byte)i).ToArray();
        var bytes = Frames(o =>
        {
            Http2FrameWriter.WriteData(o, 1, new ReadOnlySequence<byte>("hello"u8.ToArray()), endStream: true, padLength: 3);
            Http2FrameWriter.WriteHeaders(o, 3, block, endStream: false, maxFrameSize: 16_384, new Http2Priority(1, true, 200), padLength: 2);
            Http2FrameWriter.WritePriority(o, 5, new Http2Priority(3, false, 15));
            Http2FrameWriter.WriteRstStream(o, 5, Http2ErrorCode.Cancel);
            Http2FrameWriter.WriteSettings(o, [new Http2Setting(1, 65536), new Http2Setting(4, 6291456)]);
            Http2FrameWriter.WriteSettingsAck(o);
            Http2FrameWriter.WritePushPromise(o, 1, 2, "abc"u8);
            Http2FrameWriter.WritePing(o, 0x0102030405060708, ack: true);
            Http2FrameWriter.WriteGoAway(o, 7, Http2ErrorCode.EnhanceYourCalm, "calm"u8);
            Http2FrameWriter.WriteWindowUpdate(o, 0, 15663105);
        });

        var frames = ReadAll(Sequences.OneBytePerSegment(bytes));
        Assert.Equal(
            [Http2FrameType.Data, Http2FrameType.Headers, Http2FrameType.Continuation, Http2FrameType.Continuation, Http2FrameType.Priority,
             Http2FrameType.RstStream, Http2FrameType.Settings, Http2FrameType.Settings, Http2FrameType.PushPromise, Http2FrameType.Ping,
             Http2FrameType.GoAway, Http2FrameType.WindowUpdate],
            frames.Select(f => f.Header.Type));

        var (dataHeader, dataPayload) = frames[0];
        Assert.Equal("hello"u8.ToArray(), Http2FrameReader.ReadData(dataHeader, new ReadOnlySequence<byte>(dataPayload)).ToArray());
        Assert.True(dataHeader.HasFlag(Http2Flags.EndStream));

        var fragment = Http2FrameReader.ReadHeaders(frames[1].Header, new ReadOnlySequence<byte>(frames[1].Payload), out var priority);
        Assert.Equal(new Http2Priority(1, true, 200), priority);
        Assert.False(frames[1].Header.HasFlag(Http2Flags.EndHeaders));
        Assert.True(frames[3].Header.HasFlag(Http2Flags.EndHeaders));
        Assert.Equal(block, fragment.ToArray().Concat(frames[2].Payload).Concat(frames[3].Payload));

        Assert.Equal(new Http2Priority(3, false, 15), Http2FrameReader.ReadPriority(frames[4].Header, new ReadOnlySequence<byte>(frames[4].Payload)));
        Assert.Equal(Http2ErrorCode.Cancel, Http2FrameReader.ReadRstStream(new ReadOnlySequence<byte>(frames[5].Payload)));
        var settings = new List<Http2Setting>();
        Http2FrameReader.ReadSettings(new ReadOnlySequence<byte>(frames[6].Payload), settings);
        Assert.Equal([new Http2Setting(1, 65536), new Http2Setting(4, 6291456)], settings);
        Assert.True(frames[7].Header.HasFlag(Http2Flags.Ack));
        Assert.Equal("abc"u8.ToArray(), Http2FrameReader.ReadPushPromise(frames[8].Header, new ReadOnlySequence<byte>(frames[8].Payload), out var promised).ToArray());
        Assert.Equal(2, promised);
        Assert.Equal(0x0102030405060708UL, Http2FrameReader.ReadPing(new ReadOnlySequence<byte>(frames[9].Payload)));
        var (last, code, debug) = Http2FrameReader.ReadGoAway(new ReadOnlySequence<byte>(frames[10].Payload));
        Assert.Equal((7, Http2ErrorCode.EnhanceYourCalm, "calm"), (last, code, System.Text.Encoding.ASCII.GetString(debug.ToArray())));
        Assert.Equal(15663105, Http2FrameReader.ReadWindowUpdate(frames[11].Header, new ReadOnlySequence<byte>(frames[11].Payload)));
    }

    [Fact]
    public void Partial_frame_needs_more_and_consumes_nothing()
    {
        var bytes = Frames(o => Http2FrameWriter.WritePing(o, 42, ack: false));
        for (var cut = 0; cut < bytes.Length; cut++)
        {
            var input = Sequences.OneBytePerSegment(bytes[..cut]);
            Assert.False(Http2FrameReader.TryReadFrame(ref input, 16_384, out _, out _));
            Assert.Equal(cut, input.Length);
        }
    }

    [Fact]
    public void Oversized_frame_is_refused_from_its_header_alone()
    {
        var header = new byte[9];
        Http2FrameWriter.WriteHeader(header, 16_385, Http2FrameType.Data, 0, 1);
        var input = new ReadOnlySequence<byte>(header);
        var error = Assert.Throws<Http2Exception>(() => Http2FrameReader.TryReadFrame(ref input, 16_384, out _, out _));
        Assert.Equal(Http2ErrorCode.FrameSizeError, error.ErrorCode);
        Assert.True(error.IsConnectionError);
    }

    public static TheoryData<string, Http2ErrorCode, bool> BadFrames => new()
    {
        // length(6 hex) type flags stream payload : expected code, connection error?
        { "000000" + "00" + "00" + "00000000", Http2ErrorCode.ProtocolError, true },             // DATA on stream 0
        { "000000" + "01" + "04" + "00000000", Http2ErrorCode.ProtocolError, true },             // HEADERS on stream 0
        { "000004" + "02" + "00" + "00000001" + "00000000", Http2ErrorCode.FrameSizeError, false }, // PRIORITY length 4
        { "000003" + "03" + "00" + "00000001" + "000000", Http2ErrorCode.FrameSizeError, true },  // RST_STREAM length 3
        { "000000" + "03" + "00" + "00000000", Http2ErrorCode.ProtocolError, true },             // RST_STREAM on stream 0
        { "000006" + "04" + "01" + "00000000" + "000100001000", Http2ErrorCode.FrameSizeError, true }, // SETTINGS ACK with payload
        { "000005" + "04" + "00" + "00000000" + "0001000010", Http2ErrorCode.FrameSizeError, true }, // SETTINGS length 5
        { "000000" + "04" + "00" + "00000001", Http2ErrorCode.ProtocolError, true },             // SETTINGS on a stream
        { "000007" + "06" + "00" + "00000000" + "00000000000000", Http2ErrorCode.FrameSizeError, true }, // PING length 7
        { "000008" + "06" + "00" + "00000003" + "0000000000000000", Http2ErrorCode.ProtocolError, true }, // PING on a stream
        { "000007" + "07" + "00" + "00000000" + "00000000000000", Http2ErrorCode.FrameSizeError, true }, // GOAWAY length 7
        { "000008" + "07" + "00" + "00000001" + "0000000000000000", Http2ErrorCode.ProtocolError, true }, // GOAWAY on a stream
        { "000003" + "08" + "00" + "00000000" + "000001", Http2ErrorCode.FrameSizeError, true },  // WINDOW_UPDATE length 3
        { "000000" + "09" + "04" + "00000000", Http2ErrorCode.ProtocolError, true },             // CONTINUATION on stream 0
    };

    [Theory]
    [MemberData(nameof(BadFrames))]
    public void Bad_frame_is_refused_with_its_error_code(string hex, Http2ErrorCode code, bool connection)
    {
        var input = Sequences.OneBytePerSegment(Convert.FromHexString(hex));
        var error = Assert.Throws<Http2Exception>(() => Http2FrameReader.TryReadFrame(ref input, 16_384, out _, out _));
        Assert.Equal(code, error.ErrorCode);
        Assert.Equal(connection, error.IsConnectionError);
    }

    public static TheoryData<string, Http2ErrorCode> BadPayloads => new()
    {
        { "000002" + "00" + "08" + "00000001" + "0500", Http2ErrorCode.ProtocolError },          // DATA pad length past payload
        { "000001" + "01" + "2c" + "00000001" + "00", Http2ErrorCode.ProtocolError },             // HEADERS padded+priority, too short
        { "000006" + "04" + "00" + "00000000" + "000200000002", Http2ErrorCode.ProtocolError },   // ENABLE_PUSH 2
        { "000006" + "04" + "00" + "00000000" + "000480000000", Http2ErrorCode.FlowControlError }, // INITIAL_WINDOW_SIZE 2^31
        { "000006" + "04" + "00" + "00000000" + "000500003fff", Http2ErrorCode.ProtocolError },   // MAX_FRAME_SIZE 16383
        { "000006" + "04" + "00" + "00000000" + "000501000000", Http2ErrorCode.ProtocolError },   // MAX_FRAME_SIZE 2^24
        { "000006" + "04" + "00" + "00000000" + "000800000002", Http2ErrorCode.ProtocolError },   // ENABLE_CONNECT_PROTOCOL 2
        { "000004" + "08" + "00" + "00000000" + "00000000", Http2ErrorCode.ProtocolError },       // WINDOW_UPDATE 0 (connection)
        { "000004" + "08" + "00" + "00000001" + "80000000", Http2ErrorCode.ProtocolError },       // WINDOW_UPDATE 0 (stream, R bit set)
        { "000005" + "02" + "00" + "00000003" + "0000000310", Http2ErrorCode.ProtocolError },     // PRIORITY on itself
    };

    [Theory]
    [MemberData(nameof(BadPayloads))]
    public void Bad_payload_is_refused_with_its_error_code(string hex, Http2ErrorCode code)
    {
        var input = Sequences.OneBytePerSegment(Convert.FromHexString(hex));
        Assert.True(Http2FrameReader.TryReadFrame(ref input, 16_384, out var header, out var payload));
        var error = Assert.Throws<Http2Exception>(() =>
        {
            switch (header.Type)
            {
                case Http2FrameType.Data: Http2FrameReader.ReadData(header, payload); break;
                case Http2FrameType.Headers: Http2FrameReader.ReadHeaders(header, payload, out _); break;
                case Http2FrameType.Settings: Http2FrameReader.ReadSettings(payload, []); break;
                case Http2FrameType.WindowUpdate: Http2FrameReader.ReadWindowUpdate(header, payload); break;
                case Http2FrameType.Priority: Http2FrameReader.ReadPriority(header, payload); break;
            }
        });
        Assert.Equal(code, error.ErrorCode);
    }

    [Theory]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", PrefaceMatch.Match)]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04", PrefaceMatch.Match)]
    [InlineData("PRI * HTTP/2", PrefaceMatch.NeedMore)]
    [InlineData("", PrefaceMatch.NeedMore)]
    [InlineData("GET / HTTP/1.1\r\n", PrefaceMatch.NoMatch)]
    [InlineData("POST / HTTP/1.1\r\n", PrefaceMatch.NoMatch)]
    [InlineData("PRI * HTTP/1.1\r\n\r\n", PrefaceMatch.NoMatch)]
    public void Preface_is_told_from_http11_one_byte_per_segment(string text, PrefaceMatch expected) =>
        Assert.Equal(expected, Http2Preface.Detect(Sequences.OneBytePerSegment(text)));

    [Theory]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04", true)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\r\n", false)]
    [InlineData("PRI * HTTP/2", false)] // closed early
    public async Task Preface_is_peeked_without_consuming(string text, bool http2)
    {
        var pipe = new System.IO.Pipelines.Pipe();
        var bytes = System.Text.Encoding.Latin1.GetBytes(text);
        var detect = Http2Preface.IsHttp2Async(pipe.Reader, CancellationToken.None).AsTask();
        foreach (var b in bytes)
        {
            await pipe.Writer.WriteAsync(new[] { b }); // one octet at a time
        }

        await pipe.Writer.CompleteAsync();
        Assert.Equal(http2, await detect.WaitAsync(TimeSpan.FromSeconds(10)));
        var rest = await pipe.Reader.ReadAsync();
        Assert.Equal(bytes, rest.Buffer.ToArray());
    }
}
