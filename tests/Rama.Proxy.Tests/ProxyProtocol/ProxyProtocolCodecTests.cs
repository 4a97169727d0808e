using System.Buffers;
using System.Net;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.ProxyProtocol;

public class ProxyProtocolCodecTests
{
    private static readonly IPEndPoint Src = IPEndPoint.Parse("192.0.2.10:51000");
    private static readonly IPEndPoint Dst = IPEndPoint.Parse("198.51.100.1:443");

    [Fact]
    public void V1_tcp4_parses_one_byte_per_segment_and_leaves_the_payload()
    {
        var bytes = Encoding.ASCII.GetBytes("PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\r\nGET /");
        for (var i = 0; i < bytes.Length - 5; i++)
        {
            Assert.False(ProxyProtocolCodec.TryParse(Sequences.OneBytePerSegment(bytes[..i]), 4096, out _, out _) && i < bytes.Length - 5);
        }

        var sequence = Sequences.OneBytePerSegment(bytes);
        Assert.True(ProxyProtocolCodec.TryParse(sequence, 4096, out var header, out var consumed));
        Assert.Equal(Src, header.Source);
        Assert.Equal(Dst, header.Destination);
        Assert.Equal("GET /", Encoding.ASCII.GetString(sequence.Slice(consumed)));
    }

