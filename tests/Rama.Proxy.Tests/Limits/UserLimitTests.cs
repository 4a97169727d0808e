using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.Proxy.Tests.Limits;

/// <summary>Per-user concurrency through a whole forward-proxy port: john may hold one tunnel at a time, mary has no limit.</summary>
public sealed class UserLimitTests : IAsyncLifetime
{
    private readonly LocalConcurrencyLimiter _limiter = new();
    private readonly List<Socket> _clients = [];
    private RawOrigin _echo = null!;
    private IService<ConnectionContext, Unit> _stack = null!;
    private TcpServer _server = null!;

    public Task InitializeAsync()
    {
        _echo = RawOrigin.Echo();
        _stack = ForwardProxyStack.Create(
            new ForwardProxyOptions { Limits = new LimitOptions { Users = ["john=1"] } },
            new StaticProxyAuthenticator([new("john", "pw"), new("mary", "pw")]),
            // With a proxy database (mode direct): the user layer composes with upstream routing, as on every fleet node.
            proxyDatabase: ProxyDatabase.Empty,
            extras: new ForwardProxyExtras { Limiter = _limiter });
        _server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _server.Start(_stack);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        await _server.DisposeAsync();
        await ((IAsyncDisposable)_stack).DisposeAsync();
        await _echo.DisposeAsync();
    }

    private async Task<Socket> ClientAsync()
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _clients.Add(client);
        await client.ConnectAsync(_server.LocalEndPoint);
        return client;
    }

    private async Task<(Socket Client, string Head, string Body)> ConnectAsync(string user)
    {
        var client = await ClientAsync();
        var auth = Convert.ToBase64String(Encoding.ASCII.GetBytes(user + ":pw"));
        await client.SendAsync(Encoding.ASCII.GetBytes(
            $"CONNECT 127.0.0.1:{_echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_echo.Port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"));
        var (head, body) = await ReadResponseAsync(client);
        return (client, head, body);
    }

    private static async Task<(string Head, string Body)> ReadResponseAsync(Socket client)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = new List<byte>();
        var buffer = new byte[4096];
        while (true)
        {
            var text = Encoding.ASCII.GetString([.. received]);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                var head = text[..end];
                var length = head.Split("\r\n").Select(l => l.Split(':', 2))
                    .Where(p => p.Length == 2 && p[0].Trim().Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                    .Select(p => int.Parse(p[1].Trim(), System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault();
                if (received.Count >= end + 4 + length)
                {
                    return (head, Encoding.UTF8.GetString([.. received], end + 4, length));
                }
            }

            var n = await client.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0)
            {
                throw new IOException("the proxy closed before a whole response: " + text);
            }

            received.AddRange(buffer.AsSpan(0, n));
        }
    }

    private static async Task AssertEchoesAsync(Socket tunnel)
    {
        await tunnel.SendAsync("ping"u8.ToArray());
        Assert.Equal("ping", Encoding.ASCII.GetString(await Sockets.ReceiveExactlyAsync(tunnel, 4)));
    }

    private Task UntilJohnHoldsNothingAsync() =>
        Eventually.TrueAsync(() => _limiter.Held(LimitScope.User, "john") == 0, TimeSpan.FromSeconds(10), "john's lease was not released after his tunnel closed");

    [Fact]
    public async Task A_second_connect_tunnel_over_the_users_limit_gets_429_with_retry_after_until_the_first_closes()
    {
        var (first, firstHead, _) = await ConnectAsync("john");
        Assert.StartsWith("HTTP/1.1 200", firstHead, StringComparison.Ordinal);
        await AssertEchoesAsync(first);
        Assert.Equal(1, _limiter.Held(LimitScope.User, "john"));

        var (_, refusedHead, refusedBody) = await ConnectAsync("john");
        Assert.StartsWith("HTTP/1.1 429", refusedHead, StringComparison.Ordinal);
        Assert.Contains("\r\nRetry-After: 1", refusedHead, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("user john", refusedBody, StringComparison.Ordinal);
        Assert.Contains("limit of 1", refusedBody, StringComparison.Ordinal);
        Assert.Equal(1, _echo.Accepted);

        var (other, otherHead, _) = await ConnectAsync("mary");
        Assert.StartsWith("HTTP/1.1 200", otherHead, StringComparison.Ordinal);
        await AssertEchoesAsync(other);

        first.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(first));
        await UntilJohnHoldsNothingAsync();

        var (again, againHead, _) = await ConnectAsync("john");
        Assert.StartsWith("HTTP/1.1 200", againHead, StringComparison.Ordinal);
        await AssertEchoesAsync(again);
    }

    private async Task<(Socket Client, byte Reply)> Socks5Async(string user)
    {
        var client = await ClientAsync();
        await client.SendAsync(new byte[] { 5, 1, 2 });
        Assert.Equal(new byte[] { 5, 2 }, await Sockets.ReceiveExactlyAsync(client, 2));
        var name = Encoding.ASCII.GetBytes(user);
        await client.SendAsync((byte[])[1, (byte)name.Length, .. name, 2, (byte)'p', (byte)'w']);
        Assert.Equal(new byte[] { 1, 0 }, await Sockets.ReceiveExactlyAsync(client, 2));
        await client.SendAsync(new byte[] { 5, 1, 0, 1, 127, 0, 0, 1, (byte)(_echo.Port >> 8), (byte)_echo.Port });
        var reply = await Sockets.ReceiveExactlyAsync(client, 10);
        Assert.Equal(5, reply[0]);
        return (client, reply[1]);
    }

    [Fact]
    public async Task A_second_socks5_tunnel_over_the_users_limit_gets_reply_0x02_until_the_first_closes()
    {
        var (first, granted) = await Socks5Async("john");
        Assert.Equal(0x00, granted);
        await AssertEchoesAsync(first);

        var (refused, notAllowed) = await Socks5Async("john");
        Assert.Equal(0x02, notAllowed);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(refused));
        Assert.Equal(1, _echo.Accepted);

        var (other, maryReply) = await Socks5Async("mary");
        Assert.Equal(0x00, maryReply);
        await AssertEchoesAsync(other);

        first.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(first));
        await UntilJohnHoldsNothingAsync();

        var (again, grantedAgain) = await Socks5Async("john");
        Assert.Equal(0x00, grantedAgain);
        await AssertEchoesAsync(again);
    }

    [Fact]
    public async Task A_connect_tunnel_and_a_socks5_tunnel_count_against_the_same_user_limit()
    {
        var (tunnel, head, _) = await ConnectAsync("john");
        Assert.StartsWith("HTTP/1.1 200", head, StringComparison.Ordinal);

        var (_, reply) = await Socks5Async("john");
        Assert.Equal(0x02, reply);

        tunnel.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(tunnel));
        await UntilJohnHoldsNothingAsync();
        var (socks, grantedReply) = await Socks5Async("john");
        Assert.Equal(0x00, grantedReply);
        await AssertEchoesAsync(socks);
    }
}
