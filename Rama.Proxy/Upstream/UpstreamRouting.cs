using System.Diagnostics.CodeAnalysis;
using Rama.Proxy.Core;

namespace Rama.Proxy.Upstream;

/// <summary>What happens to a request that carries no filter (no labels, no header).</summary>
public enum UpstreamMode
{
    /// <summary>Connect directly to the target (the default: the database only serves requests that ask for it).</summary>
    Direct,
    /// <summary>Refuse: HTTP 407 naming the missing filter; SOCKS5 reply 0x02 (connection not allowed by ruleset).</summary>
    Required,
    /// <summary>Use <see cref="UpstreamRoutingOptions.FallbackFilter"/>.</summary>
    Fallback,
}

/// <summary>Options of upstream routing. Validated by <see cref="Validate"/>.</summary>
public sealed record UpstreamRoutingOptions
{
    /// <summary>Requests without a filter: direct (default), required, or fallback.</summary>
    public UpstreamMode Mode { get; init; } = UpstreamMode.Direct;

    /// <summary>The filter used in <see cref="UpstreamMode.Fallback"/>, written as username labels (<c>country-us-residential</c>).</summary>
    public string? FallbackFilter { get; init; }

    /// <summary>Unknown username labels are an error (407 naming the label). Default true: a typo must not silently route elsewhere.</summary>
    public bool StrictLabels { get; init; } = true;

    /// <summary>How many upstreams one connection tries before it fails (the first choice and its fallbacks). Default 3.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>First back-off of an upstream that failed at the transport level; doubles per further failure. Default 5 s.</summary>
    public TimeSpan BackoffInitial { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest back-off. Default 5 min (then the upstream is probed again by the next request that wants it).</summary>
    public TimeSpan BackoffMax { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Extra CA certificates (PEM file) trusted for HTTPS upstreams, on top of the system store.
    /// Certificates are always verified (name and chain); there is no switch to turn that off.
    /// </summary>
    public string? TrustedCaFile { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        if (MaxAttempts is < 1 or > 16)
        {
            throw new ArgumentException($"{nameof(MaxAttempts)} must be 1..16, was {MaxAttempts}", nameof(MaxAttempts));
        }

        if (BackoffInitial <= TimeSpan.Zero || BackoffMax < BackoffInitial)
        {
            throw new ArgumentException($"{nameof(BackoffInitial)} must be positive and at most {nameof(BackoffMax)}", nameof(BackoffInitial));
        }

        if (Mode == UpstreamMode.Fallback)
        {
            _ = ParseFallback();
        }
        else if (FallbackFilter is not null)
        {
            throw new ArgumentException($"{nameof(FallbackFilter)} is only used with mode fallback", nameof(FallbackFilter));
        }

        if (TrustedCaFile is not null && !File.Exists(TrustedCaFile))
        {
            throw new ArgumentException($"{nameof(TrustedCaFile)} '{TrustedCaFile}' does not exist", nameof(TrustedCaFile));
        }
    }

    /// <summary>The fallback filter and session, parsed from its label form.</summary>
    internal ProxyUsername ParseFallback()
    {
        if (string.IsNullOrWhiteSpace(FallbackFilter))
        {
            throw new ArgumentException("mode fallback needs a fallback filter (labels such as country-us-residential)", nameof(FallbackFilter));
        }

        // The labels alone, parsed as if after a base user.
        if (!ProxyUsername.TryParse("fallback-" + FallbackFilter.Trim(), out var parsed, out var error) || !parsed.HasLabels)
        {
            throw new ArgumentException($"fallback filter '{FallbackFilter}': {(error.Length > 0 ? error : "no labels")}", nameof(FallbackFilter));
        }

        return parsed;
    }
}

/// <summary>A request's sticky-session id (from the <c>session-&lt;id&gt;</c> label or the filter header), in the extensions bag.</summary>
public sealed record ProxySession(string Id);

/// <summary>The proxy filter a request asked for, in the extensions bag (username labels and/or the filter header).</summary>
public sealed record RequestedProxyFilter(ProxyFilter Filter, string Source);

/// <summary>The upstream a request or connection went through (or was routed to), in the extensions bag; read by layers and the access log.</summary>
public sealed record SelectedUpstream(UpstreamProxy Proxy, UpstreamProtocol Protocol)
{
    public string Id => Proxy.Id;

    public override string ToString() => Proxy.Id;
}

/// <summary>The routing decision of one request: direct, through candidates, or refused with a reason.</summary>
public sealed class UpstreamRoute
{
    private UpstreamRoute(UpstreamRouteKind kind, IReadOnlyList<UpstreamProxy> candidates, string reason, ProxyFilter? filter, string? session, string version)
    {
        Kind = kind;
        Candidates = candidates;
        Reason = reason;
        Filter = filter;
        Session = session;
        Version = version;
    }

    public UpstreamRouteKind Kind { get; }

    /// <summary>Upstreams to try, best first (pure order; the failure cache reorders at dial time).</summary>
    public IReadOnlyList<UpstreamProxy> Candidates { get; }

    public string Reason { get; }

    public ProxyFilter? Filter { get; }

    public string? Session { get; }

    /// <summary>The database version the candidates were selected from.</summary>
    public string Version { get; }

    internal static UpstreamRoute Direct { get; } = new(UpstreamRouteKind.Direct, [], "", null, null, "");

    internal static UpstreamRoute Through(IReadOnlyList<UpstreamProxy> candidates, ProxyFilter filter, string? session, string version) =>
        new(UpstreamRouteKind.Upstream, candidates, "", filter, session, version);

    internal static UpstreamRoute Refused(UpstreamRouteKind kind, string reason, ProxyFilter? filter = null, string? session = null, string version = "") =>
        new(kind, [], reason, filter, session, version);
}

public enum UpstreamRouteKind
{
    Direct,
    Upstream,
    /// <summary>Mode required and the request has no filter: HTTP 407, SOCKS5 0x02.</summary>
    FilterRequired,
    /// <summary>The filter matches no upstream: HTTP 503 with the reason, SOCKS5 0x01.</summary>
    NoMatch,
}

/// <summary>
/// Decides a request's route from its extensions (<see cref="RequestedProxyFilter"/>,
/// <see cref="ProxySession"/>) and the mode; a pure function of those and the database version.
/// </summary>
public sealed class UpstreamRouter
{
    private readonly ProxyUsername? _fallback;

    public UpstreamRouter(IProxyDatabase database, UpstreamRoutingOptions options)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Database = database;
        Options = options;
        _fallback = options.Mode == UpstreamMode.Fallback ? options.ParseFallback() : null;
    }

    public IProxyDatabase Database { get; }

    public UpstreamRoutingOptions Options { get; }

    /// <summary>How many candidates to ask the database for: the attempts plus room to skip backed-off ones.</summary>
    internal int CandidateCount(int backedOff) => Math.Min(Options.MaxAttempts + backedOff, 64);

    /// <summary>The route of a request; cached in <paramref name="extensions"/> so the HTTP layer and the connector agree.</summary>
    public UpstreamRoute Route(Extensions extensions, int backedOff = 0)
    {
        ArgumentNullException.ThrowIfNull(extensions);
        if (extensions.TryGet<UpstreamRoute>(out var cached))
        {
            return cached;
        }

        var route = Decide(extensions.Get<RequestedProxyFilter>()?.Filter, extensions.Get<ProxySession>()?.Id, backedOff);
        extensions.Set(route);
        return route;
    }

    /// <summary>The route for a filter (null: the request has none) and an optional session.</summary>
    public UpstreamRoute Decide(ProxyFilter? filter, string? session, int backedOff = 0)
    {
        if (filter is null || (filter.IsEmpty && session is null))
        {
            switch (Options.Mode)
            {
                case UpstreamMode.Direct:
                    return UpstreamRoute.Direct;
                case UpstreamMode.Required:
                    return UpstreamRoute.Refused(UpstreamRouteKind.FilterRequired,
                        "this proxy requires an upstream filter: add labels to the username (e.g. user-country-us) or send x-rama-proxy-filter");
                default:
                    filter = _fallback!.Filter;
                    session ??= _fallback.Session;
                    break;
            }
        }

        var reloadable = Database as ReloadableProxyDatabase;
        var database = reloadable?.Current ?? Database;
        var candidates = database.Select(filter, session, CandidateCount(backedOff));
        reloadable?.CountSelection();
        if (candidates.Count == 0)
        {
            return UpstreamRoute.Refused(UpstreamRouteKind.NoMatch,
                $"no upstream proxy matches filter '{filter}' (database version {database.Version}, {database.Count} records)", filter, session, database.Version);
        }

        return UpstreamRoute.Through(candidates, filter, session, database.Version);
    }
}

/// <summary>The <c>x-rama-proxy-filter</c> request header: the username labels as URL-form pairs, for clients that cannot set usernames.</summary>
public static class ProxyFilterHeader
{
    public const string Name = "x-rama-proxy-filter";

