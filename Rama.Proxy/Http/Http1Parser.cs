using System.Buffers;
using System.Buffers.Text;
using Rama.Proxy.Core;

namespace Rama.Proxy.Http;

/// <summary>
/// Where a head scan stopped: the scan resumes there on the next call so that a client trickling
/// bytes costs linear, not quadratic, work. Reset (default) for each new head.
/// </summary>
internal struct HeadScanState
{
    /// <summary>Leading empty lines skipped before the request line (RFC 9112 §2.2).</summary>
    public long Skipped;
    /// <summary>Offset just past the start line's LF, or 0 while it has not been found.</summary>
    public long StartLineEnd;
    /// <summary>Bytes of the start-line window already searched for LF.</summary>
    public long StartLineScanned;
    /// <summary>Offset of the first field line not yet complete.</summary>
    public long NextLine;
    /// <summary>Complete field lines seen.</summary>
    public int Lines;
}

/// <summary>
/// A response head's status line and framing, without its fields: what <see cref="Http1Parser.TryParseResponseInPlace"/>
/// returns (the fields go into the caller's reusable <see cref="HttpHeaders"/>).
/// </summary>
internal readonly record struct ResponseStatus(int Status, string Reason, HttpProtocolVersion Version, BodyFraming Framing, long ContentLength)
{
    public bool IsInterim => Status is >= 100 and < 200;
}

/// <summary>A response head from upstream with its body framing already decided (RFC 9112 §6.3).</summary>
internal sealed record ResponseHead(int Status, string Reason, HttpProtocolVersion Version, HttpHeaders Headers, BodyFraming Framing, long ContentLength)
{
    /// <summary>RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".</summary>
    public bool KeepAlive => Http1Parser.IsPersistent(Version, Headers);

    public bool IsInterim => Status is >= 100 and < 200;

    /// <summary>The body length when the framing tells it (Content-Length, or no body); null for chunked or until-close.</summary>
    public long? KnownBodyLength => Framing switch
    {
        BodyFraming.ContentLength => ContentLength,
        BodyFraming.None => 0,
        _ => null,
    };
}

/// <summary>
/// HTTP/1.1 message heads (RFC 9112) from a <see cref="ReadOnlySequence{T}"/>. Every Try method
/// returns false for "need more data" and throws <see cref="HttpCodecException"/> for a violation.
/// Limits are enforced on windows sliced to the limit: still incomplete at the limit is "too large".
/// The head is found first (scan for the empty line), then copied once into one array that the
/// header fields slice: one allocation per head, no string per header.
/// </summary>
internal static class Http1Parser
{
    // RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    private static readonly SearchValues<byte> s_tchar =
        SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    // RFC 9110 §5.5: field-value bytes: VCHAR, SP, HTAB, obs-text (0x80-0xFF). No other CTL, no DEL.
    private static readonly SearchValues<byte> s_fieldValue = SearchValues.Create(FieldValueBytes());

    // RFC 9112 §3.2: request-target bytes: visible ASCII only (no SP, no CTL, no obs-text).
    private static readonly SearchValues<byte> s_targetBytes = SearchValues.Create(Range(0x21, 0x7E));

    // RFC 3986 §3.2.2 host (reg-name / IP-literal) and ":" port: unreserved, sub-delims, pct, brackets.
    private static readonly SearchValues<byte> s_hostBytes =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+,;=:[]"u8);

    private static readonly SearchValues<byte> s_hexDigits = SearchValues.Create("0123456789abcdefABCDEF"u8);

    /// <summary>Parses one request head (stateless form, for tests and benchmarks).</summary>
    public static bool TryParseRequest(in ReadOnlySequence<byte> buffer, HttpLimits limits, out HttpRequest? request, out SequencePosition consumed)
    {
        var state = default(HeadScanState);
        return TryParseRequest(buffer, limits, ref state, null, out request, out consumed);
    }

    /// <summary>Parses one request head, resuming a scan. On true, <paramref name="consumed"/> is just past the head.</summary>
    public static bool TryParseRequest(in ReadOnlySequence<byte> buffer, HttpLimits limits, ref HeadScanState state, Extensions? connectionExtensions,
        out HttpRequest? request, out SequencePosition consumed)
    {
        request = null;
        consumed = buffer.Start;
        if (!TryScanHead(buffer, limits, ref state, isRequest: true, out var headEnd))
        {
            return false;
        }

        var head = buffer.Slice(state.Skipped, headEnd - state.Skipped).ToArray();
        var startLineLength = (int)(state.StartLineEnd - state.Skipped);
        request = ParseRequestHead(head, 0, startLineLength, head.Length, connectionExtensions, reuse: null);
        consumed = buffer.GetPosition(headEnd);
        return true;
    }

