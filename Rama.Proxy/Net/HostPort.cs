using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;

namespace Rama.Proxy.Net;

/// <summary>A dial target: a host name or IP literal, and a port (RFC 3986 §3.2.2 authority, no userinfo).</summary>
public readonly record struct HostPort(string Host, int Port)
{
    /// <summary>The host as an IP address when it is an IP literal.</summary>
    public IPAddress? Address => IPAddress.TryParse(Host, out var ip) ? ip : null;

    /// <summary>Parses <c>host:port</c>, <c>1.2.3.4:port</c> or <c>[v6]:port</c>; a missing port takes <paramref name="defaultPort"/> when it is above 0.</summary>
    public static bool TryParse(ReadOnlySpan<char> text, int defaultPort, [NotNullWhen(true)] out HostPort? result)
    {
        result = null;
        if (text.IsEmpty)
        {
            return false;
        }

        ReadOnlySpan<char> host;
        ReadOnlySpan<char> port = default;
        if (text[0] == '[')
        {
            var close = text.IndexOf(']');
            if (close < 0)
            {
                return false;
            }

            host = text[1..close];
            var rest = text[(close + 1)..];
            if (!rest.IsEmpty)
            {
                if (rest[0] != ':')
                {
                    return false;
                }

                port = rest[1..];
                if (port.IsEmpty)
                {
                    return false;
                }
            }

            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            {
                return false;
            }
        }
        else
        {
            var colon = text.LastIndexOf(':');
            if (colon >= 0)
            {
                if (text[..colon].Contains(':'))
                {
                    return false; // a bare IPv6 literal must be bracketed
                }

                host = text[..colon];
                port = text[(colon + 1)..];
                if (port.IsEmpty)
                {
                    return false;
                }
            }
            else
            {
                host = text;
            }

            if (host.IsEmpty || !IsValidRegName(host))
            {
                return false;
            }
        }

        int portValue;
        if (port.IsEmpty)
        {
            if (defaultPort <= 0)
            {
                return false;
            }

            portValue = defaultPort;
        }
        else if (port.Length > 5 || !int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out portValue) || portValue is < 1 or > 65535)
        {
            return false;
        }

        result = new HostPort(host.ToString(), portValue);
        return true;
    }

    public static HostPort Parse(string text, int defaultPort = 0) =>
        TryParse(text, defaultPort, out var hp) ? hp.Value : throw new FormatException($"'{text}' is not a host:port");

    // RFC 3986 §3.2.2 reg-name, restricted to what DNS can carry (letters, digits, '-', '.', '_').
    private static bool IsValidRegName(ReadOnlySpan<char> host)
    {
        if (host.Length > 253)
        {
            return false;
        }

        foreach (var c in host)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_'))
            {
                return false;
            }
        }

        return true;
    }

    public override string ToString() =>
        Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port.ToString(CultureInfo.InvariantCulture)}" : $"{Host}:{Port.ToString(CultureInfo.InvariantCulture)}";
}
