using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Upstream;

namespace Rama.Proxy.Tests.Upstream;

public sealed class SelectionTests
{
    internal static UpstreamProxy P(string id, string country = "us", string? pool = null, int port = 1) => new()
    {
        Id = id,
        Address = new UpstreamAddress(new HostPort("127.0.0.1", port)),
        Tcp = true,
        Http = true,
        Residential = true,
        Country = country,
        Pool = pool,
    };

    private static readonly ProxyFilter Us = ProxyUsername.Parse("u-country-us").Filter;

    [Fact]
    public void A_session_always_gets_the_same_upstream_and_two_databases_agree()
    {
        var records = Enumerable.Range(0, 50).Select(i => P($"p{i}")).ToArray();
        var a = ProxyDatabase.Create(records);
        var b = ProxyDatabase.Create(records.Reverse()); // another node, records in another order
        Assert.Equal(a.Version, b.Version);
        for (var s = 0; s < 1000; s++)
        {
            var first = a.Select(Us, $"s{s}", 1)[0].Id;
            Assert.Equal(first, a.Select(Us, $"s{s}", 1)[0].Id);
            Assert.Equal(first, b.Select(Us, $"s{s}", 1)[0].Id);
            Assert.Equal(first, a.Select(Us, $"s{s}", 3)[0].Id); // the first of a longer list is the same
        }
    }

    [Fact]
    public void Sessions_spread_over_the_matching_upstreams()
    {
        var db = ProxyDatabase.Create(Enumerable.Range(0, 10).Select(i => P($"p{i}")));
        var counts = Enumerable.Range(0, 10_000).GroupBy(s => db.Select(Us, s.ToString(System.Globalization.CultureInfo.InvariantCulture), 1)[0].Id)
            .ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(10, counts.Count);
        Assert.All(counts.Values, n => Assert.InRange(n, 800, 1200)); // 1000 expected each
    }

    [Fact]
    public void Removing_an_upstream_moves_only_its_own_sessions()
    {
        var records = Enumerable.Range(0, 20).Select(i => P($"p{i}")).ToList();
        var before = ProxyDatabase.Create(records);
        var after = ProxyDatabase.Create(records.Where(r => r.Id != "p7"));
        Assert.NotEqual(before.Version, after.Version);
        var moved = 0;
        for (var s = 0; s < 1000; s++)
        {
            var was = before.Select(Us, $"session{s}", 1)[0].Id;
            var now = after.Select(Us, $"session{s}", 1)[0].Id;
            if (was == "p7")
            {
                moved++;
                Assert.NotEqual("p7", now);
                Assert.Equal(before.Select(Us, $"session{s}", 2)[1].Id, now); // it moves to its second choice
            }
            else
            {
                Assert.Equal(was, now);
            }
        }

        Assert.InRange(moved, 20, 90); // about 1000/20
    }

    [Fact]
    public void Candidates_are_distinct_and_in_rendezvous_order()
    {
        var db = ProxyDatabase.Create(Enumerable.Range(0, 30).Select(i => P($"p{i}")));
        var five = db.Select(Us, "abc", 5).Select(p => p.Id).ToArray();
        Assert.Equal(5, five.Distinct().Count());
        Assert.Equal(five[..3], db.Select(Us, "abc", 3).Select(p => p.Id));
        // Only filtered records: the top of the smaller set is the best of the bigger set's order restricted to it.
        var some = ProxyUsername.Parse($"u-id-{five[1]}-id-{five[3]}").Filter;
        Assert.Equal([five[1], five[3]], db.Select(some, "abc", 5).Select(p => p.Id));
    }

    [Fact]
    public void Without_a_session_selection_is_random_among_matches_only()
    {
        var db = ProxyDatabase.Create([P("a"), P("b"), P("c"), P("d", country: "de")]);
        var seen = Enumerable.Range(0, 300).Select(_ => db.Select(Us, null, 1)[0].Id).ToHashSet();
        Assert.Equal(["a", "b", "c"], seen.Order());
        var three = db.Select(Us, null, 10);
        Assert.Equal(3, three.Select(p => p.Id).Distinct().Count());
    }

