using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Net;

namespace Rama.Proxy.Socks5;

/// <summary>RFC 1928 §3 method identifiers.</summary>
public enum Socks5AuthMethod : byte
{
    NoAuthentication = 0x00,
    Gssapi = 0x01,
    UsernamePassword = 0x02,
    NoAcceptableMethods = 0xFF,
}

/// <summary>RFC 1928 §4 commands.</summary>
public enum Socks5Command : byte
{
    Connect = 0x01,
    Bind = 0x02,
    UdpAssociate = 0x03,
}

/// <summary>RFC 1928 §6 reply field.</summary>
public enum Socks5Reply : byte
{
    Succeeded = 0x00,
    GeneralFailure = 0x01,
    NotAllowedByRuleset = 0x02,
    NetworkUnreachable = 0x03,
    HostUnreachable = 0x04,
    ConnectionRefused = 0x05,
    TtlExpired = 0x06,
    CommandNotSupported = 0x07,
    AddressTypeNotSupported = 0x08,
}

/// <summary>Outcome of parsing one SOCKS5 message from the bytes received so far.</summary>
public enum Socks5ParseStatus
{
    Done,
    NeedMore,
    /// <summary>The first byte is not the expected version: close without answering (RFC 1928 has no reply for it).</summary>
    BadVersion,
    /// <summary>Well-formed version, bad content (zero methods, empty name, unknown address type, reserved byte set).</summary>
    Malformed,
    /// <summary>RFC 1928 §5: an address type we do not know; answered with reply 0x08.</summary>
    UnsupportedAddressType,
}

/// <summary>A CONNECT/BIND/UDP request (RFC 1928 §4).</summary>
public readonly record struct Socks5Request(Socks5Command Command, HostPort Target, byte AddressType);

/// <summary>
/// Parsers and writers of the SOCKS5 messages. Each parser reads from the bytes received so far and
/// returns <see cref="Socks5ParseStatus.NeedMore"/> until a whole message is there; every message has
/// a small maximum size (at most 513 bytes for RFC 1929), so memory is bounded by construction.
/// </summary>
public static class Socks5Protocol
{
    public const byte Version = 0x05;
    public const byte AuthVersion = 0x01; // RFC 1929 §2
    public const byte AtypIPv4 = 0x01;
    public const byte AtypDomain = 0x03;
    public const byte AtypIPv6 = 0x04;

    /// <summary>RFC 1928 §3: VER NMETHODS METHODS[1..255].</summary>
    public static Socks5ParseStatus TryParseGreeting(ReadOnlySequence<byte> input, out SequencePosition consumed, out byte[] methods)
    {
        methods = [];
        consumed = input.Start;
        var reader = new SequenceReader<byte>(input);
        if (!reader.TryRead(out var version))
        {
            return Socks5ParseStatus.NeedMore;
        }

        if (version != Version)
        {
            return Socks5ParseStatus.BadVersion;
        }

        if (!reader.TryRead(out var count))
        {
            return Socks5ParseStatus.NeedMore;
        }

        if (count == 0)
        {
            return Socks5ParseStatus.Malformed;
        }

        if (reader.Remaining < count)
        {
            return Socks5ParseStatus.NeedMore;
        }

        methods = new byte[count];
        reader.TryCopyTo(methods);
        reader.Advance(count);
        consumed = reader.Position;
        return Socks5ParseStatus.Done;
    }

    /// <summary>RFC 1929 §2: VER(1) ULEN UNAME PLEN PASSWD.</summary>
    public static Socks5ParseStatus TryParseUserPass(ReadOnlySequence<byte> input, out SequencePosition consumed, out string user, out string password)
    {
        user = password = "";
        consumed = input.Start;
        var reader = new SequenceReader<byte>(input);
        if (!reader.TryRead(out var version))
        {
            return Socks5ParseStatus.NeedMore;
        }

        if (version != AuthVersion)
        {
            return Socks5ParseStatus.BadVersion;
        }

        if (!TryReadLengthPrefixed(ref reader, out var userBytes) || !TryReadLengthPrefixed(ref reader, out var passBytes))
        {
            return Socks5ParseStatus.NeedMore;
        }

        if (userBytes.Length == 0)
        {
            return Socks5ParseStatus.Malformed;
        }

        user = Encoding.UTF8.GetString(userBytes);
        password = Encoding.UTF8.GetString(passBytes);
        consumed = reader.Position;
        return Socks5ParseStatus.Done;
    }

