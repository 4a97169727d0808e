using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Routing;

namespace Rama.Proxy.Tests.Http.Routing;

/// <summary>The routing engine in memory: matching order, each load-balancing policy, hash stickiness, health on fake time, forwarded headers, transforms.</summary>
public sealed class RoutingUnitTests
{
    internal static HttpRequest Request(string method, string target, params (string Name, string Value)[] headers)
    {
        var fields = new HttpHeaders();
        foreach (var (name, value) in headers)
        {
            fields.Add(name, value);
        }

        return new HttpRequest(method, target, RequestTargetForm.Origin, HttpProtocolVersion.Http11, fields);
    }

    private static ClusterOptions Cluster(string id, LoadBalancingPolicy policy = LoadBalancingPolicy.RoundRobin, int destinations = 3, string? hashOn = null) => new()
    {
        ClusterId = id,
        LoadBalancingPolicy = policy,
        HashOn = hashOn,
        Destinations = [.. Enumerable.Range(0, destinations).Select(i => new DestinationOptions { DestinationId = $"d{i}", Address = $"http://127.0.0.1:{9000 + i}" })],
    };

    private static RouteTable Table(ReverseRoutingOptions options, TimeProvider? time = null)
    {
        Assert.Empty(options.Validate());
        var clusters = options.Clusters.ToDictionary(c => c.ClusterId, c => new ClusterState(c,
            [.. c.Destinations.Select(d =>
            {
                Assert.True(DestinationAddress.TryParse(d.Address, out var address, out _));
                return new DestinationState(d.DestinationId, address, address);
            })], time ?? TimeProvider.System), StringComparer.OrdinalIgnoreCase);
        return new RouteTable(options, clusters);
    }

    private static string? Route(RouteTable table, HttpRequest request)
    {
        var (host, port) = RoutingProxyService.SplitHost(request.Headers.GetText("Host") ?? "");
        var query = request.Target.IndexOf('?', StringComparison.Ordinal);
        return table.Match(request, host, port, query >= 0 ? request.Target.AsSpan(0, query) : request.Target)?.Id;
    }

    [Fact]
    public void Routes_match_by_host_path_method_and_header_with_the_most_specific_first()
    {
        var table = Table(new ReverseRoutingOptions
        {
            Clusters = [Cluster("c")],
            Routes =
            [
                new RouteOptions { RouteId = "any", ClusterId = "c" },
                new RouteOptions { RouteId = "api", ClusterId = "c", Match = new RouteMatchOptions { Path = "/api/{**catch-all}" } },
                new RouteOptions { RouteId = "api-v2", ClusterId = "c", Match = new RouteMatchOptions { Path = "/api/v2" } },
                new RouteOptions { RouteId = "wild", ClusterId = "c", Match = new RouteMatchOptions { Hosts = ["*.example.com"] } },
                new RouteOptions { RouteId = "exact", ClusterId = "c", Match = new RouteMatchOptions { Hosts = ["shop.example.com"] } },
                new RouteOptions { RouteId = "post", ClusterId = "c", Match = new RouteMatchOptions { Path = "/api", Methods = ["POST"] } },
                new RouteOptions
                {
                    RouteId = "beta", ClusterId = "c",
                    Match = new RouteMatchOptions { Path = "/api", Headers = [new HeaderMatchOptions { Name = "X-Beta", Mode = HeaderMatchMode.Exists }] },
                },
                new RouteOptions { RouteId = "first", ClusterId = "c", Order = -1, Match = new RouteMatchOptions { Path = "/first" } },
            ],
        });

        Assert.Equal("any", Route(table, Request("GET", "/", ("Host", "other"))));
        Assert.Equal("api", Route(table, Request("GET", "/api/users?x=1", ("Host", "other"))));
        Assert.Equal("api", Route(table, Request("GET", "/API", ("Host", "other"))));
        Assert.Equal("any", Route(table, Request("GET", "/apix", ("Host", "other")))); // segment-wise prefix
        Assert.Equal("api-v2", Route(table, Request("GET", "/api/v2/items", ("Host", "other"))));
        Assert.Equal("post", Route(table, Request("POST", "/api/users", ("Host", "other"))));
        Assert.Equal("beta", Route(table, Request("GET", "/api/users", ("Host", "other"), ("X-Beta", "1"))));
        Assert.Equal("exact", Route(table, Request("GET", "/", ("Host", "Shop.Example.com:8080"))));
        Assert.Equal("wild", Route(table, Request("GET", "/", ("Host", "a.b.example.com"))));
        Assert.Equal("any", Route(table, Request("GET", "/", ("Host", "example.com")))); // *.example.com is subdomains only
        Assert.Equal("first", Route(table, Request("GET", "/first", ("Host", "shop.example.com"))));
        Assert.Equal("api", Route(table, Request("GET", "/api/x", ("Host", "shop.example.com")))); // a path prefix ranks before a host
    }

