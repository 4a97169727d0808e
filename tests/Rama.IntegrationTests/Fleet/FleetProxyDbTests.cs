using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Rama.Proxy.Upstream;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>
/// The fleet's proxy database with real processes (a lighthouse and three nodes): every node's replica picks the same
/// upstream for a session, a record written through one node is selectable on another within a second, and a load with
/// a bad line changes nothing.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetProxyDbTests(ITestOutputHelper output)
{
    /// <summary>The bound the issue sets for a write on one node to be selectable (or gone) on another.</summary>
    private static readonly TimeSpan Visible = TimeSpan.FromSeconds(1);

    private static string Line(string id, string country = "us", int port = 3128) =>
        $"{id},true,false,true,false,false,false,false,true,false,127.0.0.1:{port},,,{country},,,,";

    private static string Header => string.Join(',', ProxyDatabaseLoader.CsvColumns.Take(18));

    [Fact]
    public async Task Three_nodes_agree_on_the_upstream_of_1200_sessions_and_removing_one_moves_only_its_sessions()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3);
            var lines = Enumerable.Range(1, 24).Select(i => Line($"up-{i:00}", i % 2 == 0 ? "us" : "de", 3000 + i)).ToList();
            var file = await WriteFileAsync([Header, .. lines]);
            await fleet.PbmAsync(nodes[0].Admin, "proxydb", "load", file);
            var records = ProxyDatabaseLoader.ParseCsv(string.Join('\n', lines));
            var expected = ProxyDatabase.Create(records);
            await WaitForVersionAsync(fleet, nodes, expected.Version);

            var usernames = Enumerable.Range(0, 1200).Select(i => $"client-session-s{i}").ToList();
            var before = await SelectEverywhereAsync(fleet, nodes, usernames, expected.Version);
            var filter = ProxyFilter.Empty;
            Assert.All(usernames, u => Assert.Equal(expected.Select(filter, u["client-session-".Length..], 1)[0].Id, before[u]));
            fleet.Note($"1200 sessions x 3 nodes: 100 % agreement; {before.Values.Distinct().Count()} upstreams used");

            var removed = before.Values.GroupBy(v => v).OrderByDescending(g => g.Count()).First().Key;
            await fleet.PbmAsync(nodes[1].Admin, "proxydb", "remove", removed);
            var after = ProxyDatabase.Create(records.Where(r => r.Id != removed));
            await WaitForVersionAsync(fleet, nodes, after.Version);
            var moved = await SelectEverywhereAsync(fleet, nodes, usernames, after.Version);
            var changed = usernames.Where(u => moved[u] != before[u]).ToList();
            Assert.All(changed, u => Assert.Equal(removed, before[u]));
            Assert.Equal(before.Count(kv => kv.Value == removed), changed.Count);
            Assert.DoesNotContain(removed, moved.Values);
            fleet.Note($"removed {removed}: {changed.Count} sessions moved, all of them its own; the other {usernames.Count - changed.Count} kept their upstream");
        });
    }

    [Fact]
    public async Task A_record_added_on_node_A_is_selectable_on_node_C_within_a_second_and_a_removed_one_is_never_selected_again()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3);
            var (a, c) = (nodes[0], nodes[2]);
            var added = new List<(double FromStart, double FromAck)>();
            var removedAfter = new List<double>();
            var lastRemoved = Stopwatch.StartNew();
            for (var i = 0; i < 20; i++)
            {
                var id = $"live{i:00}";
                var username = $"probe-id-{id}";
                var start = Stopwatch.StartNew();
                var watch = FirstTimeAsync(c, username, seen: true, start);
                var pbm = await PbmRetryingAsync(a.Admin, "proxydb", "add", Line(id));
                var ack = start.Elapsed;
                Assert.True(pbm.Exit == 0, $"pbm proxydb add: {pbm}");
                var visible = await watch;
                added.Add((visible.TotalMilliseconds, (visible - ack).TotalMilliseconds));
                Assert.True(visible - ack <= Visible, $"{id} selectable on {c.Name} {(visible - ack).TotalMilliseconds:F0} ms after pbm's answer");

                start.Restart();
                var gone = FirstTimeAsync(c, username, seen: false, start);
                pbm = await PbmRetryingAsync(a.Admin, "proxydb", "remove", id);
                ack = start.Elapsed;
                lastRemoved.Restart();
                Assert.True(pbm.Exit == 0, $"pbm proxydb remove: {pbm}");
                var invisible = await gone;
                removedAfter.Add((invisible - ack).TotalMilliseconds);
                Assert.True(invisible - ack <= Visible, $"{id} still selected on {c.Name} {(invisible - ack).TotalMilliseconds:F0} ms after pbm's answer");
                fleet.Note($"{id}: selectable on {c.Name} {added[^1].FromAck:F0} ms after pbm add answered ({added[^1].FromStart:F0} ms after it started), gone {removedAfter[^1]:F0} ms after pbm remove answered");
            }

            // Never selected again: every removed id, on every node, once the bound has passed since the last removal.
            if (Visible - lastRemoved.Elapsed is { Ticks: > 0 } rest)
            {
                await Task.Delay(rest); // deliberate: the claim is about what happens after the bound, so the bound must pass
            }

            var all = Enumerable.Range(0, 20).Select(i => $"probe-id-live{i:00}").ToList();
            foreach (var node in nodes)
            {
                var (selected, _) = await SelectAsync(node, all);
                Assert.All(selected.Values, id => Assert.Equal("", id));
            }

            fleet.Note("add on A -> selectable on C, ms after pbm's answer: " + Distribution(added.Select(x => x.FromAck)) +
                       "; from pbm's start: " + Distribution(added.Select(x => x.FromStart)));
            fleet.Note("remove on A -> never selected on C, ms after pbm's answer: " + Distribution(removedAfter));
        });
    }

    [Fact]
    public async Task A_load_with_a_bad_line_reports_its_line_number_and_changes_nothing()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3);
            await fleet.PbmAsync(nodes[0].Admin, "proxydb", "add", Line("kept-1"));
            var kept = ProxyDatabase.Create([ProxyRecordCsvParse(Line("kept-1"))]);
            await WaitForVersionAsync(fleet, nodes, kept.Version);

            // Line 1 is the header; line 4 has no port.
            var file = await WriteFileAsync([Header, Line("new-1"), Line("kept-1", country: "fr"), Line("new-2").Replace("127.0.0.1:3128", "127.0.0.1", StringComparison.Ordinal), Line("new-3")]);
            var result = await Pbm.RunAsync(nodes[1].Admin, "proxydb", "load", file);
            fleet.Note($"pbm proxydb load (bad line 4): {result}");
            Assert.Equal(1, result.Exit);
            Assert.Contains("line 4, field 'address'", result.Error, StringComparison.Ordinal);
            Assert.Contains("nothing loaded", result.Error, StringComparison.Ordinal);

            // Nothing changed anywhere: a later write is seen, and the version is the one with that write only.
            await fleet.PbmAsync(nodes[2].Admin, "proxydb", "add", Line("later-1"));
            var expected = ProxyDatabase.Create([ProxyRecordCsvParse(Line("kept-1")), ProxyRecordCsvParse(Line("later-1"))]);
            await WaitForVersionAsync(fleet, nodes, expected.Version);
            var list = await fleet.PbmAsync(nodes[0].Admin, "proxydb", "list", "--json");
            using var json = JsonDocument.Parse(list.Output);
            Assert.Equal(["kept-1", "later-1"], json.RootElement.GetProperty("records").EnumerateArray().Select(r => r.GetProperty("id").GetString()));
            Assert.Equal("us", json.RootElement.GetProperty("records")[0].GetProperty("country").GetString());
        });
    }

    [Fact]
    public async Task A_fleet_node_routes_through_the_upstream_a_record_added_on_another_node_names_and_stops_once_it_is_removed()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        // The upstream: a node alone, an HTTP proxy whose accepted connections pbm node status counts.
        await using var upstream = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3);
            var (a, b, c) = (nodes[0], nodes[1], nodes[2]);
            using var handler = new SocketsHttpHandler { Proxy = new System.Net.WebProxy($"http://{c.Proxy}"), UseProxy = true };
            using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
            async Task<(int Status, string Body)> GetAsync()
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, origin.Url("/hello"));
                request.Headers.Add("x-rama-proxy-filter", "id=viaup");
                request.Headers.ConnectionClose = true;
                using var response = await client.SendAsync(request);
                return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
            }

            Assert.Equal(503, (await GetAsync()).Status);
            Assert.Equal(0, await AcceptedAsync(upstream));

            await fleet.PbmAsync(a.Admin, "proxydb", "add", $"viaup,true,false,true,false,false,false,true,false,false,{upstream.Endpoint},,,,,,,,");
            await FirstTimeAsync(c, "probe-id-viaup", seen: true, Stopwatch.StartNew());
            var routed = await GetAsync();
            Assert.Equal((200, "hello from origin"), routed);
            Assert.Equal(1, await AcceptedAsync(upstream));
            fleet.Note($"{c.Name} routed through {upstream.Endpoint}, the record added on {a.Name}");

            await fleet.PbmAsync(b.Admin, "proxydb", "remove", "viaup");
            await FirstTimeAsync(c, "probe-id-viaup", seen: false, Stopwatch.StartNew());
            Assert.Equal(503, (await GetAsync()).Status);
            Assert.Equal(1, await AcceptedAsync(upstream));
        });
    }

    [Fact]
    public async Task The_records_survive_a_restart_of_every_node_with_fleet_data_and_proxydb_seeds_only_an_empty_fleet()
    {
        var data = Directory.CreateTempSubdirectory("rama-fleet-data-");
        try
        {
            await using var fleet = new FleetHarness(output);
            await fleet.RunAsync(async () =>
            {
                var seed = await WriteFileAsync([Header, Line("seed_a"), Line("seed_b", "de")]);
                var (lighthousePort, port1, port2) = (FleetHarness.FreePort(), FleetHarness.FreePort(), FleetHarness.FreePort());
                string[] Node1Args() => ["--proxydb", seed, "--fleet-data", Path.Combine(data.FullName, "node1")];
                string[] Node2Args() => ["--fleet-data", Path.Combine(data.FullName, "node2")];

                var lighthouse = await fleet.StartLighthouseAsync(port: lighthousePort);
                FleetMember[] nodes = [await fleet.StartNodeAsync("node1", lighthouse, port1, args: Node1Args()), await fleet.StartNodeAsync("node2", lighthouse, port2, args: Node2Args())];
                await WaitForVersionAsync(fleet, nodes, ProxyDatabase.Create([ProxyRecordCsvParse(Line("seed_a")), ProxyRecordCsvParse(Line("seed_b", "de"))]).Version);
                await fleet.WaitForLineAsync(nodes[0], "Fleet proxy database seeded from");

                await fleet.PbmAsync(nodes[1].Admin, "proxydb", "add", Line("extra_1", "fr"));
                await fleet.PbmAsync(nodes[0].Admin, "proxydb", "remove", "seed_a");
                var expected = ProxyDatabase.Create([ProxyRecordCsvParse(Line("seed_b", "de")), ProxyRecordCsvParse(Line("extra_1", "fr"))]).Version;
                await WaitForVersionAsync(fleet, nodes, expected);

                // Every member stops: nothing is left in memory anywhere.
                foreach (var member in (FleetMember[])[.. nodes, lighthouse])
                {
                    member.Process.Terminate();
                    Assert.Equal(0, await fleet.ExitCodeAsync(member));
                }

                lighthouse = await fleet.StartLighthouseAsync("lighthouse-again", lighthousePort);
                nodes = [await fleet.StartNodeAsync("node1-again", lighthouse, port1, args: Node1Args()), await fleet.StartNodeAsync("node2-again", lighthouse, port2, args: Node2Args())];
                await fleet.WaitForLineAsync(nodes[0], "not loaded (the fleet's database wins)");
                await WaitForVersionAsync(fleet, nodes, expected);
                var list = await fleet.PbmAsync(nodes[1].Admin, "proxydb", "list", "--json");
                using var json = JsonDocument.Parse(list.Output);
                Assert.Equal(["extra_1", "seed_b"], json.RootElement.GetProperty("records").EnumerateArray().Select(r => r.GetProperty("id").GetString()));
            });
        }
        finally
        {
            data.Delete(recursive: true);
        }
    }

    private static async Task<int> AcceptedAsync(NodeProcess node)
    {
        var status = await Pbm.RunAsync(node.AdminEndpoint!.ToString(), "node", "status", "--json");
        Assert.True(status.Exit == 0, $"pbm node status: {status}");
        using var json = JsonDocument.Parse(status.Output);
        return int.Parse(json.RootElement.GetProperty("listeners")[0].GetProperty("accepted").GetString()!, CultureInfo.InvariantCulture);
    }

    /// <summary>pbm, once more when its endpoint did not answer in time (exit 3: a loaded 2-core machine), never for a failed command.</summary>
    private static async Task<Pbm.Result> PbmRetryingAsync(params string[] args)
    {
        var result = await Pbm.RunAsync(args);
        return result.Exit == 3 ? await Pbm.RunAsync(args) : result;
    }

    private static UpstreamProxy ProxyRecordCsvParse(string line) => ProxyDatabaseLoader.ParseCsv(line).Single();

    private static async Task<string> WriteFileAsync(IEnumerable<string> lines)
    {
        var path = Path.Combine(Path.GetTempPath(), $"rama-fleet-proxydb-{Guid.NewGuid():N}.csv");
        await File.WriteAllLinesAsync(path, lines);
        return path;
    }

    private static string Distribution(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        double At(double q) => sorted[(int)Math.Min(sorted.Count - 1, Math.Floor(q * sorted.Count))];
        return string.Create(CultureInfo.InvariantCulture, $"n={sorted.Count} min {sorted[0]:F0} p50 {At(0.5):F0} p90 {At(0.9):F0} max {sorted[^1]:F0}");
    }

    /// <summary>Polls every node until its replica has <paramref name="version"/> (the content hash of the expected records).</summary>
    private static async Task WaitForVersionAsync(FleetHarness fleet, IEnumerable<FleetMember> nodes, string version)
    {
        foreach (var node in nodes)
        {
            var last = "";
            var deadline = Stopwatch.StartNew();
            while ((last = (await SelectAsync(node, ["any-session-x"])).Version) != version)
            {
                if (deadline.Elapsed > FleetHarness.Within)
                {
                    throw new TimeoutException($"{node.Name}'s replica is at version {last}, not {version}");
                }

                await Task.Delay(50); // the poll interval: each look is an admin request
            }

            fleet.Note($"{node.Name}'s replica at version {version}");
        }
    }

    /// <summary>Each username's pick on each node (batches of 300 per request); every node must answer from <paramref name="version"/> and agree.</summary>
    private static async Task<Dictionary<string, string>> SelectEverywhereAsync(FleetHarness fleet, IReadOnlyList<FleetMember> nodes, IReadOnlyList<string> usernames, string version)
    {
        Dictionary<string, string>? first = null;
        foreach (var node in nodes)
        {
            var picks = new Dictionary<string, string>();
            foreach (var batch in usernames.Chunk(300))
            {
                var (selected, seen) = await SelectAsync(node, batch);
                Assert.Equal(version, seen);
                foreach (var (username, id) in selected)
                {
                    picks[username] = id;
                }
            }

            Assert.Equal(usernames.Count, picks.Count);
            Assert.All(picks.Values, id => Assert.NotEqual("", id));
            if (first is null)
            {
                first = picks;
            }
            else
            {
                var disagree = usernames.Where(u => first[u] != picks[u]).ToList();
                Assert.True(disagree.Count == 0, $"{node.Name} disagrees with {nodes[0].Name} on {disagree.Count} sessions, e.g. {disagree.FirstOrDefault()}");
            }
        }

        fleet.Note($"{usernames.Count} usernames selected on {nodes.Count} nodes at version {version}");
        return first!;
    }

    /// <summary>When <paramref name="username"/>'s pick on <paramref name="node"/> first is (or first is no longer) non-empty, on <paramref name="clock"/>.</summary>
    private static async Task<TimeSpan> FirstTimeAsync(FleetMember node, string username, bool seen, Stopwatch clock)
    {
        while (true)
        {
            var (selected, _) = await SelectAsync(node, [username]);
            if ((selected[username].Length > 0) == seen)
            {
                return clock.Elapsed;
            }

            if (clock.Elapsed > FleetHarness.Within)
            {
                throw new TimeoutException($"{username} {(seen ? "never selectable" : "still selected")} on {node.Name}");
            }

            await Task.Delay(20); // the poll interval of a latency measurement: its resolution
        }
    }

    /// <summary>
    /// <c>proxydb select</c> straight on the admin endpoint's protocol (one JSON request line, NDJSON frames back), so the
    /// 20 ms polls measure the replica and not a pbm process start.
    /// </summary>
    private static async Task<(Dictionary<string, string> Selected, string Version)> SelectAsync(FleetMember node, IReadOnlyList<string> usernames)
    {
        var endpoint = node.Process.AdminEndpoint!;
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint.Address, endpoint.Port);
        await using var stream = client.GetStream();
        var request = JsonSerializer.Serialize(new { palette = "proxydb", command = "select", args = usernames });
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request + "\n"));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var selected = new Dictionary<string, string>();
        var version = "";
        while (await reader.ReadLineAsync() is { } line)
        {
            using var frame = JsonDocument.Parse(line);
            var root = frame.RootElement;
            switch (root.GetProperty("type").GetString())
            {
                case "table":
                    foreach (var row in root.GetProperty("rows").EnumerateArray())
                    {
                        selected[row[0].GetString()!] = row[1].GetString()!;
                    }

                    break;
                case "fields":
                    version = root.GetProperty("fields").GetProperty("version").GetString()!;
                    break;
                case "error":
                    throw new InvalidOperationException($"{node.Name}: proxydb select: {root.GetProperty("message").GetString()}");
                case "end":
                    return (selected, version);
            }
        }

        throw new IOException($"{node.Name}: the admin endpoint closed before the end frame");
    }
}
