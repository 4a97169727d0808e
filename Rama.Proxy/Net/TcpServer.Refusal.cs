using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Rama.Proxy.Net;

/// <summary>A connection a listener's limit refused, and answered: its client, the answer, the limit as reason, the answer's time.</summary>
public readonly record struct ConnectionRefused(IPEndPoint? Client, RefusalAnswer Answer, string Reason, TimeSpan Duration);

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
    /// <summary>
    /// HTTP/2 with prior knowledge (the client preface): the server preface, a 503 on the first request stream when its
    /// HEADERS came in time, then GOAWAY naming the limit (RFC 9113 §3.4, §6.8).
    /// </summary>
    Http2Refused,
}

/// <summary>
/// The answer a listener gives a connection it accepted past one of its connection limits (<c>MaxConnections</c>,
/// <c>MaxConnectionsPerIp</c>): cheap, protocol-correct, bounded in time and bytes, then a clean close. The listener does
/// not know the protocol before the client speaks, so the first byte chooses, like the forward-proxy port's peek router:
/// 0x05 is SOCKS5 (RFC 1928 has no reply before the request: the greeting gets a method, a username/password
/// sub-negotiation is answered without checking the credentials, as nothing will be served, and the request gets reply
/// 0x01); 0x16 is a TLS handshake (a plaintext fatal <c>internal_error</c> alert: TLS has no "busy" alert, and this costs
/// no handshake); the HTTP/2 client preface gets an HTTP/2 answer (<see cref="Http2Async"/>); anything else is HTTP/1.x
/// (503 with <c>Retry-After</c>). After the answer the send side is shut and what the client still sends is read
/// and dropped (a lingering close, at most <see cref="LingerBytes"/> or until the deadline), so the answer is not lost to
/// a reset.
/// </summary>
internal static class ConnectionRefusal
{
    /// <summary>Most bytes read and dropped after the answer.</summary>
    public const int LingerBytes = 64 * 1024;

    /// <summary>Most bytes of an HTTP/2 client's frames read while waiting for its first request's HEADERS.</summary>
    public const int Http2ReadBytes = 16 * 1024;

    /// <summary>How long an HTTP/2 client's first HEADERS is waited for (within the refusal's own deadline).</summary>
    public static readonly TimeSpan Http2HeadersWait = TimeSpan.FromSeconds(1);

