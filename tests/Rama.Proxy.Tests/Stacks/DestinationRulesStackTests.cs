using System.Collections.Concurrent;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Destinations;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.Proxy.Tests.Stacks;

/// <summary>
/// Destination rules through the forward-proxy stack, driven by curl (HTTP forward, CONNECT, SOCKS5 with the name sent to
/// the proxy): the default denials (forced on: every test listener is on loopback), names that resolve to a denied address,
/// allow rules over the defaults, per-user and port rules, chaining; each refusal's exact answer and access entry.
/// </summary>
public sealed class DestinationRulesStackTests : IAsyncLifetime
{
    private sealed class RecordingAccessLog : IAccessLog
    {
        public ConcurrentQueue<AccessLogEntry> Entries { get; } = new();

        public bool IsEnabled => true;

        public void Write(in AccessLogEntry entry) => Entries.Enqueue(entry);
    }

    private const int AdminPort = 19090;
    private const int ClusterPort = 14054;

    private readonly ConcurrentQueue<string> _originRequests = new();
    private readonly RecordingAccessLog _log = new();
    private RawOrigin _origin = null!;
    private ProxyHarness? _proxy;

    public Task InitializeAsync()
    {
        _origin = TinyHttpOrigin.Start("hello from origin", _originRequests);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_proxy is not null)
        {
            await _proxy.AssertNoOpenConnectionsAsync();
            await _proxy.DisposeAsync();
        }

