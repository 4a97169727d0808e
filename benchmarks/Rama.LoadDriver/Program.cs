using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Rama.LoadDriver;

/// <summary>
/// The load driver for tunnelled scenarios (CONNECT, SOCKS5, plain TCP proxies), which wrk cannot
/// drive: it opens N connections through the proxy and runs keep-alive HTTP/1.1 GETs inside them
/// (rps), one bulk download (bulk), or holds N idle tunnels and measures the proxy's RSS (idle).
/// The same code drives every peer, so the comparison is fair. Output: one line of key=value.
/// </summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var o = Options.Parse(args);
        try
        {
            return o.Mode switch
            {
                "rps" => await RpsAsync(o),
                "bulk" => await BulkAsync(o),
                "idle" => await IdleAsync(o),
                "ws" => await WebSocketLoad.RunAsync(o),
                "wsecho" => await WebSocketLoad.ServeEchoAsync(o),
                _ => Usage(),
            };
        }
        catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException or TimeoutException or System.Net.WebSockets.WebSocketException)
        {
            Console.WriteLine($"error={ex.GetType().Name}:{ex.Message.Replace(' ', '_')}");
            return 1;
        }
    }

    private static int Usage()
    {
        Console.Error.WriteLine("""
            rama-loaddriver --mode rps|bulk|idle --via direct|connect|socks5 [--proxy ip:port] --target ip:port
                            [--path /1k] [--connections 50] [--duration 10] [--warmup 2] [--count 8000] [--pid <proxy pid>] [--settle 3] [--warm 0]
            rama-loaddriver --mode ws --via direct|forward [--proxy ip:port] --target ip:port [--path /ws] [--size 64] [--connections 50] ...
            rama-loaddriver --mode wsecho --target ip:port     (a WebSocket echo origin; runs until killed)
            """);
        return 2;
    }

    // ---- rps: keep-alive GETs inside N tunnels ------------------------------------------------

    private static async Task<int> RpsAsync(Options o)
    {
        var request = Encoding.ASCII.GetBytes($"GET {o.Path} HTTP/1.1\r\nHost: {o.Target}\r\nUser-Agent: rama-loaddriver\r\n\r\n");
        var workers = new Worker[o.Connections];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = new Worker(o, request);
        }

        using var stop = new CancellationTokenSource();
        var tasks = workers.Select(w => w.RunAsync(stop.Token)).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(o.Warmup));
        foreach (var w in workers)
        {
            w.StartRecording();
        }

        var started = Stopwatch.GetTimestamp();
        await Task.Delay(TimeSpan.FromSeconds(o.Duration));
        foreach (var w in workers)
        {
            w.StopRecording();
        }

        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        await stop.CancelAsync();
        await Task.WhenAll(tasks);

        var samples = workers.SelectMany(w => w.Samples).ToArray();
        Array.Sort(samples);
        var bytes = workers.Sum(w => w.BodyBytes);
        var errors = workers.Sum(w => w.Errors);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"requests={samples.Length} rps={samples.Length / elapsed:F0} mbps={bytes / elapsed / 1048576:F1} p50_ms={Percentile(samples, 0.50):F3} p99_ms={Percentile(samples, 0.99):F3} errors={errors}"));
        return 0;
    }

    private static double Percentile(long[] sortedTicks, double p) =>
        sortedTicks.Length == 0 ? double.NaN : sortedTicks[Math.Min(sortedTicks.Length - 1, (int)(p * sortedTicks.Length))] * 1000.0 / Stopwatch.Frequency;

    private sealed class Worker(Options o, byte[] request)
    {
        private readonly byte[] _buffer = new byte[64 * 1024];
        private volatile bool _recording;

        public List<long> Samples { get; } = new(64 * 1024);

        public long BodyBytes { get; private set; }

        public int Errors { get; private set; }

        public void StartRecording() => _recording = true;

        public void StopRecording() => _recording = false;

        public async Task RunAsync(CancellationToken stop)
        {
            while (!stop.IsCancellationRequested)
            {
                Socket? socket = null;
                try
                {
                    socket = await Tunnel.OpenAsync(o, stop);
                    while (!stop.IsCancellationRequested)
                    {
                        var t0 = Stopwatch.GetTimestamp();
                        await socket.SendAsync(request, SocketFlags.None, stop);
                        var body = await Http.ReadResponseAsync(socket, _buffer, stop);
                        var took = Stopwatch.GetTimestamp() - t0;
                        if (_recording)
                        {
                            Samples.Add(took);
                            BodyBytes += body;
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
                catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException)
                {
                    if (_recording)
                    {
                        Errors++;
                    }
                }
                finally
                {
                    socket?.Dispose();
                }
            }
        }
    }

    // ---- bulk: one large download through one tunnel -----------------------------------------

    private static async Task<int> BulkAsync(Options o)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        using var socket = await Tunnel.OpenAsync(o, cts.Token);
        var buffer = new byte[256 * 1024];
        var started = Stopwatch.GetTimestamp();
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {o.Path} HTTP/1.1\r\nHost: {o.Target}\r\n\r\n"), SocketFlags.None, cts.Token);
        var body = await Http.ReadResponseAsync(socket, buffer, cts.Token);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bytes={body} seconds={seconds:F3} mbps={body / seconds / 1048576:F1}"));
        return 0;
    }

    // ---- idle: hold N tunnels, report the proxy's RSS per tunnel ------------------------------

    private static async Task<int> IdleAsync(Options o)
    {
        var request = Encoding.ASCII.GetBytes($"GET {o.Path} HTTP/1.1\r\nHost: {o.Target}\r\n\r\n");
        await Task.Delay(500);
        var cold = Rss.OfTree(o.Pid);
        if (o.WarmTunnels > 0)
        {
            // Warm-up (--warm N): N tunnels opened, used and closed first, so the baseline already holds what any proxy
            // grows once and keeps (JIT code, a runtime's heap budgets, pools) and the delta is what idle tunnels add.
            var (warm, _) = await OpenAsync(o, request, o.WarmTunnels);
            foreach (var s in warm)
            {
                s.Dispose();
            }

            await Task.Delay(TimeSpan.FromSeconds(o.Settle));
        }

        var before = Rss.OfTree(o.Pid);
        var (sockets, failed) = await OpenAsync(o, request, o.Count);
        await Task.Delay(TimeSpan.FromSeconds(o.Settle));
        var after = Rss.OfTree(o.Pid);
        var open = sockets.Count;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"tunnels={open} failed={failed} rss_cold_kib={cold / 1024} rss_before_kib={before / 1024} rss_after_kib={after / 1024} bytes_per_tunnel={(open == 0 ? 0 : (after - before) / open)} bytes_per_tunnel_cold={(open == 0 ? 0 : (after - cold) / open)}"));
        foreach (var s in sockets)
        {
            s.Dispose();
        }

        return 0;
    }

    // Opens count tunnels (64 handshakes at a time), each used for one request: the open ones and how many failed.
    private static async Task<(List<Socket> Sockets, int Failed)> OpenAsync(Options o, byte[] request, int count)
    {
        var sockets = new List<Socket>(count);
        var failed = 0;
        using var gate = new SemaphoreSlim(64);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var opening = Enumerable.Range(0, count).Select(async _ =>
        {
            await gate.WaitAsync(cts.Token);
            try
            {
                // Each tunnel carries one request first (a used tunnel, now idle), then stays open.
                var socket = await Tunnel.OpenAsync(o, cts.Token);
                await socket.SendAsync(request, SocketFlags.None, cts.Token);
                await Http.ReadResponseAsync(socket, new byte[4096], cts.Token);
                lock (sockets)
                {
                    sockets.Add(socket);
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException or InvalidDataException or OperationCanceledException)
            {
                Interlocked.Increment(ref failed);
            }
            finally
            {
                gate.Release();
            }
        });
        await Task.WhenAll(opening);
        return (sockets, failed);
    }
}

