using System.Collections;
using Microsoft.Extensions.Configuration;
using Rama.Actors.Options;
using Rama.Admin.Options;
using Rama.Proxy.Http.Routing;

namespace Rama.Actors.Tests.Options;

/// <summary>Routes and clusters of a reverse listener in YARP's shape: bound, validated, refused with the key named; the reload keeps the old table on a bad file.</summary>
public sealed class ReverseRouteOptionsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rama-route-options").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (NodeOptions Options, IReadOnlyList<string> Problems) Read(string json)
    {
        var path = Path.Combine(_dir, "node.json");
        File.WriteAllText(path, json);
        var parsed = new NodeCommandLine().CommandLine.Parse(["--config", path]);
        Assert.Empty(parsed.Errors);
        var reader = new OptionsReader(RamaConfiguration.Build(_dir, parsed, new Hashtable()), NodeOptionDeclarations.All);
        return (NodeOptions.Read(reader), reader.Problems);
    }

    private static string Listener(string body) => $$"""{ "Rama": { "Listeners": { "web": { "Kind": "reverse", "Bind": "127.0.0.1:0", {{body}} } } } }""";

    // A YARP appsettings.json's ReverseProxy section, moved under the listener as it is.
    private const string YarpShaped = """
        "Routes": {
          "api": { "ClusterId": "apis", "Order": 1, "Timeout": "00:00:05",
                   "Match": { "Hosts": [ "api.example.com", "*.api.example.com" ], "Path": "/api/{**catch-all}", "Methods": [ "GET", "POST" ],
                              "Headers": [ { "Name": "X-Tenant", "Values": [ "a", "b" ], "Mode": "HeaderPrefix" } ] },
                   "Transforms": [ { "PathRemovePrefix": "/api" }, { "RequestHeader": "X-From", "Set": "rama" }, { "RequestHeader": "X-Tag", "Append": "1" },
                                   { "RequestHeaderRemove": "Cookie" }, { "ResponseHeader": "X-Served-By", "Set": "rama", "When": "Always" },
                                   { "ResponseHeaderRemove": "Server" }, { "PathPrefix": "/v1" } ],
                   "Metadata": { "owner": "team-a" } },
          "site": { "ClusterId": "web" }
        },
        "Clusters": {
          "apis": { "LoadBalancingPolicy": "Hash", "HashOn": "cookie:session", "MaxAttempts": 2,
                    "HealthCheck": { "Active": { "Enabled": true, "Interval": "00:00:02", "Timeout": "00:00:01", "Policy": "ConsecutiveFailures", "Path": "/healthz",
                                                 "UnhealthyThreshold": 2, "HealthyThreshold": 3 },
                                     "Passive": { "Enabled": true, "Policy": "TransportFailureRate", "ReactivationPeriod": "00:00:30", "MaxFailures": 5, "Window": "00:01:00" } },
                    "Destinations": { "one": { "Address": "http://10.0.0.1:8080/" }, "two": { "Address": "http://10.0.0.2:8080", "Health": "http://10.0.0.2:9090" } } },
          "web": { "LoadBalancingPolicy": "RoundRobin", "Destinations": { "w": { "Address": "http://127.0.0.1:8000" } } }
        },
        "ForwardedHeaders": { "TrustedProxies": [ "10.0.0.0/8", "192.0.2.1" ], "Forwarded": false }
        """;

    [Fact]
    public void A_yarp_shaped_configuration_binds_every_key()
    {
        var (options, problems) = Read(Listener(YarpShaped));
        Assert.Empty(problems);
        var routing = Assert.Single(options.Listeners).Routing!;
        var api = routing.Routes.Single(r => r.RouteId == "api");
        Assert.Equal(("apis", 1, TimeSpan.FromSeconds(5)), (api.ClusterId, api.Order, api.Timeout!.Value));
        Assert.Equal(["api.example.com", "*.api.example.com"], api.Match.Hosts);
        Assert.Equal("/api/{**catch-all}", api.Match.Path);
        Assert.Equal(["GET", "POST"], api.Match.Methods);
        var header = Assert.Single(api.Match.Headers);
        Assert.Equal(("X-Tenant", HeaderMatchMode.HeaderPrefix), (header.Name, header.Mode));
        Assert.Equal(["a", "b"], header.Values);
        Assert.Equal(
            [
                RouteTransformKind.PathRemovePrefix, RouteTransformKind.RequestHeaderSet, RouteTransformKind.RequestHeaderAppend, RouteTransformKind.RequestHeaderRemove,
                RouteTransformKind.ResponseHeaderSet, RouteTransformKind.ResponseHeaderRemove, RouteTransformKind.PathPrefix,
            ], api.Transforms.Select(t => t.Kind));
        Assert.Equal(new RouteTransform(RouteTransformKind.RequestHeaderSet, "X-From", "rama"), api.Transforms[1]);

        var apis = routing.Clusters.Single(c => c.ClusterId == "apis");
        Assert.Equal((LoadBalancingPolicy.Hash, "cookie:session", 2), (apis.LoadBalancingPolicy, apis.HashOn, apis.MaxAttempts));
        Assert.Equal(new ActiveHealthCheckOptions { Enabled = true, Interval = TimeSpan.FromSeconds(2), Timeout = TimeSpan.FromSeconds(1), Path = "/healthz", UnhealthyThreshold = 2, HealthyThreshold = 3 },
            apis.HealthCheck.Active);
        Assert.Equal(new PassiveHealthCheckOptions { Enabled = true, MaxFailures = 5, Window = TimeSpan.FromMinutes(1), ReactivationPeriod = TimeSpan.FromSeconds(30) }, apis.HealthCheck.Passive);
        Assert.Equal(["one http://10.0.0.1:8080/ ", "two http://10.0.0.2:8080 http://10.0.0.2:9090"], apis.Destinations.Select(d => $"{d.DestinationId} {d.Address} {d.Health}"));
        Assert.Equal(LoadBalancingPolicy.RoundRobin, routing.Clusters.Single(c => c.ClusterId == "web").LoadBalancingPolicy);
        Assert.False(routing.ForwardedHeaders.Forwarded);
        Assert.True(routing.ForwardedHeaders.XForwarded);
        Assert.Equal(["10.0.0.0/8", "192.0.2.1/32"], routing.ForwardedHeaders.TrustedProxies.Select(n => n.ToString()));
    }

    [Fact]
    public void Defaults_are_power_of_two_no_health_checks_and_both_forwarded_headers_from_no_trusted_peer()
    {
        var (options, problems) = Read(Listener("""
            "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "Destinations": { "d": { "Address": "http://127.0.0.1:8000" } } } }
            """));
        Assert.Empty(problems);
        var routing = options.Listeners[0].Routing!;
        var cluster = Assert.Single(routing.Clusters);
        Assert.Equal((LoadBalancingPolicy.PowerOfTwoChoices, 3, false, false), (cluster.LoadBalancingPolicy, cluster.MaxAttempts, cluster.HealthCheck.Active.Enabled, cluster.HealthCheck.Passive.Enabled));
        Assert.Equal((TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(10), "/", 3, 2), (cluster.HealthCheck.Active.Interval, cluster.HealthCheck.Active.Timeout, cluster.HealthCheck.Active.Path,
            cluster.HealthCheck.Active.UnhealthyThreshold, cluster.HealthCheck.Active.HealthyThreshold));
        Assert.True(routing.ForwardedHeaders is { XForwarded: true, Forwarded: true, TrustedProxies.Count: 0 });
        Assert.Null(options.Listeners[0].Upstream);
    }

    private const string Ok = """ "Clusters": { "c": { "Destinations": { "d": { "Address": "http://127.0.0.1:8000" } } } } """;

    [Theory]
    [InlineData(""" "Routes": { "r": { "ClusterId": "nope" } }, """ + Ok, "Rama:Listeners:web: route 'r': ClusterId 'nope' names no cluster (clusters: c)")]
    [InlineData(""" "Routes": { "r": { "Order": 1 } }, """ + Ok, "Rama:Listeners:web:Routes:r:ClusterId is missing")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "AuthorizationPolicy": "x" } }, """ + Ok, "Rama:Listeners:web:Routes:r:AuthorizationPolicy is not a key of a route: allowed are RouteId, ClusterId")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Match": { "Path": "/users/{id}" } } }, """ + Ok, "Rama:Listeners:web: route 'r': Match:Path '/users/{id}' has a route parameter")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Match": { "Paht": "/x" } } }, """ + Ok, "Rama:Listeners:web:Routes:r:Match:Paht is not a key of a route's Match")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Match": { "Headers": [ { "Name": "X", "Mode": "Regex" } ] } } }, """ + Ok,
        "Rama:Listeners:web:Routes:r:Match:Headers:0:Mode is 'Regex': allowed are ExactHeader, HeaderPrefix, Exists")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Match": { "Headers": [ { "Name": "X" } ] } } }, """ + Ok, "Rama:Listeners:web: route 'r': header match on 'X' with mode ExactHeader needs Values")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Timeout": "soon" } }, """ + Ok, "Rama:Listeners:web:Routes:r:Timeout is 'soon'")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Transforms": [ { "X-Forwarded": "Set" } ] } }, """ + Ok, "Rama:Listeners:web:Routes:r:Transforms:0 is not a transform Rama applies")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c", "Transforms": [ { "ResponseHeader": "X", "Set": "1", "When": "Success" } ] } }, """ + Ok, "Rama:Listeners:web:Routes:r:Transforms:0:When is 'Success'")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "Destinations": { "d": { "Address": "ftp://127.0.0.1:50051" } } } } """,
        "Rama:Listeners:web: cluster 'c': destination 'd' Address 'ftp://127.0.0.1:50051' has the scheme 'ftp', not supported (supported: http, h2c, https)")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "Destinations": { "d": { "Adress": "http://a:1" } } } } """, "Rama:Listeners:web:Clusters:c:Destinations:d:Adress is not a key of a destination")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "LoadBalancingPolicy": "Fastest", "Destinations": { "d": { "Address": "http://a:1" } } } } """,
        "Rama:Listeners:web:Clusters:c:LoadBalancingPolicy is 'Fastest': allowed are PowerOfTwoChoices, RoundRobin")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "LoadBalancingPolicy": "Hash", "Destinations": { "d": { "Address": "http://a:1" } } } } """,
        "Rama:Listeners:web: cluster 'c': LoadBalancingPolicy Hash needs HashOn")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "HashOn": "query:id", "Destinations": { "d": { "Address": "http://a:1" } } } } """,
        "Rama:Listeners:web:Clusters:c:HashOn is 'query:id': allowed is header:<name> or cookie:<name>")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "HealthCheck": { "Active": { "Interval": "-1" } }, "Destinations": { "d": { "Address": "http://a:1" } } } } """,
        "Rama:Listeners:web:Clusters:c:HealthCheck:Active:Interval is '-1'")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "HealthCheck": { "Passive": { "MaxFailures": 0 } }, "Destinations": { "d": { "Address": "http://a:1" } } } } """,
        "Rama:Listeners:web:Clusters:c:HealthCheck:Passive:MaxFailures is '0'")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "HealthCheck": { "AvailableDestinationsPolicy": "x" }, "Destinations": { "d": { "Address": "http://a:1" } } } } """,
        "Rama:Listeners:web:Clusters:c:HealthCheck:AvailableDestinationsPolicy is not a key of a cluster's HealthCheck")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "ForwardedHeaders": { "TrustedProxies": [ "10.0.0.0/33" ] }, """ + Ok, "Rama:Listeners:web:ForwardedHeaders:TrustedProxies:0 is '10.0.0.0/33'")]
    [InlineData(""" "Routes": { "r": { "ClusterId": "c" } }, "Upstream": "127.0.0.1:8000", """ + Ok, "Rama:Listeners:web: Upstream and Routes/Clusters exclude each other")]
    [InlineData(Ok, "Rama:Listeners:web: no route")]
    public void A_bad_routing_key_is_refused_naming_it(string body, string expected)
    {
        var (_, problems) = Read(Listener(body));
        Assert.Contains(problems, p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void A_reload_swaps_valid_routes_and_keeps_the_table_in_use_when_the_file_is_invalid()
    {
        var path = Path.Combine(_dir, "routes.json");
        string Config(string address) => $$"""{ "Rama": { "Listeners": { "web": { "Kind": "reverse", "Bind": "127.0.0.1:0", "Routes": { "r": { "ClusterId": "c" } }, "Clusters": { "c": { "Destinations": { "d": { "Address": "{{address}}" } } } } } } } }""";
        File.WriteAllText(path, Config("http://127.0.0.1:8000"));
        var table = new RecordingTable();
        using var reload = new ReverseRoutesReload([path], () => new ConfigurationBuilder().AddJsonFile(path).Build(), pollInterval: TimeSpan.FromHours(1));
        reload.Add("web", table);

        File.WriteAllText(path, Config("http://127.0.0.1:9000"));
        reload.Reload();
        Assert.Equal("http://127.0.0.1:9000", Assert.Single(table.Applied).Clusters[0].Destinations[0].Address);
        Assert.Equal(1, reload.Reloads);

        File.WriteAllText(path, Config("ftp://127.0.0.1:9000"));
        reload.Reload();
        Assert.Single(table.Applied); // refused before the table saw it
        Assert.Equal(1, reload.Refusals);

        File.WriteAllText(path, "{ not json");
        reload.Reload();
        Assert.Single(table.Applied);
        Assert.Equal(2, reload.Refusals);
    }

    private sealed class RecordingTable : IReverseRouteTable
    {
        public List<ReverseRoutingOptions> Applied { get; } = [];

        public IReadOnlyList<string> Apply(ReverseRoutingOptions options)
        {
            Applied.Add(options);
            return [];
        }
    }
}
