using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Epoll;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Net;

/// <summary>
/// The relay between two real socket connections, on both transports: the pipes (each direction sent straight from
/// the source's buffers by the destination's send loop) and the epoll tunnel (both sockets detached from their pipes
/// and relayed on an event loop). Each test holds the far ends as plain sockets: the client's and the target's.
/// </summary>
public sealed class SocketRelayTests
{
    public static TheoryData<string> Transports => EpollTunnel.IsSupported ? new("pipes", "epoll") : new("pipes");

    private static Task<RelayResult> Run(string transport, Leg client, Leg target, CancellationToken cancellationToken, TimeSpan? idleTimeout = null) =>
        transport == "epoll"
            ? EpollTunnel.RunAsync(client.Proxied, target.Proxied, idleTimeout ?? Relay.DefaultIdleTimeout, cancellationToken)
            : Relay.RunAsync(client.Proxied, target.Proxied, cancellationToken, idleTimeout);

    /// <summary>A connected pair: <c>Proxied</c> is the proxy's SocketConnection, <c>Peer</c> the far end.</summary>
    private sealed class Leg : IAsyncDisposable
    {
        public required SocketConnection Proxied { get; init; }

        public required Socket Peer { get; init; }

        public static async Task<Leg> OpenAsync()
        {
            using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(1);
            var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            var accepting = listener.AcceptAsync();
            await peer.ConnectAsync(listener.LocalEndPoint!);
            var proxied = new SocketConnection(await accepting);
            proxied.Start();
            return new Leg { Proxied = proxied, Peer = peer };
        }

        public async ValueTask DisposeAsync()
        {
            Peer.Dispose();
            await Proxied.DisposeAsync();
        }
    }

