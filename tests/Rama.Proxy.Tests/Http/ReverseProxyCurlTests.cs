using System.Net;
using System.Security.Cryptography;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

/// <summary>The reverse proxy, on each transport, with curl as the real client and a raw-socket origin as its one upstream.</summary>
public class ReverseProxyCurlTests
{
    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Get_is_forwarded_in_origin_form_keeping_the_clients_host_and_adding_via(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ReverseHarness(origin.Port, transport);
        var (code, stdout, stderr) = await Curl.RunAsync("-H", "Host: app.example", proxy.Url("/hello?x=1"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
        var seen = Assert.Single(origin.Requests);
        Assert.Equal("GET /hello?x=1 HTTP/1.1", seen.RequestLine);
        Assert.Equal("app.example", seen.Header("Host"));
        Assert.Equal("1.1 rama", seen.Header("Via"));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Hop_by_hop_fields_are_removed_and_end_to_end_ones_kept(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ReverseHarness(origin.Port, transport);
        var (code, _, stderr) = await Curl.RunAsync("-H", "Connection: X-Secret", "-H", "X-Secret: 1", "-H", "Proxy-Authorization: Basic eDp5",
            "-H", "X-Kept: yes", proxy.Url("/headers"));
        Assert.True(code == 0, stderr);
        var seen = Assert.Single(origin.Requests);
        Assert.Null(seen.Header("X-Secret"));
        Assert.Null(seen.Header("Connection"));
        Assert.Null(seen.Header("Proxy-Authorization"));
        Assert.Equal("yes", seen.Header("X-Kept"));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Responses_get_via_and_no_proxy_authentication_is_asked(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ReverseHarness(origin.Port, transport);
        var (code, stdout, stderr) = await Curl.RunAsync("-i", proxy.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 200", stdout, StringComparison.Ordinal);
        Assert.Contains("Via: 1.1 rama", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("Proxy-Authenticate", stdout, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Keep_alive_reuses_one_upstream_connection(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ReverseHarness(origin.Port, transport);
        var (code, stdout, stderr) = await Curl.RunAsync("-v", proxy.Url("/hello"), proxy.Url("/chunked"), proxy.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello" + "first;second;" + new string('x', 10000) + "hello", stdout);
        Assert.Contains("Re-using existing", stderr, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(3, origin.Requests.Count);
        Assert.Equal(1, origin.Connections);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Post_body_is_streamed_intact(ReverseProxyTransport transport)
    {
        var payload = new byte[3 * 1024 * 1024];
        new Random(7).NextBytes(payload);
        var file = Path.Combine(Path.GetTempPath(), $"rama-reverse-{Guid.NewGuid():N}.bin");
        await File.WriteAllBytesAsync(file, payload);
        try
        {
            await using var origin = new TestOrigin();
            await using var proxy = new ReverseHarness(origin.Port, transport);
            var (code, stdout, stderr) = await Curl.RunAsync("--data-binary", "@" + file, proxy.Url("/hash"));
            Assert.True(code == 0, stderr);
            Assert.Equal(Convert.ToHexString(SHA256.HashData(payload)), stdout);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Connect_is_refused_with_405(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ReverseHarness(origin.Port, transport);
        var answer = await proxy.Harness.SendAndReadToCloseAsync($"CONNECT 127.0.0.1:{origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{origin.Port}\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 405", answer, StringComparison.Ordinal);
        Assert.Empty(origin.Requests);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Upstream_down_answers_502(ReverseProxyTransport transport)
    {
        int closedPort;
        using (var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            closedPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        await using var proxy = new ReverseHarness(closedPort, transport);
        var (code, stdout, stderr) = await Curl.RunAsync("-i", proxy.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 502", stdout, StringComparison.Ordinal);
    }

    /// <summary>A reverse-proxy stack on 127.0.0.1:0, on <paramref name="transport"/>, in front of 127.0.0.1:<paramref name="upstreamPort"/>.</summary>
    private sealed class ReverseHarness : IAsyncDisposable
    {
        private readonly IService<ConnectionContext, Unit> _service;

        public ReverseHarness(int upstreamPort, ReverseProxyTransport transport)
        {
            _service = ReverseProxyStack.Create(new ForwardProxyOptions
            {
                Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
                ReverseTransport = transport,
            }, new HostPort("127.0.0.1", upstreamPort));
            Server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            Server.Start(_service);
            Harness = new RawClient(Server.LocalEndPoint.Port);
        }

        public TcpServer Server { get; }

        public RawClient Harness { get; }

        public string Url(string path) => $"http://127.0.0.1:{Server.LocalEndPoint.Port}{path}";

        public async ValueTask DisposeAsync()
        {
            var deadline = System.Diagnostics.Stopwatch.StartNew();
            while (Server.OpenConnections != 0 && deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(20);
            }

            Assert.Equal(0, Server.OpenConnections);
            // Bounded: a socket left registered with a stuck epoll loop makes Socket.Dispose spin, uncancellably.
            await Task.Run(async () =>
            {
                await Server.DisposeAsync();
                if (_service is IAsyncDisposable disposable)
                {
                    await disposable.DisposeAsync();
                }
            }).WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    private sealed class RawClient(int port)
    {
        public async Task<string> SendAndReadToCloseAsync(string request)
        {
            using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
            await socket.SendAsync(System.Text.Encoding.Latin1.GetBytes(request), cts.Token);
            return await ProxyHarness.ReadToCloseAsync(socket, cts.Token);
        }
    }
}
