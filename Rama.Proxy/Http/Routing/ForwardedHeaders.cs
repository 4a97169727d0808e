using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Rama.Proxy.Http.Routing;

/// <summary>
/// Writes <c>X-Forwarded-For/-Proto/-Host</c> and <c>Forwarded</c> (RFC 7239) on a request going to an origin. From a
/// trusted peer the incoming fields are kept: X-Forwarded-For and Forwarded get this hop appended (RFC 7239 §4: a list,
/// one element per proxy), X-Forwarded-Proto/-Host keep the first proxy's values. From any other peer every incoming
/// forwarded field is removed first and replaced by ours (a client cannot forge them).
/// </summary>
internal static class ForwardedHeaders
{
    private static readonly byte[] s_xff = "X-Forwarded-For"u8.ToArray();
    private static readonly byte[] s_xfp = "X-Forwarded-Proto"u8.ToArray();
    private static readonly byte[] s_xfh = "X-Forwarded-Host"u8.ToArray();
    private static readonly byte[] s_forwarded = "Forwarded"u8.ToArray();

    public static bool IsTrusted(ForwardedHeadersOptions options, IPAddress? peer)
    {
        if (peer is null)
        {
            return false;
        }

        peer = peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer;
        foreach (var network in options.TrustedProxies)
        {
            if (network.Contains(peer))
            {
                return true;
            }
        }

        return false;
    }

    public static void Apply(ForwardedHeadersOptions options, HttpHeaders headers, IPAddress? peer, string scheme, string? host)
    {
        if (!options.XForwarded && !options.Forwarded)
        {
            return;
        }

        var trusted = IsTrusted(options, peer);
        if (!trusted)
        {
            headers.Remove(s_xff);
            headers.Remove(s_xfp);
            headers.Remove(s_xfh);
            headers.Remove(s_forwarded);
        }

        var client = peer is null ? null : peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer;
        if (options.XForwarded)
        {
            var forFor = client?.ToString() ?? "unknown";
            AppendList(headers, s_xff, forFor);
            SetUnlessPresent(headers, s_xfp, scheme);
            if (host is not null)
            {
                SetUnlessPresent(headers, s_xfh, host);
            }
        }

        if (options.Forwarded)
        {
            // RFC 7239 §4: forwarded-element = for=...;proto=...;host=...; values that are not tokens are quoted.
            var element = new StringBuilder("for=").Append(NodeName(client));
            if (host is not null)
            {
                element.Append(";host=").Append(QuoteIfNeeded(host));
            }

            element.Append(";proto=").Append(scheme);
            AppendList(headers, s_forwarded, element.ToString());
        }
    }

    /// <summary>RFC 7239 §6: an IPv6 address is bracketed and quoted; an unknown peer is "unknown".</summary>
    internal static string NodeName(IPAddress? address) => address switch
    {
        null => "unknown",
        { AddressFamily: AddressFamily.InterNetworkV6 } => $"\"[{address}]\"",
        _ => address.ToString(),
    };

    private static string QuoteIfNeeded(string value)
    {
        foreach (var c in value)
        {
            // RFC 9110 §5.6.2 tchar; anything else (':' of a port) needs a quoted-string.
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal)))
            {
                return "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
            }
        }

        return value;
    }

    // Several lines of a list field are one list (RFC 9110 §5.3): the last line gets ", value".
    private static void AppendList(HttpHeaders headers, byte[] name, string value)
    {
        var last = -1;
        for (var i = headers.IndexOf(name); i >= 0; i = headers.IndexOf(name, i + 1))
        {
            last = i;
        }

        if (last < 0)
        {
            headers.Add(name, Encoding.Latin1.GetBytes(value));
            return;
        }

        var existing = headers[last].Value.Span;
        var combined = new byte[existing.Length + 2 + value.Length];
        existing.CopyTo(combined);
        ", "u8.CopyTo(combined.AsSpan(existing.Length));
        Encoding.Latin1.GetBytes(value, combined.AsSpan(existing.Length + 2));
        headers.SetValue(last, combined);
    }

    private static void SetUnlessPresent(HttpHeaders headers, byte[] name, string value)
    {
        if (!headers.Contains(name))
        {
            headers.Add(name, Encoding.Latin1.GetBytes(value));
        }
    }
}
