using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Destinations;

namespace Rama.Proxy.Tests.Net.Destinations;

/// <summary>The rule matcher: CIDRs (v4, v6, IPv4-mapped), host patterns, ports, users, order, and the secure defaults.</summary>
public sealed class DestinationPolicyTests
{
    private static DestinationRule Deny(string name, string[]? cidrs = null, string[]? hosts = null, string[]? ports = null, string[]? users = null) => new()
    {
        Name = name, Action = DestinationAction.Deny, Cidrs = cidrs ?? [], Hosts = hosts ?? [], Ports = ports ?? [], Users = users ?? [],
    };

    private static DestinationRule Allow(string name, string[]? cidrs = null, string[]? hosts = null, string[]? ports = null, string[]? users = null) =>
        Deny(name, cidrs, hosts, ports, users) with { Action = DestinationAction.Allow };

    private static DestinationVerdict Check(DestinationPolicy policy, string host, string? address, int port = 80, string? user = null) =>
        policy.Check(new DestinationQuery(host, address is null ? null : IPAddress.Parse(address), port, user));

    [Theory]
    [InlineData("10.0.0.0/8", "10.255.1.2", true)]
    [InlineData("10.0.0.0/8", "11.0.0.1", false)]
    [InlineData("192.168.1.0/25", "192.168.1.127", true)]
    [InlineData("192.168.1.0/25", "192.168.1.128", false)]
    [InlineData("203.0.113.7", "203.0.113.7", true)]
    [InlineData("203.0.113.7", "203.0.113.8", false)]
    [InlineData("0.0.0.0/0", "8.8.8.8", true)]
    [InlineData("0.0.0.0/0", "2001:db8::1", false)] // families never mix
    [InlineData("2001:db8::/32", "2001:db8:ffff::1", true)]
    [InlineData("2001:db8::/32", "2001:db9::1", false)]
    [InlineData("fe80::/10", "febf::1", true)]
    [InlineData("fe80::/10", "fec0::1", false)]
    [InlineData("10.0.0.0/8", "::ffff:10.1.2.3", true)] // IPv4-mapped IPv6 is checked as the IPv4 address
    [InlineData("::ffff:10.0.0.0/104", "10.9.9.9", true)] // and a mapped range is the IPv4 range
    [InlineData("10.0.0.1/8", "10.2.3.4", true)] // host bits in a range are ignored
    public void A_cidr_rule_matches_the_resolved_address(string cidr, string address, bool denied)
    {
        var policy = new DestinationPolicy([Deny("net", cidrs: [cidr])], defaultDenials: false);
        var verdict = Check(policy, "name.example", address);
        Assert.Equal(!denied, verdict.Allowed);
        Assert.Equal(denied ? "net" : null, verdict.Rule);
    }

    [Theory]
    [InlineData("db.internal", "db.internal", true)]
    [InlineData("db.internal", "DB.Internal", true)] // case-insensitive
    [InlineData("db.internal", "db.internal.", true)] // a trailing dot is the same name
    [InlineData("DB.INTERNAL.", "db.internal", true)]
    [InlineData("db.internal", "x.db.internal", false)]
    [InlineData("*.internal", "db.internal", true)]
    [InlineData("*.internal", "a.b.INTERNAL.", true)]
    [InlineData("*.internal", "internal", false)] // the wildcard is for names under it
    [InlineData("*.internal", "notinternal", false)]
    [InlineData("*.internal", "evil-internal", false)]
    public void A_host_rule_matches_the_name_the_client_asked_for(string pattern, string host, bool denied)
    {
        var policy = new DestinationPolicy([Deny("hosts", hosts: [pattern])], defaultDenials: false);
        Assert.Equal(!denied, Check(policy, host, "192.0.2.1").Allowed);
        Assert.Equal(!denied, Check(policy, host, null).Allowed); // by name alone too (a chained target)
    }

    [Theory]
    [InlineData("25", 25, true)]
    [InlineData("25", 26, false)]
    [InlineData("8000-8100", 8000, true)]
    [InlineData("8000-8100", 8100, true)]
    [InlineData("8000-8100", 8101, false)]
    public void A_port_rule_matches_single_ports_and_ranges(string ports, int port, bool denied)
    {
        var policy = new DestinationPolicy([Deny("smtp", ports: [ports])], defaultDenials: false);
        Assert.Equal(!denied, Check(policy, "mail.example", "192.0.2.1", port).Allowed);
    }