    /// <summary>
    /// A service that leaves bytes unread (a request body it never read, then a failure) has a receive loop held in its flush at a
    /// full input: closing the connection still ends (it once waited for that loop forever, and the listener counted the
    /// connection open until it was disposed).
    /// </summary>
    [Fact]
    public async Task Dispose_ends_while_the_input_is_full_of_unread_bytes()
    {
        await using var leg = await Leg.OpenAsync();
        var sending = Task.Run(async () =>
        {
            try
            {
                await leg.Peer.SendAsync(new byte[4 * 1024 * 1024], SocketFlags.None);
            }
            catch (SocketException)
            {
                // the far end closed with the bytes unread
            }
        });
        await Eventually.TrueAsync(() =>
        {
            if (!leg.Proxied.Input.TryRead(out var result))
            {
                return false;
            }

            leg.Proxied.Input.AdvanceTo(result.Buffer.Start, result.Buffer.End); // looked at, nothing consumed
            return result.Buffer.Length >= SocketConnectionOptions.Default.MaxBufferedBytes;
        }, TimeSpan.FromSeconds(10), () => "the input never filled");

        await leg.Proxied.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        await sending.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Bytes_cross_both_ways_intact_and_in_order_after_what_was_written_before(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();

        // Written to the client's output before the tunnel starts (a CONNECT's 200): it must arrive first.
        client.Proxied.Output.Write("HTTP/1.1 200 Connection established\r\n\r\n"u8);
        await client.Proxied.Output.FlushAsync();
        var relay = Run(transport, client, target, CancellationToken.None);

        var up = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 17);
        var down = RandomNumberGenerator.GetBytes(5 * 1024 * 1024 + 5);
        var sendUp = Task.Run(async () =>
        {
            await client.Peer.SendAsync(up, SocketFlags.None);
            client.Peer.Shutdown(SocketShutdown.Send);
        });
        var sendDown = Task.Run(async () =>
        {
            await target.Peer.SendAsync(down, SocketFlags.None);
            target.Peer.Shutdown(SocketShutdown.Send);
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var atTarget = ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token);
        var atClient = ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token);
        await Task.WhenAll(sendUp, sendDown);

        Assert.Equal(SHA256.HashData(up), SHA256.HashData(Encoding.Latin1.GetBytes(await atTarget)));
        var received = Encoding.Latin1.GetBytes(await atClient);
        var head = "HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray();
        Assert.Equal(head, received[..head.Length]);
        Assert.Equal(SHA256.HashData(down), SHA256.HashData(received[head.Length..]));

        var moved = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(up.Length, moved.ClientToTarget);
        Assert.Equal(down.Length, moved.TargetToClient);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_half_close_is_passed_on_and_the_other_direction_keeps_flowing(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        var relay = Run(transport, client, target, CancellationToken.None);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        await client.Peer.SendAsync("request"u8.ToArray(), SocketFlags.None);
        client.Peer.Shutdown(SocketShutdown.Send);
        Assert.Equal("request", await ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token)); // FIN reached the target

        // The client stopped sending, not receiving: the answer still comes back, then the target's FIN.
        await target.Peer.SendAsync("answer after the client's FIN"u8.ToArray(), SocketFlags.None);
        target.Peer.Shutdown(SocketShutdown.Send);
        Assert.Equal("answer after the client's FIN", await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token));
        var moved = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(7, moved.ClientToTarget);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_reset_on_one_side_closes_the_other_and_ends_the_relay(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        var relay = Run(transport, client, target, CancellationToken.None);

        await client.Peer.SendAsync("x"u8.ToArray(), SocketFlags.None);
        Assert.Equal((byte)'x', (await Sockets.ReceiveExactlyAsync(target.Peer, 1))[0]);
        target.Peer.LingerState = new LingerOption(true, 0);
        target.Peer.Close(); // RST

        await relay.WaitAsync(TimeSpan.FromSeconds(10));
        await client.Proxied.DisposeAsync(); // what a tunnel's owner does once the relay ends
        await target.Proxied.DisposeAsync();
        // The reset is passed on (RST, as haproxy does), never a half-open client waiting for the idle timeout.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal("<RST>", await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token)); // ECONNRESET, nothing before it
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task An_idle_tunnel_is_closed_both_ways_after_the_idle_timeout(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        var relay = Run(transport, client, target, CancellationToken.None, TimeSpan.FromMilliseconds(300));

        await client.Peer.SendAsync("ping"u8.ToArray(), SocketFlags.None);
        Assert.Equal("ping"u8.ToArray(), await Sockets.ReceiveExactlyAsync(target.Peer, 4));
        var moved = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(moved.IdleTimedOut);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Empty(await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token)); // FIN, nothing else
        Assert.Empty(await ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_target_that_stops_reading_back_pressures_the_client_without_buffering_it(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        target.Peer.ReceiveBufferSize = 64 * 1024;
        using var cancel = new CancellationTokenSource();
        var relay = Run(transport, client, target, cancel.Token, Timeout.InfiniteTimeSpan);

        // Push until the client's sends stop completing: the target reads nothing.
        client.Peer.Blocking = false;
        var chunk = new byte[64 * 1024];
        long accepted = 0;
        var stalledFor = 0;
        while (stalledFor < 20 && accepted < 256L * 1024 * 1024) // a proxy that buffered everything would never stall
        {
            try
            {
                accepted += client.Peer.Send(chunk);
                stalledFor = 0;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                stalledFor++;
                await Task.Delay(25);
            }
        }

        // Everything accepted sits in kernel socket buffers and at most one read in the proxy: bounded, not growing.
        Assert.InRange(accepted, 1, 64L * 1024 * 1024);
        await cancel.CancelAsync();
        await relay.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Bytes_both_sides_sent_before_the_relay_started_are_forwarded_first(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        // Already in the proxy's input pipes when the tunnel starts: a client that pipelines after its CONNECT, a server that speaks first.
        await client.Peer.SendAsync("pipelined after CONNECT"u8.ToArray(), SocketFlags.None);
        await target.Peer.SendAsync("220 banner"u8.ToArray(), SocketFlags.None);
        await Task.Delay(100);
        var relay = Run(transport, client, target, CancellationToken.None);

        await client.Peer.SendAsync(" and after"u8.ToArray(), SocketFlags.None);
        client.Peer.Shutdown(SocketShutdown.Send);
        target.Peer.Shutdown(SocketShutdown.Send);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal("pipelined after CONNECT and after", await ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token));
        Assert.Equal("220 banner", await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token));
        var moved = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((33L, 10L), (moved.ClientToTarget, moved.TargetToClient));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task An_abort_of_one_connection_ends_the_relay(string transport)
    {
        // What the drain timeout does to a tunnel that outlives it: abort the client's connection.
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        var relay = Run(transport, client, target, CancellationToken.None);
        await client.Peer.SendAsync("x"u8.ToArray(), SocketFlags.None);
        Assert.Equal((byte)'x', (await Sockets.ReceiveExactlyAsync(target.Peer, 1))[0]);

        client.Proxied.Abort("drain timeout");
        await relay.WaitAsync(TimeSpan.FromSeconds(10));
        await target.Proxied.DisposeAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal("<RST>", await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token));
        Assert.Contains(await ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token), new[] { "", "<RST>" }); // closed, not left open
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Cancelling_the_relay_closes_both_sides(string transport)
    {
        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        using var cancel = new CancellationTokenSource();
        var relay = Run(transport, client, target, cancel.Token);
        await target.Peer.SendAsync("hello"u8.ToArray(), SocketFlags.None);
        Assert.Equal("hello"u8.ToArray(), await Sockets.ReceiveExactlyAsync(client.Peer, 5));

        await cancel.CancelAsync();
        var moved = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(moved.IdleTimedOut);
        await client.Proxied.DisposeAsync();
        await target.Proxied.DisposeAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Empty(await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token));
        Assert.Empty(await ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token));
    }

    /// <summary>
    /// Issue 15 item 6 (idle tunnels at haproxy's cost): once a tunnel runs on its loop it keeps no object of the hand-over.
    /// The accepted and dialled <see cref="Socket"/>s (with the socket engine's context and event args) and the connections'
    /// pipes become garbage while the tunnel goes on relaying on its own descriptors; before, each idle tunnel kept them
    /// (about 4 KB of the 10.5 KB of objects an idle tunnel held, benchmarks/results/2026-12-07-idle-tunnels.md).
    /// </summary>
    [Fact]
    public async Task An_epoll_tunnel_keeps_neither_the_sockets_objects_nor_the_pipes_and_still_relays()
    {
        if (!EpollTunnel.IsSupported)
        {
            return;
        }

        await using var client = await Leg.OpenAsync();
        await using var target = await Leg.OpenAsync();
        var handedOver = WeakReferences(client.Proxied, target.Proxied);
        var relay = Run("epoll", client, target, CancellationToken.None);

        // A byte each way: the tunnel is on its loop.
        await client.Peer.SendAsync("u"u8.ToArray(), SocketFlags.None);
        Assert.Equal((byte)'u', (await Sockets.ReceiveExactlyAsync(target.Peer, 1))[0]);
        await target.Peer.SendAsync("d"u8.ToArray(), SocketFlags.None);
        Assert.Equal((byte)'d', (await Sockets.ReceiveExactlyAsync(client.Peer, 1))[0]);

        // Collected: waited on (a thread-pool thread's stale stack slot can keep an object a little longer), bounded.
        await Eventually.TrueAsync(() =>
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true);
            GC.WaitForPendingFinalizers();
            return handedOver.All(w => !w.Reference.IsAlive);
        }, TimeSpan.FromSeconds(10), "the hand-over's Socket objects or pipes stay reachable from the tunnel's connections");

        // Collected, and the tunnel still relays both ways and ends as a relay does (FIN each way).
        var up = RandomNumberGenerator.GetBytes(256 * 1024);
        var sendUp = Task.Run(async () =>
        {
            await client.Peer.SendAsync(up, SocketFlags.None);
            client.Peer.Shutdown(SocketShutdown.Send);
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var atTarget = await ProxyHarness.ReadToCloseAsync(target.Peer, timeout.Token);
        await sendUp;
        Assert.Equal(SHA256.HashData(up), SHA256.HashData(Encoding.Latin1.GetBytes(atTarget)));
        target.Peer.Shutdown(SocketShutdown.Send);
        Assert.Empty(await ProxyHarness.ReadToCloseAsync(client.Peer, timeout.Token));
        var moved = await relay.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((1L + up.Length, 1L), (moved.ClientToTarget, moved.TargetToClient));
    }

    // Weak references to what the pipes transport held per connection, taken in a frame of their own (no local keeps them).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static (string Name, WeakReference Reference)[] WeakReferences(SocketConnection client, SocketConnection target) =>
    [
        ("the client's Socket", new WeakReference(client.Socket)),
        ("the target's Socket", new WeakReference(target.Socket)),
        ("the client's input pipe", new WeakReference(client.Input)),
        ("the client's output pipe", new WeakReference(client.Output)),
        ("the target's input pipe", new WeakReference(target.Input)),
        ("the target's output pipe", new WeakReference(target.Output)),
    ];
}
