using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Rama.Proxy.Net.Destinations;

/// <summary>What a rule does to a destination it matches.</summary>
public enum DestinationAction
{
    Allow,
    Deny,
}

/// <summary>
/// One named destination rule (squid's <c>http_access allow|deny</c> with <c>dst</c>, <c>dstdomain</c>, <c>port</c> and
/// <c>proxy_auth</c> ACLs in one line). It matches a destination when every list that is not empty matches:
/// <see cref="Users"/> (the authenticated proxy user, the base user when usernames carry labels), <see cref="Ports"/>
/// (single ports or ranges <c>8000-8100</c>), and the destination itself: one of <see cref="Cidrs"/> holds the
/// resolved address, or one of <see cref="Hosts"/> matches the name the client asked for (exact, or <c>*.example.com</c>
/// for every name under example.com; case-insensitive, a trailing dot ignored).
/// </summary>
public sealed record DestinationRule
{
    /// <summary>The name answers and logs carry ("denied by rule 'NAME'").</summary>
    public required string Name { get; init; }

    public DestinationAction Action { get; init; } = DestinationAction.Deny;

    /// <summary>Address ranges, <c>10.0.0.0/8</c>, <c>fe80::/10</c>, or single addresses.</summary>
    public IReadOnlyList<string> Cidrs { get; init; } = [];

    /// <summary>Host name patterns: <c>db.internal</c> (exactly), <c>*.internal</c> (any name under it, not the name itself).</summary>
    public IReadOnlyList<string> Hosts { get; init; } = [];

    /// <summary>Ports, <c>25</c> or <c>8000-8100</c>.</summary>
    public IReadOnlyList<string> Ports { get; init; } = [];

    /// <summary>Proxy users (base users, exact and case-sensitive); empty: everyone, anonymous clients included.</summary>
    public IReadOnlyList<string> Users { get; init; } = [];

    /// <summary>
    /// A rule from its command-line shorthand (<c>--deny</c>, <c>--allow</c>), named after it (<c>deny 10.0.0.0/8</c>):
    /// <c>[user@]destination[:port]</c>, where the destination is an address or CIDR (IPv6 in brackets when a port
    /// follows: <c>[fe80::1]:22</c>), a host pattern (<c>*.internal</c>), or empty for any (<c>:25</c>), and the port a
    /// port or a range (<c>8000-8100</c>). Examples: <c>10.0.0.0/8</c>, <c>:25</c>, <c>metadata.internal:80</c>,
    /// <c>john@*.corp.example</c>, <c>fe80::/10</c>.
    /// </summary>
    public static bool TryParseShorthand(DestinationAction action, string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out DestinationRule? rule)
    {
        rule = null;
        var rest = text.Trim();
        var at = rest.IndexOf('@', StringComparison.Ordinal);
        var user = at < 0 ? null : rest[..at];
        if (user is { Length: 0 })
        {
            return false;
        }

        rest = at < 0 ? rest : rest[(at + 1)..];
        string destination;
        string? ports = null;
        if (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < rest.Length && rest[close + 1] != ':'))
            {
                return false;
            }

            destination = rest[1..close];
            ports = close + 1 < rest.Length ? rest[(close + 2)..] : null;
        }
        else if (rest.Count(c => c == ':') >= 2)
        {
            destination = rest; // an IPv6 address or range without a port
        }
        else
        {
            var colon = rest.IndexOf(':', StringComparison.Ordinal);
            (destination, ports) = colon < 0 ? (rest, null) : (rest[..colon], rest[(colon + 1)..]);
        }

        if (destination.Length == 0 && ports is null)
        {
            return false;
        }

        var isCidr = destination.Length > 0 && Cidr.TryParse(destination, out _);
        var candidate = new DestinationRule
        {
            Name = (action == DestinationAction.Allow ? "allow " : "deny ") + text.Trim(),
            Action = action,
            Cidrs = isCidr ? [destination] : [],
            Hosts = !isCidr && destination.Length > 0 ? [destination] : [],
            Ports = ports is null ? [] : [ports],
            Users = user is null ? [] : [user],
        };
        try
        {
            _ = new DestinationPolicy([candidate], defaultDenials: false); // the same checks as a configured rule
        }
        catch (ArgumentException)
        {
            return false;
        }

        rule = candidate;
        return true;
    }
}

