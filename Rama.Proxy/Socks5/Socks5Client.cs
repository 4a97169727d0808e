using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Net;

namespace Rama.Proxy.Socks5;

/// <summary>The outcome of a client handshake with an upstream proxy.</summary>
/// <param name="UpstreamFault">True when the upstream itself failed (protocol error, refused our credentials, closed): try another upstream and back this one off. False when it answered for the target (refused, unreachable): that answer is final.</param>
internal readonly record struct UpstreamHandshakeResult(bool Succeeded, bool UpstreamFault, ConnectError Error, string Detail)
{
    public static UpstreamHandshakeResult Ok { get; } = new(true, false, ConnectError.None, "");

    public static UpstreamHandshakeResult Upstream(string detail) => new(false, true, ConnectError.Failed, detail);

    public static UpstreamHandshakeResult Target(ConnectError error, string detail) => new(false, false, error, detail);
}

/// <summary>
/// RFC 1928 client side of CONNECT over an established connection to a SOCKS5 upstream, with RFC 1929
/// username/password when a credential is given. The target goes as a domain name (socks5h: the
/// upstream resolves it) or as an address (socks5: resolved before by the caller).
/// </summary>
internal static class Socks5Client
{
    public static async ValueTask<UpstreamHandshakeResult> ConnectAsync(IDuplexPipe upstream, HostPort target, IPAddress? resolved,
        string? user, string? password, CancellationToken cancellationToken)
    {
        // §3: VER NMETHODS METHODS — offer no-auth only without a credential, username/password only with one.
        var method = user is null ? Socks5AuthMethod.NoAuthentication : Socks5AuthMethod.UsernamePassword;
        await upstream.Output.WriteAsync(new byte[] { Socks5Protocol.Version, 1, (byte)method }, cancellationToken).ConfigureAwait(false);
        var choice = await ReadExactAsync(upstream.Input, 2, cancellationToken).ConfigureAwait(false);
        if (choice is null || choice[0] != Socks5Protocol.Version)
        {
            return UpstreamHandshakeResult.Upstream("not a SOCKS5 server (method selection)");
        }

        if (choice[1] != (byte)method)
        {
            return UpstreamHandshakeResult.Upstream($"upstream refused authentication method {method} (chose 0x{choice[1]:x2})");
        }

        if (user is not null)
        {
            // RFC 1929 §2: VER ULEN UNAME PLEN PASSWD.
            var u = Encoding.UTF8.GetBytes(user);
            var p = Encoding.UTF8.GetBytes(password ?? "");
            if (u.Length is 0 or > 255 || p.Length > 255)
            {
                return UpstreamHandshakeResult.Upstream("upstream credential longer than RFC 1929 allows");
            }

            var auth = new byte[3 + u.Length + p.Length];
            auth[0] = Socks5Protocol.AuthVersion;
            auth[1] = (byte)u.Length;
            u.CopyTo(auth, 2);
            auth[2 + u.Length] = (byte)p.Length;
            p.CopyTo(auth, 3 + u.Length);
            await upstream.Output.WriteAsync(auth, cancellationToken).ConfigureAwait(false);
            var status = await ReadExactAsync(upstream.Input, 2, cancellationToken).ConfigureAwait(false);
            if (status is null || status[1] != 0)
            {
                return UpstreamHandshakeResult.Upstream("upstream refused our credentials (RFC 1929)");
            }
        }

        // §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
        await upstream.Output.WriteAsync(FormatConnect(target, resolved), cancellationToken).ConfigureAwait(false);
        var head = await ReadExactAsync(upstream.Input, 5, cancellationToken).ConfigureAwait(false);
        if (head is null || head[0] != Socks5Protocol.Version)
        {
            return UpstreamHandshakeResult.Upstream("upstream closed or answered garbage to CONNECT");
        }

        // §6: the rest of the reply: BND.ADDR (by ATYP; the fifth byte read is its first byte or the name length) and BND.PORT.
        var rest = head[3] switch
        {
            Socks5Protocol.AtypIPv4 => 4 - 1 + 2,
            Socks5Protocol.AtypIPv6 => 16 - 1 + 2,
            Socks5Protocol.AtypDomain => head[4] + 2,
            _ => -1,
        };
        if (rest < 0 || await ReadExactAsync(upstream.Input, rest, cancellationToken).ConfigureAwait(false) is null)
        {
            return UpstreamHandshakeResult.Upstream("malformed SOCKS5 reply");
        }

        var reply = (Socks5Reply)head[1];
        return reply switch
        {
            Socks5Reply.Succeeded => UpstreamHandshakeResult.Ok,
            Socks5Reply.ConnectionRefused => UpstreamHandshakeResult.Target(ConnectError.Refused, "upstream: target refused"),
            Socks5Reply.HostUnreachable => UpstreamHandshakeResult.Target(ConnectError.HostUnreachable, "upstream: host unreachable"),
            Socks5Reply.NetworkUnreachable => UpstreamHandshakeResult.Target(ConnectError.NetworkUnreachable, "upstream: network unreachable"),
            Socks5Reply.TtlExpired => UpstreamHandshakeResult.Target(ConnectError.TimedOut, "upstream: target timed out"),
            Socks5Reply.NotAllowedByRuleset => UpstreamHandshakeResult.Target(ConnectError.NotAllowed, "upstream: not allowed by its ruleset"),
            Socks5Reply.GeneralFailure => UpstreamHandshakeResult.Target(ConnectError.Failed, "upstream: general failure"),
            _ => UpstreamHandshakeResult.Upstream($"upstream cannot serve the request (reply 0x{head[1]:x2})"),
        };
    }

    internal static byte[] FormatConnect(HostPort target, IPAddress? resolved)
    {
        byte[] address;
        byte atyp;
        if ((resolved ?? target.Address) is { } ip)
        {
            atyp = ip.AddressFamily == AddressFamily.InterNetworkV6 ? Socks5Protocol.AtypIPv6 : Socks5Protocol.AtypIPv4;
            address = ip.GetAddressBytes();
        }
        else
        {
            var name = Encoding.ASCII.GetBytes(target.Host);
            atyp = Socks5Protocol.AtypDomain;
            address = [(byte)name.Length, .. name];
        }

        var request = new byte[4 + address.Length + 2];
        request[0] = Socks5Protocol.Version;
        request[1] = (byte)Socks5Command.Connect;
        request[3] = atyp;
        address.CopyTo(request, 4);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4 + address.Length), (ushort)target.Port);
        return request;
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes, or null when the peer closed first.</summary>
    internal static async ValueTask<byte[]?> ReadExactAsync(PipeReader input, int count, CancellationToken cancellationToken)
    {
        if (count == 0)
        {
            return [];
        }

        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length >= count)
            {
                var bytes = buffer.Slice(0, count).ToArray();
                input.AdvanceTo(buffer.GetPosition(count));
                return bytes;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return null;
            }
        }
    }
}