    [Fact]
    public void V1_tcp6_and_unknown()
    {
        Assert.True(ProxyProtocolCodec.TryParse(Sequences.Whole("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"), 4096, out var v6, out _));
        Assert.Equal(IPEndPoint.Parse("[2001:db8::1]:1"), v6.Source);
        Assert.True(ProxyProtocolCodec.TryParse(Sequences.Whole("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), 4096, out var unknown, out _));
        Assert.Null(unknown.Source);
    }

    [Theory]
    [InlineData("PROXY TCP4 192.0.2.10 198.51.100.1 51000\r\n")]
    [InlineData("PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n")]
    [InlineData("PROXY TCP6 192.0.2.10 198.51.100.1 1 2\r\n")]
    [InlineData("PROXY TCP4 192.0.2.10 198.51.100.1 65536 2\r\n")]
    [InlineData("PROXY TCP4 192.0.2.10 198.51.100.1 01 2\r\n")]
    [InlineData("PROXY TCP4  192.0.2.10 198.51.100.1 1 2\r\n")]
    [InlineData("PROXY UDP4 192.0.2.10 198.51.100.1 1 2\r\n")]
    [InlineData("PROXY TCP4 192.0.2 198.51.100.1 1 2\r\n")]
    public void Bad_v1_headers_are_rejected(string text)
    {
        var ex = Assert.Throws<ProxyProtocolException>(() => ProxyProtocolCodec.TryParse(Sequences.Whole(text), 4096, out _, out _));
        Assert.Equal(ProxyProtocolRejectReason.InvalidV1, ex.Reason);
    }

    [Fact]
    public void V1_without_crlf_in_107_bytes_is_too_large_and_other_bytes_are_no_header()
    {
        var ex = Assert.Throws<ProxyProtocolException>(() => ProxyProtocolCodec.TryParse(Sequences.Whole("PROXY TCP4 " + new string('1', 120)), 4096, out _, out _));
        Assert.Equal(ProxyProtocolRejectReason.TooLarge, ex.Reason);
        var missing = Assert.Throws<ProxyProtocolException>(() => ProxyProtocolCodec.TryParse(Sequences.Whole("GET / HTTP/1.1\r\n"), 4096, out _, out _));
        Assert.Equal(ProxyProtocolRejectReason.MissingHeader, missing.Reason);
    }

    [Fact]
    public void V2_round_trips_addresses_and_tlvs_with_a_valid_crc()
    {
        var bytes = ProxyProtocolCodec.WriteV2(Src, Dst, [new ProxyTlv(ProxyTlv.Authority, "example.com"u8.ToArray()), new ProxyTlv(0xE0, [1, 2, 3])], crc32c: true);
        for (var i = 0; i < bytes.Length; i++)
        {
            Assert.False(ProxyProtocolCodec.TryParse(Sequences.OneBytePerSegment(bytes[..i]), 4096, out _, out _));
        }

        var sequence = Sequences.OneBytePerSegment([.. bytes, 0x16]);
        Assert.True(ProxyProtocolCodec.TryParse(sequence, 4096, out var header, out var consumed));
        Assert.Equal([0x16], sequence.Slice(consumed).ToArray());
        Assert.Equal(Src, header.Source);
        Assert.Equal(Dst, header.Destination);
        Assert.Equal("example.com", header.Authority);
        Assert.Contains(header.Tlvs, t => t.Type == 0xE0 && t.Value.SequenceEqual(new byte[] { 1, 2, 3 }));
        Assert.Contains(header.Tlvs, t => t.Type == ProxyTlv.Crc32C);
    }

    [Fact]
    public void V2_ipv6_and_local()
    {
        var v6 = ProxyProtocolCodec.WriteV2(IPEndPoint.Parse("[2001:db8::1]:1"), IPEndPoint.Parse("[2001:db8::2]:2"));
        Assert.True(ProxyProtocolCodec.TryParse(new ReadOnlySequence<byte>(v6), 4096, out var header, out _));
        Assert.Equal(IPEndPoint.Parse("[2001:db8::2]:2"), header.Destination);
        var local = ProxyProtocolCodec.WriteV2(null, null);
        Assert.True(ProxyProtocolCodec.TryParse(new ReadOnlySequence<byte>(local), 4096, out var health, out _));
        Assert.True(health.IsLocal);
        Assert.Null(health.Source);
    }

    [Fact]
    public void Crc32c_matches_the_rfc_3720_check_value() =>
        Assert.Equal(0xE3069283u, ProxyProtocolCodec.Crc32C("123456789"u8)); // the standard CRC-32C check value

    [Fact]
    public void Bad_v2_headers_are_rejected_with_their_reason()
    {
        var good = ProxyProtocolCodec.WriteV2(Src, Dst, crc32c: true);
        var corrupted = (byte[])good.Clone();
        corrupted[17] ^= 0xFF; // a source address byte: the CRC no longer matches
        Assert.Equal(ProxyProtocolRejectReason.BadChecksum, Reason(corrupted));
        var badVersion = (byte[])good.Clone();
        badVersion[12] = 0x31;
        Assert.Equal(ProxyProtocolRejectReason.InvalidV2, Reason(badVersion));
        var badCommand = (byte[])good.Clone();
        badCommand[12] = 0x22;
        Assert.Equal(ProxyProtocolRejectReason.InvalidV2, Reason(badCommand));
        var shortAddress = (byte[])good.Clone();
        shortAddress[15] = 4; // length 4 < 12 for TCP4
        Assert.Equal(ProxyProtocolRejectReason.InvalidV2, Reason(shortAddress[..20]));
        var huge = ProxyProtocolCodec.WriteV2(Src, Dst, [new ProxyTlv(0xE1, new byte[5000])]);
        Assert.Equal(ProxyProtocolRejectReason.TooLarge, Reason(huge));
        var truncatedTlv = ProxyProtocolCodec.WriteV2(Src, Dst, [new ProxyTlv(0xE1, [1, 2])]);
        truncatedTlv[^3] = 0x10; // the TLV now claims more than the header holds
        Assert.Equal(ProxyProtocolRejectReason.InvalidV2, Reason(truncatedTlv));
    }

    private static ProxyProtocolRejectReason Reason(byte[] bytes) =>
        Assert.Throws<ProxyProtocolException>(() => ProxyProtocolCodec.TryParse(new ReadOnlySequence<byte>(bytes), 4096, out _, out _)).Reason;

    [Fact]
    public void Random_and_mutated_headers_parse_need_more_or_are_rejected()
    {
        var seeds = new[] { ProxyProtocolCodec.WriteV2(Src, Dst, crc32c: true), ProxyProtocolCodec.WriteV1(Src, Dst) };
        var gen =
            from seed in Gen.Elements(seeds)
            from mutations in Gen.ListOf(Gen.Zip(Gen.Choose(0, 60), Gen.Choose(0, 255)), 3)
            from cut in Gen.Choose(0, 70)
            select Mutations.Apply(seed, mutations, cut);
        Prop.ForAll(gen.ToArbitrary(), bytes => IsTotal(bytes)).QuickCheckThrowOnFailure();
        Prop.ForAll(Gen.ArrayOf(Gen.Choose(0, 255).Select(i => (byte)i)).ToArbitrary(), bytes => IsTotal(bytes)).QuickCheckThrowOnFailure();
    }

    private static bool IsTotal(byte[] bytes)
    {
        try
        {
            ProxyProtocolCodec.TryParse(Sequences.Split(bytes, 5), 512, out _, out _);
            return true;
        }
        catch (ProxyProtocolException)
        {
            return true;
        }
    }
}