        await _origin.DisposeAsync();
    }

    private static StaticProxyAuthenticator Users() => new([new("alice", "pw"), new("bob", "pw")]);

    private ProxyHarness Start(DestinationPolicy policy, Dictionary<string, IPAddress[]>? dns = null)
    {
        var options = new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(2) },
            Dns = new DnsResolverOptions { Overrides = new Dictionary<string, IPAddress[]>(dns ?? [], StringComparer.OrdinalIgnoreCase) },
            Destinations = policy,
        };
        _proxy = new ProxyHarness(ForwardProxyStack.Create(options, Users(), accessLog: _log));
        return _proxy;
    }

    private static DestinationPolicy Defaults(params DestinationRule[] rules) =>
        new(rules, defaultDenials: true, [(AdminPort, "admin-port"), (ClusterPort, "cluster-port")]);

    /// <summary>One request through the proxy the way <paramref name="via"/> says; returns curl's result.</summary>
    private Task<Cli.Result> CurlAsync(string via, string hostPort, string user = "alice")
    {
        var url = $"http://{hostPort}/x";
        return via switch
        {
            "http" => Cli.CurlAsync("-U", $"{user}:pw", "-x", _proxy!.Url, "-w", "\n%{http_code}", url),
            "connect" => Cli.CurlAsync("-p", "-U", $"{user}:pw", "-x", _proxy!.Url, "-w", "\n%{http_code}", url),
            _ => Cli.CurlAsync("--socks5-hostname", $"127.0.0.1:{_proxy!.Port}", "--proxy-user", $"{user}:pw", url),
        };
    }

    /// <summary>The refusal as the client and the access log see it.</summary>
    private async Task AssertDeniedAsync(string via, Cli.Result result, string text)
    {
        switch (via)
        {
            case "http":
                Assert.Equal($"Forbidden: {text}\n\n403", result.Text); // the body, then curl's -w status
                break;
            case "connect":
                Assert.Equal(56, result.ExitCode); // curl: CONNECT tunnel failed
                Assert.Contains("403", result.Stderr, StringComparison.Ordinal);
                break;
            default:
                Assert.Equal(97, result.ExitCode); // curl: the SOCKS5 proxy refused
                Assert.Contains("(2)", result.Stderr, StringComparison.Ordinal); // RFC 1928 §6: 0x02 connection not allowed by ruleset
                break;
        }

        await Eventually.TrueAsync(() => !_log.Entries.IsEmpty);
        var entry = Assert.Single(_log.Entries);
        Assert.Equal(via switch { "http" => AccessKind.Forward, "connect" => AccessKind.Connect, _ => AccessKind.Socks5 }, entry.Kind);
        Assert.Equal(via == "socks5" ? (int)Rama.Proxy.Socks5.Socks5Reply.NotAllowedByRuleset : 403, entry.Status);
        Assert.Equal("alice", entry.User);
        Assert.Empty(_originRequests);
    }

    public static TheoryData<string, string> ViaAndDefault()
    {
        var data = new TheoryData<string, string>();
        foreach (var via in new[] { "http", "connect", "socks5" })
        {
            foreach (var rule in new[] { "loopback", "link-local", "admin-port", "cluster-port" })
            {
                data.Add(via, rule);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(ViaAndDefault))]
    public async Task Each_default_denial_refuses_with_the_rule_named(string via, string rule)
    {
        Start(Defaults());
        var target = rule switch
        {
            "loopback" => $"127.0.0.1:{_origin.Port}",
            "link-local" => "169.254.169.254:80", // refused before any packet: nothing leaves the machine
            "admin-port" => $"127.0.0.1:{AdminPort}",
            _ => $"127.0.0.1:{ClusterPort}",
        };

        var result = await CurlAsync(via, target);

        await AssertDeniedAsync(via, result, $"destination {target} denied by rule '{rule}' for user 'alice'");
    }

    [Theory]
    [InlineData("http")]
    [InlineData("connect")]
    [InlineData("socks5")]
    public async Task A_name_that_resolves_to_a_denied_address_is_denied(string via)
    {
        Start(Defaults(), new() { ["rebind.test"] = [IPAddress.Parse("127.0.0.1")], ["metadata.test"] = [IPAddress.Parse("::ffff:169.254.169.254")] });

        var result = await CurlAsync(via, $"rebind.test:{_origin.Port}");

        await AssertDeniedAsync(via, result, $"destination rebind.test:{_origin.Port} (127.0.0.1) denied by rule 'loopback' for user 'alice'");
        var metadata = await CurlAsync(via, "metadata.test:80");
        Assert.NotEqual(0, metadata.ExitCode + (metadata.Text.EndsWith("403", StringComparison.Ordinal) ? 1 : 0));
        Assert.Empty(_originRequests);
    }

    [Theory]
    [InlineData("http")]
    [InlineData("connect")]
    [InlineData("socks5")]
    public async Task An_allow_rule_wins_over_the_defaults(string via)
    {
        Start(Defaults(
            new DestinationRule { Name = "origin-by-name", Action = DestinationAction.Allow, Hosts = ["origin.test"] },
            new DestinationRule { Name = "origin-by-address", Action = DestinationAction.Allow, Cidrs = ["127.0.0.1/32"], Ports = [_origin.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)] }),
            new() { ["origin.test"] = [IPAddress.Loopback] });

        var byName = await CurlAsync(via, $"ORIGIN.test.:{_origin.Port}");
        var byAddress = await CurlAsync(via, $"127.0.0.1:{_origin.Port}");

        Assert.StartsWith("hello from origin", byName.Text, StringComparison.Ordinal);
        Assert.StartsWith("hello from origin", byAddress.Text, StringComparison.Ordinal);
        Assert.Equal(2, _originRequests.Count);
        var other = await CurlAsync(via, $"127.0.0.1:{AdminPort}");
        Assert.NotEqual(0, other.ExitCode + (other.Text.EndsWith("403", StringComparison.Ordinal) ? 1 : 0)); // the defaults still hold elsewhere
    }

    [Theory]
    [InlineData("http")]
    [InlineData("socks5")]
    public async Task A_per_user_rule_applies_to_that_user_only(string via)
    {
        Start(new DestinationPolicy([new DestinationRule { Name = "bob-no-local", Cidrs = ["127.0.0.0/8"], Users = ["bob"] }], defaultDenials: false));

        var alice = await CurlAsync(via, $"127.0.0.1:{_origin.Port}", "alice");
        Assert.StartsWith("hello from origin", alice.Text, StringComparison.Ordinal);
        var bob = await CurlAsync(via, $"127.0.0.1:{_origin.Port}", "bob");
        if (via == "http")
        {
            Assert.Equal($"Forbidden: destination 127.0.0.1:{_origin.Port} denied by rule 'bob-no-local' for user 'bob'\n\n403", bob.Text);
        }
        else
        {
            Assert.Equal(97, bob.ExitCode);
        }

        Assert.Single(_originRequests);
    }

    [Fact]
    public async Task A_pooled_origin_connection_of_one_user_is_never_handed_to_a_user_a_rule_refuses()
    {
        await using var keepAlive = new TestOrigin(); // keeps connections open: the proxy pools them
        Start(new DestinationPolicy([new DestinationRule { Name = "bob-no-local", Cidrs = ["127.0.0.0/8"], Users = ["bob"] }], defaultDenials: false));

        var alice = await Cli.CurlAsync("-U", "alice:pw", "-x", _proxy!.Url, "-w", "%{http_code}", "-o", "/dev/null", keepAlive.Url("/a"));
        Assert.Equal("200", alice.Text);
        await Eventually.TrueAsync(() => keepAlive.OpenConnections == 1); // alice's connection, idle in the pool

        var bob = await Cli.CurlAsync("-U", "bob:pw", "-x", _proxy.Url, "-w", "\n%{http_code}", keepAlive.Url("/b"));
        Assert.Equal($"Forbidden: destination 127.0.0.1:{keepAlive.Port} denied by rule 'bob-no-local' for user 'bob'\n\n403", bob.Text);
        Assert.Single(keepAlive.Requests);

        var again = await Cli.CurlAsync("-U", "alice:pw", "-x", _proxy.Url, "-w", "%{http_code}", "-o", "/dev/null", keepAlive.Url("/c"));
        Assert.Equal("200", again.Text);
        Assert.Equal(1, keepAlive.Connections); // alice still reuses her own
        await _proxy.DisposeAsync();
        _proxy = null;
    }

    [Fact]
    public async Task A_ports_rule_refuses_connect_to_port_25_with_the_exact_answer()
    {
        var proxy = Start(new DestinationPolicy([new DestinationRule { Name = "no-smtp", Ports = ["25", "465", "587"] }], defaultDenials: false));

        var answer = await proxy.SendAndReadToCloseAsync("CONNECT mail.example:25 HTTP/1.1\r\nHost: mail.example:25\r\nProxy-Authorization: Basic YWxpY2U6cHc=\r\nConnection: close\r\n\r\n");

        const string body = "Forbidden: destination mail.example:25 denied by rule 'no-smtp' for user 'alice'\n";
        Assert.True(answer.StartsWith("HTTP/1.1 403 Forbidden\r\n", StringComparison.Ordinal), answer);
        Assert.Contains($"Content-Length: {body.Length}\r\n", answer, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n" + body, answer, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => !_log.Entries.IsEmpty);
        Assert.Equal((AccessKind.Connect, 403, "mail.example:25"), (_log.Entries.Single().Kind, _log.Entries.Single().Status, _log.Entries.Single().Target));

        // Other ports of the same name are not this rule's business (the name does not resolve: 502, not 403).
        var other = await Cli.CurlAsync("-p", "-U", "alice:pw", "-x", proxy.Url, "-w", "%{http_code}", "-o", "/dev/null", $"http://127.0.0.1:{_origin.Port}/");
        Assert.Equal("200", other.Text);
    }

    [Fact]
    public async Task Without_rules_and_defaults_a_loopback_listener_keeps_todays_behaviour()
    {
        Start(new DestinationPolicy([], defaultDenials: false));
        var result = await CurlAsync("http", $"127.0.0.1:{_origin.Port}");
        Assert.StartsWith("hello from origin", result.Text, StringComparison.Ordinal);
    }
}