    /// <summary>RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT.</summary>
    public static Socks5ParseStatus TryParseRequest(ReadOnlySequence<byte> input, out SequencePosition consumed, out Socks5Request request)
    {
        request = default;
        consumed = input.Start;
        var reader = new SequenceReader<byte>(input);
        if (!reader.TryRead(out var version))
        {
            return Socks5ParseStatus.NeedMore;
        }

        if (version != Version)
        {
            return Socks5ParseStatus.BadVersion;
        }

        if (!reader.TryRead(out var command) || !reader.TryRead(out var reserved) || !reader.TryRead(out var atyp))
        {
            return Socks5ParseStatus.NeedMore;
        }

        if (reserved != 0)
        {
            return Socks5ParseStatus.Malformed;
        }

        string host;
        switch (atyp)
        {
            case AtypIPv4 or AtypIPv6:
            {
                Span<byte> address = stackalloc byte[atyp == AtypIPv4 ? 4 : 16];
                if (!reader.TryCopyTo(address))
                {
                    return Socks5ParseStatus.NeedMore;
                }

                reader.Advance(address.Length);
                host = new IPAddress(address).ToString();
                break;
            }

            case AtypDomain:
            {
                if (!TryReadLengthPrefixed(ref reader, out var name))
                {
                    return Socks5ParseStatus.NeedMore;
                }

                if (name.Length == 0 || !IsDomainName(name))
                {
                    return Socks5ParseStatus.Malformed;
                }

                host = Encoding.ASCII.GetString(name);
                break;
            }

            default:
                return Socks5ParseStatus.UnsupportedAddressType;
        }

        if (!reader.TryReadBigEndian(out short port))
        {
            return Socks5ParseStatus.NeedMore;
        }

        var portValue = (ushort)port;
        if (portValue == 0 && command == (byte)Socks5Command.Connect)
        {
            return Socks5ParseStatus.Malformed;
        }

        consumed = reader.Position;
        request = new Socks5Request((Socks5Command)command, new HostPort(host, portValue), atyp);
        return Socks5ParseStatus.Done;
    }

    private static bool TryReadLengthPrefixed(ref SequenceReader<byte> reader, out byte[] value)
    {
        value = [];
        if (!reader.TryRead(out var length))
        {
            return false;
        }

        if (reader.Remaining < length)
        {
            reader.Rewind(1);
            return false;
        }

        value = new byte[length];
        reader.TryCopyTo(value);
        reader.Advance(length);
        return true;
    }

    private static bool IsDomainName(ReadOnlySpan<byte> name)
    {
        foreach (var b in name)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'-' or (byte)'.' or (byte)'_'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>RFC 1928 §6 reply; the bound address is the outbound socket's local address (zeros when none).</summary>
    public static byte[] FormatReply(Socks5Reply reply, IPEndPoint? bound)
    {
        var address = bound?.Address ?? IPAddress.Any;
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        var addressBytes = address.GetAddressBytes();
        var message = new byte[4 + addressBytes.Length + 2];
        message[0] = Version;
        message[1] = (byte)reply;
        message[2] = 0;
        message[3] = address.AddressFamily == AddressFamily.InterNetworkV6 ? AtypIPv6 : AtypIPv4;
        addressBytes.CopyTo(message, 4);
        var port = bound?.Port ?? 0;
        message[^2] = (byte)(port >> 8);
        message[^1] = (byte)port;
        return message;
    }

    public static Socks5Reply ToReply(ConnectError error) => error switch
    {
        ConnectError.None => Socks5Reply.Succeeded,
        ConnectError.Refused => Socks5Reply.ConnectionRefused,
        ConnectError.NameNotResolved or ConnectError.HostUnreachable => Socks5Reply.HostUnreachable,
        ConnectError.NetworkUnreachable => Socks5Reply.NetworkUnreachable,
        // No reply code means "timed out"; TTL expired is what curl and most servers use for it.
        ConnectError.TimedOut => Socks5Reply.TtlExpired,
        ConnectError.NotAllowed => Socks5Reply.NotAllowedByRuleset,
        _ => Socks5Reply.GeneralFailure,
    };
}
