using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Rama.Proxy.Tls;

/// <summary>
/// The fields of a TLS ClientHello (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2) that certificate selection
/// and fingerprints (JA3, JA4) need, in the order the client sent them, GREASE values included
/// (RFC 8701: the fingerprints drop them, the raw lists keep them). Kept in the connection's
/// extensions bag by the TLS layer.
/// </summary>
public sealed record TlsClientHello
{
    /// <summary>The record layer's version (often 0x0301 for compatibility).</summary>
    public ushort RecordVersion { get; init; }

    /// <summary><c>legacy_version</c> of the hello (0x0303 for TLS 1.2 and 1.3 clients).</summary>
    public ushort LegacyVersion { get; init; }

    public IReadOnlyList<ushort> CipherSuites { get; init; } = [];

    /// <summary>Extension types in the order sent.</summary>
    public IReadOnlyList<ushort> Extensions { get; init; } = [];

    /// <summary>RFC 6066 §3: the first host_name of server_name; null without the extension.</summary>
    public string? ServerName { get; init; }

    /// <summary>RFC 7301 §3.1: the protocols offered, in order (raw bytes: they need not be text).</summary>
    public IReadOnlyList<byte[]> ApplicationProtocols { get; init; } = [];

    /// <summary>RFC 8446 §4.2.7 supported_groups (RFC 4492's elliptic_curves).</summary>
    public IReadOnlyList<ushort> SupportedGroups { get; init; } = [];

    /// <summary>RFC 8422 §5.1.2 ec_point_formats.</summary>
    public IReadOnlyList<byte> EcPointFormats { get; init; } = [];

    /// <summary>RFC 8446 §4.2.3 signature_algorithms, in order.</summary>
    public IReadOnlyList<ushort> SignatureAlgorithms { get; init; } = [];

    /// <summary>RFC 8446 §4.2.1 supported_versions.</summary>
    public IReadOnlyList<ushort> SupportedVersions { get; init; } = [];

    /// <summary>Bytes of the TLS records that carried the hello (headers included).</summary>
    public int WireLength { get; init; }

    /// <summary>The ALPN protocols as text (Latin-1), for logs and the echo service.</summary>
    public IEnumerable<string> ApplicationProtocolNames => ApplicationProtocols.Select(p => Encoding.Latin1.GetString(p));

    /// <summary>RFC 8701 §2: GREASE values are 0x?A?A with both bytes equal.</summary>
    public static bool IsGrease(ushort value) => (value & 0x0F0F) == 0x0A0A && (value >> 8) == (value & 0xFF);
}

/// <summary>Why a ClientHello was refused; each maps to a TLS alert (RFC 8446 §6.2).</summary>
public enum TlsRejectReason
{
    /// <summary>The first record is not a handshake record (content type 22). Not TLS at all: closed without an alert.</summary>
    NotHandshake,
    /// <summary>RFC 8446 §5.1: a record version whose major byte is not 3, or a zero / over-long record. decode_error.</summary>
    InvalidRecord,
    /// <summary>The first handshake message is not a ClientHello. unexpected_message.</summary>
    NotClientHello,
    /// <summary>A length field points past its container, a vector has a bad length, or an extension repeats. decode_error.</summary>
    Malformed,
    /// <summary>The hello is larger than <see cref="TlsServerOptions.MaxClientHelloBytes"/>. decode_error.</summary>
    TooLarge,
    /// <summary>RFC 6066 §3: the SNI names no certificate we have and unknown names are refused. unrecognized_name.</summary>
    UnknownServerName,
    /// <summary>The handshake did not finish within <see cref="TlsServerOptions.HandshakeTimeout"/>.</summary>
    HandshakeTimeout,
    /// <summary>SslStream refused the handshake (no common cipher, bad client certificate, ...).</summary>
    HandshakeFailed,
}

/// <summary>A ClientHello or handshake refused: the one exception type of the TLS layer's parser.</summary>
public sealed class TlsHandshakeException(TlsRejectReason reason, string message) : Exception(message)
{
    public TlsRejectReason Reason { get; } = reason;
}

