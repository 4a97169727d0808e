using Rama.Proxy.Http.Http2.Hpack;
using Rama.Proxy.Tests.Support;
using static Rama.Proxy.Tests.Http.Http2.HpackTestSupport;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>RFC 7541 Appendix C, verbatim: every example decoded (whole and one byte per segment) and encoded to the same bytes.</summary>
public class HpackAppendixCTests
{
    private sealed record Step(string Hex, (string, string)[] Fields, (string, string)[] Table, int TableSize);

    // C.1.1 10 with a 5-bit prefix; C.1.2 1337 with a 5-bit prefix; C.1.3 42 at an octet boundary (8-bit prefix).
    [Theory]
    [InlineData(10, 5, "0a")]
    [InlineData(1337, 5, "1f9a0a")]
    [InlineData(42, 8, "2a")]
    public void C1_integer_representation_encodes_and_decodes(int value, int prefixBits, string hex)
    {
        var bytes = new byte[HpackInteger.MaxEncodedLength];
        var written = HpackInteger.Encode(value, prefixBits, 0, bytes);
        Assert.Equal(hex, ToHex(bytes.AsSpan(0, written)));
        Assert.Equal(written, HpackInteger.GetEncodedLength(value, prefixBits));

        var reader = new System.Buffers.SequenceReader<byte>(Sequences.OneBytePerSegment(Hex(hex)));
        Assert.True(HpackInteger.TryDecode(ref reader, prefixBits, out var decoded));
        Assert.Equal(value, decoded);
        Assert.Equal(written, reader.Consumed);
    }

    [Fact]
    public void C1_integer_prefix_ignores_the_representation_bits_above_it()
    {
        // C.1.2 with the three high bits set, as they are when the integer follows a pattern.
        var reader = new System.Buffers.SequenceReader<byte>(new System.Buffers.ReadOnlySequence<byte>(Hex("ff9a0a")));
        Assert.True(HpackInteger.TryDecode(ref reader, 5, out var value));
        Assert.Equal(1337, value);
    }

