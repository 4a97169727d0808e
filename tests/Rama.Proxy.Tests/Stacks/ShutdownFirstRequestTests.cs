using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Socks5;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Stacks;

/// <summary>
/// A connection the node accepted before its drain began, whose first bytes arrive after it: the client saw no sign of the
/// drain, so its request is served (with <c>Connection: close</c>), not closed unanswered. A rolled fleet node lost one
/// curl request in ~700 this way ("Empty reply from server"): the HTTP+SOCKS5 port's protocol peek gave up at once on
/// the shutdown. A connection that stays silent is still closed within <see cref="GracefulShutdown.FirstRequestGrace"/>,
/// not held for the whole first-bytes timeout.
/// </summary>
public sealed class ShutdownFirstRequestTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    // Long enough that only the shutdown's grace can close a silent connection within the tests' bounds.
    private static readonly TimeSpan LongFirstBytesTimeout = TimeSpan.FromSeconds(30);

    private static ForwardProxyOptions Options => new()
    {
        FirstBytesTimeout = LongFirstBytesTimeout,
        Http = new HttpProxyOptions { Limits = new HttpLimits { HeaderTimeout = LongFirstBytesTimeout } },
        Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
    };

    [Fact]
    public async Task An_http_request_sent_on_a_connection_accepted_before_the_drain_is_answered_with_connection_close()
    {
        await using var origin = TinyHttpOrigin.Start("served after the drain began");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));
        using var socket = await AcceptedBeforeTheDrainAsync(proxy);
        using var cts = new CancellationTokenSource(Bound);

        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET http://127.0.0.1:{origin.Port}/ HTTP/1.1\r\nHost: 127.0.0.1:{origin.Port}\r\n\r\n"), cts.Token);
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", answer, StringComparison.OrdinalIgnoreCase);
        Assert.EndsWith("served after the drain began", answer, StringComparison.Ordinal);
        Assert.True(await proxy.Server.DrainAsync(Bound));
    }

    [Fact]
    public async Task A_socks5_handshake_sent_on_a_connection_accepted_before_the_drain_is_served()
    {
        await using var origin = TinyHttpOrigin.Start("socks5 after the drain began");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));
        using var socket = await AcceptedBeforeTheDrainAsync(proxy);
        using var cts = new CancellationTokenSource(Bound);

        await socket.SendAsync(new byte[] { 0x05, 0x01, 0x00 }, cts.Token); // version 5, one method: no authentication
        Assert.Equal(new byte[] { 0x05, 0x00 }, await Sockets.ReceiveExactlyAsync(socket, 2));
        var port = (ushort)origin.Port;
        await socket.SendAsync(new byte[] { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, (byte)(port >> 8), (byte)port }, cts.Token); // CONNECT IPv4
        var reply = await Sockets.ReceiveExactlyAsync(socket, 10);
        Assert.Equal(0x00, reply[1]); // succeeded
        await socket.SendAsync("GET / HTTP/1.1\r\nHost: origin\r\n\r\n"u8.ToArray(), cts.Token);
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.EndsWith("socks5 after the drain began", answer, StringComparison.Ordinal);
        socket.Shutdown(SocketShutdown.Send); // a tunnel ends when both sides have ended
        Assert.True(await proxy.Server.DrainAsync(Bound));
    }

    [Fact]
    public async Task A_connection_silent_when_the_drain_begins_is_closed_after_the_grace_not_the_first_bytes_timeout()
    {
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));
        using var socket = await AcceptedBeforeTheDrainAsync(proxy);
        var clock = Stopwatch.StartNew();

        Assert.True(await proxy.Server.DrainAsync(LongFirstBytesTimeout / 3), $"still open after {clock.Elapsed}");
        Assert.True(clock.Elapsed < LongFirstBytesTimeout / 3);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket)); // closed without an answer: nothing was asked
    }

    [Fact]
    public async Task A_first_head_that_starts_after_the_drain_and_never_ends_gets_408_at_the_grace_not_the_header_timeout()
    {
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));
        using var socket = await AcceptedBeforeTheDrainAsync(proxy);
        using var cts = new CancellationTokenSource(LongFirstBytesTimeout / 3);
        var clock = Stopwatch.StartNew();

        await socket.SendAsync("GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"u8.ToArray(), cts.Token); // the head's end never comes
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 408 ", answer, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < LongFirstBytesTimeout / 3, $"answered after {clock.Elapsed}");
        Assert.True(await proxy.Server.DrainAsync(Bound));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task A_reverse_proxy_request_sent_on_a_connection_accepted_before_the_drain_is_answered(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin(_ => TestOrigin.Response(200, "reverse after the drain began"));
        await using var proxy = LoggedReverseProxy.Start(origin.Port, new HttpLimits { HeaderTimeout = LongFirstBytesTimeout }, transport: transport);
        using var socket = await AcceptedBeforeTheDrainAsync(proxy.Harness);
        using var cts = new CancellationTokenSource(Bound);

        await socket.SendAsync("GET /late HTTP/1.1\r\nHost: app\r\n\r\n"u8.ToArray(), cts.Token);
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", answer, StringComparison.OrdinalIgnoreCase);
        Assert.EndsWith("reverse after the drain began", answer, StringComparison.Ordinal);
        Assert.True(await proxy.Harness.Server.DrainAsync(Bound));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task A_reverse_proxy_connection_silent_when_the_drain_begins_is_closed_after_the_grace(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port, new HttpLimits { HeaderTimeout = LongFirstBytesTimeout }, transport: transport);
        using var socket = await AcceptedBeforeTheDrainAsync(proxy.Harness);
        var clock = Stopwatch.StartNew();

        Assert.True(await proxy.Harness.Server.DrainAsync(LongFirstBytesTimeout / 3), $"still open after {clock.Elapsed}");
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        Assert.Empty(origin.Requests);
    }

    /// <summary>A client connection the server has accepted (it counts as open), then the server unbinds: the drain begins.</summary>
    private static async Task<Socket> AcceptedBeforeTheDrainAsync(ProxyHarness proxy)
    {
        var socket = await proxy.ConnectAsync();
        await Eventually.TrueAsync(() => proxy.Server.OpenConnections == 1, Bound, "the server never accepted the connection");
        await proxy.Server.UnbindAsync();
        return socket;
    }
}
