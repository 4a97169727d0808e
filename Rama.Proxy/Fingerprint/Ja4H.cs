using System.Text;
using Rama.Proxy.Http;

namespace Rama.Proxy.Fingerprint;

/// <summary>
/// A JA4H HTTP client fingerprint (FoxIO, technical_details/JA4H.md; JA4H is under the FoxIO
/// License 1.1, unlike JA4's BSD licence): <c>a_b_c_d</c> plus the raw form JA4H_r.
/// </summary>
public sealed record Ja4H(string Fingerprint, string Raw)
{
    private const string Empty = "000000000000";

    public override string ToString() => Fingerprint;

    public static Ja4H From(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Version != HttpProtocolVersion.Http2)
        {
            return From(request.Method, request.Version == HttpProtocolVersion.Http10 ? "10" : "11", request.Headers);
        }

        // HTTP/2: version "20"; pseudo-headers are not headers.
        var headers = request.Headers;
        return From(request.Method, "20", HasSynthesizedHost(request) ? headers.Skip(1) : headers);
    }

    /// <summary>
    /// The request's JA4H, reused from its connection's last request when the inputs are the same (method, version, header
    /// names in order, Cookie and Accept-Language values): a client sends the same header set on every request of a
    /// connection, and the fingerprint costs string joins and up to three SHA-256 hashes.
    /// </summary>
    public static Ja4H Cached(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.Connection is { } connection ? Ja4HCache.Of(connection).Get(request) : From(request);
    }

    /// <summary>The Host our HTTP/2 server adds from :authority (first, same value) was not sent by the client.</summary>
    internal static bool HasSynthesizedHost(HttpRequest request)
    {
        if (request.Version != HttpProtocolVersion.Http2 || request.Headers.Count == 0 || !request.Headers[0].NameIs("host"u8))
        {
            return false;
        }

        var authority = request.Extensions.Get<Http.Http2.Http2RequestInfo>()?.Authority;
        return authority is not null && Ja4HCache.Latin1Equals(request.Headers[0].Value.Span, authority);
    }

    /// <summary>JA4H from the method, the two-digit version ("10", "11", "20", "30") and the header fields in order.</summary>
    public static Ja4H From(string method, string version, IEnumerable<HttpHeaderField> headers)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(headers);
        var names = new List<string>(16);
        var cookies = new List<string>();
        var hasCookie = false;
        var hasReferer = false;
        string? acceptLanguage = null;
        foreach (var field in headers)
        {
            if (field.NameIs("Cookie"u8))
            {
                hasCookie = true;
                // "cookie fields are the values before '=' and are delimited by ';'"
                foreach (var part in field.ValueText.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    cookies.Add(part);
                }

                continue;
            }

            if (field.NameIs("Referer"u8))
            {
                hasReferer = true;
                continue;
            }

            if (acceptLanguage is null && field.NameIs("Accept-Language"u8))
            {
                acceptLanguage = field.ValueText;
            }

            names.Add(field.NameText); // case-sensitive, in the order seen
        }

        // a: method (2 lower-case letters), version, cookie c/n, referer r/n, header count (Cookie and Referer excluded, max 99), language.
        var a = new StringBuilder(12);
        var lowerMethod = method.ToLowerInvariant();
        a.Append(lowerMethod.Length >= 2 ? lowerMethod[..2] : lowerMethod.PadRight(2, '0'))
            .Append(version)
            .Append(hasCookie ? 'c' : 'n')
            .Append(hasReferer ? 'r' : 'n')
            .Append(Math.Min(names.Count, 99).ToString("00", System.Globalization.CultureInfo.InvariantCulture))
            .Append(Language(acceptLanguage));
        var headerList = string.Join(',', names);
        var cookieNames = cookies.Select(c => c.Split('=', 2)[0]).Order(StringComparer.Ordinal).ToList();
        var cookiePairs = cookies.Order(StringComparer.Ordinal).ToList();
        var b = headerList.Length == 0 ? Empty : Ja4.Sha256Prefix(headerList);
        var c = cookieNames.Count == 0 ? Empty : Ja4.Sha256Prefix(string.Join(',', cookieNames));
        var d = cookiePairs.Count == 0 ? Empty : Ja4.Sha256Prefix(string.Join(',', cookiePairs));
        var raw = $"{a}_{headerList}_{string.Join(',', cookieNames)}_{string.Join(',', cookiePairs)}";
        return new Ja4H($"{a}_{b}_{c}_{d}", raw);
    }

    // "First 4 characters of the primary Accept-Language (ignore '-')", lower-case, padded with 0s.
    private static string Language(string? acceptLanguage)
    {
        if (string.IsNullOrWhiteSpace(acceptLanguage))
        {
            return "0000";
        }

        var primary = acceptLanguage.Split(',', 2)[0].Split(';', 2)[0].Trim().Replace("-", "", StringComparison.Ordinal).ToLowerInvariant();
        primary = new string([.. primary.Where(char.IsAsciiLetterOrDigit)]);
        return primary.Length >= 4 ? primary[..4] : primary.PadRight(4, '0');
    }
}