internal sealed record Options(string Mode, string Via, IPEndPoint? Proxy, IPEndPoint Target, string Path, int Connections, double Duration, double Warmup, int Count, int Pid, double Settle, int Size)
{
    /// <summary>Idle mode: tunnels opened and closed before the baseline (--warm, default 0).</summary>
    public int WarmTunnels { get; init; }

    public static Options Parse(string[] args)
    {
        string Get(string name, string fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        }

        var proxy = Get("--proxy", "");
        return new Options(Get("--mode", ""), Get("--via", "direct"), proxy.Length == 0 ? null : IPEndPoint.Parse(proxy), IPEndPoint.Parse(Get("--target", "127.0.0.1:80")),
            Get("--path", "/1k"), int.Parse(Get("--connections", "50"), CultureInfo.InvariantCulture), double.Parse(Get("--duration", "10"), CultureInfo.InvariantCulture),
            double.Parse(Get("--warmup", "2"), CultureInfo.InvariantCulture), int.Parse(Get("--count", "8000"), CultureInfo.InvariantCulture),
            int.Parse(Get("--pid", "0"), CultureInfo.InvariantCulture), double.Parse(Get("--settle", "3"), CultureInfo.InvariantCulture),
            int.Parse(Get("--size", "64"), CultureInfo.InvariantCulture))
        {
            WarmTunnels = int.Parse(Get("--warm", "0"), CultureInfo.InvariantCulture),
        };
    }
}

