using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;
using Rama.Admin.Options;
using Rama.Proxy.Http.Routing;
using D = Rama.Actors.Options.NodeOptionDeclarations;

namespace Rama.Actors.Options;

/// <summary>
/// Reads the routes, clusters and forwarded-headers policy of a reverse listener, <c>Rama:Listeners:&lt;name&gt;:Routes</c>,
/// <c>:Clusters</c> and <c>:ForwardedHeaders</c>, in YARP's shape (a YARP <c>ReverseProxy</c> section's <c>Routes</c> and
/// <c>Clusters</c> move in as they are). Every key is checked: an unknown one, a bad value or a route naming no cluster
/// is a problem naming the key. Used at start-up and on every reload of the configuration files.
/// </summary>
public static class ReverseRouteOptions
{
    /// <summary>The keys of a route (YARP's RouteConfig; Metadata is accepted and not used).</summary>
    public static IReadOnlyList<string> RouteKeys { get; } = ["RouteId", "ClusterId", "Order", "Match", "Timeout", "Transforms", "Metadata"];

    public static IReadOnlyList<string> MatchKeys { get; } = ["Hosts", "Path", "Methods", "Headers"];

    public static IReadOnlyList<string> HeaderKeys { get; } = ["Name", "Values", "Mode", "IsCaseSensitive"];

    public static IReadOnlyList<string> ClusterKeys { get; } = ["ClusterId", "Destinations", "LoadBalancingPolicy", "HashOn", "MaxAttempts", "HealthCheck", "Metadata"];

    public static IReadOnlyList<string> DestinationKeys { get; } = ["Address", "Health", "Metadata"];

    public static IReadOnlyList<string> ActiveKeys { get; } = ["Enabled", "Interval", "Timeout", "Path", "Policy", "UnhealthyThreshold", "HealthyThreshold"];

    public static IReadOnlyList<string> PassiveKeys { get; } = ["Enabled", "Policy", "MaxFailures", "Window", "ReactivationPeriod"];

    public static IReadOnlyList<string> ForwardedKeys { get; } = ["XForwarded", "Forwarded", "TrustedProxies"];

