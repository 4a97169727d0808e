using System.Text;

namespace Rama.Proxy.Http.Routing;

/// <summary>A route's path prefix: <c>/api</c> or <c>/api/{**rest}</c> both mean "/api and below" (segment-wise).</summary>
internal static class RoutePath
{
    public static bool TryParse(string pattern, out string prefix, out string problem)
    {
        prefix = "";
        problem = "";
        if (!pattern.StartsWith('/'))
        {
            problem = "must start with '/'";
            return false;
        }

        var brace = pattern.IndexOf('{', StringComparison.Ordinal);
        if (brace >= 0)
        {
            // YARP's catch-all: only a trailing {*name} or {**name} after a '/' maps to a prefix.
            var tail = pattern[brace..];
            var isCatchAll = tail.StartsWith("{*", StringComparison.Ordinal) && tail.EndsWith('}') && tail.IndexOf('}') == tail.Length - 1
                             && (brace == 0 || pattern[brace - 1] == '/');
            if (!isCatchAll)
            {
                problem = "has a route parameter: only a trailing catch-all ({**name}) or a plain prefix is supported";
                return false;
            }

            pattern = pattern[..brace];
        }

        prefix = pattern.Length > 1 ? pattern.TrimEnd('/') : "";
        return true;
    }

    /// <summary>Whether <paramref name="path"/> (no query) is <paramref name="prefix"/> or below it; case-insensitive like ASP.NET routing.</summary>
    public static bool Matches(string prefix, ReadOnlySpan<char> path) =>
        prefix.Length == 0
        || (path.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && (path.Length == prefix.Length || path[prefix.Length] == '/'));
}

/// <summary>The key of a consistent hash: a header or a cookie.</summary>
internal readonly record struct HashKey(bool IsCookie, string Name)
{
    private static readonly System.Buffers.SearchValues<char> s_notInName = System.Buffers.SearchValues.Create(" \t;,=:");

    public static bool TryParse(string text, out HashKey key)
    {
        key = default;
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == text.Length - 1)
        {
            return false;
        }

        var kind = text[..colon].Trim();
        var name = text[(colon + 1)..].Trim();
        if (name.Length == 0 || name.AsSpan().ContainsAny(s_notInName))
        {
            return false;
        }

        if (kind.Equals("header", StringComparison.OrdinalIgnoreCase))
        {
            key = new HashKey(false, name);
            return true;
        }

        if (kind.Equals("cookie", StringComparison.OrdinalIgnoreCase))
        {
            key = new HashKey(true, name);
            return true;
        }

        return false;
    }

    /// <summary>The key's value in <paramref name="request"/>, or null when absent.</summary>
    public string? ValueOf(HttpRequest request)
    {
        if (!IsCookie)
        {
            return request.Headers.GetText(Name);
        }

        // RFC 6265 §4.2: Cookie: a=b; c=d (one field; several lines are tolerated).
        foreach (var field in request.Headers)
        {
            if (!field.NameIs("Cookie"u8))
            {
                continue;
            }

            foreach (var pair in field.ValueText.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0 && pair.AsSpan(0, eq).Trim().Equals(Name, StringComparison.Ordinal))
                {
                    return pair[(eq + 1)..].Trim();
                }
            }
        }

        return null;
    }
}

/// <summary>A route ready to match: its options, the cluster it sends to, and its specificity.</summary>
internal sealed class CompiledRoute
{
    private readonly (string Host, int? Port, bool Wildcard)[] _hosts;
    private readonly string? _pathPrefix;
    private readonly string[] _methods;
    private readonly HeaderMatchOptions[] _headers;

    public CompiledRoute(RouteOptions options, ClusterState cluster)
    {
        Options = options;
        Cluster = cluster;
        _hosts = [.. options.Match.Hosts.Select(ParseHost)];
        _pathPrefix = options.Match.Path is { } path && RoutePath.TryParse(path, out var prefix, out _) ? prefix : null;
        _methods = [.. options.Match.Methods.Select(m => m.ToUpperInvariant())];
        _headers = [.. options.Match.Headers];
    }

    public RouteOptions Options { get; }

    public ClusterState Cluster { get; }

    public string Id => Options.RouteId;

