using Rama.Proxy.Upstream;

namespace Rama.Proxy.Tests.Upstream;

public sealed class ProxyFilterTests
{
    private static UpstreamProxy P(string id, string? country = null, string? pool = null, bool dc = false, bool res = false, bool mob = false, string? asn = null,
        string? city = null) => new()
    {
        Id = id,
        Address = new UpstreamAddress(new Rama.Proxy.Net.HostPort("127.0.0.1", 1)),
        Tcp = true,
        Http = true,
        Datacenter = dc,
        Residential = res,
        Mobile = mob,
        Country = UpstreamProxy.Normalize(country),
        Pool = UpstreamProxy.Normalize(pool),
        City = UpstreamProxy.Normalize(city),
        Asn = asn,
    };

    private static readonly UpstreamProxy[] Records =
    [
        P("us1", "us", "a", res: true, asn: "7922"),
        P("us2", "us", "b", mob: true, res: true, asn: "20057"),
        P("de1", "de", "a", dc: true, asn: "3320"),
        P("any", "*", "b", dc: true, city: "*"),
        P("none", null, null, dc: true),
    ];

    [Theory]
    [InlineData("country-us", "us1,us2,any")]
    [InlineData("country-US", "us1,us2,any")]
    [InlineData("country-us-country-de", "us1,us2,de1,any")]
    [InlineData("country-fr", "any")]
    [InlineData("country-*", "us1,us2,de1,any,none")]
    [InlineData("pool-a", "us1,de1")]
    [InlineData("pool-a-country-us", "us1")]
    [InlineData("residential", "us1,us2")]
    [InlineData("!mobile", "us1,de1,any,none")]
    [InlineData("residential-!mobile", "us1")]
    [InlineData("datacenter-country-de", "de1,any")]
    [InlineData("asn-3320", "de1")]
    [InlineData("asn-AS7922-asn-20057", "us1,us2")]
    [InlineData("city-paris", "any")]
    [InlineData("id-US1-id-de1", "us1,de1")]
    [InlineData("country-us-mobile-datacenter", "")]
    public void Index_and_reference_agree(string labels, string expected)
    {
        var filter = ProxyUsername.Parse("u-" + labels).Filter;
        var db = ProxyDatabase.Create(Records);
        var linear = Records.Where(filter.Matches).Select(r => r.Id).Order().ToArray();
        var indexed = db.Select(filter, null, 100).Select(r => r.Id).Order().ToArray();
        Assert.Equal(expected.Split(',', StringSplitOptions.RemoveEmptyEntries).Order(), linear);
        Assert.Equal(linear, indexed);
        Assert.Equal(linear.Length, db.CountMatches(filter));
    }

    [Fact]
    public void Index_agrees_with_the_linear_definition_on_random_data()
    {
        var random = new Random(42);
        string? Pick(string[] values) => values[random.Next(values.Length)];
        var countries = new[] { "us", "de", "fr", "*", null! };
        var pools = new[] { "a", "b", "c", null! };
        var records = Enumerable.Range(0, 3000).Select(i => P($"r{i}", Pick(countries), Pick(pools), random.Next(2) == 0, random.Next(2) == 0,
            random.Next(3) == 0, Pick(["1", "2", "*", null!]))).Where(r => r.Datacenter || r.Residential || r.Mobile).ToArray();
        var db = ProxyDatabase.Create(records);
        var queries = new[] { "country-us", "country-fr-pool-c", "pool-a-pool-b-residential", "!mobile-asn-2", "datacenter-!residential-country-de", "asn-1-country-*" };
        foreach (var q in queries)
        {
            var filter = ProxyUsername.Parse("u-" + q).Filter;
            Assert.Equal(records.Where(filter.Matches).Select(r => r.Id).Order(), db.Select(filter, null, int.MaxValue).Select(r => r.Id).Order());
        }
    }

    [Fact]
    public void Canonical_text_ignores_order_and_case()
    {
        var a = ProxyUsername.Parse("u-country-US-pool-x-country-de-!mobile").Filter;
        var b = ProxyUsername.Parse("u-!MOBILE-pool-X-Country-de-country-us").Filter;
        Assert.Equal(a, b);
        Assert.Equal("pool=x;country=de,us;!mobile", a.ToString());
        Assert.Equal("*", ProxyFilter.Empty.ToString());
    }
}
