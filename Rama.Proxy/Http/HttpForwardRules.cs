using System.Buffers;
using System.Text;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>
/// The rules every HTTP forwarder of Rama applies, in one place so that they cannot drift apart: <see cref="ForwardProxyService"/>
/// (the forward proxy, the pipe-based reverse proxy, the TLS termination proxy's HTTP mode and MITM's decrypted requests) and
/// the epoll reverse proxy (<see cref="EpollReverseProxy"/>). The request head rewrite, hop-by-hop removal (RFC 9110 §7.6.1),
/// Via (§7.6.3), the retry-once rule (§9.2.2, RFC 9112 §9.3.1), and the mapping of failures to statuses.
/// </summary>
internal static class HttpForwardRules
{
    private static readonly byte[] s_hostName = "Host"u8.ToArray();
    private static readonly byte[] s_viaName = "Via"u8.ToArray();
    private static readonly byte[] s_transferEncodingName = "Transfer-Encoding"u8.ToArray();
    private static readonly byte[] s_chunked = "chunked"u8.ToArray();
    private static readonly byte[] s_upgradeName = "Upgrade"u8.ToArray();

    /// <summary>
    /// The request head for the origin, written straight to <paramref name="output"/> (no copy of the field list):
    /// hop-by-hop fields removed (RFC 9110 §7.6.1), Host set to <paramref name="authority"/> or added first as the
    /// target's when missing (RFC 9112 §3.2.2), framing normalised (one Content-Length with the parsed value, or
    /// Transfer-Encoding: chunked), Via added (§7.6.3); the order and case of everything else kept. With an
    /// <paramref name="upgrade"/> offer (RFC 9110 §7.8) the Upgrade fields become one with that value and
    /// <c>Connection: Upgrade</c>, the only connection option sent.
    /// </summary>
    public static void WriteRequestHead(IBufferWriter<byte> output, HttpRequest request, string pathAndQuery, HostPort target, string? authority, byte[]? via,
        byte[]? upgrade = null)
    {
        var source = request.Headers;
        Http1Writer.WriteLatin1(output, request.Method);
        output.Write(" "u8);
        Http1Writer.WriteLatin1(output, pathAndQuery);
        output.Write(" HTTP/1.1\r\n"u8);
        if (!source.Contains(HeaderNames.Host))
        {
            WriteTextField(output, s_hostName, authority ?? target.ToString());
        }

        var namesOtherFields = NamesOtherFields(source);
        var wroteLength = false;
        foreach (var field in source)
        {
            if (IsDropped(source, namesOtherFields, field))
            {
                continue;
            }

            if (authority is not null && field.NameIs(HeaderNames.Host))
            {
                WriteTextField(output, field.Name.Span, authority);
                continue;
            }

            if (request.BodyFraming == BodyFraming.ContentLength && field.NameIs(HeaderNames.ContentLength))
            {
                // One Content-Length with the value we parsed ("5, 5" or repeated lines become one).
                if (!wroteLength)
                {
                    output.Write(field.Name.Span);
                    output.Write(": "u8);
                    Http1Writer.WriteNumber(output, request.ContentLength);
                    output.Write("\r\n"u8);
                    wroteLength = true;
                }

                continue;
            }

            Http1Writer.WriteField(output, field.Name.Span, field.Value.Span);
        }

        if (request.BodyFraming == BodyFraming.Chunked)
        {
            Http1Writer.WriteField(output, s_transferEncodingName, s_chunked);
        }

        if (upgrade is not null)
        {
            output.Write("Connection: Upgrade\r\n"u8);
            Http1Writer.WriteField(output, s_upgradeName, upgrade);
        }

        if (via is not null)
        {
            Http1Writer.WriteField(output, s_viaName, via);
        }

        output.Write("\r\n"u8);
    }

    private static void WriteTextField(IBufferWriter<byte> output, ReadOnlySpan<byte> name, string value)
    {
        output.Write(name);
        output.Write(": "u8);
        Http1Writer.WriteLatin1(output, value);
        output.Write("\r\n"u8);
    }

    /// <summary>RFC 9110 §7.6.3: the proxy's Via (the bytes of <see cref="HttpProxyOptions.Via"/>) on a head it forwards; null: none.</summary>
    public static void AddVia(HttpHeaders headers, byte[]? via)
    {
        if (via is not null)
        {
            headers.Add(s_viaName, via);
        }
    }

    /// <summary>The Via field written to a head being built; null: none.</summary>
    public static void WriteVia(IBufferWriter<byte> output, byte[]? via)
    {
        if (via is not null)
        {
            Http1Writer.WriteField(output, s_viaName, via);
        }
    }

    /// <summary>The bytes of the Via value (<see cref="HttpProxyOptions.Via"/>); null: no Via.</summary>
    public static byte[]? ViaBytes(string? via) => via is null ? null : Encoding.ASCII.GetBytes(via);

    // ---- hop-by-hop fields ----------------------------------------------------------------------