    /// <summary>
    /// Parses one request head where it lies, in <paramref name="buffer"/> from <paramref name="start"/> for <paramref name="length"/>
    /// bytes, into <paramref name="request"/>: the same checks as <see cref="TryParseRequest(in ReadOnlySequence{byte}, HttpLimits, ref HeadScanState, Extensions?, out HttpRequest?, out SequencePosition)"/>,
    /// without copying the head or allocating per request. A request from an earlier call is reset and reused (created on the first
    /// call); its target string too when the target's bytes are the same (Kestrel keeps a connection's last target the same way).
    /// The fields slice <paramref name="buffer"/>: valid until the caller reuses those bytes. On true, <paramref name="end"/> is the
    /// index in <paramref name="buffer"/> just past the head.
    /// </summary>
    public static bool TryParseRequestInPlace(byte[] buffer, int start, int length, HttpLimits limits, ref HeadScanState state,
        Extensions? connectionExtensions, ref HttpRequest? request, out int end)
    {
        end = start;
        if (!TryScanHead(new ReadOnlySequence<byte>(buffer, start, length), limits, ref state, isRequest: true, out var headEnd))
        {
            return false;
        }

        var headStart = start + (int)state.Skipped;
        request = ParseRequestHead(buffer, headStart, (int)(state.StartLineEnd - state.Skipped), start + (int)headEnd, connectionExtensions, request);
        end = start + (int)headEnd;
        return true;
    }

    /// <summary>
    /// Parses one response head where it lies (see <see cref="TryParseRequestInPlace"/>): its fields into <paramref name="headers"/>
    /// (cleared first), its status and framing into <paramref name="status"/>.
    /// </summary>
    public static bool TryParseResponseInPlace(byte[] buffer, int start, int length, HttpLimits limits, ref HeadScanState state, string requestMethod,
        HttpHeaders headers, out ResponseStatus status, out int end)
    {
        status = default;
        end = start;
        if (!TryScanHead(new ReadOnlySequence<byte>(buffer, start, length), limits, ref state, isRequest: false, out var headEnd))
        {
            return false;
        }

        headers.Clear();
        status = ParseResponseHead(buffer, start, (int)state.StartLineEnd, start + (int)headEnd, requestMethod, headers);
        end = start + (int)headEnd;
        return true;
    }

    /// <summary>Parses one response head; <paramref name="requestMethod"/> decides bodiless answers (HEAD).</summary>
    public static bool TryParseResponse(in ReadOnlySequence<byte> buffer, HttpLimits limits, ref HeadScanState state, string requestMethod,
        out ResponseHead? response, out SequencePosition consumed)
    {
        response = null;
        consumed = buffer.Start;
        if (!TryScanHead(buffer, limits, ref state, isRequest: false, out var headEnd))
        {
            return false;
        }

        var head = buffer.Slice(0, headEnd).ToArray();
        var headers = new HttpHeaders(CountLines(head.AsSpan((int)state.StartLineEnd)) + 2);
        var parsed = ParseResponseHead(head, 0, (int)state.StartLineEnd, head.Length, requestMethod, headers);
        response = new ResponseHead(parsed.Status, parsed.Reason, parsed.Version, headers, parsed.Framing, parsed.ContentLength);
        consumed = buffer.GetPosition(headEnd);
        return true;
    }

    /// <summary>Stateless form of <see cref="TryParseResponse(in ReadOnlySequence{byte}, HttpLimits, ref HeadScanState, string, out ResponseHead?, out SequencePosition)"/>.</summary>
    public static bool TryParseResponse(in ReadOnlySequence<byte> buffer, HttpLimits limits, string requestMethod, out ResponseHead? response, out SequencePosition consumed)
    {
        var state = default(HeadScanState);
        return TryParseResponse(buffer, limits, ref state, requestMethod, out response, out consumed);
    }

    // ---- scanning: find the end of the head within the limits -------------------------------

