using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Numerics;
using System.Text;

namespace Rama.Proxy.ProxyProtocol;

/// <summary>PROXY protocol versions (HAProxy proxy-protocol.txt §2.1 text, §2.2 binary).</summary>
public enum ProxyProtocolVersion
{
    V1 = 1,
    V2 = 2,
}

/// <summary>A type-length-value of a v2 header (§2.2.1..§2.2.8), raw.</summary>
public sealed record ProxyTlv(byte Type, byte[] Value)
{
    public const byte Alpn = 0x01;
    public const byte Authority = 0x02;
    public const byte Crc32C = 0x03;
    public const byte Noop = 0x04;
    public const byte UniqueId = 0x05;
    public const byte Ssl = 0x20;
    public const byte NetNamespace = 0x30;
}

/// <summary>
/// A received PROXY header, kept in the connection's extensions bag. <see cref="Source"/> and
/// <see cref="Destination"/> are null for LOCAL (health checks), UNKNOWN and unspecified families:
/// the connection's own addresses stand then.
/// </summary>
public sealed record ProxyHeader(ProxyProtocolVersion Version, bool IsLocal, IPEndPoint? Source, IPEndPoint? Destination, IReadOnlyList<ProxyTlv> Tlvs)
{
    public ProxyTlv? Find(byte type) => Tlvs.FirstOrDefault(t => t.Type == type);

    /// <summary>§2.2.2 PP2_TYPE_AUTHORITY: the host name the client asked for (SNI), UTF-8.</summary>
    public string? Authority => Find(ProxyTlv.Authority) is { } tlv ? Encoding.UTF8.GetString(tlv.Value) : null;

    /// <summary>§2.2.1 PP2_TYPE_ALPN.</summary>
    public string? Alpn => Find(ProxyTlv.Alpn) is { } tlv ? Encoding.ASCII.GetString(tlv.Value) : null;
}

/// <summary>Why a PROXY header was refused (the connection is closed; the protocol has no error answer).</summary>
public enum ProxyProtocolRejectReason
{
    /// <summary>A trusted source sent something that is not a PROXY header.</summary>
    MissingHeader,
    /// <summary>§2.1: not <c>PROXY SP proto SP src SP dst SP sport SP dport CRLF</c>, or a bad address/port.</summary>
    InvalidV1,
    /// <summary>§2.2: bad version/command nibble, family, or lengths.</summary>
    InvalidV2,
    /// <summary>§2.1: the v1 line is longer than 107 bytes; or a v2 header above the limit.</summary>
    TooLarge,
    /// <summary>§2.2.5: the CRC32C TLV does not match the header.</summary>
    BadChecksum,
    /// <summary>The header did not complete within the header timeout.</summary>
    Timeout,
    /// <summary>The peer is not in the trusted-source list but sent a header.</summary>
    UntrustedSource,
}

public sealed class ProxyProtocolException(ProxyProtocolRejectReason reason, string message) : Exception(message)
{
    public ProxyProtocolRejectReason Reason { get; } = reason;
}

/// <summary>Parses and writes PROXY protocol v1 and v2 headers (HAProxy's proxy-protocol.txt, 2020/03/05 revision).</summary>
public static class ProxyProtocolCodec
{
    /// <summary>§2.2: the 12-byte v2 signature.</summary>
    public static ReadOnlySpan<byte> V2Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    /// <summary>§2.1: "a receiver may reject an incomplete line which does not contain the CRLF sequence in the first 107 characters".</summary>
    public const int MaxV1Length = 107;

    /// <summary>Whether the bytes can still become a PROXY header: true, false, or null when too few bytes to tell.</summary>
    public static bool? LooksLikeHeader(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> first = stackalloc byte[12];
        var have = (int)Math.Min(buffer.Length, 12);
        buffer.Slice(0, have).CopyTo(first);
        var v1 = "PROXY "u8;
        var v1Match = first[..Math.Min(have, 6)].SequenceEqual(v1[..Math.Min(have, 6)]);
        var v2Match = first[..have].SequenceEqual(V2Signature[..have]);
        if (!v1Match && !v2Match)
        {
            return false;
        }

        return have >= 12 || (v1Match && have >= 6) ? true : null;
    }

    /// <summary>True with the header and where it ends; false when more bytes are needed; throws <see cref="ProxyProtocolException"/> otherwise.</summary>
    public static bool TryParse(in ReadOnlySequence<byte> buffer, int maxV2Bytes, [NotNullWhen(true)] out ProxyHeader? header, out SequencePosition consumed)
    {
        header = null;
        consumed = buffer.Start;
        switch (LooksLikeHeader(buffer))
        {
            case null:
                return false;
            case false:
                throw new ProxyProtocolException(ProxyProtocolRejectReason.MissingHeader, "the connection does not start with a PROXY header");
        }

        return buffer.FirstSpan[0] == (byte)'P' ? TryParseV1(buffer, out header, out consumed) : TryParseV2(buffer, maxV2Bytes, out header, out consumed);
    }