    [Fact]
    public void Every_list_of_a_rule_must_match_and_the_first_matching_rule_wins()
    {
        var policy = new DestinationPolicy(
        [
            Allow("bob-intranet", cidrs: ["10.1.0.0/16"], users: ["bob"]),
            Deny("intranet", cidrs: ["10.0.0.0/8"], hosts: ["*.corp.example"]),
            Deny("smtp-for-alice", ports: ["25"], users: ["alice"]),
        ], defaultDenials: false);

        Assert.Equal(new DestinationVerdict(true, "bob-intranet"), Check(policy, "x", "10.1.2.3", user: "bob"));
        Assert.Equal(new DestinationVerdict(false, "intranet"), Check(policy, "x", "10.2.2.3", user: "bob"));
        Assert.Equal(new DestinationVerdict(false, "intranet"), Check(policy, "x", "10.1.2.3", user: "alice"));
        Assert.Equal(new DestinationVerdict(false, "intranet"), Check(policy, "x", "10.1.2.3")); // anonymous: not bob
        Assert.Equal(new DestinationVerdict(false, "intranet"), Check(policy, "wiki.corp.example", "192.0.2.1"));
        Assert.Equal(new DestinationVerdict(false, "smtp-for-alice"), Check(policy, "mx", "192.0.2.1", 25, "alice"));
        Assert.Equal(DestinationVerdict.Open, Check(policy, "mx", "192.0.2.1", 25, "bob"));
        Assert.Equal(DestinationVerdict.Open, Check(policy, "mx", "192.0.2.1", 25, "Alice")); // user names are exact
    }

    [Theory]
    [InlineData("127.0.0.1", "loopback")]
    [InlineData("127.8.9.10", "loopback")]
    [InlineData("::1", "loopback")]
    [InlineData("::ffff:127.0.0.1", "loopback")]
    [InlineData("0.0.0.0", "loopback")] // connecting to the unspecified address reaches this host
    [InlineData("::", "loopback")]
    [InlineData("169.254.169.254", "link-local")]
    [InlineData("::ffff:169.254.169.254", "link-local")]
    [InlineData("fe80::1", "link-local")]
    [InlineData("192.0.2.1", null)]
    [InlineData("10.0.0.1", null)] // private ranges stay reachable unless a rule says otherwise
    public void The_defaults_deny_loopback_and_link_local(string address, string? rule)
    {
        var policy = new DestinationPolicy([], defaultDenials: true);
        Assert.Equal(new DestinationVerdict(rule is null, rule), Check(policy, "name.example", address));
        Assert.Equal(new DestinationVerdict(rule is null, rule), Check(policy, address, null)); // an address literal needs no resolution
        Assert.True(Check(new DestinationPolicy([], defaultDenials: false), "name.example", address).Allowed);
    }

    [Fact]
    public void The_defaults_deny_the_nodes_own_ports_on_any_address_and_an_allow_rule_wins_over_them()
    {
        var policy = new DestinationPolicy([Allow("metadata", hosts: ["metadata.internal"])], defaultDenials: true, [(9090, "admin-port"), (4054, "cluster-port")]);
        Assert.Equal(new DestinationVerdict(false, "admin-port"), Check(policy, "peer.example", "192.0.2.9", 9090));
        Assert.Equal(new DestinationVerdict(false, "cluster-port"), Check(policy, "peer.example", "192.0.2.9", 4054));
        Assert.Equal(new DestinationVerdict(false, "cluster-port"), Check(policy, "peer.example", null, 4054));
        Assert.True(Check(policy, "peer.example", "192.0.2.9", 9091).Allowed);
        Assert.Equal(new DestinationVerdict(true, "metadata"), Check(policy, "metadata.internal", "169.254.169.254"));
        Assert.Equal(new DestinationVerdict(false, "link-local"), Check(policy, "other.internal", "169.254.169.254"));
    }

    [Fact]
    public void Only_the_allowed_addresses_of_a_name_are_dialled_and_the_denial_is_the_answer_when_none_is()
    {
        var policy = new DestinationPolicy([Deny("private", cidrs: ["10.0.0.0/8"])], defaultDenials: true);
        var target = new HostPort("mixed.example", 443);
        IPAddress[] addresses = [IPAddress.Parse("10.0.0.5"), IPAddress.Parse("192.0.2.1"), IPAddress.Parse("127.0.0.1"), IPAddress.Parse("192.0.2.2")];

        var extensions = new Extensions();
        var allowed = DialPolicy.Permitted(addresses, target, extensions, policy, out var denied);
        Assert.Equal([IPAddress.Parse("192.0.2.1"), IPAddress.Parse("192.0.2.2")], allowed);
        Assert.False(extensions.Contains<DestinationDenied>());

        extensions.Set(new ProxyUser("john"));
        var none = DialPolicy.Permitted([IPAddress.Parse("127.0.0.1"), IPAddress.Parse("10.1.1.1")], target, extensions, policy, out denied);
        Assert.Empty(none);
        Assert.Equal(ConnectError.NotAllowed, denied.Error);
        Assert.Equal("destination mixed.example:443 (127.0.0.1) denied by rule 'loopback' for user 'john'", denied.Detail);
        Assert.Equal("loopback", extensions.Get<DestinationDenied>()!.Rule);

        var all = DialPolicy.Permitted([IPAddress.Parse("192.0.2.1")], target, null, policy, out _);
        Assert.Equal([IPAddress.Parse("192.0.2.1")], all);
    }

