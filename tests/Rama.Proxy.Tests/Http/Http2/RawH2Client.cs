using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Time.Testing;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>
/// Drives <see cref="Http2Server"/> over an in-memory duplex pipe with raw frames, h2spec style: the test writes
/// exactly the frames it wants and reads what the server answers.
/// </summary>
internal sealed class RawH2Client : IAsyncDisposable
{
    private readonly Pipe _toServer = new();
    private readonly Pipe _fromServer = new();
    private readonly HpackEncoder _encoder = new(new HpackEncoderOptions { Huffman = HpackHuffmanMode.Never });
    private readonly CancellationTokenSource _drain = new();
    private readonly CancellationTokenSource _abort = new();

    public RawH2Client(IService<HttpRequest, HttpResponse>? application = null, Http2Limits? limits = null, TimeProvider? time = null,
        Func<PipeWriter, PipeWriter>? serverOutput = null)
    {
        Time = time as FakeTimeProvider;
        var output = serverOutput is null ? _fromServer.Writer : serverOutput(_fromServer.Writer);
        Server = Http2Server.ServeAsync(new Duplex(_toServer.Reader, output), application ?? Http2TestServices.Application(), limits,
            time: time, drain: _drain.Token, abort: _abort.Token);
    }

    public FakeTimeProvider? Time { get; }

    /// <summary>Completes when the server has ended the connection.</summary>
    public Task Server { get; }

    public PipeWriter Output => _toServer.Writer;

    public void Drain() => _drain.Cancel();

    public async Task SendAsync(byte[] bytes)
    {
        await _toServer.Writer.WriteAsync(bytes);
    }

    public Task SendAsync(Action<IBufferWriter<byte>> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        write(buffer);
        return SendAsync(buffer.WrittenSpan.ToArray());
    }

    /// <summary>Preface + empty SETTINGS, then reads the server's SETTINGS (and WINDOW_UPDATE) and ACKs them.</summary>
    public async Task HandshakeAsync(params Http2Setting[] settings)
    {
        await SendAsync(Http2Preface.Bytes.ToArray());
        await SendAsync(o => Http2FrameWriter.WriteSettings(o, settings));
        var first = await ReadFrameAsync();
        Assert.Equal(Http2FrameType.Settings, first.Header.Type);
        await SendAsync(o => Http2FrameWriter.WriteSettingsAck(o));
    }

    public byte[] Block(params (string Name, string Value)[] fields) =>
        _encoder.Encode(fields.Select(f => new HpackHeaderField(System.Text.Encoding.Latin1.GetBytes(f.Name), System.Text.Encoding.Latin1.GetBytes(f.Value))).ToArray());

    public static (string, string)[] Get(string path = "/hello") => [(":method", "GET"), (":scheme", "http"), (":authority", "test"), (":path", path)];

    public static (string, string)[] Post(string path = "/echo") => [(":method", "POST"), (":scheme", "http"), (":authority", "test"), (":path", path)];

    public Task HeadersAsync(int streamId, bool endStream, params (string Name, string Value)[] fields)
    {
        var block = Block(fields);
        return SendAsync(o => Http2FrameWriter.WriteHeaders(o, streamId, block, endStream, 16_384));
    }

    /// <summary>HEADERS with END_STREAM and without END_HEADERS: CONTINUATION must follow.</summary>
    public static void WriteHeadersWithoutEndHeaders(IBufferWriter<byte> output, int streamId, ReadOnlySpan<byte> fragment)
    {
        var span = output.GetSpan(9 + fragment.Length);
        Http2FrameWriter.WriteHeader(span, fragment.Length, Http2FrameType.Headers, Http2Flags.EndStream, streamId);
        fragment.CopyTo(span[9..]);
        output.Advance(9 + fragment.Length);
    }

    public Task DataAsync(int streamId, byte[] data, bool endStream) =>
        SendAsync(o => Http2FrameWriter.WriteData(o, streamId, new ReadOnlySequence<byte>(data), endStream));

    /// <summary>The next frame from the server; null when it closed the connection.</summary>
    public async Task<(Http2FrameHeader Header, byte[] Payload)?> TryReadFrameAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var result = await _fromServer.Reader.ReadAsync(cts.Token);
            var buffer = result.Buffer;
            if (Http2FrameReader.TryReadFrame(ref buffer, 16_777_215, out var header, out var payload))
            {
                var bytes = payload.ToArray();
                _fromServer.Reader.AdvanceTo(buffer.Start);
                return (header, bytes);
            }

