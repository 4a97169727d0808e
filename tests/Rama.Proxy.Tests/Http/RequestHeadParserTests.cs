using System.Buffers;
using System.Text;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

public class RequestHeadParserTests
{
    private static readonly HttpLimits Limits = new();

    public static TheoryData<string> ValidHeads => new()
    {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://example.com:8080/x?y=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Mixed-CASE:  v  \r\nAccept: */*\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /old HTTP/1.0\r\n\r\n",
        "\r\n\r\nGET /after-empty-lines HTTP/1.1\r\nHost: a\r\n\r\n",
        "M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\u00e9\r\nEmpty:\r\n\r\n",
    };

    [Theory]
    [MemberData(nameof(ValidHeads))]
    public void Valid_head_parses_the_same_whole_and_one_byte_per_segment(string text)
    {
        var whole = Parse(Sequences.Whole(text));
        var split = Parse(Sequences.OneBytePerSegment(text));
        Assert.Equal(Describe(whole.Request), Describe(split.Request));
        Assert.Equal(whole.Consumed, split.Consumed);
        Assert.Equal(Encoding.Latin1.GetByteCount(text), whole.Consumed);
    }

    [Theory]
    [MemberData(nameof(ValidHeads))]
    public void Every_prefix_of_a_valid_head_needs_more_data(string text)
    {
        var bytes = Encoding.Latin1.GetBytes(text);
        for (var i = 0; i < bytes.Length; i++)
        {
            var state = default(HeadScanState);
            Assert.False(Http1Parser.TryParseRequest(Sequences.Split(bytes[..i], 3), Limits, ref state, null, out _, out _));
        }
    }

    [Fact]
    public void Resumed_scan_over_growing_input_gives_the_same_result()
    {
        const string text = "GET http://h/p HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\nNEXT";
        var bytes = Encoding.Latin1.GetBytes(text);
        var state = default(HeadScanState);
        HttpRequest? request = null;
        SequencePosition consumed = default;
        ReadOnlySequence<byte> buffer = default;
        for (var i = 1; i <= bytes.Length && request is null; i++)
        {
            buffer = Sequences.OneBytePerSegment(bytes[..i]);
            Http1Parser.TryParseRequest(buffer, Limits, ref state, null, out request, out consumed);
        }

        Assert.NotNull(request);
        Assert.Equal(0, buffer.Slice(consumed).Length); // the head ended exactly at the last byte fed
        Assert.Equal(Describe(Parse(Sequences.Whole(text)).Request), Describe(request));
    }

    [Fact]
    public void Fields_keep_original_case_order_and_trimmed_values()
    {
        var (request, _) = Parse(Sequences.Whole("GET http://h/ HTTP/1.1\r\nhOsT: h\r\nX-B: 2\r\nx-a:\t 1 \t\r\nX-B: 3\r\n\r\n"));
        Assert.Equal(["hOsT: h", "X-B: 2", "x-a: 1", "X-B: 3"], request.Headers.Select(h => h.ToString()));
        Assert.True(request.Headers.TryGetValue("X-A"u8, out var value));
        Assert.Equal("1", Encoding.ASCII.GetString(value.Span));
        Assert.Equal(RequestTargetForm.Absolute, request.TargetForm);
        Assert.Same(HttpMethods.Get, request.Method);
    }