/// <summary>The destination of one dial as the rules see it.</summary>
/// <param name="Host">The name (or address literal) the client asked for.</param>
/// <param name="Address">The resolved address being checked; null when it is not known here (an upstream proxy resolves the name).</param>
/// <param name="Port">The target port.</param>
/// <param name="User">The authenticated proxy user, if any.</param>
public readonly record struct DestinationQuery(string Host, IPAddress? Address, int Port, string? User);

/// <summary>The answer of <see cref="DestinationPolicy.Check"/>: allowed or not, and the rule that decided (null: nothing matched).</summary>
public readonly record struct DestinationVerdict(bool Allowed, string? Rule)
{
    public static DestinationVerdict Open => new(true, null);
}

/// <summary>
/// The destination rules of a forward proxy, compiled once: the operator's rules in order (the first that matches
/// decides), then, when <see cref="DefaultDenials"/> is on, the secure defaults (the node's own ports on any address,
/// loopback and the unspecified address, link-local), else allowed. IPv4-mapped IPv6 addresses (<c>::ffff:127.0.0.1</c>)
/// are checked as the IPv4 address they carry. Immutable and shared by every connection.
/// </summary>
public sealed class DestinationPolicy
{
    /// <summary>Rule name of the default denial of loopback (127.0.0.0/8, ::1) and the unspecified address (0.0.0.0/8, ::), which reaches this host too.</summary>
    public const string LoopbackRule = "loopback";

    /// <summary>Rule name of the default denial of link-local addresses (169.254.0.0/16 with cloud metadata, fe80::/10).</summary>
    public const string LinkLocalRule = "link-local";

    private static readonly Cidr[] LoopbackRanges = [Cidr.Parse("127.0.0.0/8"), Cidr.Parse("0.0.0.0/8"), Cidr.Parse("::1/128"), Cidr.Parse("::/128")];
    private static readonly Cidr[] LinkLocalRanges = [Cidr.Parse("169.254.0.0/16"), Cidr.Parse("fe80::/10")];

    private readonly CompiledRule[] _rules;
    private readonly (int Port, string Rule)[] _ownPorts;

    /// <param name="rules">The operator's rules, in order.</param>
    /// <param name="defaultDenials">Whether the secure defaults apply after the rules (a listener that is not on loopback).</param>
    /// <param name="ownPorts">The node's own ports denied on any address by the defaults, each with its rule name (e.g. 9090 'admin-port').</param>
    /// <exception cref="ArgumentException">A rule with a bad CIDR, host pattern or port, or without a name.</exception>
    public DestinationPolicy(IEnumerable<DestinationRule> rules, bool defaultDenials, IEnumerable<(int Port, string Rule)>? ownPorts = null)
    {
        ArgumentNullException.ThrowIfNull(rules);
        _rules = [.. rules.Select(CompiledRule.Compile)];
        DefaultDenials = defaultDenials;
        _ownPorts = [.. ownPorts ?? []];
    }

    public bool DefaultDenials { get; }

    /// <summary>The rules in their order (for start-up lines and tests).</summary>
    public IReadOnlyList<string> RuleNames => [.. _rules.Select(r => r.Name)];

    /// <summary>Whether some rule is for given users only (then pooled origin connections are kept per user, see <c>Http.DestinationDenialLayer</c>).</summary>
    public bool HasUserRules => Array.Exists(_rules, r => r.Users.Count > 0);

    /// <summary>Whether the policy can refuse anything at all; false: no rule and no default (the dial skips the checks).</summary>
    public bool IsOpen => _rules.Length == 0 && !DefaultDenials;

    /// <summary>The verdict on one destination: the first rule that matches, else the defaults, else allowed.</summary>
    public DestinationVerdict Check(in DestinationQuery query)
    {
        var address = Normalize(query.Address ?? (IPAddress.TryParse(query.Host, out var literal) ? literal : null));
        var host = NormalizeHost(query.Host);
        foreach (var rule in _rules)
        {
            if (rule.Matches(host, address, query.Port, query.User))
            {
                return new DestinationVerdict(rule.Action == DestinationAction.Allow, rule.Name);
            }
        }

        if (!DefaultDenials)
        {
            return DestinationVerdict.Open;
        }

        // The node's own ports first: on loopback they are the more telling reason.
        foreach (var (port, rule) in _ownPorts)
        {
            if (port == query.Port)
            {
                return new DestinationVerdict(false, rule);
            }
        }

        if (address is not null)
        {
            if (Array.Exists(LoopbackRanges, c => c.Contains(address)))
            {
                return new DestinationVerdict(false, LoopbackRule);
            }

            if (Array.Exists(LinkLocalRanges, c => c.Contains(address)))
            {
                return new DestinationVerdict(false, LinkLocalRule);
            }
        }

        return DestinationVerdict.Open;
    }

