using System.IO.Pipelines;
using System.Text;
using Rama.Proxy.Http;

namespace Rama.Proxy.Tests.Http;

/// <summary>The trailer section of a chunked body (RFC 9112 §7.1.2) read and written, and which fields may be trailers (RFC 9110 §6.5.1).</summary>
public class ChunkedTrailerTests
{
    [Theory]
    [InlineData("X-Checksum", true)]
    [InlineData("grpc-status", true)]
    [InlineData("Content-Digest", true)]
    [InlineData("Server-Timing", true)]
    [InlineData("Set-Cookie", false)]
    [InlineData("content-length", false)]
    [InlineData("Content-Type", false)]
    [InlineData("Transfer-Encoding", false)]
    [InlineData("Host", false)]
    [InlineData("Authorization", false)]
    [InlineData("Cache-Control", false)]
    [InlineData("If-None-Match", false)]
    [InlineData("Connection", false)]
    [InlineData("Trailer", false)]
    [InlineData("TE", false)]
    [InlineData(":status", false)]
    public void Only_fields_a_trailer_may_carry_are_sent(string name, bool allowed)
    {
        var headers = new HttpHeaders();
        headers.Add(name, "v");
        Assert.Equal(allowed, HttpForwardRules.MayBeTrailer(headers[0]));
        Assert.Equal(allowed, HttpForwardRules.TrailersToSend(headers) is not null);
    }

    [Fact]
    public async Task A_chunked_body_hands_its_trailers_over_before_its_end_and_the_writer_sends_the_allowed_ones()
    {
        var wire = new Pipe();
        await wire.Writer.WriteAsync(Encoding.ASCII.GetBytes("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nSet-Cookie: y=1\r\n\r\n"));
        var body = new Http1BodyReader(wire.Reader, BodyFraming.Chunked, -1, new HttpLimits());
        HttpHeaders? trailers = null;
        body.OnTrailers(t => trailers = t);

        var copy = new Pipe();
        var written = await Http1Writer.CopyBodyAsync(body, copy.Writer, chunked: true, length: -1, CancellationToken.None, () => trailers);
        await copy.Writer.CompleteAsync();
        var result = await copy.Reader.ReadAsync();
        while (!result.IsCompleted)
        {
            copy.Reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            result = await copy.Reader.ReadAsync();
        }

        Assert.Equal(5, written);
        Assert.NotNull(trailers);
        Assert.Equal(2, trailers.Count);
        Assert.Equal("5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", Encoding.ASCII.GetString(result.Buffer));
    }

    [Fact]
    public async Task A_chunked_body_without_trailers_reports_none()
    {
        var wire = new Pipe();
        await wire.Writer.WriteAsync("3\r\nabc\r\n0\r\n\r\n"u8.ToArray());
        var body = new Http1BodyReader(wire.Reader, BodyFraming.Chunked, -1, new HttpLimits());
        var called = false;
        body.OnTrailers(_ => called = true);
        var copy = new Pipe();
        await Http1Writer.CopyBodyAsync(body, copy.Writer, chunked: false, length: -1, CancellationToken.None);
        Assert.True(body.IsEnd);
        Assert.False(called);
    }
}