    /// <summary>
    /// Most specific first among equal Orders, as ASP.NET routing (YARP) ranks them: the path first (a longer prefix over a
    /// shorter, any prefix over none), then the host (exact over a wildcard over none), then methods and headers over none.
    /// </summary>
    public (int Path, int Host, int Methods, int Headers) Specificity => (
        _pathPrefix?.Length ?? -1,
        _hosts.Length == 0 ? 0 : _hosts.Any(h => h.Wildcard) ? 1 : 2,
        _methods.Length == 0 ? 0 : 1,
        _headers.Length);

    private static (string, int?, bool) ParseHost(string pattern)
    {
        var host = pattern.Trim().ToLowerInvariant();
        int? port = null;
        var colon = host.LastIndexOf(':');
        if (colon > 0 && !host.EndsWith(']') && int.TryParse(host.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture, out var p))
        {
            port = p;
            host = host[..colon];
        }

        return host.StartsWith("*.", StringComparison.Ordinal) ? (host[1..], port, true) : (host, port, false);
    }

    public bool Matches(HttpRequest request, string method, string host, int? port, ReadOnlySpan<char> path)
    {
        if (_methods.Length > 0 && Array.IndexOf(_methods, method) < 0)
        {
            return false;
        }

        if (_hosts.Length > 0 && !MatchesHost(host, port))
        {
            return false;
        }

        if (_pathPrefix is not null && !RoutePath.Matches(_pathPrefix, path))
        {
            return false;
        }

        foreach (var header in _headers)
        {
            if (!MatchesHeader(request.Headers, header))
            {
                return false;
            }
        }

        return true;
    }

    private bool MatchesHost(string host, int? port)
    {
        foreach (var (pattern, patternPort, wildcard) in _hosts)
        {
            if (patternPort is { } p && p != port)
            {
                continue;
            }

            // "*.example.com" matches a.example.com and a.b.example.com, not example.com (YARP's rule).
            if (wildcard ? host.Length > pattern.Length && host.EndsWith(pattern, StringComparison.Ordinal) : host == pattern)
            {
                return true;
            }
        }

        return false;
    }

    internal static bool MatchesHeader(HttpHeaders headers, HeaderMatchOptions match)
    {
        var name = Encoding.Latin1.GetBytes(match.Name);
        var comparison = match.IsCaseSensitive ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        var found = false;
        foreach (var field in headers)
        {
            if (!field.NameIs(name))
            {
                continue;
            }

            found = true;
            var value = field.ValueText;
            switch (match.Mode)
            {
                case HeaderMatchMode.Exists:
                    return true;
                case HeaderMatchMode.NotExists:
                    return false;
                case HeaderMatchMode.ExactHeader when match.Values.Any(v => value.Equals(v, comparison)):
                case HeaderMatchMode.HeaderPrefix when match.Values.Any(v => value.StartsWith(v, comparison)):
                case HeaderMatchMode.Contains when match.Values.Any(v => value.Contains(v, comparison)):
                    return true;
                case HeaderMatchMode.NotContains when match.Values.Any(v => value.Contains(v, comparison)):
                    return false;
            }
        }

        return match.Mode switch
        {
            HeaderMatchMode.NotExists => !found,
            HeaderMatchMode.NotContains => true,
            _ => false,
        };
    }
}

/// <summary>
/// The routes and clusters of one configuration, immutable once built: a reload builds a new table and swaps it in,
/// requests in flight finish on the one they started with.
/// </summary>
internal sealed class RouteTable
{
    private readonly CompiledRoute[] _routes;

    public RouteTable(ReverseRoutingOptions options, IReadOnlyDictionary<string, ClusterState> clusters)
    {
        Options = options;
        Clusters = clusters;
        _routes = [.. options.Routes
            .Select(r => new CompiledRoute(r, clusters[r.ClusterId]))
            .OrderBy(r => r.Options.Order)
            .ThenByDescending(r => r.Specificity)
            .ThenBy(r => r.Id, StringComparer.Ordinal)];
    }

    public ReverseRoutingOptions Options { get; }

    public IReadOnlyDictionary<string, ClusterState> Clusters { get; }

    /// <summary>The routes in matching order.</summary>
    public IReadOnlyList<CompiledRoute> Routes => _routes;

    /// <summary>The first route (in matching order) that matches, or null.</summary>
    public CompiledRoute? Match(HttpRequest request, string host, int? port, ReadOnlySpan<char> path)
    {
        var method = request.Method;
        foreach (var route in _routes)
        {
            if (route.Matches(request, method, host, port, path))
            {
                return route;
            }
        }

        return null;
    }
}
