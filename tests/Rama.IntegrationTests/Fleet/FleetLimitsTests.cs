using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Rama.IntegrationTests.Upstream;
using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>
/// The fleet's limits and shared health with real processes (a lighthouse and three nodes) and real upstream proxies
/// (microsocks, dante, tinyproxy, squid, each leaving from its own source address, so the origin tells which one carried a
/// request): an upstream's connection limit holds across the fleet and a killed node's leases go with it, a user's
/// concurrency limit holds across the fleet (429 over HTTP, 0x02 over SOCKS5, curl's view of both), and an upstream that
/// fails on one node is backed off on the others within a second.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetLimitsTests(ITestOutputHelper output, UpstreamPeersFixture peers) : IClassFixture<UpstreamPeersFixture>
{
    /// <summary>The bound the issue sets for health seen on one node to be in force on every node.</summary>
    private static readonly TimeSpan Shared = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task An_upstream_limit_holds_across_the_fleet_and_the_leases_of_a_killed_node_are_released()
    {
        // squid may carry two connections at once, fleet-wide (the record's own max_connections column).
        await using var fleet = new FleetHarness(output);
        var db = fleet.TempFile("rama-fleet-limits", WithLimit(peers.DatabaseCsv(), ("squid", "2", "")));
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3, i => i == 1 ? ["--proxydb", db] : []);
            await Task.WhenAll(nodes.Select(n => FleetAdmin.UntilSelectableAsync(n, "u-id-squid", "squid")));

            var target = $"127.0.0.1:{peers.Origin.Port}";
            await using var first = await Tunnel.OpenAsync(nodes[0].Proxy, target, "u-id-squid");
            await using var second = await Tunnel.OpenAsync(nodes[1].Proxy, target, "u-id-squid");
            Assert.Equal(200, first.Status);
            Assert.Equal(200, second.Status);
            await FleetHarness.UntilAsync(async () => (await FleetAdmin.AskAsync(nodes[2], "limits", "show", "squid"))["held"] == "2", "squid holds 2 fleet-wide");

            // The third, on the node that holds none: squid is at its limit fleet-wide, and squid is all the filter allows.
            await using (var third = await Tunnel.OpenAsync(nodes[2].Proxy, target, "u-id-squid"))
            {
                Assert.Equal(503, third.Status);
                Assert.Contains("upstream squid is at its limit of 2 connections (fleet-wide)", third.Body, StringComparison.Ordinal);
                Assert.Contains("Retry-After:", third.Head, StringComparison.OrdinalIgnoreCase);
            }

            var shown = await FleetAdmin.AskAsync(nodes[2], "limits", "show", "squid");
            fleet.Note($"pbm limits show squid on {nodes[2].Name}: {Show(shown)}");
            Assert.Equal("2", shown["held"]);
            Assert.Equal("at most 2 at once", shown["policy"]);
            var pbm = await fleet.PbmAsync(nodes[2].Admin, "limits", "show", "squid");
            Assert.Contains(nodes[0].HostPort, pbm.Output, StringComparison.Ordinal);
            Assert.Contains(nodes[1].HostPort, pbm.Output, StringComparison.Ordinal);


            // kill -9 a node holding a lease (not the one the entity lives on: that case is the fallback's): its lease goes
            // when it is removed from the cluster or stops renewing, whichever comes first; until then node3 is refused.
            var victim = shown["entityOn"] == nodes[1].Address ? nodes[0] : nodes[1];
            var fallbacksBefore = shown["fallbacks"];
            var clock = Stopwatch.StartNew();
            victim.Process.Kill();
            var refusals = 0;
            Tunnel? granted = null;
            await FleetHarness.UntilAsync(async () =>
            {
                var attempt = await Tunnel.OpenAsync(nodes[2].Proxy, target, "u-id-squid");
                if (attempt.Status == 200)
                {
                    granted = attempt;
                    return true;
                }

                refusals += attempt.Status == 503 ? 1 : 0;
                attempt.Dispose();
                return false;
            }, $"a tunnel through squid on node3 after {victim.Name} was killed");
            fleet.Note($"{victim.Name} killed: its squid lease released and node3 granted {clock.Elapsed.TotalSeconds:F1} s later ({refusals} refused before)");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"the killed node's lease held {clock.Elapsed}");
            Assert.Equal(fallbacksBefore, (await FleetAdmin.AskAsync(nodes[2], "limits", "show", "squid"))["fallbacks"]);
            await using (granted!)
            {
                Assert.Equal("127.0.0.14", await granted!.WhoAmIAsync()); // squid's source address at the origin
            }
        });
    }

    [Fact]
    public async Task Under_parallel_curl_load_through_three_nodes_the_upstream_never_sees_more_than_its_limit_open()
    {
        const int limit = 3;
        // The upstream: squid behind a counting front door (what the upstream sees: connections open from the fleet).
        await using var door = CountingForwarder.Start(new IPEndPoint(IPAddress.Loopback, peers.Ports["squid"]));
        // An origin that takes 300 ms to answer, so the tunnels overlap.
        await using var slow = new RawOrigin(async socket =>
        {
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await Task.Delay(300); // deliberate: a slow origin, so the tunnels overlap and the limit is reached
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow"u8.ToArray());
            socket.Shutdown(SocketShutdown.Send);
        });
        var csv = "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn,credential,max_connections,rate\n"
                  + $"lim,1,0,1,0,0,0,1,0,0,127.0.0.1:{door.Port},,na,us,,,,,,{limit},\n";
        await using var fleet = new FleetHarness(output);
        var db = fleet.TempFile("rama-fleet-load", csv);
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3, i => i == 1 ? ["--proxydb", db] : []);
            await Task.WhenAll(nodes.Select(n => FleetAdmin.UntilSelectableAsync(n, "u-id-lim", "lim")));
            // Each node has found the entity's shard (a first use while the shard is allocated is decided by the node alone).
            foreach (var node in nodes)
            {
                Assert.Equal("0", (await FleetAdmin.AskAsync(node, "limits", "show", "lim"))["held"]);
            }

            // 3 nodes x 12 tunnels, 6 at a time per node: 18 wanted at once against a limit of 3.
            const int perNode = 12;
            var runs = await Task.WhenAll(nodes.Select(node => CurlAsync(
                [
                    "--parallel", "--parallel-max", "6", "-p", "-x", $"http://u-id-lim:x@{node.Proxy}", "-w", "%{http_connect} %{http_code}\n",
                    .. Enumerable.Range(0, perNode).SelectMany(i => (string[])["-o", "/dev/null", $"http://127.0.0.1:{slow.Port}/{i}"]),
                ])));
            var lines = runs.SelectMany(r => r.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)).ToList();
            var carried = lines.Count(l => l == "200 200");
            var refused = lines.Count(l => l.StartsWith("503", StringComparison.Ordinal));
            fleet.Note($"{lines.Count} curl tunnels through 3 nodes: {carried} carried, {refused} refused with 503; at most {door.MaxOpen} open at the upstream (limit {limit}), {door.Accepted} accepted there");
            Assert.Equal(3 * perNode, lines.Count);
            Assert.Equal(3 * perNode, carried + refused);
            Assert.InRange(door.MaxOpen, 1, limit);
            Assert.True(refused > 0, "the load never reached the limit: the test proves nothing");
            Assert.Equal(carried, door.Accepted);
        });
    }

    [Fact]
    public async Task A_users_concurrency_limit_holds_across_the_fleet_429_over_http_and_0x02_over_socks5()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3, _ => ["--auth", "john:pw", "--auth", "mary:pw", "--user-limit", "john=2", "--user-max-connections", "50"]);

            var target = $"127.0.0.1:{peers.Origin.Port}";
            await using var one = await Tunnel.OpenAsync(nodes[0].Proxy, target, "john");
            await using var two = await Tunnel.OpenAsync(nodes[1].Proxy, target, "john");
            Assert.Equal(200, one.Status);
            Assert.Equal(200, two.Status);
            // The fleet's count has both (granted by the entity, or, on a first use while its shard is allocated, granted by
            // the node alone and counted at the entity by the next renewal).
            await FleetHarness.UntilAsync(async () => (await FleetAdmin.AskAsync(nodes[2], "limits", "show", "john"))["held"] == "2", "john holds 2 fleet-wide");

            // curl, through the third node: CONNECT refused with 429 and the reason; SOCKS5 refused with 0x02.
            var http = await CurlAsync("-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", $"http://john:pw@{nodes[2].Proxy}", $"http://{target}/");
            fleet.Note($"curl -p -x node3 as john: {http}");
            Assert.Equal("429", http.Output.Trim());
            var (reply, _) = await Socks5ConnectAsync(nodes[2].Proxy, "john", "pw", peers.Origin.Port);
            Assert.Equal(0x02, reply);
            var socks = await CurlAsync("--socks5", $"{nodes[2].Proxy}", "--proxy-user", "john:pw", $"http://{target}/");
            fleet.Note($"curl --socks5 node3 as john: {socks}");
            Assert.NotEqual(0, socks.Exit);
            Assert.Contains("SOCKS5 connection to 127.0.0.1. (2)", socks.Error, StringComparison.Ordinal); // curl prints the reply code

            // Another user is not held back by john's count, and a plain HTTP request by john is refused the same way.
            await using (var mary = await Tunnel.OpenAsync(nodes[2].Proxy, target, "mary"))
            {
                Assert.Equal(200, mary.Status);
            }

            var shown = await FleetAdmin.AskAsync(nodes[0], "limits", "show", "john");
            fleet.Note($"pbm limits show john: {Show(shown)}");
            Assert.Equal("2", shown["held"]);
            Assert.Equal("user", shown["scope"]);

            // One of john's tunnels ends: the next is granted on the third node.
            await one.DisposeAsync();
            await FleetHarness.UntilAsync(async () =>
            {
                using var again = await Tunnel.OpenAsync(nodes[2].Proxy, target, "john");
                return again.Status == 200;
            }, "john's tunnel on node3 after one of two ended");
            // That tunnel's lease goes back when it closes (a message to the entity): SOCKS5 is granted once it has.
            await FleetHarness.UntilAsync(async () => (await Socks5ConnectAsync(nodes[2].Proxy, "john", "pw", peers.Origin.Port)).Reply == 0x00,
                "john's SOCKS5 connect on node3 granted");
        });
    }

    [Fact]
    public async Task An_upstream_that_fails_on_one_node_is_backed_off_on_every_node_within_a_second()
    {
        // "dead" accepts and closes at once (an upstream whose handshake fails); "ms" is microsocks. Both match country-zz.
        using var dead = new TcpListener(IPAddress.Loopback, 0);
        dead.Start();
        var deadAccepts = 0;
        using var stop = new CancellationTokenSource();
        var closer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var socket = await dead.AcceptSocketAsync(stop.Token);
                Interlocked.Increment(ref deadAccepts);
                socket.Close();
            }
        });
        var port = ((IPEndPoint)dead.LocalEndpoint).Port;
        var csv = "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn,credential\n"
                  + $"dead,1,0,0,0,1,0,1,0,0,127.0.0.1:{port},,eu,zz,,,,,u:p\n"
                  + $"ms,1,0,0,0,1,0,1,0,0,127.0.0.1:{peers.Ports["ms"]},,eu,zz,,,,,muser:mpass\n";
        await using var fleet = new FleetHarness(output);
        var db = fleet.TempFile("rama-fleet-health", csv);
        try
        {
            await fleet.RunAsync(async () =>
            {
                var (_, nodes) = await fleet.StartConvergedAsync(3, i => i == 1 ? ["--proxydb", db] : []);

                await Task.WhenAll(nodes.Select(n => FleetAdmin.UntilSelectableAsync(n, "u-id-ms", "ms")));

                // A session whose first choice is "dead" (the same on every node: selection is a pure function of the version).
                var session = "";
                for (var i = 0; session.Length == 0; i++)
                {
                    var selected = await FleetAdmin.SelectAsync(nodes[0], $"u-country-zz-session-s{i}");
                    session = selected == "dead" ? $"s{i}" : "";
                    Assert.True(i < 200, "no session picks 'dead' first");
                }

                await Task.WhenAll(nodes.Select(n => FleetAdmin.UntilSelectableAsync(n, $"u-country-zz-session-{session}", "dead")));
                var user = $"u-country-zz-session-{session}";
                var target = $"127.0.0.1:{peers.Origin.Port}";

                // Before: healthy everywhere (and each node's region knows where the entity of dead lives, so the polls
                // below measure the health, not a first lookup of the shard's home).
                foreach (var node in nodes)
                {
                    Assert.Equal("0", (await FleetAdmin.AskAsync(node, "limits", "show", "dead"))["backedOffHereMs"]);
                }

                // node1 tries dead (handshake fails), backs it off, and carries the request through microsocks.
                await using (var first = await Tunnel.OpenAsync(nodes[0].Proxy, target, user))
                {
                    Assert.Equal(200, first.Status);
                    Assert.Equal("127.0.0.11", await first.WhoAmIAsync());
                }

                var failedAt = Stopwatch.StartNew();
                Assert.Equal(1, Volatile.Read(ref deadAccepts));

                // node2 and node3 hear of it: backed off here too, within the bound.
                var seen = await Task.WhenAll(nodes[1..].Select(async node =>
                {
                    while (true)
                    {
                        var shown = await FleetAdmin.AskAsync(node, "limits", "show", "dead");
                        if (long.Parse(shown["backedOffHereMs"], CultureInfo.InvariantCulture) > 0)
                        {
                            return failedAt.Elapsed.TotalMilliseconds;
                        }

                        Assert.True(failedAt.Elapsed < FleetHarness.Within, $"dead never backed off on {node.Name}");
                        await Task.Delay(20); // the poll interval of a latency measurement: its resolution
                    }
                }));

                fleet.Note($"dead failed on node1; backed off on node2 and node3 after {string.Join(" and ", seen.Select(s => s.ToString("F0", CultureInfo.InvariantCulture)))} ms");
                Assert.All(seen, ms => Assert.True(ms <= Shared.TotalMilliseconds, $"backed off only {ms:F0} ms after the failure"));

                // node3 does not try dead again: straight through microsocks.
                await using (var third = await Tunnel.OpenAsync(nodes[2].Proxy, target, user))
                {
                    Assert.Equal(200, third.Status);
                    Assert.Equal("127.0.0.11", await third.WhoAmIAsync());
                }

                Assert.Equal(1, Volatile.Read(ref deadAccepts));
            });
        }
        finally
        {
            await stop.CancelAsync();
            dead.Stop();
            await closer.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private static string Show(Dictionary<string, string> fields) => string.Join(", ", fields.Select(f => $"{f.Key}={f.Value}"));

    private static async Task<(int Exit, string Output, string Error)> CurlAsync(params string[] args)
    {
        var result = await Cli.RunAsync("curl", ["-sS", "--max-time", "10", "--noproxy", "", .. args], TimeSpan.FromSeconds(20));
        return (result.ExitCode, Encoding.UTF8.GetString(result.Stdout), result.Stderr);
    }

    /// <summary>The peers' database with <paramref name="limit"/>'s max_connections and rate on one record.</summary>
    private static string WithLimit(string csv, (string Id, string Max, string Rate) limit) =>
        string.Join('\n', csv.TrimEnd('\n').Split('\n')
            .Select(l => l.StartsWith(limit.Id + ",", StringComparison.Ordinal) ? $"{l},{limit.Max},{limit.Rate}" : l)) + "\n";

    /// <summary>RFC 1928 CONNECT with RFC 1929 credentials; the reply byte, and the socket (open when granted).</summary>
    private static async Task<(int Reply, Socket Socket)> Socks5ConnectAsync(IPEndPoint proxy, string user, string password, int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(proxy);
        await socket.SendAsync(new byte[] { 5, 1, 2 });
        var buffer = new byte[512];
        await ReadExactlyAsync(socket, buffer, 2);
        var u = Encoding.UTF8.GetBytes(user);
        var p = Encoding.UTF8.GetBytes(password);
        await socket.SendAsync((byte[])[1, (byte)u.Length, .. u, (byte)p.Length, .. p]);
        await ReadExactlyAsync(socket, buffer, 2);
        Assert.Equal(0, buffer[1]);
        await socket.SendAsync((byte[])[5, 1, 0, 1, 127, 0, 0, 1, (byte)(port >> 8), (byte)port]);
        await ReadExactlyAsync(socket, buffer, 2);
        var reply = buffer[1];
        socket.Dispose();
        return (reply, socket);
    }

    private static async Task ReadExactlyAsync(Socket socket, byte[] buffer, int count)
    {
        var read = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (read < count)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read, count - read), timeout.Token);
            Assert.True(n > 0, "the proxy closed before its reply");
            read += n;
        }
    }

    /// <summary>A TCP front door for an upstream that relays every connection and counts how many are open at once.</summary>
    private sealed class CountingForwarder : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly IPEndPoint _upstream;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;
        private int _open;
        private int _maxOpen;
        private int _accepted;

        private CountingForwarder(IPEndPoint upstream)
        {
            _upstream = upstream;
            _listener.Start();
            _accepting = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public int MaxOpen => Volatile.Read(ref _maxOpen);

        public int Accepted => Volatile.Read(ref _accepted);

        public static CountingForwarder Start(IPEndPoint upstream) => new(upstream);

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await _listener.AcceptSocketAsync(_stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                Interlocked.Increment(ref _accepted);
                var open = Interlocked.Increment(ref _open);
                int max;
                while (open > (max = Volatile.Read(ref _maxOpen)) && Interlocked.CompareExchange(ref _maxOpen, open, max) != max)
                {
                }

                _ = RelayAsync(client);
            }
        }

        private async Task RelayAsync(Socket client)
        {
            using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await server.ConnectAsync(_upstream, _stop.Token);
                await using var fromClient = new NetworkStream(client, ownsSocket: false);
                await using var toServer = new NetworkStream(server, ownsSocket: false);
                var up = Task.Run(async () =>
                {
                    await fromClient.CopyToAsync(toServer, _stop.Token);
                    server.Shutdown(SocketShutdown.Send);
                });
                // The fleet's side closing is what the count follows: a connection is open at the upstream until then.
                await toServer.CopyToAsync(fromClient, _stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                await up.ContinueWith(_ => { }, TaskScheduler.Default);
            }
            catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException)
            {
            }
            finally
            {
                Interlocked.Decrement(ref _open);
                client.Dispose();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _accepting;
        }
    }

    /// <summary>A CONNECT tunnel through a node (Proxy-Authorization with <c>user:pw</c>); open while this is not disposed.</summary>
    private sealed class Tunnel : IAsyncDisposable, IDisposable
    {
        private readonly TcpClient _client;
        private readonly NetworkStream _stream;

        private Tunnel(TcpClient client, NetworkStream stream, int status, string head, string body)
        {
            _client = client;
            _stream = stream;
            Status = status;
            Head = head;
            Body = body;
        }

        public int Status { get; }

        public string Head { get; }

        public string Body { get; }

        public static async Task<Tunnel> OpenAsync(IPEndPoint proxy, string target, string user)
        {
            var client = new TcpClient();
            await client.ConnectAsync(proxy);
            var stream = client.GetStream();
            var auth = Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":pw"));
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var head = await ReadHeadAsync(stream, timeout.Token);
            var status = int.Parse(head.AsSpan(9, 3), CultureInfo.InvariantCulture);
            var body = "";
            var length = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            if (status != 200 && length is not null)
            {
                var bytes = new byte[int.Parse(length.AsSpan(15).Trim(), CultureInfo.InvariantCulture)];
                await stream.ReadExactlyAsync(bytes, timeout.Token);
                body = Encoding.UTF8.GetString(bytes);
            }

            return new Tunnel(client, stream, status, head, body);
        }

        /// <summary>Asks the origin at the tunnel's end which source address it saw (so which upstream carried the tunnel).</summary>
        public async Task<string> WhoAmIAsync()
        {
            await _stream.WriteAsync("GET / HTTP/1.1\r\nHost: origin\r\n\r\n"u8.ToArray());
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            var response = new MemoryStream();
            var buffer = new byte[4096];
            int n;
            while ((n = await _stream.ReadAsync(buffer, timeout.Token)) > 0)
            {
                response.Write(buffer, 0, n);
            }

            var text = Encoding.ASCII.GetString(response.ToArray());
            return text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        }

        private static async Task<string> ReadHeadAsync(NetworkStream stream, CancellationToken cancellationToken)
        {
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                if (await stream.ReadAsync(one, cancellationToken) == 0)
                {
                    throw new IOException($"the proxy closed after: {head}");
                }

                head.Append((char)one[0]);
            }

            return head.ToString();
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }

        public void Dispose()
        {
            _stream.Dispose();
            _client.Dispose();
        }
    }
}