/// <summary>Opens a connection to the target: straight, through an HTTP CONNECT proxy, or through SOCKS5 (no auth).</summary>
internal static class Tunnel
{
    public static async Task<Socket> OpenAsync(Options o, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(o.Via == "direct" ? (o.Proxy ?? o.Target) : o.Proxy!, cancellationToken);
            switch (o.Via)
            {
                case "connect":
                    await socket.SendAsync(Encoding.ASCII.GetBytes($"CONNECT {o.Target} HTTP/1.1\r\nHost: {o.Target}\r\n\r\n"), SocketFlags.None, cancellationToken);
                    var head = await Http.ReadHeadAsync(socket, cancellationToken);
                    if (!head.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) && !head.StartsWith("HTTP/1.0 200", StringComparison.Ordinal))
                    {
                        throw new InvalidDataException("CONNECT refused: " + head.Split('\r')[0]);
                    }

                    break;
                case "socks5":
                    var buffer = new byte[32];
                    await socket.SendAsync(new byte[] { 5, 1, 0 }, SocketFlags.None, cancellationToken);
                    await ReadExactlyAsync(socket, buffer.AsMemory(0, 2), cancellationToken);
                    if (buffer[0] != 5 || buffer[1] != 0)
                    {
                        throw new InvalidDataException("SOCKS5 method refused");
                    }

                    var connect = new byte[10];
                    connect[0] = 5;
                    connect[1] = 1;
                    connect[3] = 1;
                    o.Target.Address.GetAddressBytes().CopyTo(connect, 4);
                    BinaryPrimitives.WriteUInt16BigEndian(connect.AsSpan(8), (ushort)o.Target.Port);
                    await socket.SendAsync(connect, SocketFlags.None, cancellationToken);
                    await ReadExactlyAsync(socket, buffer.AsMemory(0, 5), cancellationToken);
                    if (buffer[1] != 0)
                    {
                        throw new InvalidDataException($"SOCKS5 reply {buffer[1]}");
                    }

                    // RFC 1928 §6: BND.ADDR by type; 5 bytes read so far hold VER REP RSV ATYP and the first address byte.
                    var rest = buffer[3] switch { 1 => 4 + 2 - 1, 4 => 16 + 2 - 1, 3 => buffer[4] + 2, _ => throw new InvalidDataException("SOCKS5 bad ATYP") };
                    await ReadExactlyAsync(socket, buffer.AsMemory(0, rest), cancellationToken);
                    break;
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public static async Task ReadExactlyAsync(Socket socket, Memory<byte> into, CancellationToken cancellationToken)
    {
        while (!into.IsEmpty)
        {
            var n = await socket.ReceiveAsync(into, SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                throw new IOException("closed");
            }

            into = into[n..];
        }
    }
}

/// <summary>Just enough HTTP/1.1 client: responses framed by Content-Length (nginx's static files).</summary>
internal static class Http
{
    /// <summary>Reads a CONNECT answer head byte-exact (nothing past the empty line is consumed).</summary>
    public static async Task<string> ReadHeadAsync(Socket socket, CancellationToken cancellationToken)
    {
        var head = new List<byte>(256);
        var one = new byte[1];
        while (head.Count < 16384)
        {
            await Tunnel.ReadExactlyAsync(socket, one, cancellationToken);
            head.Add(one[0]);
            if (head.Count >= 4 && head[^1] == '\n' && head[^2] == '\r' && head[^3] == '\n' && head[^4] == '\r')
            {
                return Encoding.ASCII.GetString(head.ToArray());
            }
        }

        throw new InvalidDataException("head too large");
    }