    [Fact]
    public void C2_1_literal_header_field_with_indexing()
    {
        AssertSeries(4096, HpackHuffmanMode.Never,
            new Step("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                [("custom-key", "custom-header")], [("custom-key", "custom-header")], 55));
    }

    [Fact]
    public void C2_2_literal_header_field_without_indexing()
    {
        AssertSeries(4096, HpackHuffmanMode.Never,
            new Step("040c 2f73 616d 706c 652f 7061 7468", [(":path", "/sample/path")], [], 0),
            HpackIndexing.WithoutIndexing);
    }

    [Fact]
    public void C2_3_literal_header_field_never_indexed()
    {
        AssertSeries(4096, HpackHuffmanMode.Never,
            new Step("1008 7061 7373 776f 7264 0673 6563 7265 74", [("password", "secret")], [], 0),
            HpackIndexing.NeverIndexed);
        var fields = new HpackDecoder().Decode(Hex("1008 7061 7373 776f 7264 0673 6563 7265 74"));
        Assert.Equal(HpackIndexing.NeverIndexed, Assert.Single(fields).Indexing);
    }

    [Fact]
    public void C2_4_indexed_header_field()
    {
        AssertSeries(4096, HpackHuffmanMode.Never, new Step("82", [(":method", "GET")], [], 0));
    }

    [Fact]
    public void C3_requests_without_huffman()
    {
        AssertSeries(4096, HpackHuffmanMode.Never, RequestSteps(
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"));
    }

    [Fact]
    public void C4_requests_with_huffman()
    {
        AssertSeries(4096, HpackHuffmanMode.WhenShorter, RequestSteps(
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
    }

    [Fact]
    public void C5_responses_without_huffman_evict_from_a_256_octet_table()
    {
        AssertSeries(256, HpackHuffmanMode.Never, ResponseSteps(
            """
            4803 3330 3258 0770 7269 7661 7465 611d
            4d6f 6e2c 2032 3120 4f63 7420 3230 3133
            2032 303a 3133 3a32 3120 474d 546e 1768
            7474 7073 3a2f 2f77 7777 2e65 7861 6d70
            6c65 2e63 6f6d
            """,
            "4803 3330 37c1 c0bf",
            """
            88c1 611d 4d6f 6e2c 2032 3120 4f63 7420
            3230 3133 2032 303a 3133 3a32 3220 474d
            54c0 5a04 677a 6970 7738 666f 6f3d 4153
            444a 4b48 514b 425a 584f 5157 454f 5049
            5541 5851 5745 4f49 553b 206d 6178 2d61
            6765 3d33 3630 303b 2076 6572 7369 6f6e
            3d31
            """));
    }

    [Fact]
    public void C6_responses_with_huffman_evict_from_a_256_octet_table()
    {
        // Always, not WhenShorter: C.6.2 Huffman-codes "307" into 3 octets, no shorter than raw.
        AssertSeries(256, HpackHuffmanMode.Always, ResponseSteps(
            """
            4882 6402 5885 aec3 771a 4b61 96d0 7abe
            9410 54d4 44a8 2005 9504 0b81 66e0 82a6
            2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8
            e9ae 82ae 43d3
            """,
            "4883 640e ffc1 c0bf",
            """
            88c1 6196 d07a be94 1054 d444 a820 0595
            040b 8166 e084 a62d 1bff c05a 839b d9ab
            77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
            3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
            9587 3160 65c0 03ed 4ee5 b106 3d50 07
            """));
    }

    [Fact]
    public void C4_bytes_are_also_what_always_huffman_produces()
    {
        // Every string in C.4 is shorter Huffman-coded, so both modes agree there.
        AssertSeries(4096, HpackHuffmanMode.Always, RequestSteps(
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
    }

    private static Step[] RequestSteps(string first, string second, string third) =>
    [
        new(first,
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
            [(":authority", "www.example.com")], 57),
        new(second,
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache")],
            [("cache-control", "no-cache"), (":authority", "www.example.com")], 110),
        new(third,
            [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value")],
            [("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")], 164),
    ];

    private static Step[] ResponseSteps(string first, string second, string third)
    {
        const string cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
        return
        [
            new(first,
                [(":status", "302"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")],
                [("location", "https://www.example.com"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("cache-control", "private"), (":status", "302")], 222),
            new(second,
                [(":status", "307"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")],
                [(":status", "307"), ("location", "https://www.example.com"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("cache-control", "private")], 222),
            new(third,
                [(":status", "200"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT"), ("location", "https://www.example.com"), ("content-encoding", "gzip"), ("set-cookie", cookie)],
                [("set-cookie", cookie), ("content-encoding", "gzip"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT")], 215),
        ];
    }

    private static void AssertSeries(int tableSize, HpackHuffmanMode huffman, Step step, HpackIndexing indexing = HpackIndexing.Auto) =>
        AssertSeries(tableSize, huffman, [step], indexing);

    /// <summary>
    /// One connection's blocks in order: decoded whole, decoded one byte per segment by a second decoder,
    /// and encoded by an encoder making the RFC's choices; after each block the tables and sizes are the RFC's.
    /// </summary>
    private static void AssertSeries(int tableSize, HpackHuffmanMode huffman, Step[] steps, HpackIndexing indexing = HpackIndexing.Auto)
    {
        var limits = new HpackLimits { HeaderTableSize = tableSize };
        var whole = new HpackDecoder(limits);
        var segmented = new HpackDecoder(limits);
        var encoder = new HpackEncoder(new HpackEncoderOptions { InitialTableSize = tableSize, MaxTableSize = tableSize, Huffman = huffman });
        foreach (var step in steps)
        {
            var bytes = Hex(step.Hex);
            Assert.Equal(step.Fields, Pairs(whole.Decode(bytes)));
            Assert.Equal(step.Fields, Pairs(Decode(segmented, Sequences.OneBytePerSegment(bytes))));

            var fields = step.Fields.Select(f => HpackHeaderField.From(f.Item1, f.Item2, indexing)).ToArray();
            Assert.Equal(ToHex(bytes), ToHex(encoder.Encode(fields)));

            foreach (var table in new[] { whole.Table, segmented.Table, encoder.Table })
            {
                Assert.Equal(step.Table, Entries(table));
                Assert.Equal(step.TableSize, table.Size);
            }
        }
    }
}