    // RFC 8446 §5.1 / §6: content type alert (21), legacy version 3.3, length 2, level fatal (2), internal_error (80).
    private static readonly byte[] TlsAlert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];

    // RFC 9113 §3.4: the client connection preface.
    private static ReadOnlySpan<byte> Http2Preface => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8;

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
            var http2 = have > 0 && buffer[0] == (byte)'P' ? await Http2PrefaceAsync(socket, buffer, have, cts.Token).ConfigureAwait(false) : -1;
            if (http2 >= 0)
            {
                await Http2Async(socket, buffer, http2, reason, retryAfter, cts.Token).ConfigureAwait(false);
                answer = RefusalAnswer.Http2Refused;
                await LingerAsync(socket, buffer, cts.Token).ConfigureAwait(false);
            }
            else if (have > 0)
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

    // The client preface, read until it is whole or a byte differs (an HTTP/1.x POST, PUT or PATCH differs by the second).
    // The preface stays at the front of the buffer: the bytes held when it is all there, else -1.
    private static async Task<int> Http2PrefaceAsync(Socket socket, byte[] buffer, int have, CancellationToken token)
    {
        var preface = Http2Preface.Length;
        while (true)
        {
            var compared = Math.Min(have, preface);
            if (!buffer.AsSpan(0, compared).SequenceEqual(Http2Preface[..compared]))
            {
                return -1;
            }

            if (have >= preface)
            {
                return have;
            }

            var read = await socket.ReceiveAsync(buffer.AsMemory(have, buffer.Length - have), SocketFlags.None, token).ConfigureAwait(false);
            if (read == 0)
            {
                return -1;
            }

            have += read;
        }
    }

    /// <summary>
    /// The HTTP/2 refusal (RFC 9113): the server preface (an empty SETTINGS, §3.4) at once; the client's frames read (at
    /// most <see cref="Http2ReadBytes"/>, within <see cref="Http2HeadersWait"/>) until the HEADERS of its first request,
    /// whose header block is not decoded (our answer uses no dynamic table, so the HPACK contexts stay valid, §4.3);
    /// that stream gets a 503 with <c>retry-after</c> and the reason as its body, and GOAWAY (NO_ERROR, §6.8) names it as
    /// the last stream, with the reason as debug data. No HEADERS in time: GOAWAY with last stream 0 (nothing was
    /// processed, so the client may retry elsewhere, §8.7). The client's SETTINGS is acknowledged (§6.5.3).
    /// </summary>
    private static async Task Http2Async(Socket socket, byte[] buffer, int have, string reason, TimeSpan retryAfter, CancellationToken token)
    {
        await socket.SendAsync(new byte[] { 0, 0, 0, 0x4, 0, 0, 0, 0, 0 }, SocketFlags.None, token).ConfigureAwait(false);
        have = Consume(buffer, have, Http2Preface.Length);
        var streamId = 0;
        var settings = false;
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(token))
        {
            wait.CancelAfter(Http2HeadersWait);
            long skip = 0; // payload bytes of the current frame still to drop
            var budget = Http2ReadBytes;
            try
            {
                while (streamId == 0)
                {
                    if (skip > 0)
                    {
                        var dropped = (int)Math.Min(skip, have);
                        have = Consume(buffer, have, dropped);
                        skip -= dropped;
                    }

                    if (skip == 0 && have >= 9)
                    {
                        // §4.1: length (24), type (8), flags (8), R + stream identifier (31).
                        var length = (buffer[0] << 16) | (buffer[1] << 8) | buffer[2];
                        var type = buffer[3];
                        var id = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(buffer.AsSpan(5)) & 0x7FFFFFFF;
                        if (type == 0x1 && id > 0)
                        {
                            streamId = id; // HEADERS
                            break;
                        }

                        settings |= type == 0x4 && (buffer[4] & 0x1) == 0;
                        have = Consume(buffer, have, 9);
                        skip = length;
                        continue;
                    }

                    if (budget <= 0)
                    {
                        break;
                    }

                    var read = await socket.ReceiveAsync(buffer.AsMemory(have, buffer.Length - have), SocketFlags.None, wait.Token).ConfigureAwait(false);
                    if (read == 0)
                    {
                        break;
                    }

                    have += read;
                    budget -= read;
                }
            }
            catch (OperationCanceledException) when (!token.IsCancellationRequested)
            {
                // no request in time: GOAWAY alone
            }
        }

        var answer = new ArrayBufferWriter<byte>(512);
        if (settings)
        {
            WriteFrameHeader(answer, 0, 0x4, 0x1, 0); // SETTINGS ACK
        }

        var debug = Encoding.ASCII.GetBytes(reason.Length > 256 ? reason[..256] : reason);
        if (streamId > 0)
        {
            var body = Encoding.UTF8.GetBytes("Service Unavailable: " + reason + "\n");
            var seconds = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            var block = new ArrayBufferWriter<byte>(128);
            // RFC 7541 §6.2.2: literal without indexing, name from the static table (Appendix A): :status 8,
            // retry-after 53, content-type 31, content-length 28; values not Huffman-coded.
            WriteLiteral(block, 8, "503");
            WriteLiteral(block, 53, seconds);
            WriteLiteral(block, 31, "text/plain; charset=utf-8");
            WriteLiteral(block, 28, body.Length.ToString(CultureInfo.InvariantCulture));
            WriteFrameHeader(answer, block.WrittenCount, 0x1, 0x4, streamId); // HEADERS, END_HEADERS
            answer.Write(block.WrittenSpan);
            WriteFrameHeader(answer, body.Length, 0x0, 0x1, streamId); // DATA, END_STREAM
            answer.Write(body);
        }

        WriteFrameHeader(answer, 8 + debug.Length, 0x7, 0, 0); // GOAWAY: last stream, NO_ERROR, the reason
        var goAway = answer.GetSpan(8);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(goAway, streamId);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(goAway[4..], 0);
        answer.Advance(8);
        answer.Write(debug);
        await socket.SendAsync(answer.WrittenMemory, SocketFlags.None, token).ConfigureAwait(false);
    }

    private static void WriteFrameHeader(ArrayBufferWriter<byte> output, int length, byte type, byte flags, int streamId)
    {
        var header = output.GetSpan(9);
        header[0] = (byte)(length >> 16);
        header[1] = (byte)(length >> 8);
        header[2] = (byte)length;
        header[3] = type;
        header[4] = flags;
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header[5..], streamId);
        output.Advance(9);
    }

    // A 4-bit-prefix index (RFC 7541 §5.1) and a short literal value (7-bit length, under 127 bytes).
    private static void WriteLiteral(ArrayBufferWriter<byte> output, int index, string value)
    {
        var span = output.GetSpan(3 + value.Length);
        var at = 0;
        if (index < 15)
        {
            span[at++] = (byte)index;
        }
        else
        {
            span[at++] = 0x0F;
            span[at++] = (byte)(index - 15);
        }

        span[at++] = (byte)value.Length;
        at += Encoding.ASCII.GetBytes(value, span[at..]);
        output.Advance(at);
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