/// <summary>
/// Parses the ClientHello from the first bytes of a connection without consuming them. The hello
/// may span several handshake records (RFC 8446 §5.1: handshake messages may be fragmented); they
/// are joined, bounded by the size limit.
/// </summary>
public static class ClientHelloParser
{
    /// <summary>RFC 8446 §5.1: a plaintext record carries at most 2^14 bytes.</summary>
    public const int MaxRecordPayload = 16384;

    private const int RecordHeader = 5;
    private const byte ContentHandshake = 22;
    private const byte HandshakeClientHello = 1;

    /// <summary>
    /// True with the hello when the buffer holds all of it; false when more bytes are needed; throws
    /// <see cref="TlsHandshakeException"/> when the bytes cannot be a ClientHello or it exceeds
    /// <paramref name="maxBytes"/> (handshake message bytes).
    /// </summary>
    public static bool TryParse(in ReadOnlySequence<byte> buffer, int maxBytes, [NotNullWhen(true)] out TlsClientHello? hello)
    {
        hello = null;
        var reader = new SequenceReader<byte>(buffer);
        ushort recordVersion = 0;
        byte[]? joined = null;       // only when the hello spans several records
        ReadOnlySequence<byte> single = default;
        var have = 0;
        var needed = -1;             // handshake message length (4-byte header included) once known
        while (needed < 0 || have < needed)
        {
            if (!reader.TryRead(out var contentType))
            {
                return false;
            }

            if (contentType != ContentHandshake)
            {
                Throw(have == 0 ? TlsRejectReason.NotHandshake : TlsRejectReason.Malformed, $"record type {contentType} where a handshake record was expected");
            }

            if (!reader.TryReadBigEndian(out short version) || !reader.TryReadBigEndian(out short lengthField))
            {
                return false;
            }

            var length = (ushort)lengthField;
            if (((ushort)version >> 8) != 3 || length == 0 || length > MaxRecordPayload)
            {
                Throw(TlsRejectReason.InvalidRecord, $"record version 0x{(ushort)version:x4} length {length}");
            }

            recordVersion = recordVersion == 0 ? (ushort)version : recordVersion;
            if (reader.Remaining < length)
            {
                // Check what we can already: the handshake type and its announced length.
                if (have == 0 && needed < 0)
                {
                    PeekHandshakeHeader(reader, Math.Min(length, (int)reader.Remaining), maxBytes);
                }

                return false;
            }

            var fragment = buffer.Slice(reader.Position, length);
            reader.Advance(length);
            if (needed < 0 && have == 0 && fragment.Length >= 4)
            {
                needed = PeekHandshakeHeader(new SequenceReader<byte>(fragment), length, maxBytes);
                if (length >= needed)
                {
                    single = fragment.Slice(0, needed);
                    have = needed;
                    break;
                }
            }

            joined ??= new byte[Math.Min(maxBytes + 4, have + length + MaxRecordPayload)];
            if (have + length > joined.Length)
            {
                var larger = new byte[Math.Max(have + length, Math.Min(maxBytes + 4 + MaxRecordPayload, joined.Length * 2))];
                joined.AsSpan(0, have).CopyTo(larger);
                joined = larger;
            }

            fragment.CopyTo(joined.AsSpan(have));
            have += length;
            if (needed < 0 && have >= 4)
            {
                needed = PeekHandshakeHeader(new SequenceReader<byte>(new ReadOnlySequence<byte>(joined, 0, have)), have, maxBytes);
            }
        }

        var message = joined is null ? single : new ReadOnlySequence<byte>(joined, 0, needed);
        hello = ParseBody(message.Slice(4), recordVersion, (int)buffer.Slice(0, reader.Position).Length);
        return true;
    }