    [Fact]
    public void The_text_names_the_destination_and_the_rule()
    {
        Assert.Equal("destination 169.254.169.254:80 denied by rule 'link-local'",
            DestinationPolicy.Describe(new DestinationQuery("169.254.169.254", IPAddress.Parse("169.254.169.254"), 80, null), "link-local"));
        Assert.Equal("destination [::1]:22 denied by rule 'loopback'", DestinationPolicy.Describe(new DestinationQuery("::1", null, 22, null), "loopback"));
    }

    [Theory]
    [InlineData("10.0.0.0/8", new[] { "10.0.0.0/8" }, new string[0], new string[0], null)]
    [InlineData(":25", new string[0], new string[0], new[] { "25" }, null)]
    [InlineData("metadata.internal:80", new string[0], new[] { "metadata.internal" }, new[] { "80" }, null)]
    [InlineData("*.corp.example", new string[0], new[] { "*.corp.example" }, new string[0], null)]
    [InlineData("[fe80::1]:22", new[] { "fe80::1" }, new string[0], new[] { "22" }, null)]
    [InlineData("fe80::/10", new[] { "fe80::/10" }, new string[0], new string[0], null)]
    [InlineData("john@10.0.0.0/8:8000-8100", new[] { "10.0.0.0/8" }, new string[0], new[] { "8000-8100" }, "john")]
    public void The_shorthand_reads_destination_port_and_user(string text, string[] cidrs, string[] hosts, string[] ports, string? user)
    {
        Assert.True(DestinationRule.TryParseShorthand(DestinationAction.Deny, text, out var rule));
        Assert.Equal("deny " + text, rule.Name);
        Assert.Equal(cidrs, rule.Cidrs);
        Assert.Equal(hosts, rule.Hosts);
        Assert.Equal(ports, rule.Ports);
        Assert.Equal(user is null ? [] : [user], rule.Users);
    }

    [Theory]
    [InlineData("")]
    [InlineData(":")]
    [InlineData(":0")]
    [InlineData(":70000")]
    [InlineData("10.0.0.0/33")]
    [InlineData("host:25-20")]
    [InlineData("a*b.example")]
    [InlineData("@10.0.0.0/8")]
    [InlineData("[fe80::1")]
    [InlineData("bad host")]
    public void A_bad_shorthand_is_refused(string text) =>
        Assert.False(DestinationRule.TryParseShorthand(DestinationAction.Deny, text, out _));

    [Fact]
    public void A_bad_rule_is_refused_at_start_up_with_its_name()
    {
        var error = Assert.Throws<ArgumentException>(() => new DestinationPolicy([Deny("oops", cidrs: ["10.0.0.0/99"])], false));
        Assert.Contains("rule 'oops'", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new DestinationPolicy([Deny("p", ports: ["0"])], false));
        Assert.Throws<ArgumentException>(() => new DestinationPolicy([Deny("h", hosts: ["*"])], false));
        Assert.Throws<ArgumentException>(() => new DestinationPolicy([Deny(" ")], false));
    }
}

/// <summary>Denials decided on the name before it is resolved.</summary>
public sealed class DestinationPolicyByNameTests
{
    [Fact]
    public void A_name_or_port_rule_denies_before_resolving_unless_an_address_rule_comes_first()
    {
        DestinationRule smtp = new() { Name = "smtp", Ports = ["25"] };
        DestinationRule corp = new() { Name = "corp", Hosts = ["*.corp.example"] };
        DestinationRule office = new() { Name = "office", Action = DestinationAction.Allow, Cidrs = ["10.0.0.0/8"] };
        var policy = new DestinationPolicy([office, smtp, corp], defaultDenials: true, [(9090, "admin-port")]);

        Assert.Null(policy.DeniedByName(new DestinationQuery("mail.example", null, 25, null))); // 10.x could be allowed first
        var late = new DestinationPolicy([smtp, corp, office], defaultDenials: true, [(9090, "admin-port")]);
        Assert.Equal("smtp", late.DeniedByName(new DestinationQuery("mail.example", null, 25, null))?.Rule);
        Assert.Equal("corp", late.DeniedByName(new DestinationQuery("wiki.CORP.example.", null, 443, null))?.Rule);
        Assert.Null(late.DeniedByName(new DestinationQuery("peer.example", null, 9090, null))); // 'office' could allow a 10.x address
        Assert.Equal("admin-port", new DestinationPolicy([smtp, corp], true, [(9090, "admin-port")]).DeniedByName(new DestinationQuery("peer.example", null, 9090, null))?.Rule);
        Assert.Null(late.DeniedByName(new DestinationQuery("www.example", null, 443, null))); // the addresses decide
        var allowFirst = new DestinationPolicy([new DestinationRule { Name = "ok", Action = DestinationAction.Allow, Hosts = ["wiki.corp.example"] }, corp], false);
        Assert.Null(allowFirst.DeniedByName(new DestinationQuery("wiki.corp.example", null, 443, null)));
    }
}