            _fromServer.Reader.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return null;
            }
        }
    }

    public async Task<(Http2FrameHeader Header, byte[] Payload)> ReadFrameAsync() =>
        await TryReadFrameAsync() ?? throw new InvalidOperationException("the server closed the connection");

    /// <summary>Reads frames until one of <paramref name="type"/> (on <paramref name="streamId"/> when given), skipping the rest.</summary>
    public async Task<(Http2FrameHeader Header, byte[] Payload)> ExpectAsync(Http2FrameType type, int? streamId = null)
    {
        while (true)
        {
            var frame = await TryReadFrameAsync() ?? throw new InvalidOperationException($"closed before {type}");
            if (frame.Header.Type == type && (streamId is null || frame.Header.StreamId == streamId))
            {
                return frame;
            }
        }
    }

    /// <summary>The GOAWAY error code, then the server closes the connection (bounded in time).</summary>
    public async Task<Http2ErrorCode> ExpectGoAwayAndCloseAsync()
    {
        var (_, payload) = await ExpectAsync(Http2FrameType.GoAway);
        var (_, code, _) = Http2FrameReader.ReadGoAway(new ReadOnlySequence<byte>(payload));
        while (await TryReadFrameAsync() is not null)
        {
        }

        await Server.WaitAsync(TimeSpan.FromSeconds(10));
        return code;
    }

    public async Task<Http2ErrorCode> ExpectRstStreamAsync(int streamId)
    {
        var (_, payload) = await ExpectAsync(Http2FrameType.RstStream, streamId);
        return Http2FrameReader.ReadRstStream(new ReadOnlySequence<byte>(payload));
    }

    /// <summary>Reads one response on <paramref name="streamId"/>: status, body, trailers (until END_STREAM). Other streams' header blocks are decoded (HPACK state) and dropped.</summary>
    public async Task<(int Status, byte[] Body, List<HpackHeaderField>? Trailers)> ReadResponseAsync(int streamId, HpackDecoder decoder) =>
        (await ReadResponsesAsync(decoder, streamId))[streamId];

    /// <summary>Reads the responses of several concurrent streams, in whatever order their frames interleave.</summary>
    public async Task<Dictionary<int, (int Status, byte[] Body, List<HpackHeaderField>? Trailers)>> ReadResponsesAsync(HpackDecoder decoder, params int[] streamIds)
    {
        var status = streamIds.ToDictionary(id => id, _ => 0);
        var bodies = streamIds.ToDictionary(id => id, _ => new List<byte>());
        var trailers = new Dictionary<int, List<HpackHeaderField>>();
        var done = new Dictionary<int, (int, byte[], List<HpackHeaderField>?)>();
        while (done.Count < streamIds.Length)
        {
            var (header, payload) = await ReadFrameAsync();
            var mine = status.ContainsKey(header.StreamId);
            if (header.Type == Http2FrameType.Headers)
            {
                var fields = decoder.Decode(Http2FrameReader.ReadHeaders(header, new ReadOnlySequence<byte>(payload), out _).ToArray());
                if (!mine)
                {
                    continue;
                }

                if (status[header.StreamId] == 0)
                {
                    status[header.StreamId] = int.Parse(fields.Single(f => f.NameText == ":status").ValueText, System.Globalization.CultureInfo.InvariantCulture);
                }
                else
                {
                    trailers[header.StreamId] = fields;
                }
            }
            else if (header.Type == Http2FrameType.Data && mine)
            {
                bodies[header.StreamId].AddRange(Http2FrameReader.ReadData(header, new ReadOnlySequence<byte>(payload)).ToArray());
            }
            else if (header.Type == Http2FrameType.RstStream && mine)
            {
                throw new InvalidOperationException($"stream {header.StreamId} reset: " + Http2FrameReader.ReadRstStream(new ReadOnlySequence<byte>(payload)));
            }

            if (mine && header.Type is Http2FrameType.Data or Http2FrameType.Headers && header.HasFlag(Http2Flags.EndStream))
            {
                done[header.StreamId] = (status[header.StreamId], bodies[header.StreamId].ToArray(), trailers.GetValueOrDefault(header.StreamId));
            }
        }

        return done;
    }

    public async ValueTask DisposeAsync()
    {
        await _abort.CancelAsync();
        await _toServer.Writer.CompleteAsync();
        try
        {
            await Server.WaitAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            _drain.Dispose();
            _abort.Dispose();
        }
    }

    internal sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