    /// <summary>Reads one response (head + Content-Length body); returns the body length.</summary>
    public static async Task<long> ReadResponseAsync(Socket socket, byte[] buffer, CancellationToken cancellationToken)
    {
        var filled = 0;
        int headEnd;
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                throw new IOException("closed before a response");
            }

            filled += n;
            headEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8);
            if (headEnd >= 0)
            {
                headEnd += 4;
                break;
            }

            if (filled == buffer.Length)
            {
                throw new InvalidDataException("head too large");
            }
        }

        var head = buffer.AsSpan(0, headEnd);
        if (!head.StartsWith("HTTP/1.1 200"u8))
        {
            throw new InvalidDataException("status " + Encoding.ASCII.GetString(head[..Math.Min(12, head.Length)]));
        }

        var at = IndexOfIgnoreCase(head, "\r\ncontent-length:"u8);
        if (at < 0)
        {
            throw new InvalidDataException("no Content-Length");
        }

        var value = head[(at + 17)..];
        value = value[..value.IndexOf((byte)'\r')].Trim((byte)' ');
        var length = long.Parse(Encoding.ASCII.GetString(value), CultureInfo.InvariantCulture);
        var remaining = length - (filled - headEnd);
        while (remaining > 0)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                throw new IOException("closed mid-body");
            }

            remaining -= n;
        }

        if (remaining < 0)
        {
            throw new InvalidDataException("more bytes than Content-Length (pipelining is not used)");
        }

        return length;
    }

    private static int IndexOfIgnoreCase(ReadOnlySpan<byte> haystack, ReadOnlySpan<byte> needle)
    {
        for (var i = 0; i + needle.Length <= haystack.Length; i++)
        {
            if (Ascii.EqualsIgnoreCase(haystack.Slice(i, needle.Length), needle))
            {
                return i;
            }
        }

        return -1;
    }
}

/// <summary>Resident memory of a process and its descendants (dante and nginx fork workers).</summary>
internal static class Rss
{
    public static long OfTree(int pid) => pid <= 0 ? 0 : Descendants(pid).Prepend(pid).Sum(p => Read(p, "VmRSS:"));

    private static long Read(int pid, string key)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith(key, StringComparison.Ordinal))
                {
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }

        return 0;
    }

    private static IEnumerable<int> Descendants(int pid)
    {
        var children = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var p))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], CultureInfo.InvariantCulture) == pid)
                {
                    children.Add(p);
                }
            }
            catch (IOException)
            {
            }
        }

        return children.SelectMany(c => Descendants(c).Prepend(c)).ToList();
    }
}