    /// <summary>Checks the handshake header (type, length) and returns the message's total length.</summary>
    private static int PeekHandshakeHeader(SequenceReader<byte> reader, int available, int maxBytes)
    {
        if (available < 1 || !reader.TryRead(out var type))
        {
            return -1;
        }

        if (type != HandshakeClientHello)
        {
            Throw(TlsRejectReason.NotClientHello, $"handshake type {type} where a ClientHello was expected");
        }

        if (available < 4 || !reader.TryRead(out var b0) || !reader.TryRead(out var b1) || !reader.TryRead(out var b2))
        {
            return -1;
        }

        var length = (b0 << 16) | (b1 << 8) | b2;
        if (length > maxBytes)
        {
            Throw(TlsRejectReason.TooLarge, $"ClientHello of {length} bytes exceeds the {maxBytes}-byte limit");
        }

        // RFC 8446 §4.1.2: version(2) + random(32) + session id(1) + ciphers(2+2) + compression(1+1) at least.
        if (length < 41)
        {
            Throw(TlsRejectReason.Malformed, $"ClientHello of {length} bytes is too short");
        }

        return length + 4;
    }

    private static TlsClientHello ParseBody(ReadOnlySequence<byte> body, ushort recordVersion, int wireLength)
    {
        var reader = new SequenceReader<byte>(body);
        var legacyVersion = ReadU16(ref reader);
        Skip(ref reader, 32); // random
        var sessionIdLength = ReadU8(ref reader);
        if (sessionIdLength > 32)
        {
            Throw(TlsRejectReason.Malformed, "legacy_session_id longer than 32 bytes");
        }

        Skip(ref reader, sessionIdLength);
        var cipherBytes = ReadU16(ref reader);
        if (cipherBytes < 2 || cipherBytes % 2 != 0)
        {
            Throw(TlsRejectReason.Malformed, $"cipher_suites length {cipherBytes}");
        }

        var ciphers = ReadU16List(ref reader, cipherBytes);
        var compressionLength = ReadU8(ref reader);
        if (compressionLength < 1)
        {
            Throw(TlsRejectReason.Malformed, "empty legacy_compression_methods");
        }

        Skip(ref reader, compressionLength);
        var hello = new TlsClientHello { RecordVersion = recordVersion, LegacyVersion = legacyVersion, CipherSuites = ciphers, WireLength = wireLength };
        if (reader.End)
        {
            return hello; // RFC 5246 §7.4.1.2: extensions are optional before TLS 1.3
        }

        var extensionsLength = ReadU16(ref reader);
        if (reader.Remaining != extensionsLength)
        {
            Throw(TlsRejectReason.Malformed, "extensions length does not match the message");
        }

        var types = new List<ushort>(24);
        string? serverName = null;
        IReadOnlyList<byte[]> alpn = [];
        IReadOnlyList<ushort> groups = [], signatures = [], versions = [];
        IReadOnlyList<byte> pointFormats = [];
        while (!reader.End)
        {
            var type = ReadU16(ref reader);
            var length = ReadU16(ref reader);
            if (reader.Remaining < length)
            {
                Throw(TlsRejectReason.Malformed, $"extension {type} runs past the message");
            }

            if (types.Contains(type))
            {
                Throw(TlsRejectReason.Malformed, $"extension {type} sent twice (RFC 8446 §4.2)"); // TLS 1.3 alert: illegal_parameter; decode_error here
            }

            types.Add(type);
            var data = new SequenceReader<byte>(reader.UnreadSequence.Slice(0, length));
            reader.Advance(length);
            switch (type)
            {
                case 0: serverName = ReadServerName(ref data); break;
                case 10: groups = ReadU16List(ref data, ReadU16(ref data)); break;
                case 11: pointFormats = ReadBytes(ref data, ReadU8(ref data)); break;
                case 13: signatures = ReadU16List(ref data, ReadU16(ref data)); break;
                case 16: alpn = ReadAlpn(ref data); break;
                case 43: versions = ReadU16List(ref data, ReadU8(ref data)); break;
                default: continue;
            }

            if (!data.End)
            {
                Throw(TlsRejectReason.Malformed, $"extension {type} has trailing bytes");
            }
        }

        return hello with
        {
            Extensions = types, ServerName = serverName, ApplicationProtocols = alpn, SupportedGroups = groups,
            EcPointFormats = pointFormats, SignatureAlgorithms = signatures, SupportedVersions = versions,
        };
    }