    private static bool TryScanHead(in ReadOnlySequence<byte> buffer, HttpLimits limits, ref HeadScanState state, bool isRequest, out long headEnd)
    {
        headEnd = 0;
        if (state.StartLineEnd == 0)
        {
            if (isRequest && !TrySkipLeadingEmptyLines(buffer, limits.MaxRequestLineBytes, ref state))
            {
                return false;
            }

            // Slice to the limit first: no LF within MaxRequestLineBytes + CRLF means "too long".
            var window = buffer.Slice(state.Skipped);
            long limit = limits.MaxRequestLineBytes + 2L;
            if (window.Length > limit)
            {
                window = window.Slice(0, limit);
            }

            var lf = IndexOfLf(window.Slice(state.StartLineScanned));
            if (lf < 0)
            {
                if (window.Length >= limit)
                {
                    HttpRejection.Throw(isRequest ? HttpRejectReason.RequestLineTooLong : HttpRejectReason.InvalidStatusLine);
                }

                state.StartLineScanned = window.Length;
                return false;
            }

            state.StartLineEnd = state.Skipped + state.StartLineScanned + lf + 1;
            state.NextLine = state.StartLineEnd;
        }

        if (!TryScanFieldLines(buffer, state.StartLineEnd, limits, ref state.NextLine, ref state.Lines, out headEnd))
        {
            return false;
        }

        return true;
    }

    private static long IndexOfLf(in ReadOnlySequence<byte> buffer)
    {
        if (buffer.IsSingleSegment)
        {
            return buffer.FirstSpan.IndexOf((byte)'\n');
        }

        var reader = new SequenceReader<byte>(buffer);
        return reader.TryAdvanceTo((byte)'\n', advancePastDelimiter: false) ? reader.Consumed : -1;
    }

    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received before the request-line.
    private static bool TrySkipLeadingEmptyLines(in ReadOnlySequence<byte> buffer, int max, ref HeadScanState state)
    {
        var first = buffer.FirstSpan;
        if (state.Skipped < first.Length && first[(int)state.Skipped] != '\r')
        {
            return true; // the usual case: the request-line starts here
        }

        var reader = new SequenceReader<byte>(buffer.Slice(state.Skipped));
        while (reader.TryPeek(out var b) && b == '\r')
        {
            if (!reader.TryPeek(1, out var lf))
            {
                return false;
            }

            if (lf != '\n')
            {
                break; // a stray CR: the request-line parse rejects it
            }

            reader.Advance(2);
            state.Skipped += 2;
            if (state.Skipped > max)
            {
                HttpRejection.Throw(HttpRejectReason.InvalidRequestLine);
            }
        }

        return !reader.End;
    }

    /// <summary>
    /// Finds the empty line ending a field section that starts at <paramref name="sectionStart"/>,
    /// resuming at <paramref name="nextLine"/>. The section (lines with CRLFs and the empty line) may
    /// be at most <see cref="HttpLimits.MaxHeaderBytes"/> and hold at most <see cref="HttpLimits.MaxHeaderCount"/> lines.
    /// </summary>
    internal static bool TryScanFieldLines(in ReadOnlySequence<byte> buffer, long sectionStart, HttpLimits limits, ref long nextLine, ref int lines, out long sectionEnd)
    {
        sectionEnd = 0;
        if (buffer.IsSingleSegment)
        {
            // The usual case (a head within one receive): the same scan over a span, without a reader per line.
            return TryScanFieldLines(buffer.FirstSpan, sectionStart, limits, ref nextLine, ref lines, out sectionEnd);
        }

        while (true)
        {
            var allowance = limits.MaxHeaderBytes - (nextLine - sectionStart);
            var available = buffer.Length - nextLine;
            var window = buffer.Slice(nextLine, Math.Min(available, allowance));
            var reader = new SequenceReader<byte>(window);
            if (!reader.TryAdvanceTo((byte)'\n', advancePastDelimiter: false))
            {
                if (window.Length >= allowance)
                {
                    HttpRejection.Throw(HttpRejectReason.HeadersTooLarge);
                }

                return false;
            }

            var lineLength = reader.Consumed;
            if (lineLength == 0 || (lineLength == 1 && window.FirstSpan[0] == '\r'))
            {
                sectionEnd = nextLine + lineLength + 1;
                return true;
            }

            if (++lines > limits.MaxHeaderCount)
            {
                HttpRejection.Throw(HttpRejectReason.TooManyHeaders);
            }

            nextLine += lineLength + 1;
        }
    }

