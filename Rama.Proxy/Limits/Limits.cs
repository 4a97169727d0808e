using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace Rama.Proxy.Limits;

/// <summary>What a limit counts: the connections through one upstream proxy, or one user's connections.</summary>
public enum LimitScope
{
    /// <summary>Connections this node (or the fleet) holds open to one upstream proxy; keyed by the record's id.</summary>
    Upstream,
    /// <summary>One proxy user's tunnels and HTTP requests in flight; keyed by the base user name (no labels).</summary>
    User,
}

/// <summary>A rate: at most <see cref="Count"/> new connections per <see cref="Per"/> (a token bucket of that size, refilled evenly).</summary>
public readonly record struct LimitRate(int Count, TimeSpan Per)
{
    /// <summary>Tokens per second.</summary>
    public double PerSecond => Count / Per.TotalSeconds;

    /// <summary><c>50/s</c>, <c>600/m</c>, <c>3600/h</c>, or a bare number (per second).</summary>
    public static bool TryParse(string? text, out LimitRate rate, out string error)
    {
        rate = default;
        var value = text?.Trim() ?? "";
        var slash = value.IndexOf('/', StringComparison.Ordinal);
        var countText = slash < 0 ? value : value[..slash].Trim();
        var unit = slash < 0 ? "s" : value[(slash + 1)..].Trim().ToLowerInvariant();
        var per = unit switch
        {
            "s" or "sec" or "second" => TimeSpan.FromSeconds(1),
            "m" or "min" or "minute" => TimeSpan.FromMinutes(1),
            "h" or "hour" => TimeSpan.FromHours(1),
            _ => TimeSpan.Zero,
        };
        if (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out var count) || count < 1 || per == TimeSpan.Zero)
        {
            error = $"'{text}' is not a rate (a positive count per s, m or h, e.g. 50/s or 600/m)";
            return false;
        }

        rate = new LimitRate(count, per);
        error = "";
        return true;
    }

    public static LimitRate Parse(string text) =>
        TryParse(text, out var rate, out var error) ? rate : throw new FormatException(error);

    public override string ToString() => Count.ToString(CultureInfo.InvariantCulture) + "/" + (Per.TotalSeconds switch
    {
        1 => "s",
        60 => "m",
        3600 => "h",
        _ => Per.TotalSeconds.ToString(CultureInfo.InvariantCulture) + "s",
    });
}

/// <summary>What one key may hold at once and how fast it may take new leases; both optional.</summary>
public sealed record LimitPolicy(int? MaxConcurrent, LimitRate? Rate)
{
    public static LimitPolicy Unlimited { get; } = new(null, null);

    public bool IsUnlimited => MaxConcurrent is null && Rate is null;

    public override string ToString() => IsUnlimited
        ? "unlimited"
        : string.Join(", ", new[]
        {
            MaxConcurrent is { } max ? $"at most {max.ToString(CultureInfo.InvariantCulture)} at once" : null,
            Rate is { } rate ? $"{rate} new" : null,
        }.Where(s => s is not null));
}

/// <summary>
/// A held slot of a limit (or the answer that there is none): dispose it when the connection, tunnel or request that
/// took it ends. Disposing twice releases once.
/// </summary>
public sealed class LimitLease : IDisposable
{
    private Action? _release;

    private LimitLease(bool granted, Action? release, string? reason, TimeSpan? retryAfter)
    {
        IsGranted = granted;
        _release = release;
        Reason = reason;
        RetryAfter = retryAfter;
    }

    /// <summary>Granted with nothing to release: the key has no limit.</summary>
    public static LimitLease Unlimited { get; } = new(true, null, null, null);

    public static LimitLease Granted(Action release) => new(true, release ?? throw new ArgumentNullException(nameof(release)), null, null);

    /// <summary>Refused: <paramref name="reason"/> says which limit (the 429/503 body, the log), <paramref name="retryAfter"/> when to try again.</summary>
    public static LimitLease Refused(string reason, TimeSpan? retryAfter = null) => new(false, null, reason, retryAfter);

    [MemberNotNullWhen(false, nameof(Reason))]
    public bool IsGranted { get; }

    public string? Reason { get; }

    public TimeSpan? RetryAfter { get; }

    public void Dispose() => Interlocked.Exchange(ref _release, null)?.Invoke();
}