    // §2.1 human-readable header format.
    private static bool TryParseV1(in ReadOnlySequence<byte> buffer, [NotNullWhen(true)] out ProxyHeader? header, out SequencePosition consumed)
    {
        header = null;
        consumed = buffer.Start;
        var limited = buffer.Slice(0, Math.Min(buffer.Length, MaxV1Length));
        var reader = new SequenceReader<byte>(limited);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> line, "\r\n"u8))
        {
            return buffer.Length < MaxV1Length ? false : throw new ProxyProtocolException(ProxyProtocolRejectReason.TooLarge, "no CRLF in the first 107 bytes");
        }

        consumed = reader.Position;
        var text = Encoding.ASCII.GetString(line);
        if (text.Any(c => c is < ' ' or > '~'))
        {
            throw Invalid1("control or non-ASCII characters");
        }

        var parts = text.Split(' ');
        if (parts.Length >= 2 && parts[0] == "PROXY" && parts[1] == "UNKNOWN")
        {
            header = new ProxyHeader(ProxyProtocolVersion.V1, false, null, null, []); // "the receiver must ignore anything presented before the CRLF"
            return true;
        }

        if (parts.Length != 6 || parts[0] != "PROXY" || parts[1] is not ("TCP4" or "TCP6"))
        {
            throw Invalid1($"'{text}'");
        }

        var family = parts[1] == "TCP4" ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6;
        var source = new IPEndPoint(Address(parts[2], family), Port(parts[4]));
        var destination = new IPEndPoint(Address(parts[3], family), Port(parts[5]));
        header = new ProxyHeader(ProxyProtocolVersion.V1, false, source, destination, []);
        return true;

        static IPAddress Address(string text, AddressFamily family) =>
            IPAddress.TryParse(text, out var address) && address.AddressFamily == family && !text.Contains('%', StringComparison.Ordinal)
                && (family == AddressFamily.InterNetworkV6 || text.Count(c => c == '.') == 3)
                ? address : throw Invalid1($"address '{text}' is not a {(family == AddressFamily.InterNetwork ? "dotted IPv4" : "IPv6")} address");

        static int Port(string text) =>
            text.Length is > 0 and <= 5 && text.All(char.IsAsciiDigit) && (text.Length == 1 || text[0] != '0')
                && int.Parse(text, CultureInfo.InvariantCulture) is var port and <= 65535
                ? port : throw Invalid1($"port '{text}'");
    }

    // §2.2 binary header format.
    private static bool TryParseV2(in ReadOnlySequence<byte> buffer, int maxBytes, [NotNullWhen(true)] out ProxyHeader? header, out SequencePosition consumed)
    {
        header = null;
        consumed = buffer.Start;
        if (buffer.Length < 16)
        {
            return false;
        }

        Span<byte> fixedPart = stackalloc byte[16];
        buffer.Slice(0, 16).CopyTo(fixedPart);
        var versionCommand = fixedPart[12];
        var familyProtocol = fixedPart[13];
        var length = BinaryPrimitives.ReadUInt16BigEndian(fixedPart[14..]);
        if (versionCommand >> 4 != 2)
        {
            throw Invalid2($"version nibble {versionCommand >> 4}");
        }

        var command = versionCommand & 0x0F;
        if (command > 1)
        {
            throw Invalid2($"command {command}");
        }

        if (16 + length > maxBytes)
        {
            throw new ProxyProtocolException(ProxyProtocolRejectReason.TooLarge, $"v2 header of {16 + length} bytes exceeds {maxBytes}");
        }

        if (buffer.Length < 16 + length)
        {
            return false;
        }

        var whole = buffer.Slice(0, 16 + length).ToArray(); // bounded by maxBytes; needed whole for the CRC
        consumed = buffer.GetPosition(16 + length);
        var addressLength = (familyProtocol >> 4) switch
        {
            0 => 0,
            1 => 12,
            2 => 36,
            3 => 216,
            _ => throw Invalid2($"address family {familyProtocol >> 4}"),
        };
        if ((familyProtocol & 0x0F) > 2)
        {
            throw Invalid2($"transport protocol {familyProtocol & 0x0F}");
        }

        if (length < addressLength)
        {
            throw Invalid2($"length {length} is shorter than the {addressLength}-byte address block");
        }

        var body = whole.AsSpan(16);
        IPEndPoint? source = null, destination = null;
        if (familyProtocol >> 4 == 1)
        {
            source = new IPEndPoint(new IPAddress(body[..4]), BinaryPrimitives.ReadUInt16BigEndian(body[8..]));
            destination = new IPEndPoint(new IPAddress(body[4..8]), BinaryPrimitives.ReadUInt16BigEndian(body[10..]));
        }
        else if (familyProtocol >> 4 == 2)
        {
            source = new IPEndPoint(new IPAddress(body[..16]), BinaryPrimitives.ReadUInt16BigEndian(body[32..]));
            destination = new IPEndPoint(new IPAddress(body[16..32]), BinaryPrimitives.ReadUInt16BigEndian(body[34..]));
        }

        var tlvs = new List<ProxyTlv>();
        var offset = 16 + addressLength;
        while (offset < whole.Length)
        {
            if (whole.Length - offset < 3)
            {
                throw Invalid2("truncated TLV header");
            }

            var type = whole[offset];
            var tlvLength = BinaryPrimitives.ReadUInt16BigEndian(whole.AsSpan(offset + 1));
            if (offset + 3 + tlvLength > whole.Length)
            {
                throw Invalid2($"TLV 0x{type:x2} runs past the header");
            }

            var value = whole.AsSpan(offset + 3, tlvLength).ToArray();
            if (type == ProxyTlv.Crc32C)
            {
                // §2.2.5: CRC32c over the whole header with the checksum field zeroed.
                if (tlvLength != 4)
                {
                    throw Invalid2("CRC32C TLV must be 4 bytes");
                }

                whole.AsSpan(offset + 3, 4).Clear();
                if (Crc32C(whole) != BinaryPrimitives.ReadUInt32BigEndian(value))
                {
                    throw new ProxyProtocolException(ProxyProtocolRejectReason.BadChecksum, "CRC32C mismatch");
                }
            }

            tlvs.Add(new ProxyTlv(type, value));
            offset += 3 + tlvLength;
        }

        var isLocal = command == 0;
        header = new ProxyHeader(ProxyProtocolVersion.V2, isLocal, isLocal ? null : source, isLocal ? null : destination, tlvs);
        return true;
    }

    /// <summary>§2.1: <c>PROXY TCP4|TCP6 src dst sport dport\r\n</c> (UNKNOWN when either address is missing or the families differ).</summary>
    public static byte[] WriteV1(IPEndPoint? source, IPEndPoint? destination)
    {
        if (source is null || destination is null || Normalize(source).AddressFamily != Normalize(destination).AddressFamily)
        {
            return "PROXY UNKNOWN\r\n"u8.ToArray();
        }

        var s = Normalize(source);
        var d = Normalize(destination);
        var proto = s.AddressFamily == AddressFamily.InterNetwork ? "TCP4" : "TCP6";
        return Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"PROXY {proto} {s.Address} {d.Address} {s.Port} {d.Port}\r\n"));
    }

    /// <summary>§2.2: a PROXY (or LOCAL) v2 header with TLVs, optionally protected by a CRC32C TLV (§2.2.5).</summary>
    public static byte[] WriteV2(IPEndPoint? source, IPEndPoint? destination, IEnumerable<ProxyTlv>? tlvs = null, bool crc32c = false)
    {
        var s = source is null ? null : Normalize(source);
        var d = destination is null ? null : Normalize(destination);
        var local = s is null || d is null || s.AddressFamily != d.AddressFamily;
        var family = local ? (byte)0x00 : s!.AddressFamily == AddressFamily.InterNetwork ? (byte)0x11 : (byte)0x21;
        var body = new List<byte>();
        if (!local)
        {
            body.AddRange(s!.Address.GetAddressBytes());
            body.AddRange(d!.Address.GetAddressBytes());
            body.AddRange([(byte)(s.Port >> 8), (byte)s.Port, (byte)(d.Port >> 8), (byte)d.Port]);
        }

        foreach (var tlv in tlvs ?? [])
        {
            body.AddRange([tlv.Type, (byte)(tlv.Value.Length >> 8), (byte)tlv.Value.Length, .. tlv.Value]);
        }

        var crcAt = -1;
        if (crc32c)
        {
            crcAt = 16 + body.Count + 3;
            body.AddRange([ProxyTlv.Crc32C, 0, 4, 0, 0, 0, 0]);
        }

        byte[] header = [.. V2Signature, local ? (byte)0x20 : (byte)0x21, family, (byte)(body.Count >> 8), (byte)body.Count, .. body];
        if (crcAt >= 0)
        {
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(crcAt), Crc32C(header));
        }

        return header;
    }

    private static IPEndPoint Normalize(IPEndPoint endpoint) =>
        endpoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endpoint.Address.MapToIPv4(), endpoint.Port) : endpoint;

    /// <summary>CRC-32C (Castagnoli, RFC 3720 §B.4), hardware-accelerated where the CPU has it.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }

        foreach (var b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc;
    }

    private static ProxyProtocolException Invalid1(string detail) => new(ProxyProtocolRejectReason.InvalidV1, "bad PROXY v1 header: " + detail);

    private static ProxyProtocolException Invalid2(string detail) => new(ProxyProtocolRejectReason.InvalidV2, "bad PROXY v2 header: " + detail);
}
