using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests;

/// <summary>
/// 1 GiB through the node keeps its memory flat. The bound: the node's resident-set high-water mark
/// may grow by at most 48 MiB during the transfer. A tunnel holds at most 64 KiB per pipe direction
/// (4 pipes: 256 KiB) plus one pooled read buffer per hop; the rest of the allowance is GC and JIT
/// noise. A proxy that buffered the body would grow by about the file size (1 GiB), so the bound
/// separates "streamed" from "buffered" by a factor of 20.
/// </summary>
public sealed class MemoryTests(ITestOutputHelper output)
{
    private const long OneGiB = 1L << 30;
    private const long AllowedGrowth = 48L << 20;

    private const int IdleTunnels = 2000;

    [Theory]
    [InlineData("absolute-form")]
    [InlineData("connect")]
    public async Task One_GiB_download_keeps_node_memory_flat(string mode)
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0"]);
        string[] tunnel = mode == "connect" ? ["-p"] : [];
        var proxy = $"http://127.0.0.1:{node.Endpoint.Port}";

        // Warm up (JIT, pools) with a small transfer, then take the baseline high-water mark.
        var warm = await Cli.CurlAsync([.. tunnel, "-o", "/dev/null", "-x", proxy, origin.Url("/bytes/1048576")]);
        Assert.Equal(0, warm.ExitCode);
        var before = node.Memory();