    [Theory]
    [InlineData(HeaderMatchMode.ExactHeader, "gold", true)]
    [InlineData(HeaderMatchMode.ExactHeader, "golden", false)]
    [InlineData(HeaderMatchMode.HeaderPrefix, "golden", true)]
    [InlineData(HeaderMatchMode.HeaderPrefix, "silver", false)]
    [InlineData(HeaderMatchMode.Contains, "very-gold-plan", true)]
    [InlineData(HeaderMatchMode.NotContains, "silver", true)]
    [InlineData(HeaderMatchMode.NotContains, "gold", false)]
    [InlineData(HeaderMatchMode.Exists, "anything", true)]
    [InlineData(HeaderMatchMode.NotExists, "anything", false)]
    public void Header_match_modes(HeaderMatchMode mode, string value, bool matches)
    {
        var headers = new HttpHeaders();
        headers.Add("X-Plan", value);
        Assert.Equal(matches, CompiledRoute.MatchesHeader(headers, new HeaderMatchOptions { Name = "x-plan", Values = ["GOLD"], Mode = mode }));
        Assert.Equal(mode is HeaderMatchMode.NotExists or HeaderMatchMode.NotContains,
            CompiledRoute.MatchesHeader(new HttpHeaders(), new HeaderMatchOptions { Name = "X-Plan", Values = ["gold"], Mode = mode }));
    }

    [Fact]
    public void Case_sensitive_header_match_compares_exactly() =>
        Assert.False(CompiledRoute.MatchesHeader(Headers(("X-Plan", "Gold")), new HeaderMatchOptions { Name = "X-Plan", Values = ["gold"], IsCaseSensitive = true }));

    private static HttpHeaders Headers(params (string, string)[] fields)
    {
        var headers = new HttpHeaders();
        foreach (var (n, v) in fields)
        {
            headers.Add(n, v);
        }

        return headers;
    }

    private static Dictionary<string, int> Distribution(ClusterState cluster, int requests, Func<int, HttpRequest>? request = null)
    {
        var counts = cluster.Destinations.ToDictionary(d => d.Id, _ => 0);
        for (var i = 0; i < requests; i++)
        {
            counts[cluster.Pick(request?.Invoke(i) ?? Request("GET", "/"))!.Id]++;
        }

        return counts;
    }

    private static ClusterState State(ClusterOptions options, TimeProvider? time = null) => Table(new ReverseRoutingOptions
    {
        Clusters = [options],
        Routes = [new RouteOptions { RouteId = "r", ClusterId = options.ClusterId }],
    }, time).Clusters[options.ClusterId];

    [Fact]
    public void Round_robin_splits_evenly()
    {
        var counts = Distribution(State(Cluster("c", LoadBalancingPolicy.RoundRobin)), 300);
        Assert.All(counts.Values, c => Assert.Equal(100, c));
    }

    [Theory]
    [InlineData(LoadBalancingPolicy.Random)]
    [InlineData(LoadBalancingPolicy.PowerOfTwoChoices)]
    public void Random_policies_reach_every_destination_roughly_evenly(LoadBalancingPolicy policy)
    {
        var counts = Distribution(State(Cluster("c", policy)), 3000);
        Assert.All(counts.Values, c => Assert.InRange(c, 700, 1300));
    }

    [Fact]
    public void First_alphabetical_takes_the_first_available_by_id()
    {
        var cluster = State(Cluster("c", LoadBalancingPolicy.FirstAlphabetical));
        Assert.Equal(3000, Distribution(cluster, 3000)["d0"]);
        cluster.Destinations[0].ReportProbe(false, 1, 1);
        Assert.Equal(3000, Distribution(cluster, 3000)["d1"]);
    }

