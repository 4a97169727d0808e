using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>The protocol spoken to an origin, said by the upstream's scheme.</summary>
public enum OriginProtocol
{
    /// <summary><c>host:port</c> or <c>http://host:port</c>: HTTP/1.1 over TCP.</summary>
    Http1,

    /// <summary><c>h2c://host:port</c>: HTTP/2 over TCP with prior knowledge (RFC 9113 §3.3).</summary>
    H2c,

    /// <summary><c>https://host:port</c>: TLS offering ALPN h2 and http/1.1; HTTP/2 when the origin chooses h2, else HTTP/1.1.</summary>
    Https,
}

/// <summary>
/// Where a reverse proxy sends requests and in which protocol: <c>host:port</c> or <c>http://host:port</c> (HTTP/1.1),
/// <c>h2c://host:port</c> (HTTP/2 with prior knowledge), <c>https://host:port</c> (TLS; h2 when ALPN agrees). Without a
/// port: 80 for http and h2c, 443 for https.
/// </summary>
public readonly record struct UpstreamTarget(OriginProtocol Protocol, HostPort Target)
{
    /// <summary>The schemes understood, in the order the errors list them.</summary>
    public static readonly IReadOnlyList<string> Schemes = ["http", "h2c", "https"];

    /// <summary>An HTTP/1.1 upstream (the shorthand's <c>host:port</c>).</summary>
    public static UpstreamTarget Http1(HostPort target) => new(OriginProtocol.Http1, target);

    public string Scheme => Protocol switch
    {
        OriginProtocol.H2c => "h2c",
        OriginProtocol.Https => "https",
        _ => "http",
    };

    /// <summary>
    /// Parses <c>[scheme://]host:port[/]</c>. <paramref name="requireScheme"/>: refuse a bare <c>host:port</c> (routed
    /// destinations, YARP's shape). <paramref name="problem"/> says what is wrong, for the configuration error.
    /// </summary>
    public static bool TryParse(string? text, bool requireScheme, out UpstreamTarget target, out string problem)
    {
        target = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            problem = "is empty";
            return false;
        }

        var protocol = OriginProtocol.Http1;
        var rest = text.AsSpan().Trim();
        var sep = rest.IndexOf("://", StringComparison.Ordinal);
        if (sep >= 0)
        {
            var scheme = rest[..sep];
            if (scheme.Equals("http", StringComparison.OrdinalIgnoreCase))
            {
                protocol = OriginProtocol.Http1;
            }
            else if (scheme.Equals("h2c", StringComparison.OrdinalIgnoreCase))
            {
                protocol = OriginProtocol.H2c;
            }
            else if (scheme.Equals("https", StringComparison.OrdinalIgnoreCase))
            {
                protocol = OriginProtocol.Https;
            }
            else
            {
                problem = $"has the scheme '{scheme}', not supported (supported: {string.Join(", ", Schemes)})";
                return false;
            }

            rest = rest[(sep + 3)..];
        }
        else if (requireScheme)
        {
            problem = "needs a scheme: http://, h2c:// or https://host:port";
            return false;
        }

        var slash = rest.IndexOf('/');
        if (slash >= 0 && rest[slash..] is not "/")
        {
            problem = "has a path: only scheme://host:port (a trailing '/' is fine)";
            return false;
        }

        var authority = slash >= 0 ? rest[..slash] : rest;
        var defaultPort = protocol == OriginProtocol.Https ? 443 : sep >= 0 ? 80 : 0;
        if (authority.Contains('@') || !HostPort.TryParse(authority, defaultPort, out var hostPort) || hostPort.Value.Port == 0)
        {
            problem = "is not [http|h2c|https://]host:port";
            return false;
        }

        target = new UpstreamTarget(protocol, hostPort.Value);
        problem = "";
        return true;
    }

    public override string ToString() => $"{Scheme}://{Target}";
}
