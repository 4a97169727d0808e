using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Rama.Proxy.Net;

namespace Rama.Proxy.Upstream;

/// <summary>How this node speaks to an upstream proxy.</summary>
public enum UpstreamProtocol
{
    /// <summary>HTTP proxy: <c>CONNECT host:port</c> (RFC 9110 §9.3.6), then the tunnel.</summary>
    Http,
    /// <summary>HTTP proxy behind TLS (the upstream's certificate is verified).</summary>
    Https,
    /// <summary>SOCKS5 (RFC 1928) with the target resolved by this node (IPv4/IPv6 address type).</summary>
    Socks5,
    /// <summary>SOCKS5 with the target name resolved by the upstream (domain address type).</summary>
    Socks5h,
}

/// <summary>Username/password for an upstream (HTTP Basic or SOCKS5 RFC 1929).</summary>
public sealed record UpstreamCredential(string User, string Password)
{
    public override string ToString() => $"{User}:***";
}

/// <summary>
/// Where an upstream listens: <c>[scheme://][user:password@]host:port</c>. A scheme
/// (<c>http</c>, <c>https</c>, <c>socks5</c>, <c>socks5h</c>) fixes the protocol; without one the
/// record's flags decide (see <see cref="UpstreamProxy.PreferredProtocol"/>).
/// </summary>
public sealed record UpstreamAddress(HostPort Endpoint, UpstreamProtocol? Scheme = null, UpstreamCredential? Credential = null)
{
    public static bool TryParse(string text, [NotNullWhen(true)] out UpstreamAddress? address, out string error)
    {
        address = null;
        var rest = text.Trim();
        UpstreamProtocol? scheme = null;
        var sep = rest.IndexOf("://", StringComparison.Ordinal);
        if (sep >= 0)
        {
            if (!TryParseProtocol(rest[..sep], out var parsed))
            {
                error = $"unknown scheme '{rest[..sep]}' (http, https, socks5, socks5h)";
                return false;
            }

            scheme = parsed;
            rest = rest[(sep + 3)..].TrimEnd('/');
        }

        UpstreamCredential? credential = null;
        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            if (!TryParseCredential(rest[..at], out credential))
            {
                error = "credentials before '@' must be user:password";
                return false;
            }

            rest = rest[(at + 1)..];
        }

        if (!HostPort.TryParse(rest, 0, out var endpoint))
        {
            error = $"'{rest}' is not a host:port";
            return false;
        }

        address = new UpstreamAddress(endpoint.Value, scheme, credential);
        error = "";
        return true;
    }

    internal static bool TryParseCredential(string text, [NotNullWhen(true)] out UpstreamCredential? credential)
    {
        credential = null;
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            return false;
        }

        credential = new UpstreamCredential(Uri.UnescapeDataString(text[..colon]), Uri.UnescapeDataString(text[(colon + 1)..]));
        return true;
    }

    public static bool TryParseProtocol(string text, out UpstreamProtocol protocol)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "http": protocol = UpstreamProtocol.Http; return true;
            case "https": protocol = UpstreamProtocol.Https; return true;
            case "socks5": protocol = UpstreamProtocol.Socks5; return true;
            case "socks5h": protocol = UpstreamProtocol.Socks5h; return true;
            default: protocol = default; return false;
        }
    }

    public static string ProtocolName(UpstreamProtocol protocol) => protocol switch
    {
        UpstreamProtocol.Http => "http",
        UpstreamProtocol.Https => "https",
        UpstreamProtocol.Socks5 => "socks5",
        _ => "socks5h",
    };

    /// <summary>The address without the password (for logs).</summary>
    public override string ToString() =>
        (Scheme is { } s ? ProtocolName(s) + "://" : "") + (Credential is { } c ? Uri.EscapeDataString(c.User) + ":***@" : "") + Endpoint;
}

/// <summary>
/// One upstream proxy of the proxy database (rama's record model). String attributes are stored
/// trimmed and lower-cased; null means "not set" (never matches a filter on that field) and
/// <c>*</c> is a wildcard (matches any requested value).
/// </summary>
public sealed record UpstreamProxy
{
    public const string Wildcard = "*";

    public required string Id { get; init; }