    // RFC 6066 §3: ServerNameList <1..2^16-1> of (NameType, HostName <1..2^16-1>); the first host_name wins.
    private static string? ReadServerName(ref SequenceReader<byte> data)
    {
        var listLength = ReadU16(ref data);
        if (listLength != data.Remaining || listLength == 0)
        {
            Throw(TlsRejectReason.Malformed, "server_name list length");
        }

        string? name = null;
        while (!data.End)
        {
            var nameType = ReadU8(ref data);
            var length = ReadU16(ref data);
            var bytes = ReadBytes(ref data, length);
            if (nameType == 0 && name is null)
            {
                if (length == 0 || bytes.Any(b => b is < 0x21 or > 0x7E))
                {
                    Throw(TlsRejectReason.Malformed, "host_name is empty or not printable ASCII");
                }

                name = Encoding.ASCII.GetString(bytes).TrimEnd('.').ToLowerInvariant();
            }
        }

        return name;
    }

    // RFC 7301 §3.1: ProtocolNameList <2..2^16-1> of ProtocolName <1..2^8-1>.
    private static byte[][] ReadAlpn(ref SequenceReader<byte> data)
    {
        var listLength = ReadU16(ref data);
        if (listLength != data.Remaining || listLength < 2)
        {
            Throw(TlsRejectReason.Malformed, "ALPN list length");
        }

        var names = new List<byte[]>(4);
        while (!data.End)
        {
            var length = ReadU8(ref data);
            if (length == 0)
            {
                Throw(TlsRejectReason.Malformed, "empty ALPN protocol name");
            }

            names.Add(ReadBytes(ref data, length));
        }

        return [.. names];
    }

    private static ushort[] ReadU16List(ref SequenceReader<byte> reader, int bytes)
    {
        if (bytes % 2 != 0 || reader.Remaining < bytes)
        {
            Throw(TlsRejectReason.Malformed, "a list of 16-bit values has a bad length");
        }

        var values = new ushort[bytes / 2];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = ReadU16(ref reader);
        }

        return values;
    }

    private static byte[] ReadBytes(ref SequenceReader<byte> reader, int length)
    {
        if (reader.Remaining < length)
        {
            Throw(TlsRejectReason.Malformed, "a vector runs past its container");
        }

        var bytes = new byte[length];
        reader.TryCopyTo(bytes);
        reader.Advance(length);
        return bytes;
    }

    private static ushort ReadU16(ref SequenceReader<byte> reader)
    {
        if (!reader.TryReadBigEndian(out short value))
        {
            Throw(TlsRejectReason.Malformed, "truncated ClientHello field");
        }

        return (ushort)value;
    }

    private static byte ReadU8(ref SequenceReader<byte> reader)
    {
        if (!reader.TryRead(out var value))
        {
            Throw(TlsRejectReason.Malformed, "truncated ClientHello field");
        }

        return value;
    }

    private static void Skip(ref SequenceReader<byte> reader, int count)
    {
        if (reader.Remaining < count)
        {
            Throw(TlsRejectReason.Malformed, "truncated ClientHello field");
        }

        reader.Advance(count);
    }

    [DoesNotReturn]
    internal static void Throw(TlsRejectReason reason, string message) => throw new TlsHandshakeException(reason, message);

    /// <summary>RFC 8446 §6: a fatal alert record (TLS 1.0 record version, as servers send before negotiation).</summary>
    public static byte[] FatalAlert(byte description) => [21, 3, 1, 0, 2, 2, description];

    /// <summary>RFC 8446 §6.2 alert descriptions for the reasons that answer with one.</summary>
    public static byte? AlertFor(TlsRejectReason reason) => reason switch
    {
        TlsRejectReason.UnknownServerName => 112,     // unrecognized_name
        TlsRejectReason.NotClientHello => 10,         // unexpected_message
        TlsRejectReason.InvalidRecord or TlsRejectReason.Malformed or TlsRejectReason.TooLarge => 50, // decode_error
        _ => null,
    };

    internal static ushort ReadU16(ReadOnlySpan<byte> span) => BinaryPrimitives.ReadUInt16BigEndian(span);
}
