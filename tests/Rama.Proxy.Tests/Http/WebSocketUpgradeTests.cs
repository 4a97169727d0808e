using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http;

/// <summary>
/// WebSocket and HTTP/1.1 upgrades through the forward proxy (absolute-form) and the pipe-based reverse proxy, with
/// python3-websockets as origin and client (RFC 9110 §7.8, §15.2.2; RFC 6455 §4).
/// </summary>
public sealed class WebSocketUpgradeTests
{
    // ---- real peers ---------------------------------------------------------------------------------

    [Theory]
    [InlineData(ReverseProxyTransport.Auto)] // the stack's default: the tunnel runs on the epoll loops on Linux x86-64
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Python_client_through_the_forward_proxy_exchanges_text_binary_many_messages_and_closes(ReverseProxyTransport tunnels)
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        var log = new RecordingAccessLog();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions { TunnelTransport = tunnels }, StaticProxyAuthenticator.None,
            accessLog: log));

        var result = await WebSocketPeers.RunClientAsync($"ws://{origin.Authority}/ws/forward", $"127.0.0.1:{proxy.Port}");

        Assert.True(result.ExitCode == 0, result.Stderr + result.Text);
        Assert.Contains("OK handshake 1.1 rama", result.Text, StringComparison.Ordinal); // the 101 came through us (Via)
        Assert.Contains("OK binary 1MiB", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK 1000 messages", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK close 1000 bye", result.Text, StringComparison.Ordinal);
        Assert.Equal("CLOSED 1000 bye", await origin.WaitForLineAsync("CLOSED"));
        var handshake = Handshake(await origin.WaitForLineAsync("HANDSHAKE"));
        Assert.Equal("websocket", handshake["Upgrade"]);
        Assert.Equal("Upgrade", handshake["Connection"]);
        Assert.Equal("1.1 rama", handshake["Via"]);
        Assert.Equal(origin.Authority, handshake["Host"]);
        Assert.False(handshake.ContainsKey("Proxy-Authorization"));

        // One access entry for the whole upgraded exchange, written when the tunnel ended, with the tunnel's bytes.
        await proxy.AssertNoOpenConnectionsAsync();
        var entry = Assert.Single(log.Entries, e => e.Status == 101);
        Assert.Equal(AccessKind.Forward, entry.Kind);
        Assert.Equal($"http://{origin.Authority}/ws/forward", entry.Target);
        Assert.InRange(entry.BytesFromClient, 1024 * 1024, 1024 * 1024 + 100_000);
        Assert.InRange(entry.BytesToClient, 1024 * 1024, 1024 * 1024 + 100_000);
    }

    [Fact]
    public async Task Python_client_through_the_pipe_reverse_proxy_exchanges_text_binary_many_messages_and_closes()
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        await using var proxy = Reverse(origin.Port, ReverseProxyTransport.Sockets);

        var result = await WebSocketPeers.RunClientAsync($"ws://127.0.0.1:{proxy.Port}/ws/reverse");

        Assert.True(result.ExitCode == 0, result.Stderr + result.Text);
        Assert.Contains("OK handshake 1.1 rama", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK 1000 messages", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK close 1000 bye", result.Text, StringComparison.Ordinal);
        Assert.Equal("CLOSED 1000 bye", await origin.WaitForLineAsync("CLOSED"));
        var handshake = Handshake(await origin.WaitForLineAsync("HANDSHAKE"));
        Assert.Equal($"127.0.0.1:{proxy.Port}", handshake["Host"]); // a reverse proxy keeps the client's Host
        Assert.Equal("1.1 rama", handshake["Via"]);
    }

    [Theory]
    [InlineData("forward")] // the forward stack's default: the upgraded connection relays on the epoll loops (Linux x86-64)
    [InlineData("reverse")] // the pipe reverse proxy: the pipe relay
    public async Task An_upgraded_connection_silent_for_the_tunnel_idle_timeout_is_closed_on_both_sides(string kind)
    {
        var idle = TimeSpan.FromMilliseconds(500);
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        var options = new ForwardProxyOptions { Http = new HttpProxyOptions { TunnelIdleTimeout = idle }, ReverseTransport = ReverseProxyTransport.Sockets };
        await using var proxy = new ProxyHarness(kind == "forward"
            ? ForwardProxyStack.Create(options, StaticProxyAuthenticator.None)
            : ReverseProxyStack.Create(options, new HostPort("127.0.0.1", origin.Port)));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var (socket, _, raw) = await WebSocketPeers.ConnectRawAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port),
            kind == "forward" ? $"http://{origin.Authority}/ws" : "/ws", origin.Authority, cts.Token);
        using var _s = socket;
        using var _r = raw;

        // The tunnel works, then sits idle. Its last activity (the echo coming back) is after this send: a safe lower bound.
        var idleSince = Stopwatch.StartNew();
        Assert.Equal("ping", await WebSocketPeers.EchoAsync(socket, "ping", cts.Token));
        var closed = await Assert.ThrowsAnyAsync<Exception>(async () => await socket.ReceiveAsync(new byte[64], cts.Token));
        Assert.True(closed is WebSocketException or IOException, closed.ToString());
        Assert.True(idleSince.Elapsed >= idle - TimeSpan.FromMilliseconds(50), $"closed after {idleSince.Elapsed}, before the idle timeout");
        Assert.StartsWith("CLOSED 1006", await origin.WaitForLineAsync("CLOSED"), StringComparison.Ordinal); // the origin lost it too
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData("forward")]
    [InlineData("reverse")]
    public async Task A_drain_lets_an_upgraded_connection_run_and_the_drain_timeout_closes_it_as_a_tunnel(string kind)
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        await using var proxy = kind == "forward"
            ? new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None))
            : Reverse(origin.Port, ReverseProxyTransport.Sockets);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var (socket, _, raw) = await WebSocketPeers.ConnectRawAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port),
            kind == "forward" ? $"http://{origin.Authority}/ws" : "/ws", "app.example", cts.Token);
        using var _s = socket;
        using var _r = raw;

        // Unbound: no new connection, but the upgraded one still carries messages, and holds the drain.
        await proxy.Server.UnbindAsync();
        Assert.True(Sockets.IsRefused(new IPEndPoint(IPAddress.Loopback, proxy.Port)));
        Assert.Equal("still here", await WebSocketPeers.EchoAsync(socket, "still here", cts.Token));
        Assert.False(await proxy.Server.DrainAsync(TimeSpan.FromMilliseconds(300), cts.Token));
        Assert.Equal(1, proxy.Server.OpenConnections);

        // The drain timeout: what is left is closed, the origin's side with it.
        Assert.Equal(1, proxy.Server.AbortAll("drain timeout"));
        await Assert.ThrowsAnyAsync<Exception>(async () => await socket.ReceiveAsync(new byte[64], cts.Token));
        Assert.StartsWith("CLOSED 1006", await origin.WaitForLineAsync("CLOSED"), StringComparison.Ordinal);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    // ---- raw peers: the exact bytes -----------------------------------------------------------------

    [Fact]
    public async Task The_101_is_relayed_with_upgrade_and_via_and_the_connections_become_a_tunnel()
    {
        await using var origin = new UpgradeOrigin(switchTo: "websocket", extraHeaders: "Keep-Alive: timeout=5\r\nX-Origin: yes\r\n");
        await using var proxy = new ProxyHarness();
        using var client = await proxy.ConnectAsync();
        await client.SendAsync(Encoding.ASCII.GetBytes(
            $"GET http://127.0.0.1:{origin.Port}/chat HTTP/1.1\r\nHost: 127.0.0.1:{origin.Port}\r\nConnection: keep-alive, Upgrade, X-Secret\r\n"
            + "X-Secret: s\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp5\r\nKeep-Alive: 300\r\nSec-WebSocket-Key: k\r\n\r\n"));
        var head = await ReadHeadAsync(client);

        Assert.StartsWith("HTTP/1.1 101 Switching Protocols\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nUpgrade: websocket\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: Upgrade\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nVia: 1.1 rama\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nX-Origin: yes\r\n", head, StringComparison.Ordinal);
        Assert.DoesNotContain("Keep-Alive", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Content-Length", head, StringComparison.OrdinalIgnoreCase);

        // What the origin saw: Upgrade and the one connection option it needs; the rest of the hop-by-hop fields gone.
        var seen = Assert.Single(origin.Heads);
        Assert.Contains("\r\nUpgrade: websocket\r\n", seen, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: Upgrade\r\n", seen, StringComparison.Ordinal);
        Assert.Contains("\r\nSec-WebSocket-Key: k\r\n", seen, StringComparison.Ordinal);
        Assert.DoesNotContain("X-Secret", seen, StringComparison.Ordinal);
        Assert.DoesNotContain("Proxy-Authorization", seen, StringComparison.Ordinal);
        Assert.DoesNotContain("Keep-Alive", seen, StringComparison.Ordinal);

        // Bytes after the 101 go both ways untouched (the origin echoes), and a FIN ends the tunnel.
        byte[] frame = [0x81, 0x02, (byte)'h', (byte)'i'];
        await client.SendAsync(frame);
        Assert.Equal(frame, await Sockets.ReceiveExactlyAsync(client, 4));
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task An_answer_other_than_101_is_an_ordinary_response_and_the_connection_goes_on_as_http()
    {
        await using var origin = new UpgradeOrigin(switchTo: null);
        await using var proxy = new ProxyHarness();
        using var client = await proxy.ConnectAsync();
        await client.SendAsync(Encoding.ASCII.GetBytes(
            $"GET http://127.0.0.1:{origin.Port}/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
        var first = await ReadHeadAsync(client);
        Assert.StartsWith("HTTP/1.1 200", first, StringComparison.Ordinal);
        Assert.DoesNotContain("Upgrade", first, StringComparison.Ordinal); // the origin's Upgrade offer is hop-by-hop
        Assert.Equal("conn 1 req 1"u8.ToArray(), await Sockets.ReceiveExactlyAsync(client, 12));

        // Same client connection, same (pooled) origin connection: plain HTTP on both.
        await client.SendAsync(Encoding.ASCII.GetBytes($"GET http://127.0.0.1:{origin.Port}/next HTTP/1.1\r\nHost: a\r\n\r\n"));
        Assert.StartsWith("HTTP/1.1 200", await ReadHeadAsync(client), StringComparison.Ordinal);
        Assert.Equal("conn 1 req 2"u8.ToArray(), await Sockets.ReceiveExactlyAsync(client, 12));
    }

    [Theory]
    [InlineData("h2c")]
    [InlineData("websocket/2")]
    [InlineData("")]
    public async Task A_101_to_a_protocol_the_client_did_not_ask_for_is_a_502(string switchTo)
    {
        await using var origin = new UpgradeOrigin(switchTo);
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync(
            $"GET http://127.0.0.1:{origin.Port}/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\nUpgrade: websocket/1\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 502", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("101", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_101_without_an_upgrade_request_is_a_502()
    {
        await using var origin = new UpgradeOrigin(switchTo: "websocket", always: true);
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync($"GET http://127.0.0.1:{origin.Port}/plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 502", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("Upgrade", Assert.Single(origin.Heads), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Sockets)]
    [InlineData(ReverseProxyTransport.Epoll)] // the default reverse transport: it passes no upgrade yet, and h2c must stay stripped when it does
    public async Task Upgrade_h2c_is_stripped_and_the_request_forwarded_as_plain_http(ReverseProxyTransport transport)
    {
        await using var origin = new UpgradeOrigin(switchTo: "h2c");
        await using var proxy = Reverse(origin.Port, transport);
        var answer = await proxy.SendAndReadToCloseAsync(
            "GET /h2 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.EndsWith("conn 1 req 1", answer, StringComparison.Ordinal);
        var seen = Assert.Single(origin.Heads);
        Assert.DoesNotContain("Upgrade", seen, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("HTTP2-Settings", seen, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Upgrade_in_an_http10_request_is_ignored()
    {
        await using var origin = new UpgradeOrigin(switchTo: "websocket");
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync(
            $"GET http://127.0.0.1:{origin.Port}/old HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("Upgrade", Assert.Single(origin.Heads), StringComparison.OrdinalIgnoreCase); // RFC 9110 §7.8
    }

    [Fact]
    public async Task Upgrade_without_the_upgrade_connection_option_is_not_passed()
    {
        await using var origin = new UpgradeOrigin(switchTo: "websocket");
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync(
            $"GET http://127.0.0.1:{origin.Port}/x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("Upgrade", Assert.Single(origin.Heads), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task A_request_body_is_sent_whole_before_the_tunnel_and_bytes_after_it_belong_to_the_new_protocol()
    {
        await using var origin = new UpgradeOrigin(switchTo: "websocket", readBody: true);
        await using var proxy = Reverse(origin.Port, ReverseProxyTransport.Sockets);
        using var client = await proxy.ConnectAsync();
        // Head, body and the first bytes of the new protocol in one write: the proxy must split them at the body's end.
        await client.SendAsync(Encoding.ASCII.GetBytes(
            "POST /upload HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhelloTUNNEL"));
        Assert.StartsWith("HTTP/1.1 101", await ReadHeadAsync(client), StringComparison.Ordinal);
        Assert.Equal("TUNNEL"u8.ToArray(), await Sockets.ReceiveExactlyAsync(client, 6));
        Assert.Equal("hello", Assert.Single(origin.Bodies));
    }

    [Fact]
    public async Task The_origin_connection_of_an_upgraded_exchange_is_never_pooled_again()
    {
        await using var origin = new UpgradeOrigin(switchTo: "websocket");
        await using var proxy = Reverse(origin.Port, ReverseProxyTransport.Sockets);

        // A plain request leaves connection 1 in the pool; the upgrade takes it and turns it into a tunnel.
        Assert.EndsWith("conn 1 req 1", await proxy.SendAndReadToCloseAsync("GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), StringComparison.Ordinal);
        using (var client = await proxy.ConnectAsync())
        {
            await client.SendAsync("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"u8.ToArray());
            Assert.StartsWith("HTTP/1.1 101", await ReadHeadAsync(client), StringComparison.Ordinal);
            await client.SendAsync("x"u8.ToArray());
            Assert.Equal("x"u8.ToArray(), await Sockets.ReceiveExactlyAsync(client, 1));
            client.Shutdown(SocketShutdown.Send);
            Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
        }

        await proxy.AssertNoOpenConnectionsAsync();
        // The next request needs a new origin connection: the tunnel's was closed, not returned.
        Assert.EndsWith("conn 2 req 1", await proxy.SendAndReadToCloseAsync("GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), StringComparison.Ordinal);
        Assert.Equal(2, origin.Accepted);
    }

    // ---- helpers ------------------------------------------------------------------------------------

    private static ProxyHarness Reverse(int upstreamPort, ReverseProxyTransport transport) =>
        new(ReverseProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
            ReverseTransport = transport,
        }, new HostPort("127.0.0.1", upstreamPort)));

    private static Dictionary<string, string> Handshake(string line)
    {
        var pairs = System.Text.Json.JsonSerializer.Deserialize<string[][]>(line["HANDSHAKE ".Length..])!;
        return pairs.GroupBy(p => p[0], StringComparer.OrdinalIgnoreCase).ToDictionary(g => g.Key, g => string.Join(", ", g.Select(p => p[1])), StringComparer.OrdinalIgnoreCase);
    }

    private static async Task<string> ReadHeadAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await socket.ReceiveAsync(one, SocketFlags.None, cts.Token) == 0)
            {
                throw new IOException("closed inside the response head: " + head);
            }

            head.Append((char)one[0]);
        }

        return head.ToString();
    }

    private sealed class RecordingAccessLog : IAccessLog
    {
        public ConcurrentQueue<AccessLogEntry> Entries { get; } = new();

        public bool IsEnabled => true;

        public void Write(in AccessLogEntry entry) => Entries.Enqueue(entry);
    }

    /// <summary>
    /// A raw origin: reads request heads (and, with <c>readBody</c>, a Content-Length body); answers an Upgrade request
    /// (or every request, with <c>always</c>) with a 101 naming <c>switchTo</c> (null: no switch; "" : a 101 without
    /// Upgrade) and then echoes bytes; anything else gets <c>200 "conn N req M"</c> and keeps the connection.
    /// </summary>
    private sealed class UpgradeOrigin : IAsyncDisposable
    {
        private readonly RawOrigin _origin;
        private int _connections;

        public UpgradeOrigin(string? switchTo, string extraHeaders = "", bool always = false, bool readBody = false)
        {
            _origin = new RawOrigin(async socket =>
            {
                var number = Interlocked.Increment(ref _connections);
                var stream = new NetworkStream(socket);
                for (var request = 1; ; request++)
                {
                    string head;
                    try
                    {
                        head = await ReadRequestHeadAsync(stream);
                    }
                    catch (IOException)
                    {
                        return;
                    }

                    Heads.Enqueue(head);
                    if (readBody && head.Contains("Content-Length: ", StringComparison.Ordinal))
                    {
                        var length = int.Parse(head.Split("Content-Length: ")[1].Split("\r\n")[0], System.Globalization.CultureInfo.InvariantCulture);
                        var body = new byte[length];
                        await stream.ReadExactlyAsync(body);
                        Bodies.Enqueue(Encoding.ASCII.GetString(body));
                    }

                    if (switchTo is not null && (always || head.Contains("\r\nUpgrade:", StringComparison.OrdinalIgnoreCase)))
                    {
                        var upgrade = switchTo.Length == 0 ? "" : $"Upgrade: {switchTo}\r\n";
                        await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n{upgrade}{extraHeaders}\r\n"));
                        await stream.CopyToAsync(stream); // echo until the proxy's FIN
                        socket.Shutdown(SocketShutdown.Send);
                        return;
                    }

                    var text = $"conn {number} req {request}";
                    var offer = switchTo is null ? "Upgrade: websocket\r\n" : ""; // an origin may advertise; hop-by-hop
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\n{offer}Content-Length: {text.Length}\r\n\r\n{text}"));
                }
            });
        }

        public int Port => _origin.Port;

        public int Accepted => _origin.Accepted;

        public ConcurrentQueue<string> Heads { get; } = new();

        public ConcurrentQueue<string> Bodies { get; } = new();

        private static async Task<string> ReadRequestHeadAsync(Stream stream)
        {
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                if (await stream.ReadAsync(one) == 0)
                {
                    throw new IOException("closed");
                }

                head.Append((char)one[0]);
            }

            return head.ToString();
        }

        public ValueTask DisposeAsync() => _origin.DisposeAsync();
    }
}