        var started = DateTime.UtcNow;
        var result = await Cli.RunAsync("curl", ["-sS", "--max-time", "120", .. tunnel, "-o", "/dev/null", "-w", "%{size_download}", "-x", proxy, origin.Url($"/bytes/{OneGiB}")], TimeSpan.FromSeconds(150));
        var elapsed = DateTime.UtcNow - started;
        var after = node.Memory();
        output.WriteLine($"{mode}: {OneGiB / elapsed.TotalSeconds / (1 << 20):0} MiB/s, RSS before {before.Rss >> 20} MiB (peak {before.Peak >> 20}), after {after.Rss >> 20} MiB (peak {after.Peak >> 20})");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(Formats.Invariant(OneGiB), result.Text);
        Assert.True(after.Peak - before.Peak < AllowedGrowth,
            $"peak RSS grew by {(after.Peak - before.Peak) >> 20} MiB during a 1 GiB {mode} transfer (bound {AllowedGrowth >> 20} MiB)");
    }

    /// <summary>
    /// Issue 15 item 6: many idle tunnels through a real node (CONNECT or SOCKS5), each used for one 1 KiB GET and then left
    /// idle on the epoll loops, which keep only a descriptor pair and a small record per tunnel: once all are open, every one
    /// still carries a request both ways. The node's resident-set growth per tunnel is printed for the record (it is not
    /// bounded here: at this count it is dominated by the runtime's heap budgets; benchmarks/run scenario 7 measures it).
    /// </summary>
    [Theory]
    [InlineData("connect")]
    [InlineData("socks5")]
    public async Task Idle_tunnels_all_stay_usable(string via)
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0"]);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        var target = new IPEndPoint(IPAddress.Loopback, origin.Port);
        var before = node.Memory();
        var tunnels = await OpenIdleTunnelsAsync(via, node.Endpoint, target, IdleTunnels, cancel.Token);
        try
        {
            var after = node.Memory();
            output.WriteLine($"{via}: {IdleTunnels} idle tunnels, RSS {before.Rss >> 20} -> {after.Rss >> 20} MiB ({(after.Rss - before.Rss) / IdleTunnels} bytes per tunnel)");
            using var gate = new SemaphoreSlim(32);
            var lengths = await Task.WhenAll(tunnels.Select(async socket =>
            {
                await gate.WaitAsync(cancel.Token);
                try
                {
                    return await GetAsync(socket, target, cancel.Token);
                }
                finally
                {
                    gate.Release();
                }
            }));
            Assert.All(lengths, length => Assert.Equal(1024, length));
        }
        finally
        {
            foreach (var socket in tunnels)
            {
                socket.Dispose();
            }
        }
    }

    private static async Task<Socket[]> OpenIdleTunnelsAsync(string via, IPEndPoint proxy, IPEndPoint target, int count, CancellationToken cancellationToken)
    {
        var sockets = new Socket[count];
        using var gate = new SemaphoreSlim(32);
        await Task.WhenAll(Enumerable.Range(0, count).Select(async i =>
        {
            await gate.WaitAsync(cancellationToken);
            try
            {
                sockets[i] = await OpenTunnelAsync(via, proxy, target, cancellationToken);
                Assert.Equal(1024, await GetAsync(sockets[i], target, cancellationToken));
            }
            finally
            {
                gate.Release();
            }
        }));
        return sockets;
    }

    private static async Task<Socket> OpenTunnelAsync(string via, IPEndPoint proxy, IPEndPoint target, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(proxy, cancellationToken);
        if (via == "connect")
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes($"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"), SocketFlags.None, cancellationToken);
            var (head, rest) = await ReadHeadAsync(socket, cancellationToken);
            Assert.StartsWith("HTTP/1.1 200", head, StringComparison.Ordinal);
            Assert.Equal(0, rest);
        }
        else
        {
            // RFC 1928: no authentication, then CONNECT to an IPv4 address.
            await socket.SendAsync(new byte[] { 5, 1, 0 }, SocketFlags.None, cancellationToken);
            Assert.Equal(new byte[] { 5, 0 }, await ReceiveExactlyAsync(socket, 2, cancellationToken));
            var request = new byte[10];
            request[0] = 5;
            request[1] = 1;
            request[3] = 1;
            target.Address.GetAddressBytes().CopyTo(request, 4);
            request[8] = (byte)(target.Port >> 8);
            request[9] = (byte)target.Port;
            await socket.SendAsync(request, SocketFlags.None, cancellationToken);
            var reply = await ReceiveExactlyAsync(socket, 10, cancellationToken);
            Assert.Equal((byte)0, reply[1]); // succeeded (an IPv4 bound address: 10 bytes)
        }

        return socket;
    }

    // One GET of /bytes/1024 through an open tunnel: the body's length.
    private static async Task<int> GetAsync(Socket socket, IPEndPoint target, CancellationToken cancellationToken)
    {
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET /bytes/1024 HTTP/1.1\r\nHost: {target}\r\n\r\n"), SocketFlags.None, cancellationToken);
        var (head, body) = await ReadHeadAsync(socket, cancellationToken);
        Assert.StartsWith("HTTP/1.1 200", head, StringComparison.Ordinal);
        var length = head.Split("\r\n").Select(l => l.Split(':', 2)).Where(p => p.Length == 2 && p[0].Trim().Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            .Select(p => int.Parse(p[1].Trim(), System.Globalization.CultureInfo.InvariantCulture)).Single();
        if (length > body)
        {
            await ReceiveExactlyAsync(socket, length - body, cancellationToken);
        }

        return length;
    }

    // Reads up to the end of a response head, byte by byte (so nothing past it is taken): the head and 0 body bytes read.
    private static async Task<(string Head, int BodyRead)> ReadHeadAsync(Socket socket, CancellationToken cancellationToken)
    {
        var head = new List<byte>(256);
        var one = new byte[1];
        while (head.Count < 4 || !(head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
        {
            if (await socket.ReceiveAsync(one, SocketFlags.None, cancellationToken) == 0)
            {
                throw new IOException("closed before the end of a response head: " + Encoding.ASCII.GetString([.. head]));
            }

            head.Add(one[0]);
        }

        return (Encoding.ASCII.GetString([.. head]), 0);
    }

    private static async Task<byte[]> ReceiveExactlyAsync(Socket socket, int count, CancellationToken cancellationToken)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                throw new IOException($"closed after {read} of {count} bytes");
            }

            read += n;
        }

        return buffer;
    }
}