/// <summary>Destination rules with upstream chaining: the client's target is checked before any upstream is dialled; the upstream itself is trusted.</summary>
public sealed class DestinationRulesChainingTests : IAsyncLifetime
{
    private RawOrigin _origin = null!;
    private TcpServer _upstream = null!;
    private TcpServer? _node;

    public Task InitializeAsync()
    {
        _origin = TinyHttpOrigin.Start("hello from origin");
        _upstream = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _upstream.Start(HttpProxy.CreateForwardProxy(new HttpProxyOptions(), new TcpConnector(), StaticProxyAuthenticator.None));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_node is not null)
        {
            await Eventually.TrueAsync(() => _node.OpenConnections == 0, TimeSpan.FromSeconds(10), "node connections still open");
            await _node.DisposeAsync();
        }

        await _upstream.DisposeAsync();
        await _origin.DisposeAsync();
    }

    private string Node(params DestinationRule[] rules)
    {
        // The upstream proxy is on 127.0.0.1, which the forced defaults deny for clients: it must stay reachable.
        var db = ProxyDatabase.Create([Rama.Proxy.Tests.Upstream.UpstreamConnectorTests.Record("up1", "1,0,1,0,0,0,0,1,0", $"127.0.0.1:{_upstream.LocalEndPoint.Port}", null)]);
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions { Destinations = new DestinationPolicy(rules, defaultDenials: true) },
            new StaticProxyAuthenticator([new("john", "pw"), new("jane", "pw")]), proxyDatabase: db);
        _node = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _node.Start(stack);
        return $"http://127.0.0.1:{_node.LocalEndPoint.Port}";
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_denied_target_is_refused_before_any_upstream_is_dialled(bool connect)
    {
        var proxy = Node();
        var target = $"127.0.0.1:{_origin.Port}";

        var result = await Cli.CurlAsync([.. connect ? ["-p"] : Array.Empty<string>(), "-U", "john-country-us:pw", "-x", proxy, "-w", "\n%{http_code}", $"http://{target}/"]);

        if (connect)
        {
            Assert.Equal(56, result.ExitCode);
            Assert.Contains("403", result.Stderr, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal($"Forbidden: destination {target} denied by rule 'loopback' for user 'john'\n\n403", result.Text);
        }

        Assert.Equal(0, _upstream.AcceptedConnections);
    }

    [Fact]
    public async Task A_direct_route_of_a_node_with_upstreams_is_checked_like_any_dial()
    {
        var proxy = Node();
        var result = await Cli.CurlAsync("-U", "john:pw", "-x", proxy, "-w", "\n%{http_code}", $"http://127.0.0.1:{_origin.Port}/"); // no labels: direct
        Assert.Equal($"Forbidden: destination 127.0.0.1:{_origin.Port} denied by rule 'loopback' for user 'john'\n\n403", result.Text);
        Assert.Equal(0, _upstream.AcceptedConnections);
    }

    [Fact]
    public async Task An_allowed_target_goes_through_the_upstream_and_user_rules_see_the_base_user()
    {
        var port = _origin.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var proxy = Node(
            new DestinationRule { Name = "jane-not-origin", Ports = [port], Users = ["jane"] },
            new DestinationRule { Name = "origin", Action = DestinationAction.Allow, Cidrs = ["127.0.0.1"], Ports = [port] });
        var url = $"http://127.0.0.1:{_origin.Port}/";

        var john = await Cli.CurlAsync("-U", "john-country-us:pw", "-x", proxy, url);
        Assert.Equal("hello from origin", john.Text);
        Assert.Equal(1, _upstream.AcceptedConnections);

        var jane = await Cli.CurlAsync("-U", "jane-country-us-session-7:pw", "-x", proxy, "-w", "\n%{http_code}", url);
        Assert.Equal($"Forbidden: destination 127.0.0.1:{_origin.Port} denied by rule 'jane-not-origin' for user 'jane'\n\n403", jane.Text);
        Assert.Equal(1, _upstream.AcceptedConnections);
    }
}