/// <summary>
/// Hands out leases under a <see cref="LimitPolicy"/> per (scope, key): <see cref="LocalConcurrencyLimiter"/> on a node
/// alone, the fleet's sharded limit entities on a fleet node (Rama.Actors), so a limit holds fleet-wide.
/// </summary>
public interface IConcurrencyLimiter
{
    /// <summary>
    /// One lease on <paramref name="key"/>, or a refusal naming the limit. Answers within its own bound (a limiter that
    /// cannot reach its state answers as its failure policy says, never hangs). <paramref name="policy"/> is never unlimited.
    /// </summary>
    ValueTask<LimitLease> AcquireAsync(LimitScope scope, string key, LimitPolicy policy, CancellationToken cancellationToken);
}

/// <summary>
/// The limits of a forward-proxy port (<c>Rama:Proxy:Limits</c>): defaults for upstream proxies (a record's own
/// <c>max_connections</c> and <c>rate</c> columns win) and per-user concurrency (a user's own entry in <see cref="Users"/>
/// wins over <see cref="UserMaxConnections"/>). All off by default.
/// </summary>
public sealed record LimitOptions
{
    // Parsed user tables by list instance, outside the record so that equality and `with` see only the options.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<IReadOnlyList<string>, Dictionary<string, int>> UserTables = new();
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<IReadOnlyList<string>, Dictionary<string, LimitRate>> RateTables = new();

    /// <summary>Default for upstream records without <c>max_connections</c>: connections open to one upstream at once (fleet-wide on a fleet).</summary>
    public int? UpstreamMaxConnections { get; init; }

    /// <summary>Default for upstream records without <c>rate</c>: new connections to one upstream, as <c>50/s</c>, <c>600/m</c> or <c>3600/h</c>.</summary>
    public string? UpstreamRate { get; init; }

    /// <summary>Default for every user: tunnels and HTTP requests in flight at once (fleet-wide on a fleet). Over it: 429, SOCKS5 0x02.</summary>
    public int? UserMaxConnections { get; init; }

    /// <summary>Per-user limits as <c>user=connections</c> (base user names, case-sensitive like the credentials); each wins over <see cref="UserMaxConnections"/>.</summary>
    public IReadOnlyList<string> Users { get; init; } = [];

    /// <summary>
    /// Default for every user: requests per second/minute/hour (a token bucket of that size, refilled evenly; fleet-wide on a
    /// fleet), as <c>20/s</c>. Each HTTP request, CONNECT and SOCKS5 CONNECT takes a token. Over it: 429 with Retry-After
    /// (seconds until a token), SOCKS5 0x02. Off by default.
    /// </summary>
    public string? UserRate { get; init; }

    /// <summary>Per-user rates as <c>user=rate</c> (<c>john=5/s</c>); each wins over <see cref="UserRate"/>.</summary>
    public IReadOnlyList<string> UserRates { get; init; } = [];

    /// <summary>
    /// Default of every listener: connections open at once before new ones are refused (503 with Retry-After, SOCKS5 0x01,
    /// a TLS alert). Null: half the process's descriptor limit (<c>Rama.Proxy.Net.DescriptorLimit.DefaultMaxConnections</c>).
    /// </summary>
    public int? MaxConnections { get; init; }

    /// <summary>Default of every listener: connections open at once from one client address. Null (default): no limit (clients behind one NAT or load balancer share an address).</summary>
    public int? MaxConnectionsPerIp { get; init; }

    /// <summary>
    /// Default of every proxy and reverse listener: the largest request body, in bytes (<c>10MiB</c> on the command line).
    /// A larger Content-Length gets 413 before the body is read; a chunked body growing past it gets 413 when nothing was
    /// sent upstream yet, else the exchange is aborted. Null (default): no limit (bodies are streamed, never buffered).
    /// </summary>
    public long? MaxBodySize { get; init; }

    /// <summary>Whether any user limit is set (the per-user check is skipped otherwise).</summary>
    public bool LimitsUsers => UserMaxConnections is not null || Users.Count > 0 || UserRate is { Length: > 0 } || UserRates.Count > 0;