    /// <summary>Whether the listener entry <paramref name="listener"/> configures routes (any of Routes, Clusters, ForwardedHeaders).</summary>
    public static bool IsRouted(IConfiguration configuration, string listener)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var at = $"{ListenerOptions.Section}:{listener}:";
        return configuration.GetSection(at + "Routes").GetChildren().Any() || configuration.GetSection(at + "Clusters").GetChildren().Any()
               || configuration.GetSection(at + "ForwardedHeaders").GetChildren().Any();
    }

    /// <summary>Reads the listener's routing; the problems go to <paramref name="reader"/> (the result is usable only without any).</summary>
    public static ReverseRoutingOptions Read(OptionsReader reader, string listener)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var at = $"{ListenerOptions.Section}:{listener}";
        var problemsBefore = reader.Problems.Count;
        var routes = reader.Configuration.GetSection(at + ":Routes").GetChildren().Select(r => ReadRoute(reader, r)).OfType<RouteOptions>().ToList();
        var clusters = reader.Configuration.GetSection(at + ":Clusters").GetChildren().Select(c => ReadCluster(reader, c)).OfType<ClusterOptions>().ToList();
        var forwarded = ReadForwarded(reader, at + ":ForwardedHeaders");
        var options = new ReverseRoutingOptions { Routes = routes, Clusters = clusters, ForwardedHeaders = forwarded };
        if (reader.Problems.Count == problemsBefore)
        {
            // Rules across keys (a route's cluster exists, a Hash cluster has HashOn, addresses parse): Rama.Proxy's, one place.
            foreach (var problem in options.Validate())
            {
                reader.AddProblem($"{at}: {problem}");
            }
        }

        return options;
    }

    private static string? Value(OptionsReader reader, RamaOption option, string key)
    {
        var raw = reader.Configuration[key];
        if (raw is null)
        {
            if (reader.Configuration.GetSection(key).GetChildren().Any())
            {
                reader.AddProblem($"{key} is a section, not a value: allowed {option.Value.Allowed}");
            }

            return null;
        }

        if (!option.Value.TryNormalize(raw, out var value))
        {
            reader.Refuse(option, key, raw);
            return null;
        }

        reader.Show(key, value);
        return value;
    }

    private static IReadOnlyList<string> Values(OptionsReader reader, RamaOption option, string key) =>
        reader.IsSet(key) ? reader.List(option, key) : [];

    private static TimeSpan? Duration(OptionsReader reader, RamaOption option, string key) =>
        Value(reader, option, key) is { } text ? TimeSpan.Parse(text, CultureInfo.InvariantCulture) : null;

    private static int? Integer(OptionsReader reader, RamaOption option, string key) =>
        Value(reader, option, key) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : null;

    private static bool? Flag(OptionsReader reader, RamaOption option, string key) =>
        Value(reader, option, key) is { } text ? bool.Parse(text) : null;

    private static RouteOptions? ReadRoute(OptionsReader reader, IConfigurationSection section)
    {
        var at = section.Path;
        reader.RefuseUnknownKeys(at, [.. RouteKeys], "a route");
        var id = section["RouteId"] ?? section.Key;
        var clusterId = Value(reader, D.RouteClusterId, at + ":ClusterId");
        if (reader.Configuration[at + ":ClusterId"] is null)
        {
            reader.AddProblem($"{at}:ClusterId is missing: the cluster this route sends to");
        }

        reader.RefuseUnknownKeys(at + ":Match", [.. MatchKeys], "a route's Match");
        var headers = new List<HeaderMatchOptions>();
        foreach (var header in reader.Configuration.GetSection(at + ":Match:Headers").GetChildren())
        {
            reader.RefuseUnknownKeys(header.Path, [.. HeaderKeys], "a header match");
            var name = Value(reader, D.RouteHeaderName, header.Path + ":Name");
            if (reader.Configuration[header.Path + ":Name"] is null)
            {
                reader.AddProblem($"{header.Path}:Name is missing: the header to match");
            }

            var mode = Value(reader, D.RouteHeaderMode, header.Path + ":Mode");
            if (name is not null)
            {
                headers.Add(new HeaderMatchOptions
                {
                    Name = name,
                    Values = Values(reader, D.RouteHeaderValues, header.Path + ":Values"),
                    Mode = mode is null ? HeaderMatchMode.ExactHeader : Enum.Parse<HeaderMatchMode>(mode, ignoreCase: true),
                    IsCaseSensitive = Flag(reader, D.RouteHeaderCaseSensitive, header.Path + ":IsCaseSensitive") ?? false,
                });
            }
        }

        var match = new RouteMatchOptions
        {
            Hosts = Values(reader, D.RouteHosts, at + ":Match:Hosts"),
            Path = Value(reader, D.RoutePath, at + ":Match:Path"),
            Methods = Values(reader, D.RouteMethods, at + ":Match:Methods"),
            Headers = headers,
        };
        var transforms = new List<RouteTransform>();
        foreach (var transform in reader.Configuration.GetSection(at + ":Transforms").GetChildren())
        {
            if (ReadTransform(reader, transform) is { } read)
            {
                transforms.Add(read);
            }
        }

        return clusterId is null
            ? null
            : new RouteOptions
            {
                RouteId = id,
                ClusterId = clusterId,
                Order = Integer(reader, D.RouteOrder, at + ":Order") ?? 0,
                Match = match,
                Timeout = Duration(reader, D.RouteTimeout, at + ":Timeout"),
                Transforms = transforms,
            };
    }

    /// <summary>The transform names Rama applies, YARP's.</summary>
    public static IReadOnlyList<string> TransformNames { get; } =
        ["PathRemovePrefix", "PathPrefix", "RequestHeader (+ Set or Append)", "RequestHeaderRemove", "ResponseHeader (+ Set or Append, When: Always)", "ResponseHeaderRemove"];

    private static RouteTransform? ReadTransform(OptionsReader reader, IConfigurationSection section)
    {
        var entries = section.GetChildren().ToDictionary(c => c.Key, c => c.Value, StringComparer.OrdinalIgnoreCase);
        string? Get(string key)
        {
            var path = $"{section.Path}:{key}";
            return entries.ContainsKey(key) ? Value(reader, D.RouteTransformValue, path) : null;
        }

        RouteTransform? Refuse()
        {
            reader.AddProblem($"{section.Path} is not a transform Rama applies ({string.Join(", ", entries.Keys)}): supported are {string.Join("; ", TransformNames)}");
            return null;
        }

        bool Only(params string[] keys) => entries.Keys.All(k => keys.Contains(k, StringComparer.OrdinalIgnoreCase));

        if (entries.ContainsKey("PathRemovePrefix") && Only("PathRemovePrefix"))
        {
            return Get("PathRemovePrefix") is { } prefix ? PathTransform(reader, section, RouteTransformKind.PathRemovePrefix, prefix) : null;
        }

        if (entries.ContainsKey("PathPrefix") && Only("PathPrefix"))
        {
            return Get("PathPrefix") is { } prefix ? PathTransform(reader, section, RouteTransformKind.PathPrefix, prefix) : null;
        }

        if (entries.ContainsKey("RequestHeaderRemove") && Only("RequestHeaderRemove"))
        {
            return HeaderName(reader, section, "RequestHeaderRemove") is { } name ? new RouteTransform(RouteTransformKind.RequestHeaderRemove, name, "") : null;
        }

        if (entries.ContainsKey("ResponseHeaderRemove") && Only("ResponseHeaderRemove", "When"))
        {
            return When(reader, section, entries) && HeaderName(reader, section, "ResponseHeaderRemove") is { } name
                ? new RouteTransform(RouteTransformKind.ResponseHeaderRemove, name, "")
                : null;
        }

        foreach (var (field, set, append) in new[]
                 {
                     ("RequestHeader", RouteTransformKind.RequestHeaderSet, RouteTransformKind.RequestHeaderAppend),
                     ("ResponseHeader", RouteTransformKind.ResponseHeaderSet, RouteTransformKind.ResponseHeaderAppend),
                 })
        {
            if (!entries.ContainsKey(field) || !Only(field, "Set", "Append", "When") || entries.ContainsKey("Set") == entries.ContainsKey("Append"))
            {
                continue;
            }

            if (entries.ContainsKey("When") && (field == "RequestHeader" || !When(reader, section, entries)))
            {
                return field == "RequestHeader" ? Refuse() : null;
            }

            var name = HeaderName(reader, section, field);
            var isSet = entries.ContainsKey("Set");
            var value = Get(isSet ? "Set" : "Append");
            return name is null || value is null ? null : new RouteTransform(isSet ? set : append, name, value);
        }

        return Refuse();
    }

    // YARP's When: Success (the default there) or Always. Rama applies response transforms to every origin response, so
    // only Always states what happens.
    private static bool When(OptionsReader reader, IConfigurationSection section, Dictionary<string, string?> entries)
    {
        if (!entries.TryGetValue("When", out var when) || string.Equals(when, "Always", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        reader.AddProblem($"{section.Path}:When is '{when}': Rama applies response header transforms to every origin response, so only Always is accepted");
        return false;
    }

    private static string? HeaderName(OptionsReader reader, IConfigurationSection section, string key) =>
        Value(reader, D.RouteHeaderName, $"{section.Path}:{key}");

    private static RouteTransform? PathTransform(OptionsReader reader, IConfigurationSection section, RouteTransformKind kind, string prefix)
    {
        if (!prefix.StartsWith('/') || prefix.Contains('?', StringComparison.Ordinal) || prefix.Contains('{', StringComparison.Ordinal))
        {
            reader.AddProblem($"{section.Path}:{kind} is '{prefix}': allowed is a path starting with '/', without '?' or route parameters");
            return null;
        }

        return new RouteTransform(kind, "", prefix);
    }

    private static ClusterOptions? ReadCluster(OptionsReader reader, IConfigurationSection section)
    {
        var at = section.Path;
        reader.RefuseUnknownKeys(at, [.. ClusterKeys], "a cluster");
        var id = section["ClusterId"] ?? section.Key;
        var destinations = new List<DestinationOptions>();
        foreach (var destination in reader.Configuration.GetSection(at + ":Destinations").GetChildren())
        {
            reader.RefuseUnknownKeys(destination.Path, [.. DestinationKeys], "a destination");
            var address = Value(reader, D.DestinationAddress, destination.Path + ":Address");
            if (reader.Configuration[destination.Path + ":Address"] is null)
            {
                reader.AddProblem($"{destination.Path}:Address is missing: http://host:port");
            }

            if (address is not null)
            {
                destinations.Add(new DestinationOptions
                {
                    DestinationId = destination.Key,
                    Address = address,
                    Health = Value(reader, D.DestinationHealth, destination.Path + ":Health"),
                });
            }
        }

        reader.RefuseUnknownKeys(at + ":HealthCheck", ["Active", "Passive"], "a cluster's HealthCheck");
        var activeAt = at + ":HealthCheck:Active";
        reader.RefuseUnknownKeys(activeAt, [.. ActiveKeys], "HealthCheck:Active");
        var defaults = new ActiveHealthCheckOptions();
        _ = Value(reader, D.ActivePolicy, activeAt + ":Policy");
        var active = new ActiveHealthCheckOptions
        {
            Enabled = Flag(reader, D.ActiveEnabled, activeAt + ":Enabled") ?? false,
            Interval = Duration(reader, D.ActiveInterval, activeAt + ":Interval") ?? defaults.Interval,
            Timeout = Duration(reader, D.ActiveTimeout, activeAt + ":Timeout") ?? defaults.Timeout,
            Path = Value(reader, D.ActivePath, activeAt + ":Path") ?? defaults.Path,
            UnhealthyThreshold = Integer(reader, D.ActiveUnhealthyThreshold, activeAt + ":UnhealthyThreshold") ?? defaults.UnhealthyThreshold,
            HealthyThreshold = Integer(reader, D.ActiveHealthyThreshold, activeAt + ":HealthyThreshold") ?? defaults.HealthyThreshold,
        };
        var passiveAt = at + ":HealthCheck:Passive";
        reader.RefuseUnknownKeys(passiveAt, [.. PassiveKeys], "HealthCheck:Passive");
        var passiveDefaults = new PassiveHealthCheckOptions();
        _ = Value(reader, D.PassivePolicy, passiveAt + ":Policy");
        var passive = new PassiveHealthCheckOptions
        {
            Enabled = Flag(reader, D.PassiveEnabled, passiveAt + ":Enabled") ?? false,
            MaxFailures = Integer(reader, D.PassiveMaxFailures, passiveAt + ":MaxFailures") ?? passiveDefaults.MaxFailures,
            Window = Duration(reader, D.PassiveWindow, passiveAt + ":Window") ?? passiveDefaults.Window,
            ReactivationPeriod = Duration(reader, D.PassiveReactivation, passiveAt + ":ReactivationPeriod") ?? passiveDefaults.ReactivationPeriod,
        };
        var policy = Value(reader, D.ClusterLoadBalancing, at + ":LoadBalancingPolicy");
        return new ClusterOptions
        {
            ClusterId = id,
            Destinations = destinations,
            LoadBalancingPolicy = policy is null ? LoadBalancingPolicy.PowerOfTwoChoices : Enum.Parse<LoadBalancingPolicy>(policy, ignoreCase: true),
            HashOn = Value(reader, D.ClusterHashOn, at + ":HashOn"),
            MaxAttempts = Integer(reader, D.ClusterMaxAttempts, at + ":MaxAttempts") ?? 3,
            HealthCheck = new HealthCheckOptions { Active = active, Passive = passive },
        };
    }

    private static ForwardedHeadersOptions ReadForwarded(OptionsReader reader, string at)
    {
        reader.RefuseUnknownKeys(at, [.. ForwardedKeys], "ForwardedHeaders");
        var trusted = new List<IPNetwork>();
        foreach (var cidr in Values(reader, D.ForwardedTrustedProxies, at + ":TrustedProxies"))
        {
            // Network's normalised text is a CIDR, or a single address (a /32 or /128).
            if (IPNetwork.TryParse(cidr, out var network))
            {
                trusted.Add(network);
            }
            else if (IPAddress.TryParse(cidr, out var address))
            {
                trusted.Add(new IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128));
            }
        }

        return new ForwardedHeadersOptions
        {
            XForwarded = Flag(reader, D.ForwardedXForwarded, at + ":XForwarded") ?? true,
            Forwarded = Flag(reader, D.ForwardedRfc7239, at + ":Forwarded") ?? true,
            TrustedProxies = trusted,
        };
    }
}