    [Fact]
    public void Least_requests_and_power_of_two_prefer_the_destination_with_fewer_requests_in_flight()
    {
        var least = State(Cluster("c", LoadBalancingPolicy.LeastRequests));
        least.Destinations[0].RequestStarted();
        least.Destinations[2].RequestStarted();
        Assert.Equal(100, Distribution(least, 100)["d1"]);

        var two = State(Cluster("c", LoadBalancingPolicy.PowerOfTwoChoices, destinations: 2));
        for (var i = 0; i < 5; i++)
        {
            two.Destinations[0].RequestStarted();
        }

        Assert.Equal(100, Distribution(two, 100)["d1"]); // with two destinations both are always compared
    }

    [Fact]
    public void Hash_on_a_header_is_sticky_spreads_keys_and_moves_only_the_keys_of_a_destination_that_goes_out()
    {
        var cluster = State(Cluster("c", LoadBalancingPolicy.Hash, destinations: 4, hashOn: "header:X-User"));
        HttpRequest User(int i) => Request("GET", "/", ("X-User", $"user-{i}"));
        var before = Enumerable.Range(0, 2000).ToDictionary(i => i, i => cluster.Pick(User(i))!.Id);
        Assert.All(Enumerable.Range(0, 2000), i => Assert.Equal(before[i], cluster.Pick(User(i))!.Id)); // sticky
        Assert.All(before.Values.GroupBy(v => v), g => Assert.InRange(g.Count(), 300, 700)); // spread over the 4

        cluster.Destinations[1].ReportProbe(false, 1, 1); // d1 goes out
        var after = Enumerable.Range(0, 2000).ToDictionary(i => i, i => cluster.Pick(User(i))!.Id);
        Assert.DoesNotContain("d1", after.Values);
        Assert.All(before.Where(kv => kv.Value != "d1"), kv => Assert.Equal(kv.Value, after[kv.Key])); // others keep their keys

        cluster.Destinations[1].ReportProbe(true, 1, 1); // back: its keys return to it
        Assert.All(Enumerable.Range(0, 2000), i => Assert.Equal(before[i], cluster.Pick(User(i))!.Id));
    }

    [Fact]
    public void Hash_on_a_cookie_is_sticky_and_without_the_key_any_destination_serves()
    {
        var cluster = State(Cluster("c", LoadBalancingPolicy.Hash, hashOn: "cookie:session"));
        var first = cluster.Pick(Request("GET", "/", ("Cookie", "theme=dark; session=abc123")))!.Id;
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal(first, cluster.Pick(Request("GET", "/", ("Cookie", $"n={i}; session=abc123")))!.Id);
        }

