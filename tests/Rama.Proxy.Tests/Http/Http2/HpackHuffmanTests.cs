using System.Text;
using Rama.Proxy.Http.Http2.Hpack;
using static Rama.Proxy.Tests.Http.Http2.HpackTestSupport;

namespace Rama.Proxy.Tests.Http.Http2;

public class HpackHuffmanTests
{
    // RFC 7541 Appendix B rows (symbol, code as hex, length in bits), checked against the codes derived from the lengths.
    [Theory]
    [InlineData(0, 0x1ff8u, 13)]
    [InlineData(10, 0x3ffffffcu, 30)]
    [InlineData(32, 0x14u, 6)] // ' '
    [InlineData(48, 0x0u, 5)] // '0'
    [InlineData(97, 0x3u, 5)] // 'a'
    [InlineData(122, 0x7bu, 7)] // 'z'
    [InlineData(127, 0xffffffcu, 28)]
    [InlineData(128, 0xfffe6u, 20)]
    [InlineData(200, 0x3ffffe2u, 26)]
    [InlineData(255, 0x3ffffeeu, 26)]
    [InlineData(256, 0x3fffffffu, 30)] // EOS
    public void Derived_codes_match_appendix_b(int symbol, uint code, int length)
    {
        Assert.Equal((code, length), HpackHuffman.GetCode(symbol));
    }

    [Fact]
    public void Code_is_complete_and_prefix_free()
    {
        // Kraft equality: sum of 2^-length over all 257 symbols is exactly 1 (a full binary tree).
        var sum = 0UL;
        for (var s = 0; s <= HpackHuffman.Eos; s++)
        {
            sum += 1UL << (30 - HpackHuffman.GetCode(s).Length);
        }

        Assert.Equal(1UL << 30, sum);
    }

    // The Huffman strings of RFC 7541 C.4 and C.6.
    [Theory]
    [InlineData("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff")]
    [InlineData("no-cache", "a8eb 1064 9cbf")]
    [InlineData("custom-key", "25a8 49e9 5ba9 7d7f")]
    [InlineData("custom-value", "25a8 49e9 5bb8 e8b4 bf")]
    [InlineData("302", "6402")]
    [InlineData("307", "640e ff")]
    [InlineData("private", "aec3 771a 4b")]
    [InlineData("Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff")]
    [InlineData("https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3")]
    [InlineData("gzip", "9bd9 ab")]
    [InlineData("foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1", "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07")]
    public void Appendix_c_strings_encode_and_decode(string text, string hex)
    {
        var plain = Encoding.ASCII.GetBytes(text);
        var encoded = new byte[HpackHuffman.GetEncodedLength(plain)];
        Assert.Equal(encoded.Length, HpackHuffman.Encode(plain, encoded));
        Assert.Equal(ToHex(Hex(hex)), ToHex(encoded));

        var decoded = new byte[HpackHuffman.GetMaxDecodedLength(encoded.Length)];
        var written = HpackHuffman.Decode(encoded, decoded);
        Assert.Equal(text, Encoding.ASCII.GetString(decoded, 0, written));
    }

    [Fact]
    public void Every_byte_value_round_trips_alone_and_all_together()
    {
        for (var b = 0; b < 256; b++)
        {
            AssertRoundTrip([(byte)b]);
        }

        var all = Enumerable.Range(0, 256).Select(b => (byte)b).ToArray();
        AssertRoundTrip(all);
        AssertRoundTrip(all.Reverse().ToArray());
        AssertRoundTrip([]);
    }

    [Fact]
    public void Random_strings_round_trip()
    {
        var random = new Random(7541);
        for (var i = 0; i < 500; i++)
        {
            var bytes = new byte[random.Next(0, 200)];
            random.NextBytes(bytes);
            AssertRoundTrip(bytes);
        }
    }

    private static void AssertRoundTrip(byte[] plain)
    {
        var encoded = new byte[HpackHuffman.GetEncodedLength(plain)];
        Assert.Equal(encoded.Length, HpackHuffman.Encode(plain, encoded));
        var decoded = new byte[HpackHuffman.GetMaxDecodedLength(encoded.Length)];
        var written = HpackHuffman.Decode(encoded, decoded);
        Assert.Equal(plain, decoded.AsSpan(0, written).ToArray());
    }
}
