using System.Collections;
using Rama.Actors.Hosting;
using Rama.Actors.Options;
using Rama.Actors.Tests.Options;
using Rama.Admin.Options;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;

namespace Rama.Actors.Tests.Limits;

/// <summary>
/// The listener and user limits as node options: command line, configuration file and environment set the same keys, a
/// listener entry's own key wins over the node-wide one, and a bad value is a problem naming the key and what is allowed
/// (rama-node exits 2 on any problem).
/// </summary>
public sealed class LimitNodeOptionsTests : IDisposable
{
    private readonly NodeOptionsFixture _node = new("rama-limit-options");

    public void Dispose() => _node.Dispose();

    private (NodeOptions Options, IReadOnlyList<string> Problems, OptionsReader Reader) Read(string[] args, string? json = null, Hashtable? environment = null) =>
        _node.Read(args, json, environment);

    [Fact]
    public void Command_line_limits_reach_every_listener_and_the_users()
    {
        var (options, problems, reader) = Read(["--listen", "127.0.0.1:0", "--reverse", "127.0.0.1:0=127.0.0.1:80", "--max-connections", "500",
            "--max-connections-per-ip", "20", "--max-body-size", "10MiB", "--user-rate", "20/s", "--user-rate-limit", "john=5/s", "--user-rate-limit", "mary=600/m"]);

        Assert.Empty(problems);
        var limits = options.Proxy.Limits;
        Assert.Equal(10 * 1024 * 1024, limits.MaxBodySize);
        Assert.Equal(new LimitRate(5, TimeSpan.FromSeconds(1)), limits.ForUser("john").Rate);
        Assert.Equal(new LimitRate(600, TimeSpan.FromMinutes(1)), limits.ForUser("mary").Rate);
        Assert.Equal(new LimitRate(20, TimeSpan.FromSeconds(1)), limits.ForUser("anna").Rate);
        foreach (var listener in options.Listeners)
        {
            var server = NodeListeners.ServerOptions(options, listener);
            Assert.Equal((listener.Name, 500, 20), (server.Name, server.MaxConnections, server.MaxConnectionsPerIp));
        }

        var shown = string.Join('\n', reader.Effective.Select(e => $"{e.Key} = {e.Value}"));
        Assert.Contains("Rama:Proxy:Limits:MaxBodySize = 10485760", shown, StringComparison.Ordinal);
        Assert.Contains("Rama:Proxy:Limits:UserRates:0 = john=5/s", shown, StringComparison.Ordinal);
    }

    [Fact]
    public void A_listener_entrys_own_limits_win_and_the_default_is_half_the_descriptor_limit()
    {
        const string json = """
            { "Rama": { "Listeners": {
              "edge": { "Kind": "proxy", "Bind": "127.0.0.1:0", "MaxConnections": 100, "MaxConnectionsPerIp": 3, "MaxBodySize": "64KiB" },
              "site": { "Kind": "reverse", "Bind": "127.0.0.1:0", "Upstream": "127.0.0.1:80" },
              "tls":  { "Kind": "echo", "Bind": "127.0.0.1:0", "MaxConnections": 7 } } } }
            """;
        var (options, problems, reader) = Read([], json);

        Assert.Empty(problems);
        var edge = options.Listeners.Single(l => l.Name == "edge");
        Assert.Equal((100, 3, 64 * 1024L), (edge.MaxConnections, edge.MaxConnectionsPerIp, edge.MaxBodySize));
        Assert.Equal(100, NodeListeners.ServerOptions(options, edge).MaxConnections);
        Assert.Equal(7, NodeListeners.ServerOptions(options, options.Listeners.Single(l => l.Name == "tls")).MaxConnections);
        var site = NodeListeners.ServerOptions(options, options.Listeners.Single(l => l.Name == "site"));
        Assert.Equal(DescriptorLimit.DefaultMaxConnections(), site.MaxConnections);
        Assert.Equal(DescriptorLimit.Current() / 2, site.MaxConnections);
        Assert.Null(site.MaxConnectionsPerIp);
        Assert.Contains(reader.Effective, e => e.Key == "Rama:Listeners:edge:MaxBodySize" && e.Value == "65536");
    }

    [Fact]
    public void Environment_variables_set_the_same_keys()
    {
        var (options, problems, _) = Read(["--listen", "127.0.0.1:0"], environment: new Hashtable
        {
            ["Rama__Proxy__Limits__MaxConnections"] = "42",
            ["Rama__Proxy__Limits__UserRate"] = "3/h",
        });

        Assert.Empty(problems);
        Assert.Equal(42, NodeListeners.ServerOptions(options, options.Listeners[0]).MaxConnections);
        Assert.Equal(new LimitRate(3, TimeSpan.FromHours(1)), options.Proxy.Limits.ForUser("john").Rate);
    }

    [Theory]
    [InlineData("--max-connections", "0", "Rama:Proxy:Limits:MaxConnections (--max-connections) is '0': allowed is a whole number from 1 to 10000000")]
    [InlineData("--max-connections-per-ip", "lots", "Rama:Proxy:Limits:MaxConnectionsPerIp (--max-connections-per-ip) is 'lots': allowed is a whole number from 1 to 10000000")]
    [InlineData("--max-body-size", "10 parsecs", "Rama:Proxy:Limits:MaxBodySize (--max-body-size) is '10 parsecs': allowed is a size in bytes, or with a unit: 64KiB, 10MiB, 1GiB")]
    [InlineData("--user-rate", "fast", "Rama:Proxy:Limits:UserRate (--user-rate) is 'fast': allowed is a count per s, m or h (e.g. 50/s, 600/m)")]
    [InlineData("--user-rate-limit", "john", "Rama:Proxy: user rate 'john' is not user=rate (a user name and a count per s, m or h, e.g. john=5/s)")]
    public void A_bad_limit_is_refused_with_the_key_the_value_and_what_is_allowed(string option, string value, string expected)
    {
        var (_, problems, _) = Read([option, value]);
        Assert.Contains(problems, p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void A_bad_listener_limit_is_refused_naming_the_entrys_key_and_a_tls_listener_has_no_body_limit()
    {
        const string json = """
            { "Rama": { "Listeners": {
              "edge": { "Kind": "proxy", "Bind": "127.0.0.1:0", "MaxConnections": -5 },
              "t": { "Kind": "echo", "Bind": "127.0.0.1:0", "MaxBodySize": "1MiB" } } } }
            """;
        var (_, problems, _) = Read([], json);

        Assert.Contains(problems, p => p.StartsWith("Rama:Listeners:edge:MaxConnections is '-5': allowed is a whole number from 1 to 10000000", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("Rama:Listeners:t:MaxBodySize", StringComparison.Ordinal));
    }
}