    /// <summary>
    /// The denial of a name decided before it is resolved: the first rule that can match does so by name, port or user
    /// alone and denies (a port rule, a host pattern), or the node's own ports. Null when the addresses are needed (a CIDR
    /// rule or the defaults could still decide) or nothing denies: then every resolved address is checked. So a name
    /// that a rule refuses is refused even when it does not resolve, and costs no lookup.
    /// </summary>
    public DestinationVerdict? DeniedByName(in DestinationQuery query)
    {
        var host = NormalizeHost(query.Host);
        foreach (var rule in _rules)
        {
            if (rule.Matches(host, null, query.Port, query.User))
            {
                return rule.Action == DestinationAction.Deny ? new DestinationVerdict(false, rule.Name) : null;
            }

            if (rule.CouldMatchAnAddress(query.Port, query.User))
            {
                return null; // an address of the name might match it first
            }
        }

        if (DefaultDenials)
        {
            foreach (var (port, rule) in _ownPorts)
            {
                if (port == query.Port)
                {
                    return new DestinationVerdict(false, rule);
                }
            }
        }

        return null;
    }

    /// <summary>The text of a denial, for the 403 body, the logs and the access log.</summary>
    public static string Describe(in DestinationQuery query, string rule)
    {
        var literal = IPAddress.TryParse(query.Host, out _);
        var hostPort = new HostPort(query.Host, query.Port).ToString();
        var target = literal || query.Address is null ? hostPort : $"{hostPort} ({query.Address})";
        var user = query.User is null ? "" : $" for user '{query.User}'";
        return $"destination {target} denied by rule '{rule}'{user}";
    }

    /// <summary>IPv4-mapped IPv6 (<c>::ffff:a.b.c.d</c>) as the IPv4 address it carries.</summary>
    internal static IPAddress? Normalize(IPAddress? address) =>
        address is { AddressFamily: AddressFamily.InterNetworkV6, IsIPv4MappedToIPv6: true } ? address.MapToIPv4() : address;

    internal static string NormalizeHost(string host)
    {
        var trimmed = host.Length > 1 && host[^1] == '.' ? host[..^1] : host;
        return trimmed.ToLowerInvariant();
    }

    private sealed class CompiledRule
    {
        public required string Name { get; init; }
        public DestinationAction Action { get; init; }
        public required Cidr[] Cidrs { get; init; }
        public required string[] ExactHosts { get; init; }
        public required string[] Suffixes { get; init; } // ".example.com" for "*.example.com"
        public required (int From, int To)[] Ports { get; init; }
        public required HashSet<string> Users { get; init; }

        public bool CouldMatchAnAddress(int port, string? user) =>
            Cidrs.Length > 0 && (Users.Count == 0 || (user is not null && Users.Contains(user)))
            && (Ports.Length == 0 || Array.Exists(Ports, r => port >= r.From && port <= r.To));

        private bool AnyDestination => Cidrs.Length == 0 && ExactHosts.Length == 0 && Suffixes.Length == 0;

        public bool Matches(string host, IPAddress? address, int port, string? user)
        {
            if (Users.Count > 0 && (user is null || !Users.Contains(user)))
            {
                return false;
            }

            if (Ports.Length > 0 && !Array.Exists(Ports, r => port >= r.From && port <= r.To))
            {
                return false;
            }

            if (AnyDestination)
            {
                return true;
            }

            if (address is not null && Array.Exists(Cidrs, c => c.Contains(address)))
            {
                return true;
            }

            return Array.IndexOf(ExactHosts, host) >= 0 || Array.Exists(Suffixes, s => host.EndsWith(s, StringComparison.Ordinal));
        }