    private static bool TryScanFieldLines(ReadOnlySpan<byte> buffer, long sectionStart, HttpLimits limits, ref long nextLine, ref int lines, out long sectionEnd)
    {
        sectionEnd = 0;
        while (true)
        {
            var allowance = limits.MaxHeaderBytes - (nextLine - sectionStart);
            var available = buffer.Length - nextLine;
            var window = buffer.Slice((int)nextLine, (int)Math.Min(available, allowance));
            var lineLength = window.IndexOf((byte)'\n');
            if (lineLength < 0)
            {
                if (window.Length >= allowance)
                {
                    HttpRejection.Throw(HttpRejectReason.HeadersTooLarge);
                }

                return false;
            }

            if (lineLength == 0 || (lineLength == 1 && window[0] == '\r'))
            {
                sectionEnd = nextLine + lineLength + 1;
                return true;
            }

            if (++lines > limits.MaxHeaderCount)
            {
                HttpRejection.Throw(HttpRejectReason.TooManyHeaders);
            }

            nextLine += lineLength + 1;
        }
    }

    // ---- parsing a complete head (contiguous) -----------------------------------------------

    // The head is buffer[offset..limit); a non-null reuse is reset and filled instead of a new request.
    private static HttpRequest ParseRequestHead(byte[] buffer, int offset, int startLineLength, int limit, Extensions? connectionExtensions, HttpRequest? reuse)
    {
        var line = TrimCrLf(buffer.AsSpan(offset, startLineLength), HttpRejectReason.InvalidRequestLine);

        // RFC 9112 §3: request-line = method SP request-target SP HTTP-version
        var sp1 = line.IndexOf((byte)' ');
        if (sp1 < 0)
        {
            HttpRejection.Throw(HttpRejectReason.InvalidRequestLine);
        }

        var methodBytes = line[..sp1];
        if (methodBytes.IsEmpty || methodBytes.ContainsAnyExcept(s_tchar))
        {
            HttpRejection.Throw(methodBytes.IsEmpty ? HttpRejectReason.InvalidRequestLine : HttpRejectReason.InvalidMethod);
        }

        var rest = line[(sp1 + 1)..];
        var sp2 = rest.IndexOf((byte)' ');
        if (sp2 <= 0)
        {
            HttpRejection.Throw(HttpRejectReason.InvalidRequestLine);
        }

        var targetBytes = rest[..sp2];
        var version = ParseVersion(rest[(sp2 + 1)..], HttpRejectReason.InvalidVersion);
        if (targetBytes.ContainsAnyExcept(s_targetBytes))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidTarget);
        }

        var method = HttpMethods.Intern(methodBytes);
        var form = ClassifyTarget(method, targetBytes);
        HttpRequest request;
        if (reuse is null)
        {
            var headers = ParseFieldLines(buffer, offset + startLineLength, limit, null, out _);
            request = new HttpRequest(method, System.Text.Encoding.ASCII.GetString(targetBytes), form, version, headers, connectionExtensions);
        }
        else
        {
            var target = System.Text.Ascii.Equals(targetBytes, reuse.Target) ? reuse.Target : System.Text.Encoding.ASCII.GetString(targetBytes);
            reuse.Reset(method, target, form, version);
            ParseFieldLines(buffer, offset + startLineLength, limit, reuse.Headers, out _);
            request = reuse;
        }

        ValidateHost(request);
        (request.BodyFraming, request.ContentLength) = RequestFraming(version, request.Headers);
        return request;
    }

    // The head is buffer[offset..limit); its fields are added to headers.
    private static ResponseStatus ParseResponseHead(byte[] buffer, int offset, int startLineLength, int limit, string requestMethod, HttpHeaders headers)
    {
        var line = TrimCrLf(buffer.AsSpan(offset, startLineLength), HttpRejectReason.InvalidStatusLine);

        // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
        if (line.Length < 12 || line[8] != ' ' || (line.Length > 12 && line[12] != ' '))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidStatusLine);
        }

        var version = ParseVersion(line[..8], HttpRejectReason.InvalidStatusLine, HttpRejectReason.InvalidStatusLine);
        var code = line.Slice(9, 3);
        if (!char.IsAsciiDigit((char)code[0]) || !char.IsAsciiDigit((char)code[1]) || !char.IsAsciiDigit((char)code[2]) || code[0] == '0')
        {
            HttpRejection.Throw(HttpRejectReason.InvalidStatusLine);
        }

        var status = ((code[0] - '0') * 100) + ((code[1] - '0') * 10) + (code[2] - '0');
        var reasonBytes = line.Length > 13 ? line[13..] : [];
        if (reasonBytes.ContainsAnyExcept(s_fieldValue))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidStatusLine);
        }

        ParseFieldLines(buffer, offset + startLineLength, limit, headers, out _);
        var (framing, length) = ResponseFraming(version, status, requestMethod, headers);
        // The standard phrase ("OK", "Not Found", ...) as the shared string: no allocation for the common answers.
        var standard = ReasonPhrases.For(status);
        var reason = System.Text.Ascii.Equals(reasonBytes, standard) ? standard : System.Text.Encoding.Latin1.GetString(reasonBytes);
        return new ResponseStatus(status, reason, version, framing, length);
    }

    private static ReadOnlySpan<byte> TrimCrLf(ReadOnlySpan<byte> line, HttpRejectReason reason)
    {
        // RFC 9112 §2.2: lines end in CRLF; a bare LF or a CR elsewhere is rejected (no lenient parsing: request smuggling).
        if (line.Length < 2 || line[^2] != '\r' || line[^1] != '\n')
        {
            HttpRejection.Throw(reason);
        }

        return line[..^2];
    }

    private static HttpProtocolVersion ParseVersion(ReadOnlySpan<byte> text, HttpRejectReason invalid, HttpRejectReason unsupported = HttpRejectReason.UnsupportedVersion)
    {
        // RFC 9112 §2.3: HTTP-version = HTTP-name "/" DIGIT "." DIGIT; HTTP-name is case-sensitive.
        if (text.Length != 8 || !text.StartsWith("HTTP/"u8) || !char.IsAsciiDigit((char)text[5]) || text[6] != '.' || !char.IsAsciiDigit((char)text[7]))
        {
            HttpRejection.Throw(invalid);
        }

        return text[5] != '1' ? HttpRejection.Throw<HttpProtocolVersion>(unsupported)
            : text[7] == '1' ? HttpProtocolVersion.Http11
            : text[7] == '0' ? HttpProtocolVersion.Http10
            : HttpRejection.Throw<HttpProtocolVersion>(unsupported);
    }

    private static RequestTargetForm ClassifyTarget(string method, ReadOnlySpan<byte> target)
    {
        if (ReferenceEquals(method, HttpMethods.Connect))
        {
            // RFC 9112 §3.2.3: CONNECT uses authority-form only: uri-host ":" port.
            return IsAuthority(target) ? RequestTargetForm.Authority : HttpRejection.Throw<RequestTargetForm>(HttpRejectReason.InvalidTarget);
        }

        if (target[0] == '/')
        {
            return RequestTargetForm.Origin; // §3.2.1
        }

        if (target.Length == 1 && target[0] == '*')
        {
            // §3.2.4: asterisk-form is only used for a server-wide OPTIONS.
            return ReferenceEquals(method, HttpMethods.Options) ? RequestTargetForm.Asterisk : HttpRejection.Throw<RequestTargetForm>(HttpRejectReason.InvalidTarget);
        }

        // §3.2.2: absolute-form = absolute-URI; RFC 3986 §3.1 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://".
        var colon = target.IndexOf("://"u8);
        if (colon <= 0 || !char.IsAsciiLetter((char)target[0]))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidTarget);
        }

        foreach (var b in target[..colon])
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'-' or (byte)'.'))
            {
                HttpRejection.Throw(HttpRejectReason.InvalidTarget);
            }
        }

        return RequestTargetForm.Absolute;
    }

    private static bool IsAuthority(ReadOnlySpan<byte> target)
    {
        var colon = target.LastIndexOf((byte)':');
        if (colon <= 0 || colon == target.Length - 1 || target.ContainsAnyExcept(s_hostBytes) || target.Contains((byte)'@'))
        {
            return false;
        }

        var port = target[(colon + 1)..];
        return Utf8Parser.TryParse(port, out int value, out var used) && used == port.Length && value is > 0 and <= 65535;
    }

    /// <summary>Parses the field lines after the start line (RFC 9112 §5); <paramref name="end"/> is the offset just past the empty line.</summary>
    internal static HttpHeaders ParseFieldLines(byte[] head, int start, out int end) => ParseFieldLines(head, start, head.Length, null, out end);

    /// <summary>The field lines in <paramref name="head"/>[<paramref name="start"/>..<paramref name="limit"/>), added to <paramref name="into"/> (a new list when null).</summary>
    internal static HttpHeaders ParseFieldLines(byte[] head, int start, int limit, HttpHeaders? into, out int end)
    {
        var headers = into ?? new HttpHeaders(CountLines(head.AsSpan(start, limit - start)) + 2); // exact size, room for Via and Host
        var offset = start;
        while (true)
        {
            var lf = head.AsSpan(offset, limit - offset).IndexOf((byte)'\n');
            if (lf < 0)
            {
                HttpRejection.Throw(HttpRejectReason.InvalidHeader); // the scan guarantees an empty line
            }

            var line = TrimCrLf(head.AsSpan(offset, lf + 1), HttpRejectReason.InvalidHeader);
            if (line.IsEmpty)
            {
                end = offset + lf + 1;
                return headers;
            }

            var colon = CheckFieldLine(line, out var valueStart, out var valueLength);
            headers.Add(head.AsMemory(offset, colon), head.AsMemory(offset + valueStart, valueLength));
            offset += lf + 1;
        }
    }

    // One field line without its CRLF, checked; returns the colon's index, the value (without OWS) is line[valueStart..+valueLength].
    // Inlined: it runs for every field line of every head, as the loop body it was.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static int CheckFieldLine(ReadOnlySpan<byte> line, out int valueStart, out int valueLength)
    {
        // RFC 9112 §5.2: obs-fold (a line starting with SP/HTAB) is rejected with 400.
        if (line[0] is (byte)' ' or (byte)'\t')
        {
            HttpRejection.Throw(HttpRejectReason.ObsoleteLineFolding);
        }

        var colon = line.IndexOf((byte)':');
        if (colon <= 0)
        {
            HttpRejection.Throw(HttpRejectReason.InvalidHeader);
        }

        var name = line[..colon];
        if (name[^1] is (byte)' ' or (byte)'\t')
        {
            // RFC 9112 §5.1: no whitespace is allowed between the field name and colon; 400.
            HttpRejection.Throw(HttpRejectReason.WhitespaceBeforeColon);
        }

        if (name.ContainsAnyExcept(s_tchar))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidHeader);
        }

        // RFC 9112 §5.1: field-line = field-name ":" OWS field-value OWS
        var value = line[(colon + 1)..];
        var leading = value.Length - value.TrimStart(" \t"u8).Length;
        value = value.Trim(" \t"u8);
        if (value.ContainsAnyExcept(s_fieldValue))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidHeader);
        }

        valueStart = colon + 1 + leading;
        valueLength = value.Length;
        return colon;
    }

    private static int CountLines(ReadOnlySpan<byte> section) => Math.Max(0, section.Count((byte)'\n') - 1);

    // RFC 9112 §3.2: an HTTP/1.1 request without Host, with several Host lines or an invalid Host value -> 400.
    private static void ValidateHost(HttpRequest request)
    {
        var first = request.Headers.IndexOf(HeaderNames.Host);
        if (first < 0)
        {
            if (request.Version == HttpProtocolVersion.Http11)
            {
                HttpRejection.Throw(HttpRejectReason.InvalidHost);
            }

            return;
        }

        if (request.Headers.IndexOf(HeaderNames.Host, first + 1) >= 0 || request.Headers[first].Value.Span.ContainsAnyExcept(s_hostBytes))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidHost);
        }
    }

    private static (BodyFraming, long) RequestFraming(HttpProtocolVersion version, HttpHeaders headers)
    {
        var contentLength = ParseContentLength(headers);
        if (headers.Contains(HeaderNames.TransferEncoding))
        {
            if (version == HttpProtocolVersion.Http10)
            {
                HttpRejection.Throw(HttpRejectReason.TransferEncodingInHttp10); // RFC 9112 §6.1
            }

            if (contentLength >= 0)
            {
                HttpRejection.Throw(HttpRejectReason.ContentLengthWithTransferEncoding); // RFC 9112 §6.3 (3)
            }

            ValidateChunkedOnly(headers);
            return (BodyFraming.Chunked, -1);
        }

        // RFC 9112 §6.3 (6): neither field: the request has no body.
        return contentLength >= 0 ? (BodyFraming.ContentLength, contentLength) : (BodyFraming.None, 0);
    }

    private static (BodyFraming, long) ResponseFraming(HttpProtocolVersion version, int status, string requestMethod, HttpHeaders headers)
    {
        // RFC 9112 §6.3 (1): responses to HEAD, and 1xx, 204, 304 have no body whatever their fields say.
        if (status is < 200 or 204 or 304 || requestMethod == HttpMethods.Head)
        {
            return (BodyFraming.None, 0);
        }

        if (headers.Contains(HeaderNames.TransferEncoding))
        {
            if (version == HttpProtocolVersion.Http10)
            {
                HttpRejection.Throw(HttpRejectReason.TransferEncodingInHttp10); // RFC 9112 §6.1: framing is faulty
            }

            ValidateChunkedOnly(headers);

            // RFC 9112 §6.3 (3): Transfer-Encoding overrides Content-Length; drop it so it is never forwarded.
            headers.Remove(HeaderNames.ContentLength);
            return (BodyFraming.Chunked, -1);
        }

        // RFC 9112 §6.3 (5): an invalid Content-Length in a response is unrecoverable (the proxy answers 502).
        var contentLength = ParseContentLength(headers);
        return contentLength >= 0 ? (BodyFraming.ContentLength, contentLength) : (BodyFraming.UntilClose, -1);
    }

    // RFC 9112 §6.1, §7: chunked must be the final coding and applied once; other codings are not implemented (501).
    private static void ValidateChunkedOnly(HttpHeaders headers)
    {
        var codings = 0;
        var chunkedSeen = false;
        var lastIsChunked = false;
        for (var i = headers.IndexOf(HeaderNames.TransferEncoding); i >= 0; i = headers.IndexOf(HeaderNames.TransferEncoding, i + 1))
        {
            var list = new HttpListEnumerator(headers[i].Value.Span);
            while (list.MoveNext())
            {
                codings++;
                lastIsChunked = System.Text.Ascii.EqualsIgnoreCase(list.Current, "chunked"u8);
                if (lastIsChunked && chunkedSeen)
                {
                    HttpRejection.Throw(HttpRejectReason.ChunkedNotFinal);
                }

                chunkedSeen |= lastIsChunked;
            }
        }

        if (!lastIsChunked)
        {
            HttpRejection.Throw(HttpRejectReason.ChunkedNotFinal);
        }

        if (codings > 1)
        {
            HttpRejection.Throw(HttpRejectReason.UnsupportedTransferEncoding);
        }
    }

    /// <summary>
    /// RFC 9110 §8.6: Content-Length = 1*DIGIT. Several lines or a list of identical values are one
    /// value; differing values are an error. Returns -1 when absent.
    /// </summary>
    private static long ParseContentLength(HttpHeaders headers)
    {
        long result = -1;
        for (var i = headers.IndexOf(HeaderNames.ContentLength); i >= 0; i = headers.IndexOf(HeaderNames.ContentLength, i + 1))
        {
            var value = headers[i].Value.Span;
            if (value.IsEmpty)
            {
                HttpRejection.Throw(HttpRejectReason.InvalidContentLength);
            }

            foreach (var range in value.Split((byte)','))
            {
                var member = value[range].Trim(" \t"u8);
                if (member.IsEmpty || member.Length > 18 || member.ContainsAnyExceptInRange((byte)'0', (byte)'9'))
                {
                    HttpRejection.Throw(HttpRejectReason.InvalidContentLength);
                }

                long parsed = 0;
                foreach (var digit in member)
                {
                    parsed = (parsed * 10) + (digit - '0');
                }

                if (result >= 0 && parsed != result)
                {
                    HttpRejection.Throw(HttpRejectReason.InvalidContentLength);
                }

                result = parsed;
            }
        }

        return result;
    }

    /// <summary>RFC 9112 §9.3: whether the connection persists after this message.</summary>
    internal static bool IsPersistent(HttpProtocolVersion version, HttpHeaders headers) =>
        !headers.ContainsToken(HeaderNames.Connection, "close"u8)
        && (version == HttpProtocolVersion.Http11 || headers.ContainsToken(HeaderNames.Connection, "keep-alive"u8));

    // ---- chunked (RFC 9112 §7.1) ------------------------------------------------------------

    /// <summary>
    /// Parses a chunk-size line at the start of <paramref name="buffer"/>:
    /// <c>chunk-size [ chunk-ext ] CRLF</c>. Extensions are checked for bytes and ignored (§7.1.1).
    /// </summary>
    internal static bool TryParseChunkSize(in ReadOnlySequence<byte> buffer, int maxLine, out long size, out long consumed)
    {
        size = 0;
        consumed = 0;
        long limit = maxLine + 2L;
        var window = buffer.Length > limit ? buffer.Slice(0, limit) : buffer;
        var reader = new SequenceReader<byte>(window);
        if (!reader.TryReadTo(out ReadOnlySequence<byte> lineSequence, (byte)'\n'))
        {
            if (window.Length >= limit)
            {
                HttpRejection.Throw(HttpRejectReason.InvalidChunk);
            }

            return false;
        }

        Span<byte> copy = stackalloc byte[256];
        scoped ReadOnlySpan<byte> line;
        if (lineSequence.IsSingleSegment)
        {
            line = lineSequence.FirstSpan;
        }
        else if (lineSequence.Length <= copy.Length)
        {
            lineSequence.CopyTo(copy);
            line = copy[..(int)lineSequence.Length];
        }
        else
        {
            line = lineSequence.ToArray();
        }

        if (line.IsEmpty || line[^1] != '\r')
        {
            HttpRejection.Throw(HttpRejectReason.InvalidChunk);
        }

        line = line[..^1];
        var digits = line.IndexOfAnyExcept(s_hexDigits);
        if (digits < 0)
        {
            digits = line.Length;
        }

        // chunk-size = 1*HEXDIG; more than 15 digits cannot be a real size and would overflow.
        if (digits is 0 or > 15)
        {
            HttpRejection.Throw(HttpRejectReason.InvalidChunk);
        }

        foreach (var h in line[..digits])
        {
            size = (size << 4) | (long)HexValue(h);
        }

        // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ): ignored, but it must start with ";" and hold no CTL.
        var ext = line[digits..].TrimStart(" \t"u8);
        if (!ext.IsEmpty && (ext[0] != ';' || ext.ContainsAnyExcept(s_fieldValue)))
        {
            HttpRejection.Throw(HttpRejectReason.InvalidChunk);
        }

        consumed = reader.Consumed;
        return true;
    }

    private static int HexValue(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;

    /// <summary>
    /// Parses the trailer section after the last chunk (RFC 9112 §7.1.2), bounded like a header
    /// section; <paramref name="trailers"/> holds its fields (null when the section is empty).
    /// </summary>
    internal static bool TryParseTrailers(in ReadOnlySequence<byte> buffer, HttpLimits limits, out long consumed, out HttpHeaders? trailers)
    {
        consumed = 0;
        trailers = null;
        long next = 0;
        var lines = 0;
        if (!TryScanFieldLines(buffer, 0, limits, ref next, ref lines, out var end))
        {
            return false;
        }

        if (end > 2)
        {
            trailers = ParseFieldLines(buffer.Slice(0, end).ToArray(), 0, out _);
        }
        else if (end != 2 || buffer.FirstSpan[0] != '\r')
        {
            HttpRejection.Throw(HttpRejectReason.InvalidChunk);
        }

        consumed = end;
        return true;
    }

    /// <summary>
    /// The trailer section at the start of <paramref name="section"/> (RFC 9112 §7.1.2) found and checked where it lies, as
    /// <see cref="TryParseTrailers"/> checks it (bounded by <see cref="HttpLimits.MaxHeaderBytes"/> and
    /// <see cref="HttpLimits.MaxHeaderCount"/>, each field line's syntax, the same rejections), without a field list: false while
    /// incomplete (call again with more bytes; the scan resumes at <paramref name="nextLine"/>, <paramref name="lines"/>, which start
    /// at 0). On true, <paramref name="sectionLength"/> is the section's length with its empty line. Reads only.
    /// </summary>
    internal static bool TryScanTrailers(ReadOnlySpan<byte> section, HttpLimits limits, ref long nextLine, ref int lines, out int sectionLength)
    {
        sectionLength = 0;
        if (!TryScanFieldLines(section, 0, limits, ref nextLine, ref lines, out var end))
        {
            return false;
        }

        sectionLength = (int)end;
        if (end <= 2)
        {
            if (end != 2 || section[0] != '\r')
            {
                HttpRejection.Throw(HttpRejectReason.InvalidChunk);
            }

            return true;
        }

        var offset = 0;
        while (true)
        {
            var lf = section[offset..sectionLength].IndexOf((byte)'\n');
            var line = TrimCrLf(section.Slice(offset, lf + 1), HttpRejectReason.InvalidHeader);
            if (line.IsEmpty)
            {
                return true;
            }

            CheckFieldLine(line, out _, out _);
            offset += lf + 1;
        }
    }

    private static byte[] FieldValueBytes()
    {
        var bytes = new List<byte> { (byte)'\t' };
        bytes.AddRange(Range(0x20, 0x7E));
        bytes.AddRange(Range(0x80, 0xFF));
        return [.. bytes];
    }

    private static byte[] Range(int from, int to)
    {
        var bytes = new byte[to - from + 1];
        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)(from + i);
        }

        return bytes;
    }
}