    public required UpstreamAddress Address { get; init; }

    public bool Tcp { get; init; }

    public bool Udp { get; init; }

    public bool Http { get; init; }

    public bool Https { get; init; }

    public bool Socks5 { get; init; }

    public bool Socks5h { get; init; }

    public bool Datacenter { get; init; }

    public bool Residential { get; init; }

    public bool Mobile { get; init; }

    public string? Pool { get; init; }

    public string? Continent { get; init; }

    public string? Country { get; init; }

    public string? State { get; init; }

    /// <summary>Connections open to this upstream at once (fleet-wide on a fleet); null: the node's default (<c>--upstream-max-connections</c>), if any.</summary>
    public int? MaxConnections { get; init; }

    /// <summary>New connections to this upstream per period; null: the node's default (<c>--upstream-rate</c>), if any.</summary>
    public Limits.LimitRate? Rate { get; init; }

    public string? City { get; init; }

    public string? Carrier { get; init; }

    /// <summary>Autonomous system number as decimal text (0 = unspecified, as rama), or <c>*</c>.</summary>
    public string? Asn { get; init; }

    /// <summary>
    /// The protocol used to chain TCP through this upstream: the address's scheme when it has one;
    /// otherwise the first the record supports in the order http, https, socks5h, socks5 (socks5h
    /// before socks5: the exit resolves names, so geo-located DNS answers match the exit). Null when
    /// the record cannot carry TCP.
    /// </summary>
    public UpstreamProtocol? PreferredProtocol =>
        !Tcp ? null
        : Address.Scheme is { } scheme ? scheme
        : Http ? UpstreamProtocol.Http
        : Https ? UpstreamProtocol.Https
        : Socks5h ? UpstreamProtocol.Socks5h
        : Socks5 ? UpstreamProtocol.Socks5
        : null;

    /// <summary>Whether the record supports <paramref name="protocol"/>.</summary>
    public bool Supports(UpstreamProtocol protocol) => protocol switch
    {
        UpstreamProtocol.Http => Http,
        UpstreamProtocol.Https => Https,
        UpstreamProtocol.Socks5 => Socks5,
        _ => Socks5h,
    };

    /// <summary>
    /// Why the record cannot be used, or null: it needs a transport (tcp or udp), a protocol that
    /// carries it (tcp: any of http/https/socks5/socks5h; udp: socks5/socks5h), and at least one of
    /// datacenter/residential/mobile; a scheme in the address must be one the record supports.
    /// </summary>
    public string? Unusable()
    {
        if (!Tcp && !Udp)
        {
            return "no transport: set tcp and/or udp";
        }

        if (Tcp && !(Http || Https || Socks5 || Socks5h))
        {
            return "tcp needs one of http, https, socks5, socks5h";
        }

        if (Udp && !(Socks5 || Socks5h))
        {
            return "udp needs socks5 or socks5h";
        }

        if (!(Datacenter || Residential || Mobile))
        {
            return "set at least one of datacenter, residential, mobile";
        }

        if (Address.Scheme is { } scheme && !Supports(scheme))
        {
            return $"the address says {UpstreamAddress.ProtocolName(scheme)} but the record does not support it";
        }

        return null;
    }

    /// <summary>Normalises an attribute: trimmed, lower-case; empty is null.</summary>
    public static string? Normalize(string? value)
    {
        if (value is null)
        {
            return null;
        }

        var trimmed = value.Trim();
        return trimmed.Length == 0 ? null : trimmed.ToLowerInvariant();
    }

    /// <summary>Parses an ASN (<c>13335</c>, <c>AS13335</c>) to its decimal text; <c>*</c> stays a wildcard.</summary>
    public static bool TryNormalizeAsn(string? text, out string? asn)
    {
        asn = null;
        var value = text?.Trim();
        if (string.IsNullOrEmpty(value))
        {
            return true;
        }

        if (value == Wildcard)
        {
            asn = Wildcard;
            return true;
        }

        var digits = value.StartsWith("as", StringComparison.OrdinalIgnoreCase) ? value[2..] : value;
        if (digits.Length is 0 or > 10 || !uint.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            return false;
        }

        asn = number.ToString(CultureInfo.InvariantCulture);
        return true;
    }
}
