using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

public class ResponseHeadAndChunkedTests
{
    private static readonly HttpLimits Limits = new();

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "GET", 200, BodyFraming.ContentLength, 3)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD", 200, BodyFraming.None, 0)]
    [InlineData("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", "GET", 204, BodyFraming.None, 0)]
    [InlineData("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", "GET", 304, BodyFraming.None, 0)]
    [InlineData("HTTP/1.1 100 Continue\r\n\r\n", "POST", 100, BodyFraming.None, 0)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 200, BodyFraming.Chunked, -1)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", 200, BodyFraming.Chunked, -1)]
    [InlineData("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "GET", 200, BodyFraming.UntilClose, -1)]
    [InlineData("HTTP/1.0 200 OK\r\n\r\n", "GET", 200, BodyFraming.UntilClose, -1)]
    [InlineData("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", "GET", 404, BodyFraming.ContentLength, 0)]
    [InlineData("HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n", "GET", 500, BodyFraming.ContentLength, 0)]
    public void Response_framing_follows_rfc9112_6_3(string text, string method, int status, BodyFraming framing, long length)
    {
        foreach (var buffer in new[] { Sequences.Whole(text), Sequences.OneBytePerSegment(text) })
        {
            Assert.True(Http1Parser.TryParseResponse(buffer, Limits, method, out var head, out var consumed));
            Assert.Equal(status, head!.Status);
            Assert.Equal(framing, head.Framing);
            Assert.Equal(length, head.ContentLength);
            Assert.Equal(buffer.Length, buffer.Slice(0, consumed).Length);
        }
    }

    [Fact]
    public void Transfer_encoding_wins_and_content_length_is_dropped_from_a_response()
    {
        Assert.True(Http1Parser.TryParseResponse(Sequences.Whole("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n"), Limits, "GET", out var head, out _));
        Assert.False(head!.Headers.Contains(HeaderNames.ContentLength));
        Assert.Equal(["X: y", "Transfer-Encoding: chunked"], head.Headers.Select(h => h.ToString()));
    }

    [Theory]
    [InlineData("HTTP/1.1 20 OK\r\n\r\n", HttpRejectReason.InvalidStatusLine)]
    [InlineData("HTTP/1.1 200OK\r\n\r\n", HttpRejectReason.InvalidStatusLine)]
    [InlineData("HTTP/2.0 200 OK\r\n\r\n", HttpRejectReason.InvalidStatusLine)]
    [InlineData("ICY 200 OK\r\n\r\n", HttpRejectReason.InvalidStatusLine)]
    [InlineData("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", HttpRejectReason.ObsoleteLineFolding)]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HttpRejectReason.InvalidContentLength)]
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", HttpRejectReason.ChunkedNotFinal)]
    public void Bad_response_head_is_rejected(string text, HttpRejectReason reason)
    {
        var ex = Assert.Throws<HttpCodecException>(() => Http1Parser.TryParseResponse(Sequences.OneBytePerSegment(text), Limits, "GET", out _, out _));
        Assert.Equal(reason, ex.Reason);
    }

    public static TheoryData<string, string> ChunkedBodies => new()
    {
        { "5\r\nhello\r\n0\r\n\r\n", "hello" },
        { "5;ext=1;other\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world" },
        { "A\r\n0123456789\r\n0\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n", "0123456789" },
        { "0\r\n\r\n", "" },
        { "00000001\r\nx\r\n0 ; last\r\n\r\n", "x" },
    };

    [Theory]
    [MemberData(nameof(ChunkedBodies))]
    public async Task Chunked_body_decodes_the_same_whole_and_one_byte_per_segment(string wire, string expected)
    {
        foreach (var input in new[] { Sequences.Whole(wire + "NEXT"), Sequences.OneBytePerSegment(wire + "NEXT") })
        {
            var reader = PipeReader.Create(input);
            var (body, rest) = await ReadBodyAsync(reader, BodyFraming.Chunked, -1);
            Assert.Equal(expected, body);
            Assert.Equal("NEXT", rest);
        }
    }

    [Theory]
    [MemberData(nameof(ChunkedBodies))]
    public async Task Chunked_body_decodes_when_bytes_arrive_one_at_a_time(string wire, string expected)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var pipe = new Pipe();
        var writer = Task.Run(async () =>
        {
            foreach (var b in Encoding.Latin1.GetBytes(wire + "NEXT"))
            {
                await pipe.Writer.WriteAsync(new[] { b }, cts.Token);
            }

            await pipe.Writer.CompleteAsync();
        });
        var (body, rest) = await ReadBodyAsync(pipe.Reader, BodyFraming.Chunked, -1).WaitAsync(cts.Token);
        await writer.WaitAsync(cts.Token);
        Assert.Equal(expected, body);
        Assert.Equal("NEXT", rest);
    }

    [Theory]
    [InlineData("hello worldNEXT", 11, "hello world", "NEXT")]
    [InlineData("hello", 0, "", "hello")]
    public async Task Content_length_body_stops_at_its_length(string wire, long length, string expected, string rest)
    {
        var (body, after) = await ReadBodyAsync(PipeReader.Create(Sequences.OneBytePerSegment(wire)), BodyFraming.ContentLength, length);
        Assert.Equal(expected, body);
        Assert.Equal(rest, after);
    }

    public static TheoryData<string> BadChunked => new()
    {
        "x\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5 x\r\nhello\r\n0\r\n\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",
        "1000000000000000\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "0\r\nBad Trailer: x\r\n\r\n",
        "0\r\nX\r\n\r\n",
        "0\r\nX",
    };

    [Theory]
    [MemberData(nameof(BadChunked))]
    public async Task Bad_chunked_framing_is_rejected(string wire)
    {
        var ex = await Assert.ThrowsAsync<HttpCodecException>(() => ReadBodyAsync(PipeReader.Create(Sequences.OneBytePerSegment(wire)), BodyFraming.Chunked, -1));
        Assert.True(ex.Reason is HttpRejectReason.InvalidChunk or HttpRejectReason.InvalidHeader or HttpRejectReason.WhitespaceBeforeColon or HttpRejectReason.UnexpectedEndOfBody, ex.Reason.ToString());
        Assert.Equal(400, ex.StatusCode);
    }

    [Fact]
    public async Task Chunk_line_longer_than_the_limit_is_rejected()
    {
        var limits = new HttpLimits { MaxChunkLineBytes = 16 };
        var body = new Http1BodyReader(PipeReader.Create(Sequences.Whole("5;" + new string('e', 40) + "\r\nhello\r\n0\r\n\r\n")), BodyFraming.Chunked, -1, limits);
        var ex = await Assert.ThrowsAsync<HttpCodecException>(async () => await body.ReadAsync());
        Assert.Equal(HttpRejectReason.InvalidChunk, ex.Reason);
    }

    [Fact]
    public async Task Body_cut_short_is_unexpected_end()
    {
        var ex = await Assert.ThrowsAsync<HttpCodecException>(() => ReadBodyAsync(PipeReader.Create(Sequences.Whole("abc")), BodyFraming.ContentLength, 10));
        Assert.Equal(HttpRejectReason.UnexpectedEndOfBody, ex.Reason);
        ex = await Assert.ThrowsAsync<HttpCodecException>(() => ReadBodyAsync(PipeReader.Create(Sequences.Whole("5\r\nab")), BodyFraming.Chunked, -1));
        Assert.Equal(HttpRejectReason.UnexpectedEndOfBody, ex.Reason);
    }

    [Fact]
    public async Task Until_close_body_reads_to_the_end_of_input()
    {
        var (body, rest) = await ReadBodyAsync(PipeReader.Create(Sequences.OneBytePerSegment("all of it")), BodyFraming.UntilClose, -1);
        Assert.Equal("all of it", body);
        Assert.Equal("", rest);
    }

    [Fact]
    public async Task Chunked_writer_output_decodes_back_to_the_same_bytes()
    {
        var pipe = new Pipe();
        var payload = Enumerable.Range(0, 5000).Select(i => (byte)i).ToArray();
        Http1Writer.WriteChunk(pipe.Writer, new ReadOnlySequence<byte>(payload, 0, 1234));
        Http1Writer.WriteChunk(pipe.Writer, Sequences.Split(payload[1234..], 7));
        Http1Writer.WriteChunk(pipe.Writer, ReadOnlySequence<byte>.Empty);
        Http1Writer.WriteLastChunk(pipe.Writer);
        await pipe.Writer.CompleteAsync();
        var decoded = await ReadAllAsync(new Http1BodyReader(pipe.Reader, BodyFraming.Chunked, -1, Limits));
        Assert.Equal(payload, decoded);
    }

    internal static async Task<(string Body, string After)> ReadBodyAsync(PipeReader input, BodyFraming framing, long length)
    {
        var body = new Http1BodyReader(input, framing, length, Limits);
        var collected = await ReadAllAsync(body);
        Assert.True(body.IsEnd);
        await body.CompleteAsync();
        var rest = new MemoryStream();
        while (input.TryRead(out var tail))
        {
            foreach (var segment in tail.Buffer)
            {
                rest.Write(segment.Span);
            }

            input.AdvanceTo(tail.Buffer.End);
            if (tail.IsCompleted || tail.Buffer.IsEmpty)
            {
                break;
            }
        }

        return (Encoding.Latin1.GetString(collected), Encoding.Latin1.GetString(rest.ToArray()));
    }

    private static async Task<byte[]> ReadAllAsync(PipeReader body)
    {
        var collected = new MemoryStream();
        for (var reads = 0; ; reads++)
        {
            Assert.True(reads < 100_000, "the body reader loops");
            var result = await body.ReadAsync();
            foreach (var segment in result.Buffer)
            {
                collected.Write(segment.Span);
            }

            body.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return collected.ToArray();
            }
        }
    }
}
