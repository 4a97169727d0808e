using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;
using Rama.Testing;

namespace Rama.Proxy.Tests.Limits;

/// <summary>
/// A listener's connection limits (<see cref="TcpServerOptions.MaxConnections"/>, <see cref="TcpServerOptions.MaxConnectionsPerIp"/>)
/// on real sockets: past them each protocol gets its own refusal (curl for HTTP and TLS, raw sockets for SOCKS5), the
/// refusal is bounded, and a freed slot serves the next client. The refusal runs before the transport starts, so the
/// reverse proxy is checked on both transports.
/// </summary>
public sealed class ConnectionLimitTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static async Task<(TcpServer Server, IService<ConnectionContext, Unit> Stack)> ForwardAsync(TcpServerOptions options, ForwardProxyExtras? extras = null)
    {
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None, extras: extras);
        var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0), options with { Name = "edge" });
        server.Start(stack);
        await Task.CompletedTask;
        return (server, stack);
    }

    private static async Task<Socket> HoldAsync(TcpServer server, IPAddress? from = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        if (from is not null)
        {
            socket.Bind(new IPEndPoint(from, 0));
        }

        await socket.ConnectAsync(server.LocalEndPoint);
        await Eventually.TrueAsync(() => server.AcceptedConnections >= 1, Bound);
        return socket;
    }

    [Fact]
    public async Task Http_client_past_the_listener_limit_gets_503_with_retry_after_and_the_reason()
    {
        await using var origin = new TestOrigin();
        var (server, stack) = await ForwardAsync(new TcpServerOptions { MaxConnections = 1 });
        await using var _ = server;
        await using var __ = (IAsyncDisposable)stack;
        using var held = await HoldAsync(server);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);

        var (code, stdout, stderr) = await Curl.RunAsync("-sS", "-i", "-x", $"http://{server.LocalEndPoint}", origin.Url("/hello"));

        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 503 Service Unavailable\r\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\r\nRetry-After: 1\r\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\nService Unavailable: listener 'edge' is at its limit of 1 connections\n", stdout, StringComparison.Ordinal);
        Assert.Empty(origin.Requests);
        Assert.Equal(1, server.RefusedConnections);

        // The slot comes free when the held connection goes: the next client is served.
        held.Dispose();
        await Eventually.TrueAsync(() => server.OpenConnections == 0, Bound);
        (code, stdout, stderr) = await Curl.RunAsync("-sS", "-x", $"http://{server.LocalEndPoint}", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
    }

    [Theory]
    [InlineData(new byte[] { 0x05, 0x01, 0x00 }, 0x00)]
    [InlineData(new byte[] { 0x05, 0x01, 0x02 }, 0x02)]
    public async Task Socks5_client_past_the_limit_gets_its_method_then_reply_1(byte[] greeting, byte method)
    {
        var (server, stack) = await ForwardAsync(new TcpServerOptions { MaxConnections = 1 });
        await using var _ = server;
        await using var __ = (IAsyncDisposable)stack;
        using var held = await HoldAsync(server);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);
        using var cts = new CancellationTokenSource(Bound);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(server.LocalEndPoint, cts.Token);

        await client.SendAsync(greeting, SocketFlags.None, cts.Token);
        Assert.Equal(new byte[] { 0x05, method }, await ReadExactlyAsync(client, 2, cts.Token));
        if (method == 0x02)
        {
            // RFC 1929: VER ULEN UNAME PLEN PASSWD, answered without a check (nothing is served).
            await client.SendAsync(new byte[] { 0x01, 4, (byte)'j', (byte)'o', (byte)'h', (byte)'n', 2, (byte)'p', (byte)'w' }, SocketFlags.None, cts.Token);
            Assert.Equal(new byte[] { 0x01, 0x00 }, await ReadExactlyAsync(client, 2, cts.Token));
        }

        // CONNECT example.com:80 by name (ATYP 3), sent in two writes.
        await client.SendAsync(new byte[] { 0x05, 0x01, 0x00, 0x03, 11 }, SocketFlags.None, cts.Token);
        await client.SendAsync(Encoding.ASCII.GetBytes("example.com").Concat(new byte[] { 0, 80 }).ToArray(), SocketFlags.None, cts.Token);
        var reply = await ReadExactlyAsync(client, 10, cts.Token);
        Assert.Equal(0x05, reply[0]);
        Assert.Equal(0x01, reply[1]); // general SOCKS server failure
        Assert.Equal(0, await client.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token)); // then closed
    }

    [Fact]
    public async Task Socks5_through_curl_past_the_limit_fails_with_reply_1()
    {
        await using var origin = new TestOrigin();
        var (server, stack) = await ForwardAsync(new TcpServerOptions { MaxConnections = 1 });
        await using var _ = server;
        await using var __ = (IAsyncDisposable)stack;
        using var held = await HoldAsync(server);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);

        var (code, _, stderr) = await Curl.RunAsync("-sS", "--socks5", server.LocalEndPoint.ToString(), origin.Url("/hello"));

        Assert.Equal(97, code); // CURLE_PROXY
        Assert.Contains("(1)", stderr, StringComparison.Ordinal);
        Assert.Empty(origin.Requests);
    }

    [Fact]
    public async Task Tls_client_past_the_limit_gets_an_internal_error_alert()
    {
        using var pki = new TestPki();
        var leaf = pki.Issue("localhost", false, "localhost", "127.0.0.1");
        var (server, stack) = await ForwardAsync(new TcpServerOptions { MaxConnections = 1 },
            new ForwardProxyExtras { Https = new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(leaf.Cert, leaf.Key) } });
        await using var _ = server;
        await using var __ = (IAsyncDisposable)stack;
        using var held = await HoldAsync(server);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);

        var (code, _, stderr) = await Curl.RunAsync("-sS", "-k", $"https://127.0.0.1:{server.LocalEndPoint.Port}/");

        Assert.Equal(35, code); // CURLE_SSL_CONNECT_ERROR
        Assert.Contains("alert internal error", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Per_ip_limit_refuses_the_second_connection_of_one_address_and_serves_another_address()
    {
        await using var origin = new TestOrigin();
        var (server, stack) = await ForwardAsync(new TcpServerOptions { MaxConnectionsPerIp = 1 });
        await using var _ = server;
        await using var __ = (IAsyncDisposable)stack;
        using var held = await HoldAsync(server, IPAddress.Loopback);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);

        var (code, stdout, stderr) = await Curl.RunAsync("-sS", "-i", "--interface", "127.0.0.1", "-x", $"http://{server.LocalEndPoint}", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 503 Service Unavailable\r\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\r\nRetry-After: 1\r\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("Service Unavailable: client 127.0.0.1 is at its limit of 1 connections on listener 'edge'\n", stdout, StringComparison.Ordinal);

        (code, stdout, stderr) = await Curl.RunAsync("-sS", "--interface", "127.0.0.2", "-x", $"http://{server.LocalEndPoint}", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
    }

    [Fact]
    public async Task Refusals_in_flight_are_bounded_and_the_rest_are_closed_at_once()
    {
        var (server, stack) = await ForwardAsync(new TcpServerOptions { MaxConnections = 1, MaxPendingRefusals = 2, RefusalTimeout = TimeSpan.FromSeconds(30) });
        await using var _ = server;
        await using var __ = (IAsyncDisposable)stack;
        using var held = await HoldAsync(server);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);
        using var cts = new CancellationTokenSource(Bound);

        // Five silent clients past the limit: two wait for their answer (they said nothing yet), three are closed at once.
        var silent = new List<Socket>();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                silent.Add(s);
                await s.ConnectAsync(server.LocalEndPoint, cts.Token);
            }

            await Eventually.TrueAsync(() => server.RefusedConnections == 5, Bound);
            var closed = 0;
            foreach (var s in silent)
            {
                s.ReceiveTimeout = 500;
                try
                {
                    closed += s.Receive(new byte[1]) == 0 ? 1 : 0;
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
                {
                    // still waiting for its first byte: one of the bounded refusals
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
                {
                    closed++;
                }
            }

            Assert.Equal(3, closed);

            // The two waiting ones still get their answer when they speak.
            var answered = 0;
            foreach (var s in silent.Where(s => s.Connected))
            {
                try
                {
                    await s.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), SocketFlags.None, cts.Token);
                    var text = await ProxyHarness.ReadToCloseAsync(s, cts.Token);
                    answered += text.StartsWith("HTTP/1.1 503 ", StringComparison.Ordinal) ? 1 : 0;
                }
                catch (SocketException)
                {
                }
            }

            Assert.Equal(2, answered);
        }
        finally
        {
            foreach (var s in silent)
            {
                s.Dispose();
            }
        }
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Reverse_listener_past_the_limit_answers_503_on_either_transport(ReverseProxyTransport transport)
    {
        if (transport == ReverseProxyTransport.Epoll && !Rama.Proxy.Net.Epoll.EpollNative.IsSupported)
        {
            return; // the epoll transport exists on Linux x86-64 only
        }

        await using var origin = new TestOrigin();
        var stack = ReverseProxyStack.Create(new ForwardProxyOptions { ReverseTransport = transport }, new HostPort("127.0.0.1", origin.Port));
        await using var ___ = (IAsyncDisposable)stack;
        var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0), new TcpServerOptions { Name = "site", MaxConnections = 2 });
        server.Start(stack);
        await using var _ = server;
        Assert.Equal(transport == ReverseProxyTransport.Epoll ? ConnectionTransport.EventLoop : ConnectionTransport.Pipes, server.Transport);
        using var first = await HoldAsync(server);
        using var second = await HoldAsync(server);
        await Eventually.TrueAsync(() => server.OpenConnections == 2, Bound);

        var (code, stdout, stderr) = await Curl.RunAsync("-sS", "-i", $"http://{server.LocalEndPoint}/hello");

        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 503 Service Unavailable\r\n", stdout, StringComparison.Ordinal);
        Assert.Contains("\r\nRetry-After: 1\r\n", stdout, StringComparison.Ordinal);
        Assert.EndsWith("Service Unavailable: listener 'site' is at its limit of 2 connections\n", stdout, StringComparison.Ordinal);
        first.Dispose();
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);
        (code, stdout, stderr) = await Curl.RunAsync("-sS", $"http://{server.LocalEndPoint}/hello");
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
    }

    private static async Task<byte[]> ReadExactlyAsync(Socket socket, int count, CancellationToken token)
    {
        var buffer = new byte[count];
        var have = 0;
        while (have < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(have), SocketFlags.None, token);
            if (n == 0)
            {
                throw new IOException($"closed after {have} of {count} bytes");
            }

            have += n;
        }

        return buffer;
    }
}
