using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http;

/// <summary>
/// Clients speaking HTTP/2 to a reverse listener (issue 14): h2c with prior knowledge on the HTTP/1.1 port, on both
/// transports (the epoll transport hands such a connection to the pipes), requests forwarded to an HTTP/1.1 origin;
/// HTTP/1.1 upgrades on the epoll transport; RFC 8441 WebSockets over h2 to an HTTP/1.1 WebSocket origin.
/// </summary>
public sealed class ReverseHttp2InboundTests
{
    private sealed class RecordingAccessLog : IAccessLog
    {
        public ConcurrentQueue<AccessLogEntry> Entries { get; } = new();

        public bool IsEnabled => true;

        public void Write(in AccessLogEntry entry) => Entries.Enqueue(entry);
    }

    private static ProxyHarness Reverse(int upstreamPort, ReverseProxyTransport transport, IAccessLog? log = null) =>
        new(ReverseProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
            ReverseTransport = transport,
        }, new HostPort("127.0.0.1", upstreamPort), accessLog: log));

    [Theory]
    [InlineData(ReverseProxyTransport.Auto)] // the shorthand's default: epoll on Linux x86-64, which hands h2c to the pipes
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Curl_h2c_prior_knowledge_and_http11_share_the_port_and_reach_the_http11_origin(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin(request => request.RequestLine.Split(' ')[1] switch
        {
            // Connection-specific fields from the origin must never reach an h2 client (RFC 9113 §8.2.2).
            "/conn" => TestOrigin.Response(200, "conn", "Connection: keep-alive, X-Hop", "Keep-Alive: timeout=5", "X-Hop: 1", "X-End: 2"),
            _ => TestOrigin.DefaultHandler(request),
        });
        var log = new RecordingAccessLog();
        await using var proxy = Reverse(origin.Port, transport, log);

        var h2 = await Curl.RunAsync("--http2-prior-knowledge", "-D", "-", "-w", "\nversion=%{http_version}", "-H", "Host: app.example", proxy.Url + "/hello?x=1");
        Assert.True(h2.ExitCode == 0, h2.Stderr);
        Assert.StartsWith("HTTP/2 200", h2.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("hello\nversion=2", h2.Stdout, StringComparison.Ordinal);
        Assert.Contains("via: 1.1 rama", h2.Stdout, StringComparison.Ordinal);
        var seen = Assert.Single(origin.Requests);
        Assert.Equal("GET /hello?x=1 HTTP/1.1", seen.RequestLine); // :path -> the origin-form target
        Assert.Equal("app.example", seen.Header("Host"));           // :authority -> Host (curl sends Host as :authority)

        var conn = await Curl.RunAsync("--http2-prior-knowledge", "-D", "-", proxy.Url + "/conn");
        Assert.True(conn.ExitCode == 0, conn.Stderr);
        Assert.StartsWith("HTTP/2 200", conn.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("connection:", conn.Stdout, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("keep-alive", conn.Stdout, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("x-hop", conn.Stdout, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("x-end: 2", conn.Stdout, StringComparison.Ordinal);

        // A body without content-length (h2 DATA frames) goes to the origin chunked, intact.
        var upload = await Curl.RunAsync("--http2-prior-knowledge", "-H", "Content-Length:", "--data-binary", "abc", proxy.Url + "/hash");
        Assert.True(upload.ExitCode == 0, upload.Stderr);
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData("abc"u8)), upload.Stdout);

        var h1 = await Curl.RunAsync("-D", "-", "-w", "\nversion=%{http_version}", proxy.Url + "/hello");
        Assert.True(h1.ExitCode == 0, h1.Stderr);
        Assert.StartsWith("HTTP/1.1 200", h1.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("hello\nversion=1.1", h1.Stdout, StringComparison.Ordinal);

        await proxy.AssertNoOpenConnectionsAsync();
        var entries = log.Entries.ToArray();
        var first = Assert.Single(entries, e => e.Target == "/hello?x=1");
        Assert.Equal("HTTP/2", first.Protocol);
        Assert.Equal(AccessKind.Reverse, first.Kind);
        Assert.Equal(200, first.Status);
        Assert.Equal(5, first.BytesToClient);
        Assert.NotNull(first.Http2Fingerprint);
        Assert.Matches(@"^[0-9:;]+\|\d+\|[0-9:,]+\|[masp,]+$", first.Http2Fingerprint); // curl's Akamai fingerprint
        Assert.Null(Assert.Single(entries, e => e.Target == "/hello").Protocol); // the HTTP/1.1 line is as before
    }

    [Fact]
    public async Task A_routed_reverse_listener_routes_h2c_requests_by_authority_and_path_like_http11_ones()
    {
        await using var shop = new TestOrigin(_ => TestOrigin.Response(200, "shop"));
        await using var api = new TestOrigin(_ => TestOrigin.Response(200, "api"));
        var routing = new Rama.Proxy.Http.Routing.ReverseRoutingOptions
        {
            Clusters =
            [
                new Rama.Proxy.Http.Routing.ClusterOptions { ClusterId = "shop", Destinations = [new Rama.Proxy.Http.Routing.DestinationOptions { DestinationId = "s", Address = shop.Url("") }] },
                new Rama.Proxy.Http.Routing.ClusterOptions { ClusterId = "api", Destinations = [new Rama.Proxy.Http.Routing.DestinationOptions { DestinationId = "a", Address = api.Url("") }] },
            ],
            Routes =
            [
                new Rama.Proxy.Http.Routing.RouteOptions { RouteId = "api", ClusterId = "api", Match = new Rama.Proxy.Http.Routing.RouteMatchOptions { Hosts = ["app.example"], Path = "/api/{**rest}" } },
                new Rama.Proxy.Http.Routing.RouteOptions { RouteId = "shop", ClusterId = "shop", Match = new Rama.Proxy.Http.Routing.RouteMatchOptions { Hosts = ["app.example"] } },
            ],
        };
        await using var proxy = new ProxyHarness(ReverseProxyStack.Create(new ForwardProxyOptions { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } },
            routing, out _));

        // :authority from the URL (curl sends no Host over h2): the route's host match sees it as Host.
        var apiAnswer = await Curl.RunAsync("--http2-prior-knowledge", "--connect-to", $"app.example:80:127.0.0.1:{proxy.Port}", "http://app.example/api/items");
        var shopAnswer = await Curl.RunAsync("--http2-prior-knowledge", "--connect-to", $"app.example:80:127.0.0.1:{proxy.Port}", "http://app.example/cart");
        var unknown = await Curl.RunAsync("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}", "--connect-to", $"other.example:80:127.0.0.1:{proxy.Port}", "http://other.example/");

        Assert.True(apiAnswer.ExitCode == 0, apiAnswer.Stderr);
        Assert.Equal("api", apiAnswer.Stdout);
        Assert.Equal("shop", shopAnswer.Stdout);
        Assert.Equal("404", unknown.Stdout);
        Assert.Equal("GET /api/items HTTP/1.1", Assert.Single(api.Requests).RequestLine);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Auto)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Many_concurrent_h2_streams_from_h2load_are_all_answered(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = Reverse(origin.Port, transport);
        var result = await Rama.Testing.Cli.RunAsync("h2load", ["-n", "400", "-c", "4", "-m", "20", proxy.Url + "/hello"], TimeSpan.FromSeconds(60));
        Assert.True(result.ExitCode == 0, result.Stderr + result.Text);
        Assert.Contains("400 succeeded, 0 failed, 0 errored", result.Text, StringComparison.Ordinal);
        Assert.Contains("status codes: 400 2xx", result.Text, StringComparison.Ordinal);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Auto)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task A_preface_cut_short_is_answered_408_at_the_header_timeout_and_a_wrong_one_as_a_bad_http11_request(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ReverseProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
            ReverseTransport = transport,
            Http = new HttpProxyOptions { Limits = new HttpLimits { HeaderTimeout = TimeSpan.FromSeconds(1) } },
        }, new HostPort("127.0.0.1", origin.Port)));

        // Slowloris on the preface: 16 of its 24 octets, then silence. The wait for the rest is the header timeout's.
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(IPAddress.Loopback, proxy.Port);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync(Http2Preface.Bytes[..16].ToArray());
            var answer = await ReadSomeAsync(stream, "\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 408", answer, StringComparison.Ordinal);
        }

        // Not the preface (a wrong second line): an HTTP/1.1 request line "PRI * HTTP/2.0", rejected as HTTP/1.1; no h2.
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(IPAddress.Loopback, proxy.Port);
            await using var stream = new NetworkStream(socket, ownsSocket: false);
            await stream.WriteAsync("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"u8.ToArray());
            var answer = await ReadSomeAsync(stream, "\r\n\r\n");
            Assert.Matches(@"^HTTP/1\.1 (400|505) ", answer);
        }

        Assert.Empty(origin.Requests);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task The_epoll_transport_after_an_http11_request_parses_a_preface_as_http11_and_rejects_it()
    {
        // RFC 9113 §3.3: prior knowledge starts a connection; mid-connection "PRI *" is a bad HTTP/1.1 request.
        await using var origin = new TestOrigin();
        await using var proxy = Reverse(origin.Port, ReverseProxyTransport.Auto);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, proxy.Port);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray());
        var first = await ReadSomeAsync(stream, "hello");
        Assert.StartsWith("HTTP/1.1 200", first, StringComparison.Ordinal);
        await stream.WriteAsync(Http2Preface.Bytes.ToArray());
        var second = await ReadSomeAsync(stream, "\r\n\r\n");
        Assert.Matches(@"^HTTP/1\.1 (400|505)", second);
    }

    [Fact]
    public async Task Python_websocket_client_through_the_default_epoll_reverse_transport_is_upgraded_and_relayed()
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        var log = new RecordingAccessLog();
        await using var proxy = Reverse(origin.Port, ReverseProxyTransport.Auto, log);

        var result = await WebSocketPeers.RunClientAsync($"ws://127.0.0.1:{proxy.Port}/ws/epoll");

        Assert.True(result.ExitCode == 0, result.Stderr + result.Text);
        Assert.Contains("OK handshake 1.1 rama", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK binary 1MiB", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK 1000 messages", result.Text, StringComparison.Ordinal);
        Assert.Contains("OK close 1000 bye", result.Text, StringComparison.Ordinal);
        Assert.Equal("CLOSED 1000 bye", await origin.WaitForLineAsync("CLOSED"));
        await proxy.AssertNoOpenConnectionsAsync();
        var entry = Assert.Single(log.Entries, e => e.Status == 101);
        Assert.Equal(AccessKind.Reverse, entry.Kind);
        Assert.InRange(entry.BytesToClient, 1024 * 1024, 1024 * 1024 + 100_000);
    }

    [Fact]
    public async Task Epoll_transport_serves_plain_requests_then_an_upgrade_on_the_same_connection()
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        await using var proxy = Reverse(origin.Port, ReverseProxyTransport.Auto);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, proxy.Port);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync("GET /page HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray());
        var page = await ReadSomeAsync(stream, "</html>");
        Assert.StartsWith("HTTP/1.1 200", page, StringComparison.Ordinal);
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            "GET /ws/again HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
        var head = await WebSocketPeers.ReadHeadAsync(stream, new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        Assert.Contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head, StringComparison.Ordinal);
        using var ws = System.Net.WebSockets.WebSocket.CreateFromStream(stream, new System.Net.WebSockets.WebSocketCreationOptions { KeepAliveInterval = TimeSpan.Zero });
        await ws.SendAsync("ping over epoll"u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, default);
        var buffer = new byte[64];
        var got = await ws.ReceiveAsync(buffer, new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        Assert.Equal("ping over epoll", Encoding.ASCII.GetString(buffer, 0, got.Count));
        await ws.CloseAsync(System.Net.WebSockets.WebSocketCloseStatus.NormalClosure, "bye", new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        socket.Shutdown(SocketShutdown.Send); // the client ends the TCP connection after the close handshake (RFC 6455 §7.1.1)
        Assert.Equal("CLOSED 1000 bye", await origin.WaitForLineAsync("CLOSED"));
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Auto)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Rfc8441_websocket_over_h2_reaches_the_http11_websocket_origin_and_echoes_a_frame(ReverseProxyTransport transport)
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        var log = new RecordingAccessLog();
        await using var proxy = Reverse(origin.Port, transport, log);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port));
        await using var connection = new SocketConnection(socket);
        connection.Start();
        await using (var client = Http2ClientConnection.Start(connection))
        {
            var body = new Pipe();
            var request = new HttpRequest(HttpMethods.Connect, "/ws/h2", RequestTargetForm.Origin, HttpProtocolVersion.Http2, new HttpHeaders()) { Body = body.Reader };
            request.Headers.Add("sec-websocket-version", "13");
            request.Extensions.Set(new Http2RequestInfo(0, "http", $"127.0.0.1:{proxy.Port}", "websocket"));
            var result = await client.SendAsync(request).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(result.Response is not null, result.ToString());
            Assert.Equal(200, result.Response.Status); // RFC 8441 §5: the origin's 101 is a 200 on the stream
            Assert.False(result.Response.Headers.Contains("sec-websocket-accept"u8));

            // A masked text frame (RFC 6455 §5.2) in DATA; the origin echoes it unmasked.
            var payload = "hello over h2"u8.ToArray();
            var mask = new byte[] { 1, 2, 3, 4 };
            var frame = new byte[6 + payload.Length];
            frame[0] = 0x81;
            frame[1] = (byte)(0x80 | payload.Length);
            mask.CopyTo(frame, 2);
            for (var i = 0; i < payload.Length; i++)
            {
                frame[6 + i] = (byte)(payload[i] ^ mask[i % 4]);
            }

            await body.Writer.WriteAsync(frame);
            var echoed = new List<byte>();
            while (echoed.Count < 2 + payload.Length)
            {
                var read = await result.Response.Body.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                echoed.AddRange(read.Buffer.ToArray());
                result.Response.Body.AdvanceTo(read.Buffer.End);
                Assert.False(read.IsCompleted && echoed.Count < 2 + payload.Length, "the tunnel ended before the echo");
            }

            Assert.Equal(0x81, echoed[0]);
            Assert.Equal(payload.Length, echoed[1]);
            Assert.Equal("hello over h2", Encoding.ASCII.GetString([.. echoed.Skip(2)]));

            // Close frame 1000 "bye" (masked), the origin answers it and closes.
            var close = new byte[] { 0x88, 0x85, 0, 0, 0, 0, 0x03, 0xE8, (byte)'b', (byte)'y', (byte)'e' };
            await body.Writer.WriteAsync(close);
            await body.Writer.CompleteAsync(); // END_STREAM: the tunnel's client side ends, as a TCP client closes after the close handshake
            Assert.Equal("CLOSED 1000 bye", await origin.WaitForLineAsync("CLOSED"));
        }

        var handshake = await origin.WaitForLineAsync("HANDSHAKE");
        Assert.Contains("\"Upgrade\", \"websocket\"", handshake, StringComparison.Ordinal);
        Assert.Contains("Sec-WebSocket-Key", handshake, StringComparison.Ordinal);
        await proxy.AssertNoOpenConnectionsAsync();
        var entry = Assert.Single(log.Entries, e => e.Method == HttpMethods.Connect);
        Assert.Equal("HTTP/2", entry.Protocol);
        Assert.Equal(200, entry.Status); // what the h2 client saw
        Assert.InRange(entry.BytesFromClient, 6 + 13, 1000);
    }

    private static async Task<string> ReadSomeAsync(NetworkStream stream, string until)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var text = new StringBuilder();
        var buffer = new byte[4096];
        while (!text.ToString().Contains(until, StringComparison.Ordinal))
        {
            var n = await stream.ReadAsync(buffer, timeout.Token);
            if (n == 0)
            {
                break;
            }

            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }

        return text.ToString();
    }
}