        Assert.Equal(3, Distribution(cluster, 600).Count(kv => kv.Value > 0));
    }

    [Fact]
    public void A_tried_destination_is_not_picked_again_and_none_left_is_null()
    {
        var cluster = State(Cluster("c", LoadBalancingPolicy.RoundRobin, destinations: 2));
        var first = cluster.Pick(Request("GET", "/"))!;
        var second = cluster.Pick(Request("GET", "/"), [first])!;
        Assert.NotSame(first, second);
        Assert.Null(cluster.Pick(Request("GET", "/"), [first, second]));
    }

    [Fact]
    public void Active_health_takes_a_destination_out_after_the_failure_threshold_and_back_after_the_success_threshold()
    {
        var destination = new DestinationState("d", default, default);
        Assert.True(destination.IsAvailable(0));
        Assert.Null(destination.ReportProbe(false, 2, 3));
        Assert.True(destination.IsAvailable(0));
        Assert.Equal(false, destination.ReportProbe(false, 2, 3));
        Assert.False(destination.IsAvailable(0));
        Assert.Null(destination.ReportProbe(true, 2, 3));
        Assert.Null(destination.ReportProbe(false, 2, 3)); // a failure resets the successes
        Assert.Null(destination.ReportProbe(true, 2, 3));
        Assert.Null(destination.ReportProbe(true, 2, 3));
        Assert.False(destination.IsAvailable(0));
        Assert.Equal(true, destination.ReportProbe(true, 2, 3));
        Assert.True(destination.IsAvailable(0));
    }

    [Fact]
    public async Task Active_probes_run_on_the_timer_and_move_the_state_on_fake_time()
    {
        var time = new FakeTimeProvider();
        var options = Cluster("c", destinations: 2) with
        {
            HealthCheck = new HealthCheckOptions
            {
                Active = new ActiveHealthCheckOptions { Enabled = true, Interval = TimeSpan.FromSeconds(5), Timeout = TimeSpan.FromSeconds(1), UnhealthyThreshold = 2, HealthyThreshold = 2 },
            },
        };
        var cluster = State(options, time);
        var healthy = new Dictionary<string, bool> { ["d0"] = true, ["d1"] = false };
        var probes = 0;
        await using var checker = new ActiveHealthChecker(cluster, (d, _) =>
        {
            Interlocked.Increment(ref probes);
            return ValueTask.FromResult(healthy[d.Id]);
        }, NullLogger.Instance);

        async Task TickAsync()
        {
            time.Advance(TimeSpan.FromSeconds(5));
            await Rama.Testing.Eventually.TrueAsync(() => checker.WhenIdleAsync().IsCompleted);
            await checker.WhenIdleAsync();
        }

        await TickAsync();
        Assert.True(cluster.Destinations[1].ActiveHealthy); // one failure of two
        await TickAsync();
        Assert.False(cluster.Destinations[1].ActiveHealthy);
        Assert.True(cluster.Destinations[0].ActiveHealthy);
        Assert.Equal("d0", cluster.Pick(Request("GET", "/"))!.Id);
        Assert.Equal("d0", cluster.Pick(Request("GET", "/"))!.Id);

        healthy["d1"] = true;
        await TickAsync();
        Assert.False(cluster.Destinations[1].ActiveHealthy);
        await TickAsync();
        Assert.True(cluster.Destinations[1].ActiveHealthy);
        Assert.Equal(8, Volatile.Read(ref probes));
    }

    [Fact]
    public async Task A_probe_past_its_timeout_is_a_failure()
    {
        var time = new FakeTimeProvider();
        var options = Cluster("c", destinations: 1) with
        {
            HealthCheck = new HealthCheckOptions
            {
                Active = new ActiveHealthCheckOptions { Enabled = true, Interval = TimeSpan.FromSeconds(5), Timeout = TimeSpan.FromSeconds(1), UnhealthyThreshold = 1 },
            },
        };
        var cluster = State(options, time);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var checker = new ActiveHealthChecker(cluster, async (_, token) =>
        {
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, token);
            return true;
        }, NullLogger.Instance);
        time.Advance(TimeSpan.FromSeconds(5));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(cluster.Destinations[0].ActiveHealthy);
        time.Advance(TimeSpan.FromSeconds(1));
        await Rama.Testing.Eventually.TrueAsync(() => !cluster.Destinations[0].ActiveHealthy);
    }

    [Fact]
    public async Task A_swap_keeps_the_health_of_destinations_that_stay_and_stops_the_probes_of_removed_ones()
    {
        var time = new FakeTimeProvider();
        var probes = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        var options = new ReverseRoutingOptions
        {
            Routes = [new RouteOptions { RouteId = "r", ClusterId = "c" }],
            Clusters =
            [
                Cluster("c", destinations: 2) with
                {
                    HealthCheck = new HealthCheckOptions { Active = new ActiveHealthCheckOptions { Enabled = true, Interval = TimeSpan.FromSeconds(1), UnhealthyThreshold = 1 } },
                },
            ],
        };
        var http = new HttpProxyOptions();
        var connector = new Rama.Proxy.Net.TcpConnector(time: time);
        await using var pool = new Http1ConnectionPool(1, TimeSpan.FromSeconds(1), time);
        var forwarder = new ForwardProxyService(http, connector, pool, NullLogger.Instance, time);
        await using var service = new RoutingProxyService(forwarder, options, connector, http.Limits, NullLogger.Instance, time, (d, _, _) =>
        {
            probes.AddOrUpdate(d.Id, 1, (_, n) => n + 1);
            return ValueTask.FromResult(d.Id != "d1"); // d1 fails its probes
        });

        async Task TickAsync()
        {
            time.Advance(TimeSpan.FromSeconds(1));
            foreach (var checker in service.Checkers)
            {
                await Rama.Testing.Eventually.TrueAsync(() => checker.WhenIdleAsync().IsCompleted);
            }
        }

        await TickAsync();
        var d1 = service.Table.Clusters["c"].Destinations[1];
        Assert.False(d1.ActiveHealthy);

        // d0 goes, d1 stays (same id and address): it keeps its state; the old table's timers stop.
        Assert.Empty(service.Apply(options with { Clusters = [options.Clusters[0] with { Destinations = [options.Clusters[0].Destinations[1]] }] }));
        Assert.Same(d1, Assert.Single(service.Table.Clusters["c"].Destinations));
        Assert.False(d1.ActiveHealthy);
        var d0Probes = probes["d0"];
        await TickAsync();
        await TickAsync();
        Assert.Equal(d0Probes, probes["d0"]);
        Assert.Equal(3, probes["d1"]);
        Assert.Null(service.Table.Clusters["c"].Pick(Request("GET", "/")));

        // An invalid table is refused whole.
        var problems = service.Apply(options with { Routes = [new RouteOptions { RouteId = "r", ClusterId = "gone" }] });
        Assert.Contains(problems, p => p.Contains("'gone' names no cluster", StringComparison.Ordinal));
        Assert.Same(d1, Assert.Single(service.Table.Clusters["c"].Destinations));
    }

    [Fact]
    public void Passive_failures_within_the_window_eject_for_the_reactivation_period_on_fake_time()
    {
        var time = new FakeTimeProvider();
        var options = Cluster("c", destinations: 2) with
        {
            HealthCheck = new HealthCheckOptions
            {
                Passive = new PassiveHealthCheckOptions { Enabled = true, MaxFailures = 2, Window = TimeSpan.FromSeconds(10), ReactivationPeriod = TimeSpan.FromSeconds(30) },
            },
        };
        var cluster = State(options, time);
        var d0 = cluster.Destinations[0];
        Assert.False(cluster.ReportFailure(d0));
        time.Advance(TimeSpan.FromSeconds(11)); // the first failure leaves the window
        Assert.False(cluster.ReportFailure(d0));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(cluster.ReportFailure(d0)); // two within 10 s
        Assert.Equal(100, Distribution(cluster, 100)["d1"]);
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal(0, Distribution(cluster, 100)["d0"]);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(50, Distribution(cluster, 100)["d0"]); // back after 30 s (round robin)
    }

    [Fact]
    public void Forwarded_fields_from_an_untrusted_peer_are_replaced()
    {
        var headers = Headers(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil"), ("Forwarded", "for=6.6.6.6"));
        ForwardedHeaders.Apply(new ForwardedHeadersOptions { TrustedProxies = [IPNetwork.Parse("10.0.0.0/8")] }, headers, IPAddress.Parse("192.0.2.7"), "http", "shop.example:8080");
        Assert.Equal("192.0.2.7", headers.GetText("X-Forwarded-For"));
        Assert.Equal("http", headers.GetText("X-Forwarded-Proto"));
        Assert.Equal("shop.example:8080", headers.GetText("X-Forwarded-Host"));
        Assert.Equal("for=192.0.2.7;host=\"shop.example:8080\";proto=http", headers.GetText("Forwarded"));
        Assert.Equal(4, headers.Count);
    }

    [Fact]
    public void Forwarded_fields_from_a_trusted_peer_are_kept_and_appended_to()
    {
        var headers = Headers(("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "shop.example"), ("Forwarded", "for=198.51.100.1;proto=https"));
        ForwardedHeaders.Apply(new ForwardedHeadersOptions { TrustedProxies = [IPNetwork.Parse("10.0.0.0/8")] }, headers, IPAddress.Parse("::ffff:10.1.2.3"), "http", "inner:80");
        Assert.Equal("198.51.100.1, 10.1.2.3", headers.GetText("X-Forwarded-For"));
        Assert.Equal("https", headers.GetText("X-Forwarded-Proto"));
        Assert.Equal("shop.example", headers.GetText("X-Forwarded-Host"));
        Assert.Equal("for=198.51.100.1;proto=https, for=10.1.2.3;host=\"inner:80\";proto=http", headers.GetText("Forwarded"));
    }

    [Fact]
    public void Forwarded_quotes_and_brackets_an_ipv6_peer_and_can_be_turned_off()
    {
        var headers = new HttpHeaders();
        ForwardedHeaders.Apply(new ForwardedHeadersOptions { XForwarded = false }, headers, IPAddress.IPv6Loopback, "http", "a");
        Assert.Equal("for=\"[::1]\";host=a;proto=http", headers.GetText("Forwarded"));
        Assert.Null(headers.GetText("X-Forwarded-For"));
        var none = Headers(("X-Forwarded-For", "1.2.3.4"));
        ForwardedHeaders.Apply(new ForwardedHeadersOptions { XForwarded = false, Forwarded = false }, none, IPAddress.Loopback, "http", "a");
        Assert.Equal("1.2.3.4", none.GetText("X-Forwarded-For")); // off: nothing touched
    }

    [Theory]
    [InlineData("/api/users?x=1", "/api", null, "/users?x=1")]
    [InlineData("/api", "/api", null, "/")]
    [InlineData("/apix", "/api", null, "/apix")]
    [InlineData("/users", null, "/v1", "/v1/users")]
    [InlineData("/api/users", "/api", "/v2", "/v2/users")]
    public void Path_transforms(string path, string? remove, string? prefix, string expected)
    {
        List<RouteTransform> transforms = [];
        if (remove is not null)
        {
            transforms.Add(new RouteTransform(RouteTransformKind.PathRemovePrefix, "", remove));
        }

        if (prefix is not null)
        {
            transforms.Add(new RouteTransform(RouteTransformKind.PathPrefix, "", prefix));
        }

        Assert.Equal(expected, RoutingProxyService.RewritePath(transforms, path));
    }

    [Fact]
    public void Header_transforms_set_append_and_remove()
    {
        var headers = Headers(("X-A", "old"), ("X-Gone", "1"), ("X-B", "1"));
        RoutingProxyService.ApplyRequestTransforms(
        [
            new RouteTransform(RouteTransformKind.RequestHeaderSet, "X-A", "new"),
            new RouteTransform(RouteTransformKind.RequestHeaderAppend, "X-B", "2"),
            new RouteTransform(RouteTransformKind.RequestHeaderRemove, "X-Gone", ""),
            new RouteTransform(RouteTransformKind.ResponseHeaderSet, "X-Resp", "not for requests"),
        ], headers);
        Assert.Equal(["X-B: 1", "X-A: new", "X-B: 2"], headers.Select(f => f.ToString()));
    }

    [Theory]
    [InlineData("http://127.0.0.1:80", true)]
    [InlineData("http://origin.internal:8080/", true)]
    [InlineData("HTTP://127.0.0.1:80", true)]
    [InlineData("https://127.0.0.1:443", true)]
    [InlineData("h2c://127.0.0.1:50051", true)]
    [InlineData("ftp://127.0.0.1:21", false)]
    [InlineData("127.0.0.1:80", false)]
    [InlineData("http://127.0.0.1:80/prefix", false)]
    [InlineData("http://user@127.0.0.1:80", false)]
    public void Destination_addresses_need_a_supported_scheme(string address, bool valid)
    {
        Assert.Equal(valid, DestinationAddress.TryParse(address, out var parsed, out var problem));
        if (address.StartsWith("ftp", StringComparison.Ordinal))
        {
            Assert.Contains("'ftp', not supported", problem, StringComparison.Ordinal);
        }
        else if (address.StartsWith("127", StringComparison.Ordinal))
        {
            Assert.Contains("needs a scheme", problem, StringComparison.Ordinal);
        }
        else if (valid)
        {
            Assert.Equal(address.ToLowerInvariant().Split(':')[0], parsed.Scheme);
        }
    }

    [Fact]
    public void Validation_names_every_problem()
    {
        var problems = new ReverseRoutingOptions
        {
            Routes =
            [
                new RouteOptions { RouteId = "r", ClusterId = "missing" },
                new RouteOptions { RouteId = "p", ClusterId = "c", Match = new RouteMatchOptions { Path = "/users/{id}/orders" } },
                new RouteOptions { RouteId = "t", ClusterId = "c", Transforms = [new RouteTransform(RouteTransformKind.RequestHeaderSet, "content-length", "5")] },
            ],
            Clusters = [Cluster("c", LoadBalancingPolicy.Hash) with { Destinations = [new DestinationOptions { DestinationId = "x", Address = "wss://a:1" }] }],
        }.Validate();
        Assert.Contains(problems, p => p.Contains("ClusterId 'missing' names no cluster", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("route parameter", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("needs HashOn", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("route 't': a transform may not change content-length", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("'wss', not supported", StringComparison.Ordinal));
    }
}
