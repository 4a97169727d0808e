using System.Text;
using Rama.Proxy.Http;

namespace Rama.Proxy.Tests.Http;

/// <summary>The pass-through chunked-framing checker of the epoll reverse proxy (RFC 9112 §7.1).</summary>
public class ChunkedScannerTests
{
    private const int MaxLine = 64;
    private const int MaxTrailers = 128;
    private const string After = "HTTP/1.1 200 OK\r\n"; // the next response on the connection: never part of the body

    public static TheoryData<string> ValidBodies => new()
    {
        "0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\n1\r\nd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        "A\r\n0123456789\r\nFF\r\n" + new string('x', 255) + "\r\n0\r\n\r\n",
        "a;name=value;flag\r\n0123456789\r\n0;last\r\n\r\n",
        "5 ;ext=\"quoted\ttab\"\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n",
        "000005\r\nhello\r\n0000\r\n\r\n",
        "5\r\n0\r\n\r\n\r\n0\r\n\r\n", // chunk data that looks like a last chunk is skipped by count
    };

    [Theory]
    [MemberData(nameof(ValidBodies))]
    public void Valid_body_fed_whole_ends_exactly_at_its_last_crlf(string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
        Assert.Equal(body.Length, scanner.Scan(bytes));
        Assert.True(scanner.IsDone);
        Assert.Equal(0, scanner.Scan(bytes.AsSpan(body.Length)));
    }

    [Theory]
    [MemberData(nameof(ValidBodies))]
    public void Valid_body_fed_one_byte_at_a_time_is_done_only_at_its_last_byte(string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
        for (var i = 0; i < body.Length; i++)
        {
            Assert.False(scanner.IsDone, $"done early, before byte {i} of {body.Length}");
            Assert.Equal(1, scanner.Scan(bytes.AsSpan(i, 1)));
        }

        Assert.True(scanner.IsDone);
        for (var i = body.Length; i < bytes.Length; i++)
        {
            Assert.Equal(0, scanner.Scan(bytes.AsSpan(i, 1)));
        }
    }

    [Theory]
    [MemberData(nameof(ValidBodies))]
    public void Valid_body_split_anywhere_in_two_gives_the_same_end(string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        for (var split = 0; split <= bytes.Length; split++)
        {
            var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
            var first = scanner.Scan(bytes.AsSpan(0, split));
            var second = scanner.Scan(bytes.AsSpan(split));
            Assert.Equal(body.Length, first + second);
            Assert.True(scanner.IsDone);
        }
    }

    [Fact]
    public void Large_chunk_sizes_up_to_long_max_value_are_counted_without_overflow()
    {
        var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
        var line = "7FFFFFFFFFFFFFFF\r\n"u8.ToArray();
        Assert.Equal(line.Length, scanner.Scan(line));
        var data = new byte[1 << 20];
        Assert.Equal(data.Length, scanner.Scan(data)); // all of it is chunk data
        Assert.False(scanner.IsDone);
    }

    [Fact]
    public void Empty_input_consumes_nothing_and_is_not_done()
    {
        var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
        Assert.Equal(0, scanner.Scan([]));
        Assert.False(scanner.IsDone);
    }

    public static TheoryData<string, string> BadBodies => new()
    {
        { "bare LF after the size", "5\nhello\r\n0\r\n\r\n" },
        { "bare LF after the data", "5\r\nhello\n0\r\n\r\n" },
        { "bare LF in an extension", "5;a\nb\r\nhello\r\n0\r\n\r\n" },
        { "bare LF ending a trailer", "0\r\nX: y\n\r\n" },
        { "bare LF ending the body", "0\r\n\n" },
        { "CR not followed by LF ending the body", "0\r\n\r\r" },
        { "CR not followed by LF after the size", "5\r\rhello\r\n0\r\n\r\n" },
        { "non-hex size", "g\r\nhello\r\n0\r\n\r\n" },
        { "non-hex digit inside the size", "1x\r\nhello\r\n" },
        { "sign before the size", "+5\r\nhello\r\n" },
        { "0x prefix", "0x5\r\nhello\r\n" },
        { "empty size line", "\r\nhello\r\n" },
        { "extension without a size", ";ext\r\nhello\r\n" },
        { "missing CRLF after the data", "5\r\nhelloX\r\n0\r\n\r\n" },
        { "data longer than its size", "3\r\nhello\r\n0\r\n\r\n" },
        { "CR without LF after the data", "5\r\nhello\rX0\r\n\r\n" },
        { "size overflow (16 hex digits above long.MaxValue)", "8000000000000000\r\n" },
        { "size overflow (17 hex digits)", "10000000000000000\r\n" },
        { "size overflow (all F)", "FFFFFFFFFFFFFFFFFFFF\r\n" },
        { "over-long size line (leading zeros)", new string('0', MaxLine + 1) + "5\r\nhello\r\n" },
        { "over-long size line (extension)", "5;" + new string('e', MaxLine) + "\r\nhello\r\n" },
        { "over-long trailer line", "0\r\nX-Long: " + new string('t', MaxTrailers) + "\r\n\r\n" },
        { "over-long trailer section", "0\r\n" + string.Concat(Enumerable.Repeat("X-T: 12345678\r\n", MaxTrailers / 8)) + "\r\n" },
        { "control char in an extension", "5;a\u0001b\r\nhello\r\n0\r\n\r\n" },
        { "NUL in an extension", "5;a\0b\r\nhello\r\n0\r\n\r\n" },
        { "DEL in an extension", "5;a\u007Fb\r\nhello\r\n0\r\n\r\n" },
        { "control char in a trailer", "0\r\nX: a\u0002b\r\n\r\n" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public void Bad_framing_fed_whole_is_rejected_as_invalid_chunk(string what, string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body);
        var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
        var ex = Assert.Throws<HttpCodecException>(() => scanner.Scan(bytes));
        Assert.True(ex.Reason == HttpRejectReason.InvalidChunk, what);
    }

    [Theory]
    [MemberData(nameof(BadBodies))]
    public void Bad_framing_fed_one_byte_at_a_time_is_rejected_as_invalid_chunk(string what, string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body);
        var scanner = new ChunkedScanner(MaxLine, MaxTrailers);
        var ex = Assert.Throws<HttpCodecException>(() =>
        {
            foreach (var b in bytes)
            {
                scanner.Scan([b]);
            }
        });
        Assert.True(ex.Reason == HttpRejectReason.InvalidChunk, what);
    }
}
