using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;

namespace Rama.LoadDriver;

/// <summary>
/// WebSocket load (RFC 6455), both ends, with .NET's own framing (<see cref="WebSocket.CreateFromStream(Stream, WebSocketCreationOptions)"/>)
/// over a handshake written here, so the same bytes go to every peer:
/// <c>--mode wsecho --target ip:port</c> is an echo origin (any path; runs until killed; prints <c>ready</c>);
/// <c>--mode ws</c> opens N WebSockets, <c>--via direct</c> (origin-form to <c>--proxy</c> or the target: a reverse proxy
/// or the origin itself) or <c>--via forward</c> (absolute-form <c>GET http://target/ws</c> to the forward proxy), and in
/// each sends a <c>--size</c>-byte binary message and waits for its echo, over and over; prints messages per second
/// (echo round trips) and their latency.
/// </summary>
internal static class WebSocketLoad
{
    private const string AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; // RFC 6455 §1.3

    public static async Task<int> ServeEchoAsync(Options o)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(o.Target);
        listener.Listen(4096);
        Console.WriteLine($"ready listen={o.Target}");
        while (true)
        {
            var socket = await listener.AcceptAsync();
            socket.NoDelay = true;
            _ = EchoAsync(socket);
        }
    }

    private static async Task EchoAsync(Socket socket)
    {
        using var stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            var head = await Http.ReadHeadAsync(socket, CancellationToken.None);
            var key = head.Split("\r\n").Select(l => l.Split(':', 2)).FirstOrDefault(p => p.Length == 2 && p[0].Trim().Equals("Sec-WebSocket-Key", StringComparison.OrdinalIgnoreCase))?[1].Trim();
            if (key is null)
            {
                await stream.WriteAsync("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray());
                return;
            }

#pragma warning disable CA5350 // RFC 6455 §4.2.2 names SHA-1 for Sec-WebSocket-Accept: a handshake check, not security
            var accept = Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + AcceptGuid)));
#pragma warning restore CA5350
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"));
            using var ws = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = true, KeepAliveInterval = TimeSpan.Zero });
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var received = await ws.ReceiveAsync(buffer, CancellationToken.None);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    return;
                }

                await ws.SendAsync(buffer.AsMemory(0, received.Count), received.MessageType, received.EndOfMessage, CancellationToken.None);
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or WebSocketException or InvalidDataException)
        {
            // a client gone mid-message: nothing to do
        }
    }

    public static async Task<int> RunAsync(Options o)
    {
        var workers = Enumerable.Range(0, o.Connections).Select(_ => new Worker(o)).ToArray();
        using var stop = new CancellationTokenSource();
        var tasks = workers.Select(w => w.RunAsync(stop.Token)).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        foreach (var w in workers)
        {
            w.Recording = true;
        }

        var started = Stopwatch.GetTimestamp();
        await Task.Delay(TimeSpan.FromSeconds(o.Duration));
        foreach (var w in workers)
        {
            w.Recording = false;
        }

        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        await stop.CancelAsync();
        await Task.WhenAll(tasks);
        var samples = workers.SelectMany(w => w.Samples).ToArray();
        Array.Sort(samples);
        var errors = workers.Sum(w => w.Errors);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"messages={samples.Length} rps={samples.Length / elapsed:F0} mbps={samples.Length * 2.0 * o.Size / elapsed / 1048576:F1} p50_ms={Percentile(samples, 0.50):F3} p99_ms={Percentile(samples, 0.99):F3} errors={errors}"));
        return 0;
    }

    private static double Percentile(long[] sortedTicks, double p) =>
        sortedTicks.Length == 0 ? double.NaN : sortedTicks[Math.Min(sortedTicks.Length - 1, (int)(p * sortedTicks.Length))] * 1000.0 / Stopwatch.Frequency;

    /// <summary>Opens one WebSocket: the handshake by hand (absolute-form through a forward proxy), then .NET's framing.</summary>
    public static async Task<WebSocket> ConnectAsync(Options o, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(o.Proxy ?? o.Target, cancellationToken);
            var target = o.Via == "forward" ? $"http://{o.Target}{o.Path}" : o.Path;
            var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
            await socket.SendAsync(Encoding.ASCII.GetBytes(
                $"GET {target} HTTP/1.1\r\nHost: {o.Target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"),
                SocketFlags.None, cancellationToken);
            var head = await Http.ReadHeadAsync(socket, cancellationToken);
            if (!head.StartsWith("HTTP/1.1 101", StringComparison.Ordinal))
            {
                throw new InvalidDataException("no switch: " + head.Split('\r')[0]);
            }

            return WebSocket.CreateFromStream(new NetworkStream(socket, ownsSocket: true),
                new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private sealed class Worker(Options o)
    {
        private readonly byte[] _message = RandomNumberGenerator.GetBytes(o.Size);
        private readonly byte[] _buffer = new byte[Math.Max(o.Size, 4096)];

        public volatile bool Recording;

        public List<long> Samples { get; } = new(64 * 1024);

        public int Errors { get; private set; }

        public async Task RunAsync(CancellationToken stop)
        {
            while (!stop.IsCancellationRequested)
            {
                WebSocket? ws = null;
                try
                {
                    ws = await ConnectAsync(o, stop);
                    while (!stop.IsCancellationRequested)
                    {
                        var t0 = Stopwatch.GetTimestamp();
                        await ws.SendAsync(_message, WebSocketMessageType.Binary, true, stop);
                        var got = 0;
                        while (true)
                        {
                            var r = await ws.ReceiveAsync(_buffer.AsMemory(got), stop);
                            got += r.Count;
                            if (r.MessageType == WebSocketMessageType.Close)
                            {
                                throw new IOException("closed by the peer");
                            }

                            if (r.EndOfMessage)
                            {
                                break;
                            }
                        }

                        if (got != _message.Length)
                        {
                            throw new InvalidDataException($"echo of {got} bytes, sent {_message.Length}");
                        }

                        if (Recording)
                        {
                            Samples.Add(Stopwatch.GetTimestamp() - t0);
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
                catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException or WebSocketException)
                {
                    if (Recording)
                    {
                        Errors++;
                    }
                }
                finally
                {
                    ws?.Abort();
                    ws?.Dispose();
                }
            }
        }
    }
}