    /// <summary>RFC 9110 §7.6.1: drop Connection, the fields it names, and the known connection-specific fields.</summary>
    internal static HttpHeaders CopyEndToEnd(HttpHeaders source)
    {
        var copy = new HttpHeaders(source.Count + 2);
        var namesOtherFields = NamesOtherFields(source);
        foreach (var field in source)
        {
            if (!IsDropped(source, namesOtherFields, field))
            {
                copy.Add(field.Name, field.Value);
            }
        }

        return copy;
    }

    /// <summary>The same rule as <see cref="CopyEndToEnd"/>, applied in place to fields this proxy owns (a parsed response head).</summary>
    internal static void RemoveHopByHop(HttpHeaders headers)
    {
        var namesOtherFields = NamesOtherFields(headers);
        Span<bool> drop = headers.Count <= 128 ? stackalloc bool[headers.Count] : new bool[headers.Count];
        for (var i = 0; i < headers.Count; i++)
        {
            drop[i] = IsDropped(headers, namesOtherFields, headers[i]); // decided before any removal: Connection names fields
        }

        for (var i = headers.Count - 1; i >= 0; i--)
        {
            if (drop[i])
            {
                headers.RemoveAt(i);
            }
        }
    }

    /// <summary>
    /// Whether a field may be sent as a trailer (RFC 9110 §6.5.1): not one that frames, routes, authenticates, controls the request
    /// or the response, or describes the content (those must be in the header section), nor a connection-specific one (RFC 9113
    /// §8.2.2), nor a pseudo-header. A sender drops the rest; gRPC's grpc-status and grpc-message pass.
    /// </summary>
    internal static bool MayBeTrailer(HttpHeaderField field) => MayBeTrailerName(field.Name.Span);

    /// <summary>
    /// <see cref="MayBeTrailer"/> by the field's name alone: the epoll relay filters a chunked body's trailer
    /// section where it lies in its buffer (<see cref="ChunkedScanner.TryFilterTrailers"/>), without a field list.
    /// </summary>
    internal static bool MayBeTrailerName(ReadOnlySpan<byte> name)
    {
        if (name.IsEmpty || name[0] == (byte)':' || IsHopByHop(name) || Ascii.EqualsIgnoreCase(name, HeaderNames.Host)
            || Ascii.EqualsIgnoreCase(name, HeaderNames.ContentLength) || Ascii.EqualsIgnoreCase(name, HeaderNames.Expect))
        {
            return false;
        }

        foreach (var forbidden in ForbiddenTrailers)
        {
            if (Ascii.EqualsIgnoreCase(name, forbidden))
            {
                return false;
            }
        }

        return name.Length < 3 || !Ascii.EqualsIgnoreCase(name[..3], "If-"u8); // conditionals (§13.1)
    }

    // RFC 9110 §6.5.1's kinds, by name: controls (§7.6.2 Max-Forwards, §14.2 Range, Cache-Control, Pragma), authentication (§11),
    // response control data (§10.2), content description (§8.3-§8.8: Content-Digest, RFC 9530, stays allowed), cookies (RFC 6265).
    private static readonly byte[][] ForbiddenTrailers =
    [
        "Authorization"u8.ToArray(), "WWW-Authenticate"u8.ToArray(), "Authentication-Info"u8.ToArray(), "Proxy-Authentication-Info"u8.ToArray(),
        "Cache-Control"u8.ToArray(), "Pragma"u8.ToArray(), "Max-Forwards"u8.ToArray(), "Range"u8.ToArray(), "Age"u8.ToArray(),
        "Expires"u8.ToArray(), "Date"u8.ToArray(), "Location"u8.ToArray(), "Retry-After"u8.ToArray(), "Vary"u8.ToArray(),
        "Warning"u8.ToArray(), "Set-Cookie"u8.ToArray(), "Cookie"u8.ToArray(), "Accept-Ranges"u8.ToArray(), "Allow"u8.ToArray(),
        "Server"u8.ToArray(), "Last-Modified"u8.ToArray(), "ETag"u8.ToArray(), "Content-Type"u8.ToArray(), "Content-Encoding"u8.ToArray(),
        "Content-Range"u8.ToArray(), "Content-Language"u8.ToArray(), "Content-Location"u8.ToArray(),
    ];

    /// <summary>The fields of <paramref name="trailers"/> that may be sent (<see cref="MayBeTrailer"/>); null when none may.</summary>
    internal static HttpHeaders? TrailersToSend(HttpHeaders? trailers)
    {
        if (trailers is null || trailers.Count == 0)
        {
            return null;
        }

        var kept = new HttpHeaders(trailers.Count);
        foreach (var field in trailers)
        {
            if (MayBeTrailer(field))
            {
                kept.Add(field.Name, field.Value);
            }
        }

        return kept.Count == 0 ? null : kept;
    }