    /// <summary>
    /// Parses <c>country=us&amp;country=ca&amp;residential=true&amp;mobile=false&amp;session=42</c>
    /// (application/x-www-form-urlencoded): keys as the username labels; flags take true/1 or false/0
    /// (an empty value is true). Repeating a key adds a value. Unknown keys are an error.
    /// </summary>
    public static bool TryParse(string value, [NotNullWhen(true)] out ProxyFilter? filter, out string? session, out string error)
    {
        filter = ProxyFilter.Empty;
        session = null;
        foreach (var pair in value.Split('&', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Decode(eq < 0 ? pair : pair[..eq]).ToLowerInvariant();
            var item = eq < 0 ? "" : Decode(pair[(eq + 1)..]);
            try
            {
                switch (key)
                {
                    case "session":
                        if (item.Length == 0 || session is not null)
                        {
                            error = "session needs exactly one value";
                            return false;
                        }

                        session = item;
                        break;
                    case "datacenter":
                        filter = filter.WithDatacenter(Bool(key, item));
                        break;
                    case "residential":
                        filter = filter.WithResidential(Bool(key, item));
                        break;
                    case "mobile":
                        filter = filter.WithMobile(Bool(key, item));
                        break;
                    default:
                        var field = key switch
                        {
                            "id" => ProxyField.Id,
                            "pool" or "pool_id" => ProxyField.Pool,
                            "continent" => ProxyField.Continent,
                            "country" => ProxyField.Country,
                            "state" => ProxyField.State,
                            "city" => ProxyField.City,
                            "carrier" => ProxyField.Carrier,
                            "asn" => ProxyField.Asn,
                            _ => throw new FormatException($"unknown key '{key}'"),
                        };
                        filter = filter.With(field, item);
                        break;
                }
            }
            catch (FormatException ex)
            {
                filter = null;
                error = ex.Message;
                return false;
            }
        }

        error = "";
        return true;

        static string Decode(string text) => Uri.UnescapeDataString(text.Replace('+', ' '));

        static bool Bool(string key, string text) => text.ToLowerInvariant() switch
        {
            "" or "true" or "1" => true,
            "false" or "0" => false,
            _ => throw new FormatException($"{key} must be true or false, was '{text}'"),
        };
    }
}
