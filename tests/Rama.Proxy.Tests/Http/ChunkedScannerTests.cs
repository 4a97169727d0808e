using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Rama.Proxy.Http;

namespace Rama.Proxy.Tests.Http;

/// <summary>
/// The pass-through chunked-framing checker of the epoll reverse proxy (RFC 9112 §7.1) and its trailer-section filter
/// (RFC 9112 §7.1.2, RFC 9110 §6.5.1), driven as the relay drives it (<see cref="Relay"/>).
/// </summary>
public class ChunkedScannerTests
{
    private const int MaxLine = 64;
    private const int MaxTrailers = 128;
    private static readonly HttpLimits Limits = new() { MaxChunkLineBytes = MaxLine, MaxHeaderBytes = MaxTrailers, MaxHeaderCount = 4 };
    private const string After = "HTTP/1.1 200 OK\r\n"; // the next response on the connection: never part of the body

    public static TheoryData<string> ValidBodies => new()
    {
        "0\r\n\r\n",
        "5\r\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\n1\r\nd\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        "A\r\n0123456789\r\nFF\r\n" + new string('x', 255) + "\r\n0\r\n\r\n",
        "a;name=value;flag\r\n0123456789\r\n0;last\r\n\r\n",
        "5 ;ext=\"quoted\ttab\"\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nX-Note: never\r\nX-Checksum:abc\r\n\r\n",
        "000005\r\nhello\r\n0000\r\n\r\n",
        "5\r\n0\r\n\r\n\r\n0\r\n\r\n", // chunk data that looks like a last chunk is skipped by count
    };

    [Theory]
    [MemberData(nameof(ValidBodies))]
    public void Valid_body_fed_whole_ends_exactly_at_its_last_crlf(string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        var sent = Relay(bytes, bytes.Length, out var consumed, out var done);
        Assert.True(done);
        Assert.Equal(body.Length, consumed);
        Assert.Equal(body, sent);
    }

    [Theory]
    [MemberData(nameof(ValidBodies))]
    public void Valid_body_fed_one_byte_at_a_time_is_done_only_at_its_last_byte(string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        var scanner = new ChunkedScanner(Limits);
        var pending = 0; // bytes of a trailer section waiting whole
        for (var i = 0; i < body.Length; i++)
        {
            Assert.False(scanner.IsDone, $"done early, before byte {i} of {body.Length}");
            if (!scanner.AtTrailers)
            {
                Assert.Equal(1, scanner.Scan(bytes.AsSpan(i, 1)));
                continue;
            }

            pending++;
            var section = bytes.AsSpan(i + 1 - pending, pending).ToArray();
            Assert.Equal(i == body.Length - 1, scanner.TryFilterTrailers(section, out var length, out _));
            if (scanner.IsDone)
            {
                Assert.Equal(pending, length);
            }
        }

        Assert.True(scanner.IsDone);
        for (var i = body.Length; i < bytes.Length; i++)
        {
            Assert.Equal(0, scanner.Scan(bytes.AsSpan(i, 1)));
        }
    }

    [Theory]
    [MemberData(nameof(ValidBodies))]
    public void Valid_body_fed_in_pieces_of_any_size_gives_the_same_end(string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        for (var split = 1; split <= bytes.Length; split++)
        {
            var sent = Relay(bytes, split, out var consumed, out var done);
            Assert.True(done);
            Assert.Equal(body.Length, consumed);
            Assert.Equal(body, sent);
        }
    }

    public static TheoryData<string, string> FilteredTrailers => new()
    {
        {
            "5\r\nhello\r\n0\r\nContent-Length: 5\r\nX-Checksum: abc\r\nset-cookie: a=b\r\nx-other:  v \t\r\n\r\n",
            "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nx-other:  v \t\r\n\r\n"
        },
        {
            "0\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nAuthorization: Basic eA==\r\n\r\n",
            "0\r\n\r\n"
        },
        {
            "3\r\nabc\r\n0;ext\r\nContent-Type: text/html\r\ngrpc-status: 0\r\nIf-Match: *\r\ngrpc-message: ok\r\n\r\n",
            "3\r\nabc\r\n0;ext\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"
        },
    };

