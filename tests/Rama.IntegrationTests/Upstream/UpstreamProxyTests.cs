using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.IntegrationTests.Upstream;

/// <summary>
/// rama-node with --proxydb in front of real upstream proxies (microsocks, dante, tinyproxy, squid);
/// the origin tells which upstream carried each request by the source address it saw.
/// </summary>
[Collection("upstream peers")]
public sealed class UpstreamProxyTests(UpstreamPeersFixture peers) : IAsyncLifetime
{
    private readonly List<NodeProcess> _nodes = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }
    }

    private async Task<(NodeProcess Node, string DbPath)> StartNodeAsync(string? csv = null, params string[] extra)
    {
        var db = Path.Combine(peers.Directory, $"proxydb-{Guid.NewGuid():N}.csv");
        await File.WriteAllTextAsync(db, csv ?? peers.DatabaseCsv());
        var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--auth", "john:pw", "--proxydb", db, .. extra]);
        _nodes.Add(node);
        return (node, db);
    }

    private static string Proxy(NodeProcess node) => $"127.0.0.1:{node.Endpoint.Port}";

    /// <summary>One absolute-form GET through the node on a raw socket (fast enough for thousands); returns the upstream id or the status line.</summary>
    private async Task<string> ViaAsync(NodeProcess node, string username)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await socket.ConnectAsync(node.Endpoint, cts.Token);
        var credentials = Convert.ToBase64String(Encoding.UTF8.GetBytes(username + ":pw"));
        var url = peers.OriginUrl;
        await socket.SendAsync(Encoding.ASCII.GetBytes(
            $"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{peers.Origin.Port}\r\nProxy-Authorization: Basic {credentials}\r\nConnection: close\r\n\r\n"), cts.Token);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, cts.Token)) > 0)
        {
            received.Write(buffer, 0, n);
        }

        var text = Encoding.ASCII.GetString(received.ToArray());
        var body = text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        return text.StartsWith("HTTP/1.1 200", StringComparison.Ordinal) ? UpstreamPeersFixture.IdOf(body) : text.Split("\r\n")[0] + " " + body.Trim();
    }

    private async Task<Dictionary<string, string>> SessionsAsync(NodeProcess node, int count, string labels = "country-us")
    {
        var result = new System.Collections.Concurrent.ConcurrentDictionary<string, string>();
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
        {
            result[$"s{i}"] = await ViaAsync(node, $"john-{labels}-session-s{i}");
        });
        return new Dictionary<string, string>(result);
    }

    [Fact]
    public async Task Curl_with_a_session_always_leaves_through_the_same_upstream_over_http_connect_and_socks5()
    {
        var (node, _) = await StartNodeAsync();
        var expected = ProxyDatabase.Parse(peers.DatabaseCsv()).Select(ProxyUsername.Parse("u-country-us").Filter, "7", 1)[0].Id;
        var seen = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            seen.Add(UpstreamPeersFixture.IdOf((await Cli.CurlAsync("-U", "john-country-us-session-7:pw", "-x", $"http://{Proxy(node)}", peers.OriginUrl)).Text));
            seen.Add(UpstreamPeersFixture.IdOf((await Cli.CurlAsync("-p", "-U", "john-country-us-session-7:pw", "-x", $"http://{Proxy(node)}", peers.OriginUrl)).Text));
            seen.Add(UpstreamPeersFixture.IdOf((await Cli.CurlAsync("--socks5", $"john-country-us-session-7:pw@{Proxy(node)}", peers.OriginUrl)).Text));
            seen.Add(UpstreamPeersFixture.IdOf((await Cli.CurlAsync("--socks5-hostname", $"john-country-us-session-7:pw@{Proxy(node)}", peers.OriginUrl)).Text));
        }

        Assert.All(seen, id => Assert.Equal(expected, id));
        var log = await node.WaitForLineAsync($"upstream={expected}", TimeSpan.FromSeconds(5)); // the access log names the upstream
        Assert.Contains("user=john", log, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("ms")]
    [InlineData("dante")]
    [InlineData("tiny")]
    [InlineData("squid")]
    public async Task Each_real_upstream_carries_http_connect_and_socks5_clients(string id)
    {
        var (node, _) = await StartNodeAsync();
        var http = await Cli.CurlAsync("-U", $"john-id-{id}:pw", "-x", $"http://{Proxy(node)}", peers.OriginUrl);
        var connect = await Cli.CurlAsync("-p", "-U", $"john-id-{id}:pw", "-x", $"http://{Proxy(node)}", peers.OriginUrl);
        var socks = await Cli.CurlAsync("--socks5-hostname", $"john-id-{id}:pw@{Proxy(node)}", "http://localhost:" + peers.Origin.Port + "/");
        Assert.Equal(UpstreamPeersFixture.SourceOf[id], http.Text);
        Assert.Equal(UpstreamPeersFixture.SourceOf[id], connect.Text);
        Assert.Equal(UpstreamPeersFixture.SourceOf[id], socks.Text);
    }

    [Fact]
    public async Task Two_nodes_agree_on_1000_sessions_and_removing_an_upstream_moves_only_its_sessions()
    {
        var (a, dbA) = await StartNodeAsync();
        var (b, _) = await StartNodeAsync();
        var started = Stopwatch.StartNew();
        var onA = await SessionsAsync(a, 1000);
        var onB = await SessionsAsync(b, 1000);
        foreach (var (session, id) in onA)
        {
            Assert.True(UpstreamPeersFixture.SourceOf.ContainsKey(id), $"{session}: {id}");
            Assert.Equal(id, onB[session]);
        }

        var used = onA.Values.GroupBy(v => v).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(["dante", "ms", "squid"], used.Keys.Order()); // country-us: tiny (de) never
        Assert.All(used.Values, n => Assert.InRange(n, 200, 500));

        // Remove squid from node a's file: only squid's sessions move.
        UpstreamPeersFixture.WriteAtomically(dbA, peers.DatabaseCsv(without: "squid"));
        await a.WaitForLineAsync("reloaded: 3 records", TimeSpan.FromSeconds(15));
        var after = await SessionsAsync(a, 1000);
        foreach (var (session, id) in onA)
        {
            if (id == "squid")
            {
                Assert.Contains(after[session], new[] { "ms", "dante" });
            }
            else
            {
                Assert.Equal(id, after[session]);
            }
        }

        Assert.True(started.Elapsed < TimeSpan.FromMinutes(2), $"took {started.Elapsed}");
    }

    [Theory]
    [InlineData("country-us", "dante,ms,squid")]
    [InlineData("country-de", "tiny")]
    [InlineData("pool-a", "ms,tiny")]
    [InlineData("residential", "ms,squid")]
    [InlineData("!mobile", "ms,tiny")]
    [InlineData("residential-!mobile", "ms")]
    [InlineData("asn-20057-asn-3320", "dante,tiny")]
    [InlineData("continent-na-carrier-verizon", "squid")]
    [InlineData("city-berlin", "squid,tiny")]
    public async Task Filters_pick_only_matching_upstreams(string labels, string expected)
    {
        var (node, _) = await StartNodeAsync();
        var sticky = await SessionsAsync(node, 60, labels);
        var random = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => ViaAsync(node, "john-" + labels)));
        Assert.Equal(expected.Split(','), sticky.Values.Distinct().Order());
        Assert.All(random, id => Assert.Contains(id, expected.Split(',')));
    }

    [Fact]
    public async Task A_filter_matching_nothing_is_a_clear_error_and_an_unknown_label_is_407_naming_it()
    {
        var (node, _) = await StartNodeAsync();
        var none = await Cli.CurlAsync("-i", "-U", "john-country-fr:pw", "-x", $"http://{Proxy(node)}", peers.OriginUrl);
        Assert.StartsWith("HTTP/1.1 503", none.Text, StringComparison.Ordinal);
        Assert.Contains("no upstream proxy matches filter 'country=fr'", none.Text, StringComparison.Ordinal);
        var socks = await Cli.CurlAsync("--socks5", $"john-country-fr:pw@{Proxy(node)}", peers.OriginUrl);
        Assert.NotEqual(0, socks.ExitCode);
        Assert.Contains("(1)", socks.Stderr, StringComparison.Ordinal); // RFC 1928 reply 0x01 general failure

        var unknown = await Cli.CurlAsync("-i", "-U", "john-country-us-colour-red:pw", "-x", $"http://{Proxy(node)}", peers.OriginUrl);
        Assert.StartsWith("HTTP/1.1 407", unknown.Text, StringComparison.Ordinal);
        Assert.Contains("unknown label 'colour'", unknown.Text, StringComparison.Ordinal);
        var unknownSocks = await Cli.CurlAsync("--socks5", $"john-colour-red:pw@{Proxy(node)}", peers.OriginUrl);
        Assert.NotEqual(0, unknownSocks.ExitCode);
        await node.WaitForLineAsync("unknown label 'colour'", TimeSpan.FromSeconds(5)); // SOCKS5 cannot carry the text: the log does
    }

    [Fact]
    public async Task A_refusing_upstream_is_skipped_backed_off_and_used_again_after_the_backoff()
    {
        // "flaky" is a microsocks that is not running yet; "squid" is the steady alternative.
        var flakyPort = UpstreamPeersFixture.FreePort();
        var csv = "flaky,1,0,0,0,1,0,0,1,0,127.0.0.1:" + flakyPort + ",f,na,us,,,,1,\n" +
                  peers.DatabaseCsv().Split('\n').Single(l => l.StartsWith("squid,", StringComparison.Ordinal)).Replace(",b,", ",f,", StringComparison.Ordinal) + "\n";
        var db = ProxyDatabase.Parse(csv);
        var filter = ProxyUsername.Parse("u-pool-f").Filter;
        var session = Enumerable.Range(0, 100).Select(i => $"k{i}").First(s => db.Select(filter, s, 1)[0].Id == "flaky");
        var backoff = TimeSpan.FromSeconds(6);
        var (node, _) = await StartNodeAsync(csv, "--upstream-backoff", "6");
        var user = $"john-pool-f-session-{session}";

        // Started before the request: the node records the failure during it, so this clock runs at least as long as the back-off has.
        var failedAt = Stopwatch.StartNew();
        var first = await ViaAsync(node, user);
        Assert.Equal("squid", first);
        await node.WaitForLineAsync("Upstream flaky", TimeSpan.FromSeconds(5));

        await using var flaky = await PeerProcess.StartAsync("microsocks (flaky)", "microsocks", ["-i", "127.0.0.1", "-p", flakyPort.ToString(), "-b", "127.0.0.15"],
            flakyPort, peers.Directory);
        var during = await ViaAsync(node, user);
        if (failedAt.Elapsed < backoff - TimeSpan.FromSeconds(1))
        {
            Assert.Equal("squid", during); // still backed off although it is up again
        }

        // After the back-off the session's own upstream is probed and used again.
        string now;
        var deadline = Stopwatch.StartNew();
        while ((now = await ViaAsync(node, user)) != "direct:127.0.0.15")
        {
            Assert.Equal("squid", now);
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "flaky was never used again");
            await Task.Delay(200);
        }

        Assert.True(failedAt.Elapsed >= backoff, $"used again after only {failedAt.Elapsed}");
    }

    [Fact]
    public async Task Bad_database_files_are_rejected_with_line_numbers_and_the_node_keeps_serving()
    {
        var (node, db) = await StartNodeAsync();
        var good = peers.DatabaseCsv();
        var lines = good.TrimEnd('\n').Split('\n');
        string Replace(int line, string text) => string.Join('\n', lines.Select((l, i) => i + 1 == line ? text : l)) + "\n";
        var cases = new (string Text, string Expect)[]
        {
            (Replace(3, lines[2] + ",,,extra"), "line 3: expected 18 to 21 columns, found 22"),
            (Replace(2, lines[1].Replace("ms,1,0,", "ms,yes,0,", StringComparison.Ordinal)), "line 2, field 'tcp': 'yes' is not a boolean"),
            (Replace(4, lines[3].Replace(",3320,", ",AS33x0,", StringComparison.Ordinal)), "line 4, field 'asn': 'AS33x0' is not an ASN"),
            (good + lines[4].Replace("squid,", "SQUID,", StringComparison.Ordinal) + "\n", "line 6, field 'id': duplicate id 'SQUID' (first on line 5)"),
            (Replace(5, lines[4].Replace("squid,1,0,1,0,0,0,0,1,1,", "squid,1,0,1,0,0,0,0,0,0,", StringComparison.Ordinal)), "line 5: record 'squid' is unusable"),
        };
        foreach (var (text, expect) in cases)
        {
            UpstreamPeersFixture.WriteAtomically(db, text);
            var rejected = await node.WaitForLineAsync(expect, TimeSpan.FromSeconds(15));
            Assert.Contains("rejected, keeping version", rejected, StringComparison.Ordinal);
            Assert.Equal("squid", await ViaAsync(node, "john-id-squid")); // the old database still serves
        }

        Assert.Contains("Rama node ready", node.Output, StringComparison.Ordinal);
        Assert.False(node.Exited.IsCompleted);
    }
}

[CollectionDefinition("upstream peers")]
public sealed class UpstreamPeersCollection : ICollectionFixture<UpstreamPeersFixture>;
