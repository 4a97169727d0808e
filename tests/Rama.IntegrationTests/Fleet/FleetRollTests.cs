using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>
/// <c>pbm fleet roll</c> against real processes: a lighthouse and three nodes on fixed proxy ports, a restarter that
/// starts an exited node again at the same ports (what <c>deploy/fleet up</c> in a loop does), and clients that move to
/// another node only when a connection is refused.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetRollTests(ITestOutputHelper output)
{
    /// <summary>One node's place in the fleet: its ports stay, its process changes with every restart.</summary>
    private sealed class Slot(string name, int clusterPort, int proxyPort, FleetMember member)
    {
        public string Name => name;

        public int ClusterPort => clusterPort;

        public int ProxyPort => proxyPort;

        public FleetMember Member { get; set; } = member;

        public List<FleetMember> Exited { get; } = [];
    }

    [Fact]
    public async Task Fleet_roll_under_load_restarts_every_node_one_at_a_time_with_no_failed_request_and_never_fewer_than_N_minus_1_serving()
    {
        await using var fleet = new FleetHarness(output);
        await using var origin = await KestrelOrigin.StartAsync();
        await fleet.RunAsync(async () =>
        {
            // Akka's failure-detector and downing defaults, not the harness's tuned ones: a roll needs no fast downing, and
            // on 2 cores five .NET processes under load miss 2 s heartbeat pauses (a false downing is not what this tests).
            var lighthousePort = FleetHarness.FreePort();
            var lighthouse = await fleet.StartMemberAsync("lighthouse", lighthouse: true, lighthousePort,
                ["--cluster", $"127.0.0.1:{lighthousePort}", "--cluster-secret", FleetHarness.Secret], environment: null, expectReady: true);
            Task<FleetMember> StartNode(string name, int clusterPort, int proxyPort) => fleet.StartMemberAsync(name, lighthouse: false, clusterPort,
                ["--cluster", $"127.0.0.1:{clusterPort}", "--seeds", lighthouse.HostPort, "--listen", $"127.0.0.1:{proxyPort}", "--cluster-secret", FleetHarness.Secret],
                environment: null, expectReady: true);
            var slots = await Task.WhenAll(Enumerable.Range(1, 3).Select(async i =>
            {
                var (clusterPort, proxyPort) = (FleetHarness.FreePort(), FleetHarness.FreePort());
                return new Slot($"node{i}", clusterPort, proxyPort, await StartNode($"node{i}", clusterPort, proxyPort));
            }));
            var first = await FleetShutdownTests.WaitForFleetAsync(fleet, slots[0].Member, s => s.Serving == 3, "three nodes serving");

            // The process supervisor: an exited node starts again at the same ports (a new incarnation at the same address).
            using var stop = new CancellationTokenSource();
            var restarter = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    foreach (var slot in slots.Where(s => s.Member.Process.Exited.IsCompleted))
                    {
                        var exited = slot.Member;
                        fleet.Note($"{exited.Name} exited with {exited.Process.Exited.Result}: starting it again");
                        slot.Exited.Add(exited);
                        slot.Member = await StartNode($"{slot.Name}.{slot.Exited.Count + 1}", slot.ClusterPort, slot.ProxyPort);
                    }

                    await Task.Delay(100); // the restarter's poll interval (runs until the roll ends)
                }
            });

            var endpoints = slots.Select(s => new IPEndPoint(IPAddress.Loopback, s.ProxyPort)).ToArray();
            // Two clients: HttpClient, and curl (a process per request, as a script would drive it).
            await using var clients = new FailoverLoops([FailoverLoop.Start(endpoints, 0, origin.Url("/hello")), FailoverLoop.StartCurl(endpoints, 1, origin.Url("/hello"))]);
            await FleetHarness.UntilAsync(() => clients.All.All(c => c.Successes > 0), "requests through the fleet");

            var asked = fleet.Elapsed;
            var roll = await fleet.PbmAsync(slots[0].Member.Admin, "fleet", "roll", "--json");
            Assert.Contains("\"roll\": \"rolling\"", roll.Output, StringComparison.Ordinal);

            // Watch through any node that answers: the serving count never drops below N-1 and the coordinator may move.
            var minimumServing = 3;
            var coordinators = new List<string> { first.Coordinator };
            FleetStatusView? done = null;
            var deadline = fleet.Elapsed + TimeSpan.FromSeconds(180);
            while (done is null)
            {
                Assert.True(fleet.Elapsed < deadline, "the roll did not finish within 180 s");
                foreach (var slot in slots.Where(s => !s.Member.Process.Exited.IsCompleted && s.Member.Process.AdminEndpoint is not null))
                {
                    FleetStatusView view;
                    try
                    {
                        view = await FleetShutdownTests.FleetStatusAsync(slot.Member);
                    }
                    catch (InvalidOperationException)
                    {
                        continue; // that node is leaving, or the coordinator moves: ask another
                    }

                    minimumServing = Math.Min(minimumServing, view.Serving);
                    if (coordinators[^1] != view.Coordinator)
                    {
                        coordinators.Add(view.Coordinator);
                        fleet.Note($"the coordinator runs on {view.Coordinator}");
                    }

                    var state = view.Fields.GetValueOrDefault("roll", "-");
                    fleet.Note($"roll {state} {view.Fields.GetValueOrDefault("rolled")} {view.Fields.GetValueOrDefault("rollDetail")}; serving {view.Serving}");
                    if (state == "done")
                    {
                        done = view;
                    }

                    break;
                }

                await Task.Delay(250); // the poll interval: each look starts a pbm process
            }

            var took = fleet.Elapsed - asked;
            await stop.CancelAsync();
            await restarter;
            await clients.DisposeAsync();
            var successes = clients.All.Sum(c => c.Successes);
            var moves = clients.All.Sum(c => c.Moves);
            fleet.Note($"fleet roll of 3 nodes: {took.TotalSeconds:F1} s by the test's clock, {done.Fields["rollSeconds"]} s by the coordinator's; " +
                $"{successes} requests ok, {clients.All.Sum(c => c.Failures.Count)} failed, {moves} moves after a refused connection; " +
                $"fewest serving {minimumServing}; coordinators {string.Join(" -> ", coordinators)}");

            Assert.Equal("3/3", done.Fields["rolled"]);
            Assert.All(slots, s => Assert.Single(s.Exited));
            Assert.All(slots, s => Assert.Equal(0, s.Exited[0].Process.Exited.Result));
            Assert.All(slots, s => Assert.Contains("Fleet: draining this node and leaving (pbm fleet roll)", s.Exited[0].Process.Output, StringComparison.Ordinal));
            Assert.True(minimumServing >= 2, $"fewer than N-1 nodes served: {minimumServing}");
            var failures = clients.All.SelectMany(c => c.Failures).ToList();
            Assert.True(failures.Count == 0, "failed requests:\n" + string.Join("\n", failures));
            Assert.True(moves > 0, "no client was ever refused: the roll did not take a node out");
            // The coordinator's own node goes last, so the singleton moved during the roll, and the roll finished anyway.
            Assert.True(coordinators.Distinct().Count() >= 2, "the coordinator never moved");
            Assert.False(lighthouse.Process.Exited.IsCompleted);
        });
    }

    private sealed class FailoverLoops(FailoverLoop[] loops) : IAsyncDisposable
    {
        public IReadOnlyList<FailoverLoop> All => loops;

        public async ValueTask DisposeAsync()
        {
            foreach (var loop in loops)
            {
                await loop.DisposeAsync();
            }
        }
    }
}