    [Theory]
    [MemberData(nameof(FilteredTrailers))]
    public void Forbidden_trailer_fields_are_dropped_and_allowed_ones_kept_byte_for_byte_however_the_body_arrives(string body, string expected)
    {
        var bytes = Encoding.Latin1.GetBytes(body + After);
        for (var piece = 1; piece <= bytes.Length; piece++)
        {
            var sent = Relay(bytes, piece, out var consumed, out var done);
            Assert.True(done, $"pieces of {piece}");
            Assert.Equal(body.Length, consumed);
            Assert.Equal(expected, sent);
        }
    }

    [Theory]
    [InlineData("Content-Length")]
    [InlineData("Transfer-Encoding")]
    [InlineData("Host")]
    [InlineData("Authorization")]
    [InlineData("Set-Cookie")]
    [InlineData("Content-Type")]
    [InlineData("Cache-Control")]
    [InlineData("Connection")]
    [InlineData("If-None-Match")]
    [InlineData("X-Checksum")]
    [InlineData("grpc-status")]
    [InlineData("Content-Digest")]
    [InlineData("Server-Timing")]
    public async Task A_trailer_field_is_kept_exactly_when_the_pipe_stack_writes_it(string name)
    {
        var section = $"{name}: v\r\n\r\n";
        var relayed = Relay(Encoding.Latin1.GetBytes("0\r\n" + section), 3, out _, out _);

        // The pipe stack: the parsed trailer fields, written back by Http1Writer.WriteLastChunk.
        Assert.True(Http1Parser.TryParseTrailers(new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(section)), Limits, out _, out var trailers));
        var pipe = new Pipe();
        Http1Writer.WriteLastChunk(pipe.Writer, trailers);
        await pipe.Writer.FlushAsync();
        Assert.True(pipe.Reader.TryRead(out var written));
        Assert.Equal(Encoding.Latin1.GetString(written.Buffer.ToArray()), relayed);
    }

    [Fact]
    public void Large_chunk_sizes_up_to_long_max_value_are_counted_without_overflow()
    {
        var scanner = new ChunkedScanner(Limits);
        var line = "7FFFFFFFFFFFFFFF\r\n"u8.ToArray();
        Assert.Equal(line.Length, scanner.Scan(line));
        var data = new byte[1 << 20];
        Assert.Equal(data.Length, scanner.Scan(data)); // all of it is chunk data
        Assert.False(scanner.IsDone);
    }

    [Fact]
    public void Empty_input_consumes_nothing_and_is_not_done()
    {
        var scanner = new ChunkedScanner(Limits);
        Assert.Equal(0, scanner.Scan([]));
        Assert.False(scanner.IsDone);
    }

    public static TheoryData<string, string> BadBodies => new()
    {
        { "bare LF after the size", "5\nhello\r\n0\r\n\r\n" },
        { "bare LF after the data", "5\r\nhello\n0\r\n\r\n" },
        { "bare LF in an extension", "5;a\nb\r\nhello\r\n0\r\n\r\n" },
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
        { "control char in an extension", "5;a\u0001b\r\nhello\r\n0\r\n\r\n" },
        { "NUL in an extension", "5;a\0b\r\nhello\r\n0\r\n\r\n" },
        { "DEL in an extension", "5;a\u007Fb\r\nhello\r\n0\r\n\r\n" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public void Bad_framing_fed_whole_is_rejected_as_invalid_chunk(string what, string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body);
        var scanner = new ChunkedScanner(Limits);
        var ex = Assert.Throws<HttpCodecException>(() => scanner.Scan(bytes));
        Assert.True(ex.Reason == HttpRejectReason.InvalidChunk, what);
    }

    [Theory]
    [MemberData(nameof(BadBodies))]
    public void Bad_framing_fed_one_byte_at_a_time_is_rejected_as_invalid_chunk(string what, string body)
    {
        var bytes = Encoding.Latin1.GetBytes(body);
        var scanner = new ChunkedScanner(Limits);
        var ex = Assert.Throws<HttpCodecException>(() =>
        {
            foreach (var b in bytes)
            {
                scanner.Scan([b]);
            }
        });
        Assert.True(ex.Reason == HttpRejectReason.InvalidChunk, what);
    }

    [Theory]
    [InlineData("5\r\nhello\r\n0\r\n\r\n")]
    [InlineData("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nSet-Cookie: a=b\r\n\r\n")]
    public void Scanning_and_filtering_in_place_allocate_nothing(string body)
    {
        var original = Encoding.Latin1.GetBytes(body);
        var buffer = new byte[original.Length];

        int RelayOnce()
        {
            original.CopyTo(buffer, 0);
            var scanner = new ChunkedScanner(Limits);
            var approved = scanner.Scan(buffer);
            Assert.True(scanner.TryFilterTrailers(buffer.AsSpan(approved), out _, out var kept));
            return approved + kept;
        }

        var sent = RelayOnce();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            RelayOnce();
        }

        // Under one byte per body: the smallest object is 24 bytes, so any allocation per body would show as 2,400 or more.
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 100, $"{allocated} bytes allocated for 100 bodies");
        Assert.Equal("5\r\nhello\r\n0\r\n" + (body.Contains("X-Checksum", StringComparison.Ordinal) ? "X-Checksum: abc\r\n" : "") + "\r\n",
            Encoding.Latin1.GetString(buffer, 0, sent));
    }

    public static TheoryData<string, string> BadTrailerSections => new()
    {
        { "bare LF ending a trailer", "X: y\n\r\n" },
        { "bare LF ending the section", "X: y\r\n\n" },
        { "bare LF ending the body", "\n" },
        { "CR not followed by LF ending the body", "\r\rX: y\r\n\r\n" },
        { "over-long trailer line", "X-Long: " + new string('t', MaxTrailers) + "\r\n\r\n" },
        { "over-long trailer section without an end", string.Concat(Enumerable.Repeat("X-T: 1\r\n", 3)) + new string('t', MaxTrailers) },
        { "too many trailer lines", string.Concat(Enumerable.Repeat("X-T: 1\r\n", 5)) + "\r\n" },
        { "control char in a trailer", "X: a\u0002b\r\n\r\n" },
        { "obs-fold", "X: a\r\n b\r\n\r\n" },
        { "whitespace before the colon", "X : a\r\n\r\n" },
        { "no colon", "X-T 1\r\n\r\n" },
        { "empty name", ": a\r\n\r\n" },
        { "bad name byte", "X(T): a\r\n\r\n" },
        { "a bad line after a forbidden one", "Set-Cookie: a=b\r\nX-T: 1\u007F\r\n\r\n" },
    };

    [Theory]
    [MemberData(nameof(BadTrailerSections))]
    public void Bad_trailer_section_is_rejected_for_the_reason_the_pipe_stack_gives_however_it_arrives(string what, string section)
    {
        var expected = Assert.Throws<HttpCodecException>(
            () => Http1Parser.TryParseTrailers(new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(section)), Limits, out _, out _)).Reason;
        var bytes = Encoding.Latin1.GetBytes("5\r\nhello\r\n0\r\n" + section);
        foreach (var piece in (int[])[1, 2, 7, bytes.Length])
        {
            var ex = Assert.Throws<HttpCodecException>(() => Relay(bytes, piece, out _, out _));
            Assert.True(ex.Reason == expected, $"{what}, pieces of {piece}: {ex.Reason}, the pipes: {expected}");
        }
    }

    /// <summary>
    /// What the epoll relay does as the body arrives in pieces of <paramref name="piece"/> bytes: scan what is new, send what is
    /// approved; at the trailer section, filter it once it is whole (its start stays put, more bytes go behind it). Returns what
    /// was sent; <paramref name="consumed"/> is how many input bytes the body took.
    /// </summary>
    private static string Relay(byte[] input, int piece, out int consumed, out bool done)
    {
        var scanner = new ChunkedScanner(Limits);
        var sent = new List<byte>();
        var pending = new List<byte>();
        var arrived = 0;
        consumed = 0;
        while (!scanner.IsDone && arrived < input.Length)
        {
            var count = Math.Min(piece, input.Length - arrived);
            pending.AddRange(new ArraySegment<byte>(input, arrived, count));
            arrived += count;
            if (!scanner.AtTrailers)
            {
                var take = scanner.Scan(pending.ToArray());
                sent.AddRange(pending.Take(take));
                pending.RemoveRange(0, take);
                consumed += take;
            }

            if (scanner.AtTrailers && pending.Count > 0)
            {
                var section = pending.ToArray();
                if (scanner.TryFilterTrailers(section, out var length, out var kept))
                {
                    sent.AddRange(section.Take(kept));
                    consumed += length;
                }
            }
        }

        done = scanner.IsDone;
        return Encoding.Latin1.GetString([.. sent]);
    }
}