    [Fact]
    public void Router_modes_for_requests_without_a_filter()
    {
        var db = ProxyDatabase.Create([P("a"), P("b", country: "de")]);
        Assert.Equal(UpstreamRouteKind.Direct, new UpstreamRouter(db, new UpstreamRoutingOptions()).Decide(null, null).Kind);
        var required = new UpstreamRouter(db, new UpstreamRoutingOptions { Mode = UpstreamMode.Required }).Decide(null, null);
        Assert.Equal(UpstreamRouteKind.FilterRequired, required.Kind);
        var fallback = new UpstreamRouter(db, new UpstreamRoutingOptions { Mode = UpstreamMode.Fallback, FallbackFilter = "country-de" }).Decide(null, null);
        Assert.Equal(UpstreamRouteKind.Upstream, fallback.Kind);
        Assert.Equal("b", Assert.Single(fallback.Candidates).Id);
        Assert.Throws<ArgumentException>(() => new UpstreamRouter(db, new UpstreamRoutingOptions { Mode = UpstreamMode.Fallback }));
        Assert.Throws<ArgumentException>(() => new UpstreamRouter(db, new UpstreamRoutingOptions { Mode = UpstreamMode.Fallback, FallbackFilter = "colour-red" }));
    }

    [Fact]
    public void A_filter_that_matches_nothing_is_refused_with_the_reason()
    {
        var router = new UpstreamRouter(ProxyDatabase.Create([P("a")]), new UpstreamRoutingOptions());
        var route = router.Decide(ProxyUsername.Parse("u-country-fr").Filter, null);
        Assert.Equal(UpstreamRouteKind.NoMatch, route.Kind);
        Assert.Contains("no upstream proxy matches filter 'country=fr'", route.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_session_alone_routes_through_any_upstream()
    {
        var router = new UpstreamRouter(ProxyDatabase.Create([P("a"), P("b")]), new UpstreamRoutingOptions());
        var extensions = new Extensions();
        extensions.Set(new RequestedProxyFilter(ProxyFilter.Empty, "username"));
        extensions.Set(new ProxySession("x"));
        Assert.Equal(UpstreamRouteKind.Upstream, router.Route(extensions).Kind);
        Assert.Same(router.Route(extensions), router.Route(extensions)); // cached per request
    }

    [Fact]
    public void Reloadable_database_swaps_atomically()
    {
        var reloadable = new ReloadableProxyDatabase(ProxyDatabase.Create([P("a")]));
        var v1 = reloadable.Version;
        reloadable.Replace(ProxyDatabase.Create([P("b")]));
        Assert.NotEqual(v1, reloadable.Version);
        Assert.Equal("b", reloadable.Select(Us, "s", 1)[0].Id);
    }

    [Fact]
    public void Failure_cache_backs_off_doubles_and_forgets_on_success()
    {
        var time = new ManualTime();
        var cache = new UpstreamFailureCache(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), time);
        var candidates = new[] { P("a"), P("b"), P("c") };
        Assert.Equal(TimeSpan.FromSeconds(5), cache.Failed("a"));
        Assert.True(cache.IsBackedOff("a"));
        Assert.Equal(["b", "c", "a"], cache.Order(candidates).Select(p => p.Id));
        time.Advance(TimeSpan.FromSeconds(5.1));
        Assert.False(cache.IsBackedOff("a")); // probe allowed
        Assert.Equal(["a", "b", "c"], cache.Order(candidates).Select(p => p.Id));
        Assert.Equal(TimeSpan.FromSeconds(10), cache.Failed("a"));
        Assert.Equal(TimeSpan.FromSeconds(20), cache.Failed("a"));
        Assert.Equal(TimeSpan.FromSeconds(30), cache.Failed("a")); // capped
        cache.Succeeded("a");
        Assert.False(cache.IsBackedOff("a"));
        Assert.Equal(TimeSpan.FromSeconds(5), cache.Failed("a"));
    }
}

/// <summary>A clock the test moves by hand.</summary>
internal sealed class ManualTime : TimeProvider
{
    private long _ticks = 1_000_000;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _ticks);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}
