using System.Buffers.Binary;
using System.Text;

namespace Rama.Proxy.Tests.Tls;

/// <summary>Builds ClientHello records byte by byte (RFC 8446 §4.1.2) for parser and fingerprint tests.</summary>
internal sealed class ClientHelloBuilder
{
    public ushort LegacyVersion { get; set; } = 0x0303;

    public ushort[] Ciphers { get; set; } = [0x1301, 0x1302];

    /// <summary>(type, data) in order.</summary>
    public List<(ushort Type, byte[] Data)> Extensions { get; } = [];

    public int RecordSize { get; set; } = 16384;

    public ClientHelloBuilder Sni(string name)
    {
        var host = Encoding.ASCII.GetBytes(name);
        return Ext(0, [.. U16(host.Length + 3), 0, .. U16(host.Length), .. host]);
    }

    public ClientHelloBuilder Alpn(params string[] protocols)
    {
        var list = protocols.SelectMany(p => (byte[])[(byte)p.Length, .. Encoding.ASCII.GetBytes(p)]).ToArray();
        return Ext(16, [.. U16(list.Length), .. list]);
    }

    public ClientHelloBuilder U16List(ushort type, params ushort[] values) => Ext(type, [.. U16(values.Length * 2), .. values.SelectMany(U16)]);

    public ClientHelloBuilder Versions(params ushort[] values) => Ext(43, [(byte)(values.Length * 2), .. values.SelectMany(U16)]);

    public ClientHelloBuilder PointFormats(params byte[] values) => Ext(11, [(byte)values.Length, .. values]);

    public ClientHelloBuilder Ext(ushort type, byte[] data)
    {
        Extensions.Add((type, data));
        return this;
    }

    public byte[] Body()
    {
        var body = new List<byte>();
        body.AddRange(U16(LegacyVersion));
        body.AddRange(new byte[32]);
        body.Add(32);
        body.AddRange(Enumerable.Repeat((byte)7, 32));
        body.AddRange(U16(Ciphers.Length * 2));
        body.AddRange(Ciphers.SelectMany(U16));
        body.Add(1);
        body.Add(0);
        var extensions = Extensions.SelectMany(e => (byte[])[.. U16(e.Type), .. U16(e.Data.Length), .. e.Data]).ToArray();
        body.AddRange(U16(extensions.Length));
        body.AddRange(extensions);
        return [1, (byte)(body.Count >> 16), (byte)(body.Count >> 8), (byte)body.Count, .. body];
    }

    /// <summary>The handshake message cut into records of <see cref="RecordSize"/> bytes.</summary>
    public byte[] Build()
    {
        var message = Body();
        var records = new List<byte>();
        for (var i = 0; i < message.Length; i += RecordSize)
        {
            var length = Math.Min(RecordSize, message.Length - i);
            records.AddRange([22, 3, 1, .. U16(length)]);
            records.AddRange(message.AsSpan(i, length).ToArray());
        }

        return [.. records];
    }

    public static byte[] U16(int value)
    {
        var bytes = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(bytes, (ushort)value);
        return bytes;
    }

    private static byte[] U16(ushort value) => U16((int)value);

    /// <summary>The JA4.md example: 15 ciphers, 16 extensions (with SNI and ALPN h2), its signature algorithms, TLS 1.3, GREASE sprinkled in.</summary>
    public static ClientHelloBuilder Ja4SpecExample()
    {
        var builder = new ClientHelloBuilder
        {
            Ciphers = [0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035],
        };
        builder.Ext(0x2a2a, []);
        foreach (var type in new ushort[] { 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015 })
        {
            _ = type switch
            {
                0x0000 => builder.Sni("example.com"),
                0x0010 => builder.Alpn("h2", "http/1.1"),
                0x000d => builder.U16List(13, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601),
                0x002b => builder.Versions(0x3a3a, 0x0304, 0x0303),
                0x000a => builder.U16List(10, 0x4a4a, 0x001d, 0x0017, 0x0018),
                0x000b => builder.PointFormats(0),
                _ => builder.Ext(type, []),
            };
        }

        return builder;
    }
}