    /// <summary>The policy of one upstream record: its own columns, else the defaults.</summary>
    public LimitPolicy ForUpstream(int? recordMax, LimitRate? recordRate)
    {
        var max = recordMax ?? UpstreamMaxConnections;
        var rate = recordRate ?? (UpstreamRate is { Length: > 0 } text && LimitRate.TryParse(text, out var parsed, out _) ? parsed : null);
        return max is null && rate is null ? LimitPolicy.Unlimited : new LimitPolicy(max, rate);
    }

    /// <summary>The policy of one user: its own entries, else the defaults (concurrency and rate each on their own).</summary>
    public LimitPolicy ForUser(string user)
    {
        int? max = UserTable().TryGetValue(user, out var own) ? own : UserMaxConnections;
        var rate = RateTable().TryGetValue(user, out var ownRate) ? ownRate
            : UserRate is { Length: > 0 } text && LimitRate.TryParse(text, out var parsed, out _) ? parsed : (LimitRate?)null;
        return max is null && rate is null ? LimitPolicy.Unlimited : new LimitPolicy(max, rate);
    }

    private Dictionary<string, LimitRate> RateTable() => RateTables.GetValue(UserRates, static users =>
    {
        var table = new Dictionary<string, LimitRate>(StringComparer.Ordinal);
        foreach (var entry in users)
        {
            if (TryParseUserRate(entry, out var user, out var rate, out _))
            {
                table[user] = rate;
            }
        }

        return table;
    });

    private static bool TryParseUserRate(string entry, out string user, out LimitRate rate, out string error)
    {
        var eq = entry.LastIndexOf('=');
        user = eq > 0 ? entry[..eq].Trim() : "";
        rate = default;
        if (eq <= 0 || user.Length == 0 || !LimitRate.TryParse(entry[(eq + 1)..], out rate, out _))
        {
            error = $"user rate '{entry}' is not user=rate (a user name and a count per s, m or h, e.g. john=5/s)";
            return false;
        }

        error = "";
        return true;
    }

    private Dictionary<string, int> UserTable() => UserTables.GetValue(Users, static users =>
    {
        var table = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in users)
        {
            if (TryParseUser(entry, out var user, out var max, out _))
            {
                table[user] = max;
            }
        }

        return table;
    });

    private static bool TryParseUser(string entry, out string user, out int max, out string error)
    {
        var eq = entry.LastIndexOf('=');
        user = eq > 0 ? entry[..eq].Trim() : "";
        max = 0;
        if (eq <= 0 || user.Length == 0
            || !int.TryParse(entry.AsSpan(eq + 1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out max) || max < 1)
        {
            error = $"user limit '{entry}' is not user=connections (a user name and a whole number, at least 1)";
            return false;
        }

        error = "";
        return true;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad value.</summary>
    public void Validate()
    {
        if (UpstreamMaxConnections is < 1)
        {
            throw new ArgumentException($"the upstream connection limit must be at least 1, was {UpstreamMaxConnections}", nameof(UpstreamMaxConnections));
        }

        if (UpstreamRate is { Length: > 0 } rate && !LimitRate.TryParse(rate, out _, out var rateError))
        {
            throw new ArgumentException(rateError, nameof(UpstreamRate));
        }

        if (UserMaxConnections is < 1)
        {
            throw new ArgumentException($"the user connection limit must be at least 1, was {UserMaxConnections}", nameof(UserMaxConnections));
        }

        foreach (var entry in Users)
        {
            if (!TryParseUser(entry, out _, out _, out var error))
            {
                throw new ArgumentException(error, nameof(Users));
            }
        }

        if (UserRate is { Length: > 0 } userRate && !LimitRate.TryParse(userRate, out _, out var userRateError))
        {
            throw new ArgumentException(userRateError, nameof(UserRate));
        }

        foreach (var entry in UserRates)
        {
            if (!TryParseUserRate(entry, out _, out _, out var error))
            {
                throw new ArgumentException(error, nameof(UserRates));
            }
        }

        if (MaxConnections is < 1 || MaxConnectionsPerIp is < 1)
        {
            throw new ArgumentException($"a connection limit must be at least 1, was {MaxConnections ?? MaxConnectionsPerIp}", MaxConnections is < 1 ? nameof(MaxConnections) : nameof(MaxConnectionsPerIp));
        }

        if (MaxBodySize is < 0)
        {
            throw new ArgumentException($"the body size limit must be 0 or more, was {MaxBodySize}", nameof(MaxBodySize));
        }
    }
}