        public static CompiledRule Compile(DestinationRule rule)
        {
            if (string.IsNullOrWhiteSpace(rule.Name))
            {
                throw new ArgumentException("a destination rule needs a name", nameof(rule));
            }

            var exact = new List<string>();
            var suffixes = new List<string>();
            foreach (var pattern in rule.Hosts)
            {
                var host = NormalizeHost(pattern.Trim());
                var name = host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
                if (name.Length == 0 || name.Contains('*', StringComparison.Ordinal) || Uri.CheckHostName(name) is not (UriHostNameType.Dns or UriHostNameType.Basic))
                {
                    throw new ArgumentException($"rule '{rule.Name}': '{pattern}' is not a host name pattern (db.internal or *.internal)", nameof(rule));
                }

                (host.StartsWith("*.", StringComparison.Ordinal) ? suffixes : exact).Add(host.StartsWith("*.", StringComparison.Ordinal) ? host[1..] : host);
            }

            return new CompiledRule
            {
                Name = rule.Name.Trim(),
                Action = rule.Action,
                Cidrs = [.. rule.Cidrs.Select(c => Cidr.TryParse(c.Trim(), out var cidr)
                    ? cidr
                    : throw new ArgumentException($"rule '{rule.Name}': '{c}' is not an address or CIDR range (10.0.0.0/8, fe80::/10)", nameof(rule)))],
                ExactHosts = [.. exact],
                Suffixes = [.. suffixes],
                Ports = [.. rule.Ports.Select(p => TryParsePorts(p.Trim(), out var range)
                    ? range
                    : throw new ArgumentException($"rule '{rule.Name}': '{p}' is not a port or port range (25, 8000-8100)", nameof(rule)))],
                Users = new HashSet<string>(rule.Users.Select(u => u.Trim()), StringComparer.Ordinal),
            };
        }
    }

    /// <summary>A port (<c>25</c>) or an inclusive range (<c>8000-8100</c>), 1..65535.</summary>
    public static bool TryParsePorts(string text, out (int From, int To) range)
    {
        range = default;
        var dash = text.IndexOf('-', StringComparison.Ordinal);
        var (first, last) = dash < 0 ? (text, text) : (text[..dash].Trim(), text[(dash + 1)..].Trim());
        if (!int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var from)
            || !int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var to)
            || from is < 1 or > 65535 || to is < 1 or > 65535 || from > to)
        {
            return false;
        }

        range = (from, to);
        return true;
    }
}

/// <summary>An address range: a network address and a prefix length (a single address is a full-length prefix).</summary>
internal readonly record struct Cidr(IPAddress Network, int PrefixLength)
{
    public static Cidr Parse(string text) => TryParse(text, out var cidr) ? cidr : throw new FormatException(text);

    public static bool TryParse(string text, out Cidr cidr)
    {
        cidr = default;
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var addressText = slash < 0 ? text : text[..slash];
        if (addressText.StartsWith('[') && addressText.EndsWith(']'))
        {
            addressText = addressText[1..^1];
        }

        if (!IPAddress.TryParse(addressText, out var address) || addressText.Contains('%', StringComparison.Ordinal))
        {
            return false;
        }

        var bits = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var prefix = bits;
        if (slash >= 0 && (!int.TryParse(text.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > bits))
        {
            return false;
        }

        // ::ffff:10.0.0.0/104 is 10.0.0.0/8 (checked addresses are unmapped the same way).
        var mapped = DestinationPolicy.Normalize(address)!;
        if (!ReferenceEquals(mapped, address))
        {
            prefix -= 96;
            if (prefix < 0)
            {
                return false;
            }
        }

        cidr = new Cidr(mapped, prefix);
        return true;
    }

    public bool Contains(IPAddress address)
    {
        if (address.AddressFamily != Network.AddressFamily)
        {
            return false;
        }

        Span<byte> a = stackalloc byte[16];
        Span<byte> n = stackalloc byte[16];
        address.TryWriteBytes(a, out var length);
        Network.TryWriteBytes(n, out _);
        var whole = PrefixLength / 8;
        if (!a[..whole].SequenceEqual(n[..whole]))
        {
            return false;
        }

        var rest = PrefixLength % 8;
        if (rest == 0 || whole >= length)
        {
            return true;
        }

        var mask = (byte)(0xFF << (8 - rest));
        return (a[whole] & mask) == (n[whole] & mask);
    }

    public override string ToString() => $"{Network}/{PrefixLength}";
}
