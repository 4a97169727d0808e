using System.Collections;
using System.Net;
using Rama.Actors.Options;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Options;
using Rama.Proxy.Net.Destinations;

namespace Rama.Actors.Tests.Options;

/// <summary>The destination rules of a node (<c>Rama:Destinations</c>, <c>--allow</c>, <c>--deny</c>): order, refusals, the per-listener policy.</summary>
public sealed class DestinationNodeOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rama-destination-options").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (NodeOptions Options, IReadOnlyList<string> Problems) Read(string[] args, string? json = null)
    {
        if (json is not null)
        {
            var path = Path.Combine(_dir, "node.json");
            File.WriteAllText(path, json);
            args = [.. args, "--config", path];
        }

        var parsed = new NodeCommandLine().CommandLine.Parse(args);
        Assert.Empty(parsed.Errors);
        var reader = new OptionsReader(RamaConfiguration.Build(_dir, parsed, new Hashtable()), NodeOptionDeclarations.All);
        return (NodeOptions.Read(reader), reader.Problems);
    }

    private static DestinationVerdict Check(DestinationPolicy policy, string host, string address, int port, string? user = null) =>
        policy.Check(new DestinationQuery(host, IPAddress.Parse(address), port, user));

    [Fact]
    public void Configured_rules_come_in_order_then_allow_then_deny_shorthands()
    {
        const string json = """
            { "Rama": { "Destinations": { "Rules": [
                { "Name": "mail", "Action": "deny", "Ports": [ "25", "465-587" ] },
                { "Name": "bob-intranet", "Action": "allow", "Cidrs": [ "10.1.0.0/16" ], "Users": [ "bob" ] },
                { "Name": "intranet", "Cidrs": [ "10.0.0.0/8", "fd00::/8" ], "Hosts": [ "*.corp.example" ] }
            ] } } }
            """;
        var (options, problems) = Read(["--allow", "metadata.internal:80", "--deny", ":8000-8100"], json);
        Assert.Empty(problems);
        Assert.Equal(["mail", "bob-intranet", "intranet", "allow metadata.internal:80", "deny :8000-8100"], options.Destinations.Rules.Select(r => r.Name));

        var policy = options.Destinations.PolicyFor(new IPEndPoint(IPAddress.Loopback, 8080), options.Admin, options.Cluster)!;
        Assert.False(policy.DefaultDenials); // a loopback listener: the rules only
        Assert.Equal(new DestinationVerdict(false, "mail"), Check(policy, "mx", "192.0.2.1", 500));
        Assert.Equal(new DestinationVerdict(true, "bob-intranet"), Check(policy, "x", "10.1.0.9", 80, "bob"));
        Assert.Equal(new DestinationVerdict(false, "intranet"), Check(policy, "x", "10.1.0.9", 80, "alice"));
        Assert.Equal(new DestinationVerdict(true, "allow metadata.internal:80"), Check(policy, "metadata.internal", "169.254.169.254", 80));
        Assert.Equal(new DestinationVerdict(false, "deny :8000-8100"), Check(policy, "a", "192.0.2.1", 8080));
    }

    [Fact]
    public void The_defaults_apply_off_loopback_or_when_forced_and_deny_the_admin_and_cluster_ports()
    {
        var (options, problems) = Read(["--admin", "127.0.0.1:19999"]);
        Assert.Empty(problems);
        Assert.Null(options.Destinations.PolicyFor(new IPEndPoint(IPAddress.Loopback, 8080), options.Admin, options.Cluster)); // today's behaviour
        var cluster = new ClusterOptions { Enabled = true, Bind = new IPEndPoint(IPAddress.Loopback, 14054) };
        var pub = options.Destinations.PolicyFor(new IPEndPoint(IPAddress.Any, 8080), options.Admin, cluster)!;
        Assert.True(pub.DefaultDenials);
        Assert.Equal(new DestinationVerdict(false, "admin-port"), Check(pub, "peer", "192.0.2.1", 19999));
        Assert.Equal(new DestinationVerdict(false, "cluster-port"), Check(pub, "peer", "192.0.2.1", 14054));
        Assert.Equal(new DestinationVerdict(false, "link-local"), Check(pub, "peer", "169.254.169.254", 80));

        var forced = Read(["--destination-defaults", "on"]).Options.Destinations;
        Assert.True(forced.PolicyFor(new IPEndPoint(IPAddress.Loopback, 8080), new AdminOptions(), new ClusterOptions())!.DefaultDenials);
        var off = Read(["--destination-defaults", "off"]).Options.Destinations;
        Assert.Null(off.PolicyFor(new IPEndPoint(IPAddress.Any, 8080), new AdminOptions(), new ClusterOptions()));
    }

    [Theory]
    [InlineData("""{ "Rama": { "Destinations": { "Rule": [] } } }""", "Rama:Destinations:Rule is not a key of Rama:Destinations")]
    [InlineData("""{ "Rama": { "Destinations": { "Rules": [ { "Name": "x", "Cidr": [ "10.0.0.0/8" ] } ] } } }""", "Rama:Destinations:Rules:0:Cidr is not a key of a destination rule")]
    [InlineData("""{ "Rama": { "Destinations": { "Rules": [ { "Name": "x", "Action": "block" } ] } } }""", "Rama:Destinations:Rules:0:Action is 'block'")]
    [InlineData("""{ "Rama": { "Destinations": { "Rules": [ { "Name": "x", "Cidrs": [ "10.0.0.0/33" ] } ] } } }""", "Rama:Destinations:Rules:0:Cidrs:0 is '10.0.0.0/33'")]
    [InlineData("""{ "Rama": { "Destinations": { "Rules": [ { "Name": "x", "Ports": [ "0" ] } ] } } }""", "Rama:Destinations:Rules: rule 'x': '0' is not a port")]
    [InlineData("""{ "Rama": { "Destinations": { "Rules": [ { "Name": "x" }, { "Name": "x" } ] } } }""", "Rama:Destinations:Rules: the rule name 'x' is used 2 times")]
    public void A_bad_rule_is_refused_with_its_key(string json, string expected)
    {
        var (_, problems) = Read([], json);
        Assert.Contains(problems, p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("--deny", "10.0.0.0/33")]
    [InlineData("--allow", ":0")]
    [InlineData("--destination-defaults", "maybe")]
    public void A_bad_shorthand_is_refused(string option, string value)
    {
        var (_, problems) = Read([option, value]);
        Assert.NotEmpty(problems);
    }
}
