using System.Collections;
using System.Net;
using Microsoft.Extensions.Configuration;
using Rama.Admin.Cluster;
using Rama.Admin.Options;

namespace Rama.Admin.Tests.Cluster;

/// <summary>The fleet's options as a node or lighthouse reads them: defaults, Lighthouse's variables, and what is refused.</summary>
public sealed class ClusterOptionsTests
{
    private const string Secret = "a-fleet-secret-of-24-chars";

    private static (ClusterOptions Options, OptionsReader Reader) Read(ClusterMemberKind kind, params (string Key, string Value)[] values)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();
        var reader = new OptionsReader(configuration, ClusterOptionDeclarations.All);
        return (ClusterOptions.Read(reader, kind), reader);
    }

    private static (ClusterOptions Options, OptionsReader Reader) FromEnvironment(ClusterMemberKind kind, Hashtable environment)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(RamaConfiguration.FromEnvironment(environment)).Build();
        var reader = new OptionsReader(configuration, ClusterOptionDeclarations.All);
        return (ClusterOptions.Read(reader, kind), reader);
    }

    [Fact]
    public void A_node_without_seeds_or_cluster_runs_alone()
    {
        var (options, reader) = Read(ClusterMemberKind.Node);

        Assert.Empty(reader.Problems);
        Assert.False(options.Enabled);
    }

    [Fact]
    public void A_lighthouse_is_a_member_on_loopback_4053_with_its_role_and_Akkas_defaults()
    {
        var (options, reader) = Read(ClusterMemberKind.Lighthouse);

        Assert.Empty(reader.Problems);
        Assert.True(options.Enabled);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 4053), options.Bind);
        Assert.Equal(["lighthouse"], options.Roles);
        Assert.Equal(SplitBrainStrategy.KeepMajority, options.Strategy);
        Assert.Equal(TimeSpan.FromSeconds(20), options.StableAfter);
        Assert.Equal(TimeSpan.FromSeconds(3), options.HeartbeatPause);
        Assert.Equal(TimeSpan.FromSeconds(1), options.HeartbeatInterval);
        Assert.Equal(FleetAuthentication.None, options.Authentication);
        Assert.Equal("akka.tcp://rama@127.0.0.1:4053", options.AddressOf("rama", options.Advertised));
    }

    [Fact]
    public void Seeds_make_a_node_a_member_on_4054_with_the_proxy_role_first_and_a_secret_makes_it_ssl()
    {
        var (options, reader) = Read(ClusterMemberKind.Node,
            ("Rama:Cluster:Seeds:0", "127.0.0.1:4053"), ("Rama:Cluster:Seeds:1", "10.0.0.2:4053"),
            ("Rama:Cluster:Roles:0", "edge"), ("Rama:Cluster:Secret", Secret));

        Assert.Empty(reader.Problems);
        Assert.True(options.Enabled);
        Assert.Equal(4054, options.Bind.Port);
        Assert.Equal(["proxy", "edge"], options.Roles);
        Assert.Equal([new HostPort("127.0.0.1", 4053), new HostPort("10.0.0.2", 4053)], options.Seeds);
        Assert.Equal(FleetAuthentication.Secret, options.Authentication);
        Assert.Equal("akka.ssl.tcp://rama@10.0.0.2:4053", options.AddressOf("rama", options.Seeds[1]));
        Assert.Contains(reader.Effective, e => e.Key == "Rama:Cluster:Secret" && e.Value == "***");
    }

    [Fact]
    public void Lighthouse_variables_set_the_address_the_seeds_and_the_secret_and_a_name_binds_every_interface()
    {
        var (options, reader) = FromEnvironment(ClusterMemberKind.Node, new Hashtable
        {
            ["CLUSTER_IP"] = "node1",
            ["CLUSTER_PORT"] = "4060",
            ["CLUSTER_SEEDS"] = "lighthouse:4053",
            ["CLUSTER_SECRET"] = Secret,
        });

        Assert.Empty(reader.Problems);
        Assert.True(options.Enabled);
        Assert.Equal(new IPEndPoint(IPAddress.Any, 4060), options.Bind);
        Assert.Equal(new HostPort("node1", 4060), options.Advertised);
        Assert.Equal([new HostPort("lighthouse", 4053)], options.Seeds);
        Assert.Equal(Secret, options.Secret);
    }

    [Fact]
    public void An_explicit_Rama_key_wins_over_a_Lighthouse_variable()
    {
        var (options, _) = FromEnvironment(ClusterMemberKind.Lighthouse, new Hashtable
        {
            ["CLUSTER_SECRET"] = "the-variable-secret-0001",
            ["Rama__Cluster__Secret"] = "the-explicit-secret-0002",
        });

        Assert.Equal("the-explicit-secret-0002", options.Secret);
    }

    [Fact]
    public void A_non_loopback_cluster_address_without_a_secret_or_certificates_is_refused()
    {
        var (_, reader) = Read(ClusterMemberKind.Node, ("Rama:Cluster:Bind", "10.0.0.5:4054"), ("Rama:Cluster:Seeds:0", "10.0.0.2:4053"));

        var problem = Assert.Single(reader.Problems);
        Assert.Contains("not a loopback address: the fleet must authenticate its members there", problem, StringComparison.Ordinal);
        Assert.Contains("--cluster-secret", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_short_secret_is_refused()
    {
        var (_, reader) = Read(ClusterMemberKind.Lighthouse, ("Rama:Cluster:Secret", "short"));

        Assert.Contains(reader.Problems, p => p.Contains("is too short: at least 16 characters", StringComparison.Ordinal));
    }

    [Fact]
    public void A_wildcard_bind_needs_the_address_peers_dial()
    {
        var (_, reader) = Read(ClusterMemberKind.Lighthouse, ("Rama:Cluster:Bind", "0.0.0.0:4053"), ("Rama:Cluster:Secret", Secret));

        Assert.Contains(reader.Problems, p => p.Contains("peers cannot dial a wildcard address", StringComparison.Ordinal));
    }

    [Fact]
    public void A_secret_and_certificates_together_are_refused_and_a_certificate_needs_its_ca()
    {
        var (_, both) = Read(ClusterMemberKind.Lighthouse, ("Rama:Cluster:Secret", Secret), ("Rama:Cluster:Certificate", "/etc/hosts"), ("Rama:Cluster:Ca", "/etc/hosts"));
        var (_, alone) = Read(ClusterMemberKind.Lighthouse, ("Rama:Cluster:Certificate", "/etc/hosts"));

        Assert.Contains(both.Problems, p => p.StartsWith("give either", StringComparison.Ordinal));
        Assert.Contains(alone.Problems, p => p.Contains("go together", StringComparison.Ordinal));
    }

    [Fact]
    public void Static_quorum_needs_a_quorum_size()
    {
        var (_, reader) = Read(ClusterMemberKind.Lighthouse, ("Rama:Cluster:SplitBrainResolver:Strategy", "static-quorum"));

        Assert.Contains(reader.Problems, p => p.Contains("static-quorum needs", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("keep-oldest", SplitBrainStrategy.KeepOldest)]
    [InlineData("down-all", SplitBrainStrategy.DownAll)]
    [InlineData("keep-majority", SplitBrainStrategy.KeepMajority)]
    public void The_split_brain_resolver_strategy_is_selectable(string value, SplitBrainStrategy expected)
    {
        var (options, reader) = Read(ClusterMemberKind.Lighthouse, ("Rama:Cluster:SplitBrainResolver:Strategy", value));

        Assert.Empty(reader.Problems);
        Assert.Equal(expected, options.Strategy);
    }

    [Fact]
    public void The_failure_detector_and_resolver_timings_reach_Akkas_configuration()
    {
        var (options, reader) = Read(ClusterMemberKind.Lighthouse,
            ("Rama:Cluster:SplitBrainResolver:StableAfter", "2"), ("Rama:Cluster:FailureDetector:AcceptablePause", "1.5"),
            ("Rama:Cluster:FailureDetector:HeartbeatInterval", "0.5"), ("Rama:Cluster:SplitBrainResolver:Strategy", "down-all"));

        Assert.Empty(reader.Problems);
        Assert.Equal(TimeSpan.FromSeconds(1.5), options.HeartbeatPause);
        Assert.Equal(TimeSpan.FromMilliseconds(500), options.HeartbeatInterval);
        var hocon = ClusterHostingExtensions.Hocon(options);
        Assert.Contains("akka.cluster.split-brain-resolver.stable-after = 2000ms", hocon, StringComparison.Ordinal);
        Assert.Contains("akka.cluster.split-brain-resolver.active-strategy = down-all", hocon, StringComparison.Ordinal);
        Assert.Contains("akka.cluster.run-coordinated-shutdown-when-down = on", hocon, StringComparison.Ordinal);
        Assert.DoesNotContain("trttl", hocon, StringComparison.Ordinal);
    }
}