    [Theory]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", BodyFraming.ContentLength, 5)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", BodyFraming.ContentLength, 5)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7\r\n\r\n", BodyFraming.ContentLength, 7)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", BodyFraming.Chunked, -1)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", BodyFraming.Chunked, -1)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\r\n", BodyFraming.None, 0)]
    public void Request_body_framing_follows_rfc9112_6_3(string text, BodyFraming framing, long length)
    {
        var (request, _) = Parse(Sequences.Whole(text));
        Assert.Equal(framing, request.BodyFraming);
        Assert.Equal(length, request.ContentLength);
    }

    public static TheoryData<string, HttpRejectReason> BadHeads => new()
    {
        { "GET /\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidRequestLine },
        { "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidRequestLine },
        { " GET / HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidRequestLine },
        { "GET / HTTP/1.1\nHost: a\r\n\r\n", HttpRejectReason.InvalidRequestLine },
        { "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidMethod },
        { "GET /a\u00e9 HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "GET * HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "CONNECT example.com:99999 HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "CONNECT user@example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "GET 1http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidTarget },
        { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", HttpRejectReason.UnsupportedVersion },
        { "GET / HTTP/1.2\r\nHost: a\r\n\r\n", HttpRejectReason.UnsupportedVersion },
        { "GET / HTTP/0.9\r\nHost: a\r\n\r\n", HttpRejectReason.UnsupportedVersion },
        { "GET / http/1.1\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidVersion },
        { "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", HttpRejectReason.InvalidVersion },
        { "GET / HTTP/11\r\nHost: a\r\n\r\n", HttpRejectReason.InvalidVersion },
        { "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", HttpRejectReason.InvalidHeader },
        { "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", HttpRejectReason.InvalidHeader },
        { "GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n", HttpRejectReason.InvalidHeader },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", HttpRejectReason.InvalidHeader },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", HttpRejectReason.InvalidHeader },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: ab\n\r\n", HttpRejectReason.InvalidHeader },
        { "GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", HttpRejectReason.WhitespaceBeforeColon },
        { "GET / HTTP/1.1\r\nHost: a\r\nX\t: b\r\n\r\n", HttpRejectReason.WhitespaceBeforeColon },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", HttpRejectReason.ObsoleteLineFolding },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", HttpRejectReason.ObsoleteLineFolding },
        { "GET / HTTP/1.1\r\n\r\n", HttpRejectReason.InvalidHost },
        { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpRejectReason.InvalidHost },
        { "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HttpRejectReason.InvalidHost },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", HttpRejectReason.InvalidContentLength },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", HttpRejectReason.InvalidContentLength },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", HttpRejectReason.InvalidContentLength },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", HttpRejectReason.InvalidContentLength },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", HttpRejectReason.InvalidContentLength },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", HttpRejectReason.InvalidContentLength },
        { "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", HttpRejectReason.ContentLengthWithTransferEncoding },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", HttpRejectReason.ChunkedNotFinal },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", HttpRejectReason.ChunkedNotFinal },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", HttpRejectReason.ChunkedNotFinal },
        { "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HttpRejectReason.UnsupportedTransferEncoding },
        { "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HttpRejectReason.TransferEncodingInHttp10 },
    };

    [Theory]
    [MemberData(nameof(BadHeads))]
    public void Bad_head_is_rejected_with_its_reason(string text, HttpRejectReason reason)
    {
        var whole = Assert.Throws<HttpCodecException>(() => Parse(Sequences.Whole(text)));
        Assert.Equal(reason, whole.Reason);
        var split = Assert.Throws<HttpCodecException>(() => Parse(Sequences.OneBytePerSegment(text)));
        Assert.Equal(reason, split.Reason);
    }

    [Theory]
    [InlineData(HttpRejectReason.InvalidRequestLine, 400)]
    [InlineData(HttpRejectReason.RequestLineTooLong, 414)]
    [InlineData(HttpRejectReason.HeadersTooLarge, 431)]
    [InlineData(HttpRejectReason.TooManyHeaders, 431)]
    [InlineData(HttpRejectReason.HeaderTimeout, 408)]
    [InlineData(HttpRejectReason.ContentLengthWithTransferEncoding, 400)]
    [InlineData(HttpRejectReason.InvalidChunk, 400)]
    [InlineData(HttpRejectReason.UnsupportedVersion, 505)]
    [InlineData(HttpRejectReason.UnsupportedTransferEncoding, 501)]
    public void Rejection_reason_maps_to_its_status(HttpRejectReason reason, int status) =>
        Assert.Equal(status, HttpRejection.StatusCode(reason));

    [Fact]
    public void Request_line_over_the_limit_is_414_even_before_its_end_arrives()
    {
        var limits = new HttpLimits { MaxRequestLineBytes = 64 };
        var atLimit = "GET /" + new string('a', 64 - "GET / HTTP/1.1".Length) + " HTTP/1.1\r\nHost: a\r\n\r\n";
        Assert.True(Http1Parser.TryParseRequest(Sequences.Whole(atLimit), limits, out _, out _));
        var incomplete = "GET /" + new string('a', 100);
        var ex = Assert.Throws<HttpCodecException>(() => Http1Parser.TryParseRequest(Sequences.OneBytePerSegment(incomplete), limits, out _, out _));
        Assert.Equal(HttpRejectReason.RequestLineTooLong, ex.Reason);
        Assert.False(Http1Parser.TryParseRequest(Sequences.Whole(incomplete[..60]), limits, out _, out _));
    }

    [Fact]
    public void Header_section_over_the_limit_is_431_even_before_its_end_arrives()
    {
        var limits = new HttpLimits { MaxHeaderBytes = 100 };
        var fits = "GET / HTTP/1.1\r\nHost: a\r\nX: " + new string('b', 100 - "Host: a\r\nX: \r\n\r\n".Length) + "\r\n\r\n";
        Assert.True(Http1Parser.TryParseRequest(Sequences.Whole(fits), limits, out _, out _));
        var over = "GET / HTTP/1.1\r\nHost: a\r\nX: " + new string('b', 200);
        var ex = Assert.Throws<HttpCodecException>(() => Http1Parser.TryParseRequest(Sequences.OneBytePerSegment(over), limits, out _, out _));
        Assert.Equal(HttpRejectReason.HeadersTooLarge, ex.Reason);
    }

    [Fact]
    public void More_header_lines_than_the_limit_is_431()
    {
        var limits = new HttpLimits { MaxHeaderCount = 3 };
        Assert.True(Http1Parser.TryParseRequest(Sequences.Whole("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"), limits, out _, out _));
        var ex = Assert.Throws<HttpCodecException>(() =>
            Http1Parser.TryParseRequest(Sequences.Whole("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), limits, out _, out _));
        Assert.Equal(HttpRejectReason.TooManyHeaders, ex.Reason);
    }

    [Fact]
    public void Limits_validate_names_the_bad_option()
    {
        new HttpLimits().Validate();
        var ex = Assert.Throws<ArgumentException>(() => new HttpLimits { MaxHeaderCount = 0 }.Validate());
        Assert.Contains(nameof(HttpLimits.MaxHeaderCount), ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => new HttpLimits { HeaderTimeout = TimeSpan.Zero }.Validate());
        Assert.Contains(nameof(HttpLimits.HeaderTimeout), ex.Message, StringComparison.Ordinal);
    }

    private static (HttpRequest Request, long Consumed) Parse(ReadOnlySequence<byte> buffer)
    {
        Assert.True(Http1Parser.TryParseRequest(buffer, Limits, out var request, out var consumed));
        return (request!, buffer.Slice(0, consumed).Length);
    }

    internal static string Describe(HttpRequest? r) => r is null ? "null"
        : $"{r.Method}|{r.Target}|{r.TargetForm}|{r.Version}|{r.BodyFraming}|{r.ContentLength}|{string.Join("|", r.Headers.Select(h => h.ToString()))}";
}
