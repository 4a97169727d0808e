using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http;

/// <summary>
/// The forwarding rules both reverse-proxy transports share (issue 14, item 0): dialing by the connector's rules, and
/// timeouts on the stack's clock. Every test runs on the epoll transport and on the pipes, with the same assertions.
/// </summary>
public class ForwardingCoreTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Every_resolved_address_is_tried_skipping_disallowed_and_refused_ones(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        // 127.0.0.3 is refused by policy, nothing listens on 127.0.0.2 at the origin's port (refused), 127.0.0.1 is the origin.
        var dns = new DnsResolverOptions
        {
            Overrides = new Dictionary<string, IPAddress[]>(StringComparer.OrdinalIgnoreCase)
            {
                ["app.test"] = [IPAddress.Parse("127.0.0.3"), IPAddress.Parse("127.0.0.2"), IPAddress.Loopback],
            },
        };
        await using var proxy = Start(transport, new HostPort("app.test", origin.Port), dns: dns,
            allow: a => !a.Equals(IPAddress.Parse("127.0.0.3")));

        var answer = await proxy.SendAndReadToCloseAsync("GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.EndsWith("hello", answer, StringComparison.Ordinal);
        Assert.Single(origin.Requests);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Only_disallowed_addresses_answer_403_and_dial_nothing(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port), allow: _ => false);

        var answer = await proxy.SendAndReadToCloseAsync("GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);

        Assert.StartsWith("HTTP/1.1 403 ", answer, StringComparison.Ordinal);
        Assert.Equal(0, origin.Connections);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Header_timeout_fires_when_the_fake_clock_moves_past_it_and_not_before(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        var time = new FakeTimeProvider();
        var limits = new HttpLimits { HeaderTimeout = TimeSpan.FromHours(1), KeepAliveTimeout = TimeSpan.FromHours(1) };
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port), limits: limits, time: time);
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await socket.SendAsync("GET /slow HTTP/1.1\r\nHost: app\r\nX-Slow: "u8.ToArray(), cts.Token);
        var reading = ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        // An hour of header timeout on a clock that does not move: still waiting after the loops ticked a few times.
        await Task.WhenAny(reading, Task.Delay(TimeSpan.FromMilliseconds(400), cts.Token));
        Assert.False(reading.IsCompleted, "answered before the fake clock moved");

        time.Advance(TimeSpan.FromHours(1));
        var answer = await reading;

        socket.Shutdown(SocketShutdown.Send); // ends a lingering close
        Assert.StartsWith("HTTP/1.1 408 ", answer, StringComparison.Ordinal);
        Assert.Empty(origin.Requests);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Idle_keep_alive_connection_closes_when_the_fake_clock_passes_the_keep_alive_timeout(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        var time = new FakeTimeProvider();
        var limits = new HttpLimits { KeepAliveTimeout = TimeSpan.FromMinutes(30) };
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port), limits: limits, time: time);
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await socket.SendAsync("GET /hello HTTP/1.1\r\nHost: app\r\n\r\n"u8.ToArray(), cts.Token);
        var head = await ReadUntilAsync(socket, "hello", cts.Token);
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);

        var closed = ProxyHarness.ReadToCloseAsync(socket, cts.Token);
        await Task.WhenAny(closed, Task.Delay(TimeSpan.FromMilliseconds(400), cts.Token));
        Assert.False(closed.IsCompleted, "closed before the fake clock moved");

        time.Advance(TimeSpan.FromMinutes(30));

        Assert.Equal("", await closed); // FIN, no bytes
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll, ConnectionTransport.EventLoop)]
    [InlineData(ReverseProxyTransport.Sockets, ConnectionTransport.Pipes)]
    public async Task The_transport_chosen_by_the_stack_is_recorded_on_the_listener(ReverseProxyTransport transport, ConnectionTransport recorded)
    {
        await using var origin = new TestOrigin();
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port));

        Assert.Equal(recorded, proxy.Server.Transport);
        var answer = await proxy.SendAndReadToCloseAsync("GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);
        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task A_connection_records_its_transport_and_a_hand_over_or_a_layer_changes_the_record()
    {
        var seen = new List<ConnectionTransport>();
        var service = new RecordingSocketService(async (context, token) =>
        {
            seen.Add(context.TransportKind); // as accepted by an event-loop listener: the raw socket
            context.StartPipes("GET"u8);
            seen.Add(context.TransportKind); // handed over: the pipes, with the bytes read so far first
            var nested = context.CreateNested(context.Transport);
            seen.Add(nested.TransportKind); // a protocol inside the connection (MITM): layered
            var read = await context.Transport.Input.ReadAsync(token);
            var text = Encoding.ASCII.GetString(read.Buffer.FirstSpan);
            context.Transport.Input.AdvanceTo(read.Buffer.End);
            await context.Transport.Output.WriteAsync(Encoding.ASCII.GetBytes(text), token);
        });
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(service);
        Assert.Equal(ConnectionTransport.EventLoop, server.Transport);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(Bound);
        await client.ConnectAsync(server.LocalEndPoint, cts.Token);

        var echoed = await ProxyHarness.ReadToCloseAsync(client, cts.Token);

        Assert.Equal("GET", echoed);
        Assert.Equal([ConnectionTransport.EventLoop, ConnectionTransport.Pipes, ConnectionTransport.Layered], seen);
    }

    private sealed class RecordingSocketService(Func<ConnectionContext, CancellationToken, Task> serve) : ISocketTransportService
    {
        public async ValueTask<Unit> ServeAsync(ConnectionContext request, CancellationToken cancellationToken)
        {
            await serve(request, cancellationToken);
            return Unit.Value;
        }
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Both_transports_apply_the_same_hop_by_hop_and_via_rules_both_ways(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin(_ => TestOrigin.Response(200, "ok",
            "Connection: X-Origin-Private", "X-Origin-Private: 1", "Keep-Alive: timeout=5", "Proxy-Authenticate: Basic", "X-End-To-End: kept"));
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port), via: "1.1 rama-test");

        var answer = await proxy.SendAndReadToCloseAsync(
            "GET /rules HTTP/1.1\r\nHost: app\r\nConnection: close, X-Client-Private\r\nX-Client-Private: 1\r\nKeep-Alive: 5\r\n"
            + "TE: trailers\r\nProxy-Authorization: Basic eDp5\r\nX-Kept: yes\r\n\r\n", Bound);

        var seen = Assert.Single(origin.Requests);
        var names = seen.HeaderLines.Select(h => h[..h.IndexOf(':', StringComparison.Ordinal)]).ToList();
        Assert.Equal("app", seen.Header("Host"));
        Assert.Equal("yes", seen.Header("X-Kept"));
        Assert.Equal("1.1 rama-test", seen.Header("Via"));
        foreach (var dropped in new[] { "X-Client-Private", "Keep-Alive", "TE", "Proxy-Authorization" })
        {
            Assert.DoesNotContain(dropped, names, StringComparer.OrdinalIgnoreCase);
        }

        var head = answer[..answer.IndexOf("\r\n\r\n", StringComparison.Ordinal)];
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);
        Assert.Contains("\r\nX-End-To-End: kept", head, StringComparison.Ordinal);
        Assert.Contains("\r\nVia: 1.1 rama-test", head, StringComparison.Ordinal);
        Assert.DoesNotContain("X-Origin-Private", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Keep-Alive", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Proxy-Authenticate", head, StringComparison.OrdinalIgnoreCase);
        Assert.EndsWith("ok", answer, StringComparison.Ordinal);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll, "GET", 200)]
    [InlineData(ReverseProxyTransport.Sockets, "GET", 200)]
    [InlineData(ReverseProxyTransport.Epoll, "POST", 502)]
    [InlineData(ReverseProxyTransport.Sockets, "POST", 502)]
    public async Task A_pooled_connection_closed_unanswered_is_retried_once_only_for_an_idempotent_request(ReverseProxyTransport transport, string method, int expected)
    {
        // Each origin connection answers one request, then reads the next and closes unanswered (a keep-alive race lost).
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nreply"u8.ToArray(), cts.Token);
            await TinyHttpOrigin.ReadHeadAsync(socket);
        });
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port));
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await socket.SendAsync("GET /first HTTP/1.1\r\nHost: app\r\n\r\n"u8.ToArray(), cts.Token);
        Assert.StartsWith("HTTP/1.1 200 ", await ReadUntilAsync(socket, "reply", cts.Token), StringComparison.Ordinal);

        var body = method == "POST" ? "Content-Length: 4\r\n\r\nbody" : "\r\n";
        await socket.SendAsync(Encoding.ASCII.GetBytes($"{method} /second HTTP/1.1\r\nHost: app\r\nConnection: close\r\n{body}"), cts.Token);
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith($"HTTP/1.1 {expected} ", answer, StringComparison.Ordinal);
        Assert.Equal(expected == 200 ? 2 : 1, origin.Accepted); // the retry dialed one fresh connection; a POST is never sent twice
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Pooled_origin_connections_are_reused_across_client_connections_until_the_fake_clock_passes_the_idle_timeout(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        var time = new FakeTimeProvider();
        await using var proxy = Start(transport, new HostPort("127.0.0.1", origin.Port), time: time, pooledIdle: TimeSpan.FromMinutes(5));

        for (var i = 0; i < 4; i++)
        {
            // One client connection after the other (each on the next event loop): every loop's partition reuses its connection.
            var answer = await proxy.SendAndReadToCloseAsync("GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);
            Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        }

        var pooled = origin.Connections;
        Assert.InRange(pooled, 1, Math.Min(4, Environment.ProcessorCount)); // at most one per loop, never one per request

        // Past the pool's idle timeout on the stack's clock: the idle connections are closed, the next request dials again.
        time.Advance(TimeSpan.FromMinutes(5));
        await Eventually.TrueAsync(() => origin.OpenConnections == 0, Bound, "idle origin connections still open after the idle timeout");
        var again = await proxy.SendAndReadToCloseAsync("GET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);
        Assert.StartsWith("HTTP/1.1 200 ", again, StringComparison.Ordinal);
        Assert.Equal(pooled + 1, origin.Connections);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public void Idle_connections_are_reused_newest_first_bounded_and_swept_when_expired()
    {
        var idle = new IdleConnections<string>(max: 2);
        Assert.True(idle.TryAdd("a", now: 0));
        Assert.True(idle.TryAdd("b", now: 10));
        Assert.False(idle.TryAdd("c", now: 20)); // full: the caller closes it

        Assert.True(idle.TryTakeNewest(out var newest, out var since));
        Assert.Equal(("b", 10L), (newest, since));
        Assert.True(idle.TryAdd("c", now: 30));
        Assert.True(idle.Remove("a"));
        Assert.False(idle.Remove("a"));

        var removed = new List<string>();
        idle.RemoveWhere(100L, static (now, _, idleSince) => now - idleSince >= 60, removed);
        Assert.Equal(["c"], removed);
        Assert.Equal(0, idle.Count);
        Assert.False(idle.TryTakeNewest(out _, out _));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task A_connect_tunnel_idles_out_when_the_fake_clock_passes_its_idle_timeout_and_not_before(ReverseProxyTransport transport)
    {
        var time = new FakeTimeProvider();
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions
        {
            TunnelTransport = transport,
            Http = new HttpProxyOptions { TunnelIdleTimeout = TimeSpan.FromMinutes(10) },
        }, StaticProxyAuthenticator.None, time: time);
        await using var proxy = new ProxyHarness(stack);
        await using var echo = RawOrigin.Echo();
        using var client = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await client.SendAsync(Encoding.ASCII.GetBytes($"CONNECT 127.0.0.1:{echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{echo.Port}\r\n\r\n"), cts.Token);
        Assert.StartsWith("HTTP/1.1 200", await ReadUntilAsync(client, "\r\n\r\n", cts.Token), StringComparison.Ordinal);
        await client.SendAsync("ping"u8.ToArray(), cts.Token);
        Assert.Equal("ping", await ReadUntilAsync(client, "ping", cts.Token));

        var closed = ProxyHarness.ReadToCloseAsync(client, cts.Token);
        await Task.WhenAny(closed, Task.Delay(TimeSpan.FromMilliseconds(400), cts.Token));
        Assert.False(closed.IsCompleted, "closed before the fake clock moved");

        time.Advance(TimeSpan.FromMinutes(10));

        Assert.Equal("", await closed); // FIN, nothing more
        await proxy.AssertNoOpenConnectionsAsync();
        await ((IAsyncDisposable)stack).DisposeAsync();
    }

    private static ProxyHarness Start(ReverseProxyTransport transport, HostPort upstream, HttpLimits? limits = null, TimeProvider? time = null,
        DnsResolverOptions? dns = null, Func<IPAddress, bool>? allow = null, string? via = null, TimeSpan? pooledIdle = null)
    {
        var options = new ForwardProxyOptions
        {
            ReverseTransport = transport,
            Dns = dns ?? new DnsResolverOptions(),
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5), AllowDestination = allow },
            Http = new HttpProxyOptions
            {
                Limits = limits ?? new HttpLimits(),
                Via = via ?? "1.1 rama",
                PooledConnectionIdleTimeout = pooledIdle ?? new HttpProxyOptions().PooledConnectionIdleTimeout,
            },
        };
        IService<ConnectionContext, Unit> stack = ReverseProxyStack.Create(options, upstream, time: time);
        return new ProxyHarness(stack);
    }

    private static async Task<string> ReadUntilAsync(Socket socket, string end, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        while (!text.ToString().EndsWith(end, StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(buffer, cancellationToken);
            if (read == 0)
            {
                break;
            }

            text.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }

        return text.ToString();
    }
}
