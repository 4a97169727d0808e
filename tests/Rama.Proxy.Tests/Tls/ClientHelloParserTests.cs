using System.Buffers;
using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Tests.Tls;

public class ClientHelloParserTests
{
    private const int Max = 32 * 1024;

    [Fact]
    public void Parses_every_field_the_fingerprints_need()
    {
        var bytes = ClientHelloBuilder.Ja4SpecExample().Build();
        Assert.True(ClientHelloParser.TryParse(new ReadOnlySequence<byte>(bytes), Max, out var hello));
        Assert.Equal("example.com", hello.ServerName);
        Assert.Equal(["h2", "http/1.1"], hello.ApplicationProtocolNames);
        Assert.Equal(16, hello.CipherSuites.Count);
        Assert.Equal(17, hello.Extensions.Count);
        Assert.Equal([0x3a3a, 0x0304, 0x0303], hello.SupportedVersions);
        Assert.Equal([0x4a4a, 0x001d, 0x0017, 0x0018], hello.SupportedGroups);
        Assert.Equal([(byte)0], hello.EcPointFormats);
        Assert.Equal(8, hello.SignatureAlgorithms.Count);
        Assert.Equal(0x0301, hello.RecordVersion);
        Assert.Equal(bytes.Length, hello.WireLength);
    }

    [Theory]
    [InlineData(16384)]
    [InlineData(100)]
    [InlineData(7)]
    public void A_hello_split_over_several_records_is_joined(int recordSize)
    {
        var builder = ClientHelloBuilder.Ja4SpecExample();
        builder.RecordSize = recordSize;
        Assert.True(ClientHelloParser.TryParse(new ReadOnlySequence<byte>(builder.Build()), Max, out var hello));
        Assert.Equal("example.com", hello.ServerName);
    }

    [Fact]
    public void Every_prefix_needs_more_and_one_byte_per_segment_parses()
    {
        var builder = ClientHelloBuilder.Ja4SpecExample();
        builder.RecordSize = 50;
        var bytes = builder.Build();
        for (var i = 0; i < bytes.Length; i++)
        {
            Assert.False(ClientHelloParser.TryParse(Sequences.OneBytePerSegment(bytes[..i]), Max, out _));
        }

        Assert.True(ClientHelloParser.TryParse(Sequences.OneBytePerSegment(bytes), Max, out var hello));
        Assert.Equal("example.com", hello.ServerName);
    }

    [Fact]
    public void Bytes_after_the_hello_are_left_alone()
    {
        var bytes = ClientHelloBuilder.Ja4SpecExample().Build();
        Assert.True(ClientHelloParser.TryParse(new ReadOnlySequence<byte>([.. bytes, 20, 3, 3, 0, 1, 1]), Max, out _));
    }

    public static TheoryData<string, byte[], TlsRejectReason> BadInputs() => new()
    {
        { "HTTP request", "GET / HTTP/1.1\r\n"u8.ToArray(), TlsRejectReason.NotHandshake },
        { "alert record first", [21, 3, 1, 0, 2, 2, 40], TlsRejectReason.NotHandshake },
        { "record major version 2", [22, 2, 0, 0, 5, 1, 0, 0, 1, 0], TlsRejectReason.InvalidRecord },
        { "empty record", [22, 3, 1, 0, 0], TlsRejectReason.InvalidRecord },
        { "record over 2^14", [22, 3, 1, 0x40, 0x01], TlsRejectReason.InvalidRecord },
        { "ServerHello instead", [22, 3, 3, 0, 4, 2, 0, 0, 0], TlsRejectReason.NotClientHello },
        { "hello too short", [22, 3, 1, 0, 4, 1, 0, 0, 3], TlsRejectReason.Malformed },
        { "hello over the limit", [22, 3, 1, 0, 4, 1, 0x01, 0, 0], TlsRejectReason.TooLarge },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void Bad_input_is_rejected_with_its_reason(string name, byte[] bytes, TlsRejectReason reason)
    {
        var ex = Assert.Throws<TlsHandshakeException>(() => ClientHelloParser.TryParse(new ReadOnlySequence<byte>(bytes), 1024, out _));
        Assert.True(ex.Reason == reason, $"{name}: {ex.Reason} {ex.Message}");
    }

    [Fact]
    public void Malformed_bodies_are_rejected()
    {
        var repeated = new ClientHelloBuilder().Sni("a.test").Sni("b.test");
        var badSni = new ClientHelloBuilder().Ext(0, [0, 9, 0, 0, 3, (byte)'a']);
        var badAlpn = new ClientHelloBuilder().Ext(16, [0, 2, 0, 0]);
        var oddCiphers = new ClientHelloBuilder { Ciphers = [] };
        foreach (var builder in new[] { repeated, badSni, badAlpn, oddCiphers })
        {
            var ex = Assert.Throws<TlsHandshakeException>(() => ClientHelloParser.TryParse(new ReadOnlySequence<byte>(builder.Build()), Max, out _));
            Assert.Equal(TlsRejectReason.Malformed, ex.Reason);
        }
    }

    [Fact]
    public void Random_bytes_parse_need_more_or_are_rejected()
    {
        var gen = Gen.ArrayOf(Gen.Frequency((1, Gen.Choose(0, 255).Select(i => (byte)i)), (2, Gen.Elements<byte>(22, 3, 1, 0, 2, 0x40))));
        Prop.ForAll(gen.ToArbitrary(), bytes => IsTotal(bytes)).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Mutated_hellos_parse_need_more_or_are_rejected()
    {
        var valid = ClientHelloBuilder.Ja4SpecExample().Build();
        var gen =
            from mutations in Gen.ListOf(Gen.Zip(Gen.Choose(0, valid.Length - 1), Gen.Choose(0, 255)), 4)
            from cut in Gen.Choose(0, valid.Length)
            select Mutations.Apply(valid, mutations, cut);
        Prop.ForAll(gen.ToArbitrary(), bytes => IsTotal(bytes)).QuickCheckThrowOnFailure();
    }

    private static bool IsTotal(byte[] bytes)
    {
        try
        {
            ClientHelloParser.TryParse(Sequences.Split(bytes, 3), 4096, out _);
            return true;
        }
        catch (TlsHandshakeException)
        {
            return true;
        }
    }
}