/// <summary>
/// Requests through one node's HTTP proxy after another on fresh connections; a refused connection (the node does not
/// accept) moves the client to the next node and the same request is sent there; any other failure counts.
/// </summary>
internal sealed class FailoverLoop : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly Task _loop;
    private int _successes;
    private int _moves;
    private int _disposed;

    private FailoverLoop(IPEndPoint[] proxies, int start, string url, bool curl) =>
        _loop = curl ? RunCurlAsync(proxies, start, url) : RunAsync(proxies, start, url);

    public int Successes => Volatile.Read(ref _successes);

    public int Moves => Volatile.Read(ref _moves);

    public IReadOnlyCollection<string> Failures => _failures;

    public static FailoverLoop Start(IPEndPoint[] proxies, int start, string url) => new(proxies, start, url, curl: false);

    /// <summary>The same with curl: one process per request; curl's exit 7 (could not connect) moves it to the next node.</summary>
    public static FailoverLoop StartCurl(IPEndPoint[] proxies, int start, string url) => new(proxies, start, url, curl: true);

    private async Task RunCurlAsync(IPEndPoint[] proxies, int current, string url)
    {
        await Task.Yield();
        while (!_stop.IsCancellationRequested)
        {
            var started = DateTime.UtcNow;
            for (var attempt = 0; ; attempt++)
            {
                Cli.Result result;
                try
                {
                    result = await Cli.RunAsync("curl", ["-sS", "--max-time", "10", "--noproxy", "", "-x", $"http://{proxies[current]}", "-H", "Connection: close", url], TimeSpan.FromSeconds(20));
                }
                catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
                {
                    _failures.Enqueue($"{started:HH:mm:ss.fff} via {proxies[current]}: curl {ex.Message}");
                    break;
                }

                var body = System.Text.Encoding.UTF8.GetString(result.Stdout);
                if (result.ExitCode == 0 && body == "hello from origin")
                {
                    Interlocked.Increment(ref _successes);
                    break;
                }

                if (result.ExitCode == 7 && attempt < 3 * proxies.Length)
                {
                    // curl: (7) Failed to connect: the node does not accept (draining, or not started yet). Move on.
                    current = (current + 1) % proxies.Length;
                    Interlocked.Increment(ref _moves);
                    continue;
                }

                _failures.Enqueue($"{started:HH:mm:ss.fff} via {proxies[current]}: curl exit {result.ExitCode} {body} {result.Stderr.Trim()}");
                break;
            }

            await Task.Delay(50, CancellationToken.None); // paced like the HttpClient loop
        }
    }

    private async Task RunAsync(IPEndPoint[] proxies, int current, string url)
    {
        await Task.Yield();
        var clients = proxies.Select(p => new HttpClient(new SocketsHttpHandler { Proxy = new WebProxy($"http://{p}"), UseProxy = true }) { Timeout = TimeSpan.FromSeconds(10) }).ToArray();
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var started = DateTime.UtcNow;
                for (var attempt = 0; ; attempt++)
                {
                    try
                    {
                        using var request = new HttpRequestMessage(HttpMethod.Get, url);
                        request.Headers.ConnectionClose = true;
                        using var response = await clients[current].SendAsync(request, _stop.Token);
                        var body = await response.Content.ReadAsStringAsync(_stop.Token);
                        if (response.StatusCode == HttpStatusCode.OK && body == "hello from origin")
                        {
                            Interlocked.Increment(ref _successes);
                        }
                        else
                        {
                            _failures.Enqueue($"{started:HH:mm:ss.fff} via {proxies[current]}: {(int)response.StatusCode} {body}");
                        }

                        break;
                    }
                    catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (HttpRequestException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused } && attempt < 3 * proxies.Length)
                    {
                        // Refused at connect: the node does not accept (draining, or not started yet). Move on.
                        current = (current + 1) % proxies.Length;
                        Interlocked.Increment(ref _moves);
                    }
                    catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
                    {
                        _failures.Enqueue($"{started:HH:mm:ss.fff} via {proxies[current]}: {ex.GetType().Name} {ex.Message} {ex.InnerException?.Message}");
                        break;
                    }
                }

                // Paced like ProxyLoop, so the clients leave the fleet's heartbeats some CPU on a 2-core machine.
                await Task.Delay(50, CancellationToken.None);
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _stop.CancelAsync();
            await _loop;
            _stop.Dispose();
        }
    }
}
