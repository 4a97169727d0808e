using System.Buffers;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Rama.Proxy.Net;

/// <summary>What a refused connection was told, from its first byte.</summary>
public enum RefusalAnswer
{
    /// <summary>Nothing arrived in time (or the client closed): closed without an answer.</summary>
    None,
    /// <summary>HTTP (any first byte but the two below): <c>503 Service Unavailable</c> with <c>Retry-After</c> and the reason.</summary>
    Http503,
    /// <summary>SOCKS5 (0x05): the greeting answered, then the request answered with reply 0x01 (general SOCKS server failure).</summary>
    Socks5GeneralFailure,
    /// <summary>TLS (0x16, a handshake record): a fatal <c>internal_error</c> alert in plaintext (RFC 8446 §6), before any ServerHello.</summary>
    TlsInternalError,
}

/// <summary>
/// The answer a listener gives a connection it accepted past one of its connection limits (<c>MaxConnections</c>,
/// <c>MaxConnectionsPerIp</c>): cheap, protocol-correct, bounded in time and bytes, then a clean close. The listener does
/// not know the protocol before the client speaks, so the first byte chooses, like the forward-proxy port's peek router:
/// 0x05 is SOCKS5 (RFC 1928 has no reply before the request: the greeting gets a method, a username/password
/// sub-negotiation is answered without checking the credentials, as nothing will be served, and the request gets reply
/// 0x01); 0x16 is a TLS handshake (a plaintext fatal <c>internal_error</c> alert: TLS has no "busy" alert, and this costs
/// no handshake); anything else is HTTP (503 with <c>Retry-After</c>; an HTTP/2 prior-knowledge client sees an HTTP/1.1
/// answer it cannot read and closes). After the answer the send side is shut and what the client still sends is read
/// and dropped (a lingering close, at most <see cref="LingerBytes"/> or until the deadline), so the answer is not lost to
/// a reset.
/// </summary>
internal static class ConnectionRefusal
{
    /// <summary>Most bytes read and dropped after the answer.</summary>
    public const int LingerBytes = 64 * 1024;

    // RFC 8446 §5.1 / §6: content type alert (21), legacy version 3.3, length 2, level fatal (2), internal_error (80).
    private static readonly byte[] TlsAlert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];

    /// <summary>The HTTP answer: 503, <c>Retry-After</c> in whole seconds (at least 1), the reason in the body, and <c>Connection: close</c>.</summary>
    public static byte[] Http503(string reason, TimeSpan retryAfter)
    {
        var body = "Service Unavailable: " + reason + "\n";
        var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds));
        return Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {seconds}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}"));
    }

    /// <summary>Answers <paramref name="socket"/> and closes it; never throws, returns within <paramref name="timeout"/> (plus the close).</summary>
    public static async Task<RefusalAnswer> RefuseAsync(Socket socket, string reason, TimeSpan retryAfter, TimeSpan timeout, CancellationToken stopping)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        cts.CancelAfter(timeout);
        var buffer = ArrayPool<byte>.Shared.Rent(1024);
        var answer = RefusalAnswer.None;
        try
        {
            var have = await socket.ReceiveAsync(buffer.AsMemory(0, 1024), SocketFlags.None, cts.Token).ConfigureAwait(false);
            if (have > 0)
            {
                switch (buffer[0])
                {
                    case 0x05:
                        if (await Socks5Async(socket, buffer, have, cts.Token).ConfigureAwait(false))
                        {
                            answer = RefusalAnswer.Socks5GeneralFailure;
                        }

                        break;
                    case 0x16:
                        await socket.SendAsync(TlsAlert, SocketFlags.None, cts.Token).ConfigureAwait(false);
                        answer = RefusalAnswer.TlsInternalError;
                        break;
                    default:
                        await socket.SendAsync(Http503(reason, retryAfter), SocketFlags.None, cts.Token).ConfigureAwait(false);
                        answer = RefusalAnswer.Http503;
                        break;
                }

                if (answer != RefusalAnswer.None)
                {
                    await LingerAsync(socket, buffer, cts.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // deadline or shutdown: close with what was said
        }
        catch (SocketException)
        {
            // the client went away
        }
        catch (ObjectDisposedException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            socket.Dispose();
        }

        return answer;
    }

    // RFC 1928 §3-§6 and RFC 1929 §2, the shortest path to reply 0x01: false when the client stops making sense.
    private static async Task<bool> Socks5Async(Socket socket, byte[] buffer, int have, CancellationToken token)
    {
        // Greeting: VER NMETHODS METHODS[NMETHODS].
        have = await FillAsync(socket, buffer, have, 2, token).ConfigureAwait(false);
        var greeting = 2 + buffer[1];
        have = await FillAsync(socket, buffer, have, greeting, token).ConfigureAwait(false);
        var methods = buffer.AsSpan(2, buffer[1]);
        var method = methods.Contains((byte)0x00) ? (byte)0x00 : methods.Contains((byte)0x02) ? (byte)0x02 : (byte)0xFF;
        await socket.SendAsync(new byte[] { 0x05, method }, SocketFlags.None, token).ConfigureAwait(false);
        if (method == 0xFF)
        {
            return false; // RFC 1928 §3: no acceptable method, the client closes
        }

        have = Consume(buffer, have, greeting);
        if (method == 0x02)
        {
            // RFC 1929 §2: VER ULEN UNAME PLEN PASSWD; answered as a success without checking: nothing is served.
            have = await FillAsync(socket, buffer, have, 2, token).ConfigureAwait(false);
            var passwordAt = 2 + buffer[1];
            have = await FillAsync(socket, buffer, have, passwordAt + 1, token).ConfigureAwait(false);
            var auth = passwordAt + 1 + buffer[passwordAt];
            have = await FillAsync(socket, buffer, have, auth, token).ConfigureAwait(false);
            await socket.SendAsync(new byte[] { 0x01, 0x00 }, SocketFlags.None, token).ConfigureAwait(false);
            have = Consume(buffer, have, auth);
        }

        // Request: VER CMD RSV ATYP DST.ADDR DST.PORT; the reply carries no bound address (0.0.0.0:0).
        have = await FillAsync(socket, buffer, have, 5, token).ConfigureAwait(false);
        var request = buffer[3] switch
        {
            0x01 => 4 + 4 + 2,
            0x03 => 5 + buffer[4] + 2,
            0x04 => 4 + 16 + 2,
            _ => 0,
        };
        if (request > 0)
        {
            await FillAsync(socket, buffer, have, request, token).ConfigureAwait(false);
        }

        await socket.SendAsync(new byte[] { 0x05, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0 }, SocketFlags.None, token).ConfigureAwait(false);
        return true;
    }

    private static async Task<int> FillAsync(Socket socket, byte[] buffer, int have, int need, CancellationToken token)
    {
        while (have < need)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(have, buffer.Length - have), SocketFlags.None, token).ConfigureAwait(false);
            if (read == 0)
            {
                throw new SocketException((int)SocketError.ConnectionReset);
            }

            have += read;
        }

        return have;
    }

    private static int Consume(byte[] buffer, int have, int used)
    {
        buffer.AsSpan(used, have - used).CopyTo(buffer);
        return have - used;
    }

    private static async Task LingerAsync(Socket socket, byte[] buffer, CancellationToken token)
    {
        socket.Shutdown(SocketShutdown.Send);
        var dropped = 0;
        while (dropped < LingerBytes)
        {
            var read = await socket.ReceiveAsync(buffer.AsMemory(0, 1024), SocketFlags.None, token).ConfigureAwait(false);
            if (read == 0)
            {
                return;
            }

            dropped += read;
        }
    }
}
