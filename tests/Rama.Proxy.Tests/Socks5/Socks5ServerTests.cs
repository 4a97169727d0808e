using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Socks5;
using Rama.Testing;

namespace Rama.Proxy.Tests.Socks5;

public sealed class Socks5ServerTests : IAsyncLifetime
{
    private TcpServer? _server;

    private int Port => _server!.LocalEndPoint.Port;

    public Task InitializeAsync() => Task.CompletedTask;

    private void Start(IProxyAuthenticator? auth = null, Socks5ServerOptions? options = null, TcpConnectorOptions? connector = null)
    {
        _server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _server.Start(Socks5Server.Create(options ?? new Socks5ServerOptions(), new TcpConnector(options: connector), auth ?? StaticProxyAuthenticator.None));
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            // Every test leaves no connection behind.
            await Eventually.TrueAsync(() => _server.OpenConnections == 0, TimeSpan.FromSeconds(5), "connections still open after the test");
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Curl_socks5_reaches_an_ipv4_origin()
    {
        Start();
        var requests = new ConcurrentQueue<string>();
        await using var origin = TinyHttpOrigin.Start("hello over socks5", requests);
        var result = await Cli.CurlAsync("--socks5", $"127.0.0.1:{Port}", $"http://127.0.0.1:{origin.Port}/a");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("hello over socks5", result.Text);
        Assert.StartsWith("GET /a HTTP/1.1", requests.Single(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Curl_socks5_hostname_sends_the_name_and_the_proxy_resolves_it()
    {
        Start();
        await using var origin = TinyHttpOrigin.Start("resolved by the proxy");
        var result = await Cli.CurlAsync("--socks5-hostname", $"127.0.0.1:{Port}", $"http://localhost:{origin.Port}/");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("resolved by the proxy", result.Text);
    }

    [Fact]
    public async Task Ipv6_targets_are_served()
    {
        Start();
        var listener = new TcpListener(IPAddress.IPv6Loopback, 0);
        listener.Start();
        try
        {
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            var accept = listener.AcceptSocketAsync();
            var result = Cli.CurlAsync("-g", "--socks5", $"127.0.0.1:{Port}", $"http://[::1]:{port}/v6");
            using (var socket = await accept.WaitAsync(TimeSpan.FromSeconds(10)))
            {
                var head = await TinyHttpOrigin.ReadHeadAsync(socket);
                Assert.StartsWith("GET /v6 ", head, StringComparison.Ordinal);
                await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv6"u8.ToArray());
                socket.Shutdown(SocketShutdown.Send);
            }

            var done = await result;
            Assert.Equal(0, done.ExitCode);
            Assert.Equal("v6", done.Text);
        }
        finally
        {
            listener.Stop();
        }
    }

    [Fact]
    public async Task Curl_with_the_right_credentials_gets_through()
    {
        Start(new StaticProxyAuthenticator([new("john", "s3cret")]));
        await using var origin = TinyHttpOrigin.Start("authenticated");
        var result = await Cli.CurlAsync("--socks5", $"john:s3cret@127.0.0.1:{Port}", $"http://127.0.0.1:{origin.Port}/");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("authenticated", result.Text);
    }

    [Theory]
    [InlineData("john:wrong@")]
    [InlineData("mallory:s3cret@")]
    [InlineData("")]
    public async Task Wrong_or_missing_credentials_fail_and_the_target_is_never_contacted(string credentials)
    {
        Start(new StaticProxyAuthenticator([new("john", "s3cret")]));
        await using var origin = TinyHttpOrigin.Start("must not be reached");
        var result = await Cli.CurlAsync("--socks5", $"{credentials}127.0.0.1:{Port}", $"http://127.0.0.1:{origin.Port}/");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Equal(0, origin.Accepted);
    }

    [Fact]
    public async Task Rfc1929_failure_status_is_sent_before_closing()
    {
        Start(new StaticProxyAuthenticator([new("john", "s3cret")]));
        using var client = await ConnectAsync();
        await client.SendAsync(new byte[] { 5, 1, 2 });
        Assert.Equal(new byte[] { 5, 2 }, await Sockets.ReceiveExactlyAsync(client, 2));
        await client.SendAsync(new byte[] { 1, 4, (byte)'j', (byte)'o', (byte)'h', (byte)'n', 1, (byte)'x' });
        Assert.Equal(new byte[] { 1, 1 }, await Sockets.ReceiveExactlyAsync(client, 2));
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task No_acceptable_method_when_auth_is_required_and_client_offers_only_none()
    {
        Start(new StaticProxyAuthenticator([new("john", "s3cret")]));
        using var client = await ConnectAsync();
        await client.SendAsync(new byte[] { 5, 1, 0 });
        Assert.Equal(new byte[] { 5, 0xFF }, await Sockets.ReceiveExactlyAsync(client, 2));
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task Wrong_version_byte_closes_the_connection_without_a_reply()
    {
        Start();
        using var client = await ConnectAsync();
        await client.SendAsync(new byte[] { 4, 1, 0, 80, 127, 0, 0, 1, 0 });
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task Connect_to_a_refused_port_replies_0x05()
    {
        Start();
        var refused = Ports.Refused();
        using var client = await HandshakeAsync();
        await client.SendAsync(new byte[] { 5, 1, 0, 1, 127, 0, 0, 1, (byte)(refused >> 8), (byte)refused });
        var reply = await Sockets.ReceiveExactlyAsync(client, 10);
        Assert.Equal(5, reply[0]);
        Assert.Equal((byte)Socks5Reply.ConnectionRefused, reply[1]);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task Name_that_does_not_resolve_replies_host_unreachable()
    {
        Start();
        using var client = await HandshakeAsync();
        var name = "nosuch.invalid"u8.ToArray();
        await client.SendAsync(new byte[] { 5, 1, 0, 3, (byte)name.Length }.Concat(name).Concat(new byte[] { 0, 80 }).ToArray());
        var reply = await Sockets.ReceiveExactlyAsync(client, 10);
        Assert.Equal((byte)Socks5Reply.HostUnreachable, reply[1]);
    }

    [Theory]
    [InlineData(2, Socks5Reply.CommandNotSupported)]
    [InlineData(3, Socks5Reply.CommandNotSupported)]
    public async Task Bind_and_udp_associate_are_answered_not_supported(byte command, Socks5Reply expected)
    {
        Start();
        using var client = await HandshakeAsync();
        await client.SendAsync(new byte[] { 5, command, 0, 1, 127, 0, 0, 1, 0, 80 });
        var reply = await Sockets.ReceiveExactlyAsync(client, 10);
        Assert.Equal((byte)expected, reply[1]);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task Unknown_address_type_replies_0x08()
    {
        Start();
        using var client = await HandshakeAsync();
        await client.SendAsync(new byte[] { 5, 1, 0, 7, 1, 2, 3, 4, 0, 80 });
        var reply = await Sockets.ReceiveExactlyAsync(client, 10);
        Assert.Equal((byte)Socks5Reply.AddressTypeNotSupported, reply[1]);
    }

    [Fact]
    public async Task A_client_that_stalls_mid_handshake_is_closed_after_the_handshake_timeout()
    {
        Start(options: new Socks5ServerOptions { HandshakeTimeout = TimeSpan.FromMilliseconds(500) });
        using var client = await ConnectAsync();
        await client.SendAsync(new byte[] { 5, 1 }); // announces one method, never sends it
        var started = DateTime.UtcNow;
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Bytes_sent_with_the_request_reach_the_target_and_the_tunnel_half_closes()
    {
        Start();
        await using var origin = RawOrigin.Echo();
        using var client = await HandshakeAsync();
        // The request and the first payload bytes in one write: nothing may be lost.
        await client.SendAsync(new byte[] { 5, 1, 0, 1, 127, 0, 0, 1, (byte)(origin.Port >> 8), (byte)origin.Port }.Concat("ping"u8.ToArray()).ToArray());
        var reply = await Sockets.ReceiveExactlyAsync(client, 10);
        Assert.Equal(0, reply[1]);
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal("ping"u8.ToArray(), await Sockets.ReceiveExactlyAsync(client, 4));
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port));
        return socket;
    }

    private async Task<Socket> HandshakeAsync()
    {
        var socket = await ConnectAsync();
        await socket.SendAsync(new byte[] { 5, 1, 0 });
        Assert.Equal(new byte[] { 5, 0 }, await Sockets.ReceiveExactlyAsync(socket, 2));
        return socket;
    }
}