    // The one rule of all three: a known connection-specific field, or one that Connection / Proxy-Connection names.
    internal static bool IsDropped(HttpHeaders source, bool namesOtherFields, HttpHeaderField field) =>
        IsHopByHop(field) || (namesOtherFields && IsNamedByConnection(source, field.Name.Span));

    private static bool IsHopByHop(HttpHeaderField field) => IsHopByHop(field.Name.Span);

    private static bool IsHopByHop(ReadOnlySpan<byte> name) =>
        Ascii.EqualsIgnoreCase(name, HeaderNames.Connection) || Ascii.EqualsIgnoreCase(name, HeaderNames.ProxyConnection)
        || Ascii.EqualsIgnoreCase(name, HeaderNames.KeepAlive) || Ascii.EqualsIgnoreCase(name, HeaderNames.TE)
        || Ascii.EqualsIgnoreCase(name, HeaderNames.TransferEncoding) || Ascii.EqualsIgnoreCase(name, HeaderNames.Trailer)
        || Ascii.EqualsIgnoreCase(name, HeaderNames.Upgrade) || Ascii.EqualsIgnoreCase(name, HeaderNames.ProxyAuthorization)
        || Ascii.EqualsIgnoreCase(name, HeaderNames.ProxyAuthenticate);

    /// <summary>
    /// Whether Connection / Proxy-Connection name any field to drop: not when they carry only "close" and
    /// "keep-alive" (the usual case; Keep-Alive is dropped as hop-by-hop anyway), so the per-field check is skipped.
    /// </summary>
    internal static bool NamesOtherFields(HttpHeaders headers)
    {
        foreach (var field in headers)
        {
            if (field.NameIs(HeaderNames.Connection) || field.NameIs(HeaderNames.ProxyConnection))
            {
                var list = new HttpListEnumerator(field.Value.Span);
                while (list.MoveNext())
                {
                    if (!Ascii.EqualsIgnoreCase(list.Current, "close"u8) && !Ascii.EqualsIgnoreCase(list.Current, "keep-alive"u8))
                    {
                        return true;
                    }
                }
            }
        }

        return false;
    }

    private static bool IsNamedByConnection(HttpHeaders headers, ReadOnlySpan<byte> name)
    {
        // Never let Connection strip the fields that frame the message or route it (request smuggling).
        if (Ascii.EqualsIgnoreCase(name, HeaderNames.ContentLength) || Ascii.EqualsIgnoreCase(name, HeaderNames.Host))
        {
            return false;
        }

        return headers.ContainsToken(HeaderNames.Connection, name) || headers.ContainsToken(HeaderNames.ProxyConnection, name);
    }

    // ---- retry and errors -------------------------------------------------------------------------

    /// <summary>
    /// RFC 9110 §9.2.2 / RFC 9112 §9.3.1: a request that failed because a pooled (reused) connection was closed by the origin before
    /// any answer is sent again, once, on a fresh connection, when it is idempotent and no byte of its body went out.
    /// </summary>
    public static bool MayRetry(ForwardError error, bool reused, bool retried, string method, bool bodyStarted) =>
        error == ForwardError.UpstreamClosed && reused && !retried && !bodyStarted && HttpMethods.IsIdempotent(method);

    /// <summary>The status answering an expected forwarding outcome: 504 for timeouts, 403 for a refused destination, 503 when busy, 400 for a bad target, else 502.</summary>
    public static int StatusFor(ForwardError error) => error switch
    {
        ForwardError.ConnectTimedOut or ForwardError.UpstreamTimedOut => 504,
        ForwardError.NotAllowed => 403,
        ForwardError.UpstreamBusy => 503,
        ForwardError.BadTarget => 400,
        ForwardError.None => 200,
        _ => 502,
    };

    /// <summary>The forwarding outcome of a failed dial (the status follows from it): a refused destination is 403, a timeout 504, anything else 502.</summary>
    public static ForwardError ErrorFor(ConnectError error) => error switch
    {
        ConnectError.TimedOut => ForwardError.ConnectTimedOut,
        ConnectError.NotAllowed => ForwardError.NotAllowed,
        ConnectError.Busy => ForwardError.UpstreamBusy,
        _ => ForwardError.ConnectFailed,
    };

    /// <summary>The log detail of a failed dial.</summary>
    public static string Describe(ConnectResult dial) => $"{dial.Error}: {dial.Detail}";
}

/// <summary>An origin connection made ready for requests (a TLS handshake over the dialed socket), or why not; <c>IsHttp2</c>: ALPN chose h2.</summary>
internal readonly record struct SecuredOrigin(IOriginConnection? Connection, ForwardError Error, string Detail, bool IsHttp2 = false);

/// <summary>
/// Turns a freshly dialed origin socket into the connection <see cref="ForwardProxyService"/> sends requests over and pools
/// (TLS to an https origin). On failure it disposes <paramref name="socket"/>.
/// </summary>
internal delegate ValueTask<SecuredOrigin> OriginSecurer(HttpRequest request, HostPort target, SocketConnection socket, CancellationToken cancellationToken);
