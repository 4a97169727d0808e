using System.Net;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http.Routing;

/// <summary>
/// The routes and clusters of one reverse-proxy listener, in YARP's shape (<c>Routes</c> with <c>Match</c> to a
/// <c>ClusterId</c>; <c>Clusters</c> with <c>Destinations</c>, <c>LoadBalancingPolicy</c>, <c>HealthCheck</c>), plus the
/// forwarded-headers policy. Immutable: a reload builds a new one and swaps the listener's route table.
/// </summary>
public sealed record ReverseRoutingOptions
{
    private static readonly string[] s_framingFields =
        ["Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade"];

    public IReadOnlyList<RouteOptions> Routes { get; init; } = [];

    public IReadOnlyList<ClusterOptions> Clusters { get; init; } = [];

    public ForwardedHeadersOptions ForwardedHeaders { get; init; } = new();

    /// <summary>Problems that make this configuration unusable, one sentence each (empty: valid).</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        if (Routes.Count == 0)
        {
            problems.Add("no route: a routed reverse listener needs at least one entry under Routes");
        }

        if (Clusters.Count == 0)
        {
            problems.Add("no cluster: a routed reverse listener needs at least one entry under Clusters");
        }

        foreach (var duplicate in Routes.GroupBy(r => r.RouteId, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
        {
            problems.Add($"route '{duplicate.Key}' is declared {duplicate.Count()} times");
        }

        foreach (var duplicate in Clusters.GroupBy(c => c.ClusterId, StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
        {
            problems.Add($"cluster '{duplicate.Key}' is declared {duplicate.Count()} times");
        }

        foreach (var route in Routes)
        {
            if (!Clusters.Any(c => c.ClusterId.Equals(route.ClusterId, StringComparison.OrdinalIgnoreCase)))
            {
                problems.Add($"route '{route.RouteId}': ClusterId '{route.ClusterId}' names no cluster (clusters: {string.Join(", ", Clusters.Select(c => c.ClusterId))})");
            }

            if (route.Timeout is { } timeout && timeout <= TimeSpan.Zero)
            {
                problems.Add($"route '{route.RouteId}': Timeout must be positive");
            }

            if (route.Match.Path is { } path && !RoutePath.TryParse(path, out _, out var pathProblem))
            {
                problems.Add($"route '{route.RouteId}': Match:Path '{path}' {pathProblem}");
            }

            foreach (var transform in route.Transforms.Where(t => s_framingFields.Contains(t.Name, StringComparer.OrdinalIgnoreCase)))
            {
                // RFC 9112 §6: the framing is the proxy's to write; a rewritten Content-Length would desynchronise the origin.
                problems.Add($"route '{route.RouteId}': a transform may not change {transform.Name} (framing and connection fields are the proxy's)");
            }

            foreach (var header in route.Match.Headers)
            {
                if (header.Mode is HeaderMatchMode.ExactHeader or HeaderMatchMode.HeaderPrefix or HeaderMatchMode.Contains or HeaderMatchMode.NotContains
                    && header.Values.Count == 0)
                {
                    problems.Add($"route '{route.RouteId}': header match on '{header.Name}' with mode {header.Mode} needs Values");
                }
            }
        }

        foreach (var cluster in Clusters)
        {
            var at = $"cluster '{cluster.ClusterId}'";
            if (cluster.Destinations.Count == 0)
            {
                problems.Add($"{at} has no destination");
            }

            foreach (var destination in cluster.Destinations)
            {
                if (!DestinationAddress.TryParse(destination.Address, out _, out var problem))
                {
                    problems.Add($"{at}: destination '{destination.DestinationId}' Address '{destination.Address}' {problem}");
                }

                if (destination.Health is { } health && !DestinationAddress.TryParse(health, out _, out var healthProblem))
                {
                    problems.Add($"{at}: destination '{destination.DestinationId}' Health '{health}' {healthProblem}");
                }
            }

            if (cluster.LoadBalancingPolicy == LoadBalancingPolicy.Hash && cluster.HashOn is null)
            {
                problems.Add($"{at}: LoadBalancingPolicy Hash needs HashOn (header:<name> or cookie:<name>)");
            }

            if (cluster.HashOn is { } hashOn && !HashKey.TryParse(hashOn, out _))
            {
                problems.Add($"{at}: HashOn '{hashOn}' is not header:<name> or cookie:<name>");
            }

            if (cluster.MaxAttempts < 1)
            {
                problems.Add($"{at}: MaxAttempts must be at least 1");
            }

            var active = cluster.HealthCheck.Active;
            if (active.Interval <= TimeSpan.Zero || active.Timeout <= TimeSpan.Zero)
            {
                problems.Add($"{at}: HealthCheck:Active Interval and Timeout must be positive");
            }

            if (!active.Path.StartsWith('/'))
            {
                problems.Add($"{at}: HealthCheck:Active:Path '{active.Path}' must start with '/'");
            }

            if (active.UnhealthyThreshold < 1 || active.HealthyThreshold < 1)
            {
                problems.Add($"{at}: HealthCheck:Active thresholds must be at least 1");
            }

            var passive = cluster.HealthCheck.Passive;
            if (passive.MaxFailures < 1 || passive.Window <= TimeSpan.Zero || passive.ReactivationPeriod <= TimeSpan.Zero)
            {
                problems.Add($"{at}: HealthCheck:Passive MaxFailures must be at least 1, Window and ReactivationPeriod positive");
            }
        }

        return problems;
    }
}

/// <summary>One route (<c>Routes:&lt;routeId&gt;</c>): what it matches and the cluster it sends to.</summary>
public sealed record RouteOptions
{
    public required string RouteId { get; init; }

    public required string ClusterId { get; init; }

    /// <summary>Lower first (YARP's Order); among equal orders the more specific match wins. Default 0.</summary>
    public int Order { get; init; }

    public RouteMatchOptions Match { get; init; } = new();

    /// <summary>Time from the request until the response head; 504 past it. Null: the listener's UpstreamResponseHeaderTimeout only.</summary>
    public TimeSpan? Timeout { get; init; }

    public IReadOnlyList<RouteTransform> Transforms { get; init; } = [];
}

/// <summary>What a route matches (<c>Match</c>); every part given must match. Nothing given: every request.</summary>
public sealed record RouteMatchOptions
{
    /// <summary>Host names, exact (<c>api.example.com</c>) or one leading wildcard label (<c>*.example.com</c>), with an optional <c>:port</c>; case-insensitive.</summary>
    public IReadOnlyList<string> Hosts { get; init; } = [];

    /// <summary>A path prefix: <c>/api</c> (segment-wise: /api, /api/x, not /apix) or YARP's <c>/api/{**catch-all}</c>; null: any path.</summary>
    public string? Path { get; init; }

    /// <summary>Methods (GET, POST, ...); empty: any.</summary>
    public IReadOnlyList<string> Methods { get; init; } = [];

    public IReadOnlyList<HeaderMatchOptions> Headers { get; init; } = [];
}

/// <summary>YARP's header match modes.</summary>
public enum HeaderMatchMode
{
    /// <summary>The value equals one of Values.</summary>
    ExactHeader,
    /// <summary>The value starts with one of Values.</summary>
    HeaderPrefix,
    /// <summary>The header is present (any value).</summary>
    Exists,
    /// <summary>The value contains one of Values.</summary>
    Contains,
    /// <summary>The value contains none of Values (or the header is absent).</summary>
    NotContains,
    /// <summary>The header is absent.</summary>
    NotExists,
}

public sealed record HeaderMatchOptions
{
    public required string Name { get; init; }

    public IReadOnlyList<string> Values { get; init; } = [];

    public HeaderMatchMode Mode { get; init; } = HeaderMatchMode.ExactHeader;

    /// <summary>Compare values case-sensitively (YARP's IsCaseSensitive). Default false.</summary>
    public bool IsCaseSensitive { get; init; }
}

/// <summary>What a transform does (YARP's transform names).</summary>
public enum RouteTransformKind
{
    /// <summary><c>PathRemovePrefix</c>: the prefix is removed from the path when present.</summary>
    PathRemovePrefix,
    /// <summary><c>PathPrefix</c>: the prefix is added before the path.</summary>
    PathPrefix,
    /// <summary><c>RequestHeader</c> + <c>Set</c>: the request field replaced (added when absent).</summary>
    RequestHeaderSet,
    /// <summary><c>RequestHeader</c> + <c>Append</c>: one more request field line.</summary>
    RequestHeaderAppend,
    /// <summary><c>RequestHeaderRemove</c>.</summary>
    RequestHeaderRemove,
    /// <summary><c>ResponseHeader</c> + <c>Set</c>.</summary>
    ResponseHeaderSet,
    /// <summary><c>ResponseHeader</c> + <c>Append</c>.</summary>
    ResponseHeaderAppend,
    /// <summary><c>ResponseHeaderRemove</c>.</summary>
    ResponseHeaderRemove,
}

/// <summary>One transform: for header kinds <see cref="Name"/> is the field and <see cref="Value"/> its value; for path kinds <see cref="Value"/> is the prefix.</summary>
public sealed record RouteTransform(RouteTransformKind Kind, string Name, string Value);

/// <summary>Load-balancing policies (YARP's names, plus <see cref="Hash"/>).</summary>
public enum LoadBalancingPolicy
{
    /// <summary>Two destinations at random, the one with fewer requests in flight (YARP's default).</summary>
    PowerOfTwoChoices,
    RoundRobin,
    /// <summary>The destination with the fewest requests in flight (ties: the first).</summary>
    LeastRequests,
    Random,
    /// <summary>The first available destination by id (ordinal): a primary with fall-backs.</summary>
    FirstAlphabetical,
    /// <summary>Consistent hash of <see cref="ClusterOptions.HashOn"/> (a header or cookie) on a ring: the same key goes to the same destination while it is available.</summary>
    Hash,
}

/// <summary>One cluster (<c>Clusters:&lt;clusterId&gt;</c>).</summary>
public sealed record ClusterOptions
{
    public required string ClusterId { get; init; }

    public IReadOnlyList<DestinationOptions> Destinations { get; init; } = [];

    public LoadBalancingPolicy LoadBalancingPolicy { get; init; } = LoadBalancingPolicy.PowerOfTwoChoices;

    /// <summary>The key of <see cref="LoadBalancingPolicy.Hash"/>: <c>header:X-User</c> or <c>cookie:session</c>. Without the key in a request: power of two choices.</summary>
    public string? HashOn { get; init; }

    /// <summary>Destinations tried per request (the first and retries on others); default 3, never more than the destinations.</summary>
    public int MaxAttempts { get; init; } = 3;

    public HealthCheckOptions HealthCheck { get; init; } = new();
}

public sealed record DestinationOptions
{
    public required string DestinationId { get; init; }

    /// <summary><c>http://host:port</c> (HTTP/1.1), <c>h2c://host:port</c> (HTTP/2, prior knowledge) or <c>https://host:port</c> (TLS; h2 when ALPN agrees).</summary>
    public required string Address { get; init; }

    /// <summary>Where active health probes go instead of <see cref="Address"/> (YARP's Health); null: Address.</summary>
    public string? Health { get; init; }
}

public sealed record HealthCheckOptions
{
    public ActiveHealthCheckOptions Active { get; init; } = new();

    public PassiveHealthCheckOptions Passive { get; init; } = new();
}

/// <summary>
/// Active checks: an HTTP GET of <see cref="Path"/> per destination every <see cref="Interval"/>; a 2xx within
/// <see cref="Timeout"/> is a success. Defaults: YARP's interval (15 s) and timeout (10 s); haproxy's thresholds
/// (fall 3, rise 2). A destination starts healthy.
/// </summary>
public sealed record ActiveHealthCheckOptions
{
    public bool Enabled { get; init; }

    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(15);

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);

    public string Path { get; init; } = "/";

    /// <summary>Consecutive failed probes that take a destination out. Default 3 (haproxy's fall).</summary>
    public int UnhealthyThreshold { get; init; } = 3;

    /// <summary>Consecutive passed probes that bring it back. Default 2 (haproxy's rise).</summary>
    public int HealthyThreshold { get; init; } = 2;
}

/// <summary>
/// Passive checks: <see cref="MaxFailures"/> forwarding failures (connect refused or timed out, the origin closed before a
/// response) within <see cref="Window"/> take a destination out for <see cref="ReactivationPeriod"/>. Defaults: nginx's
/// max_fails=1, fail_timeout=10s.
/// </summary>
public sealed record PassiveHealthCheckOptions
{
    public bool Enabled { get; init; }

    public int MaxFailures { get; init; } = 1;

    public TimeSpan Window { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan ReactivationPeriod { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// <c>X-Forwarded-For/-Proto/-Host</c> and <c>Forwarded</c> (RFC 7239) on every routed request. From a peer in
/// <see cref="TrustedProxies"/> the incoming values are kept and appended to; from any other peer they are replaced,
/// so a client cannot forge its address. Default: both added, no peer trusted.
/// </summary>
public sealed record ForwardedHeadersOptions
{
    public bool XForwarded { get; init; } = true;

    public bool Forwarded { get; init; } = true;

    /// <summary>Networks (CIDR) whose forwarded fields are believed.</summary>
    public IReadOnlyList<IPNetwork> TrustedProxies { get; init; } = [];
}

/// <summary>A destination's address: scheme (the protocol spoken to it: http, h2c or https) and host:port.</summary>
internal readonly record struct DestinationAddress(OriginProtocol Protocol, HostPort Target)
{
    public string Scheme => Upstream.Scheme;

    /// <summary>Where and how the forwarder sends a request.</summary>
    public UpstreamTarget Upstream => new(Protocol, Target);

    public static bool TryParse(string text, out DestinationAddress address, out string problem)
    {
        address = default;
        if (!UpstreamTarget.TryParse(text, requireScheme: true, out var upstream, out problem))
        {
            return false;
        }

        address = new DestinationAddress(upstream.Protocol, upstream.Target);
        return true;
    }

    public override string ToString() => Upstream.ToString();
}

/// <summary>The route table of a running routed reverse proxy, swappable (a configuration reload).</summary>
public interface IReverseRouteTable
{
    /// <summary>Swaps in <paramref name="options"/> when valid and returns no problem; otherwise keeps the table in use and returns the problems.</summary>
    IReadOnlyList<string> Apply(ReverseRoutingOptions options);
}
