using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Rama.Proxy.Http;

/// <summary>Why a message was refused. Each reason maps to the HTTP status the server answers with (<see cref="HttpRejection.StatusCode"/>).</summary>
public enum HttpRejectReason
{
    /// <summary>RFC 9112 §3: the request line is not <c>method SP request-target SP HTTP-version CRLF</c>. 400.</summary>
    InvalidRequestLine,
    /// <summary>RFC 9110 §9.1: the method is not a token. 400.</summary>
    InvalidMethod,
    /// <summary>RFC 9112 §3.2: the request-target is not in a form allowed for the method. 400.</summary>
    InvalidTarget,
    /// <summary>The request line is longer than <see cref="HttpLimits.MaxRequestLineBytes"/>. 414.</summary>
    RequestLineTooLong,
    /// <summary>RFC 9112 §2.3: not <c>HTTP/DIGIT.DIGIT</c>. 400.</summary>
    InvalidVersion,
    /// <summary>A well-formed version other than HTTP/1.0 or HTTP/1.1. 505.</summary>
    UnsupportedVersion,
    /// <summary>RFC 9112 §5, RFC 9110 §5.5: a field line that is not <c>field-name ":" OWS field-value OWS</c>. 400.</summary>
    InvalidHeader,
    /// <summary>RFC 9112 §5.1: whitespace between the field name and the colon. 400.</summary>
    WhitespaceBeforeColon,
    /// <summary>RFC 9112 §5.2: obsolete line folding. 400.</summary>
    ObsoleteLineFolding,
    /// <summary>The header section is larger than <see cref="HttpLimits.MaxHeaderBytes"/>. 431.</summary>
    HeadersTooLarge,
    /// <summary>More field lines than <see cref="HttpLimits.MaxHeaderCount"/>. 431.</summary>
    TooManyHeaders,
    /// <summary>The head did not arrive within <see cref="HttpLimits.HeaderTimeout"/>. 408.</summary>
    HeaderTimeout,
    /// <summary>RFC 9112 §3.2: an HTTP/1.1 request without exactly one valid Host. 400.</summary>
    InvalidHost,
    /// <summary>RFC 9110 §8.6: Content-Length is not digits, or several differing values. 400.</summary>
    InvalidContentLength,
    /// <summary>RFC 9112 §6.3 (3): a request with both Content-Length and Transfer-Encoding. 400.</summary>
    ContentLengthWithTransferEncoding,
    /// <summary>RFC 9112 §6.3 (4): Transfer-Encoding whose final coding is not chunked, or chunked twice. 400.</summary>
    ChunkedNotFinal,
    /// <summary>RFC 9112 §6.1: a transfer coding other than chunked (not implemented). 501.</summary>
    UnsupportedTransferEncoding,
    /// <summary>RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message (framing is faulty). 400.</summary>
    TransferEncodingInHttp10,
    /// <summary>RFC 9112 §7.1: bad chunk-size line, missing CRLF after chunk data, or bad trailer. 400.</summary>
    InvalidChunk,
    /// <summary>The peer closed before the end of the body it announced. 400.</summary>
    UnexpectedEndOfBody,
    /// <summary>RFC 9112 §4: a bad status line (upstream side). 502.</summary>
    InvalidStatusLine,
    /// <summary>RFC 9110 §15.5.14: a request body larger than <see cref="HttpLimits.MaxRequestBodySize"/>. 413.</summary>
    BodyTooLarge,
}

/// <summary>A protocol violation by the peer: the one exception type of the codec.</summary>
public sealed class HttpCodecException(HttpRejectReason reason, string message) : Exception(message)
{
    public HttpRejectReason Reason { get; } = reason;

    /// <summary>The status a server answers with.</summary>
    public int StatusCode => HttpRejection.StatusCode(Reason);
}

/// <summary>Maps rejection reasons to statuses; throws them without inflating callers (a throw helper).</summary>
public static class HttpRejection
{
    public static int StatusCode(HttpRejectReason reason) => reason switch
    {
        HttpRejectReason.RequestLineTooLong => 414,
        HttpRejectReason.HeadersTooLarge or HttpRejectReason.TooManyHeaders => 431,
        HttpRejectReason.HeaderTimeout => 408,
        HttpRejectReason.UnsupportedVersion => 505,
        HttpRejectReason.UnsupportedTransferEncoding => 501,
        HttpRejectReason.InvalidStatusLine => 502,
        HttpRejectReason.BodyTooLarge => 413,
        _ => 400,
    };

    [DoesNotReturn]
    [StackTraceHidden]
    internal static void Throw(HttpRejectReason reason) => throw new HttpCodecException(reason, Describe(reason));

    [DoesNotReturn]
    [StackTraceHidden]
    internal static T Throw<T>(HttpRejectReason reason) => throw new HttpCodecException(reason, Describe(reason));

    /// <summary>The short text body of an error answer.</summary>
    public static string Describe(HttpRejectReason reason) => reason switch
    {
        HttpRejectReason.InvalidRequestLine => "malformed request line",
        HttpRejectReason.InvalidMethod => "invalid method",
        HttpRejectReason.InvalidTarget => "invalid request target",
        HttpRejectReason.RequestLineTooLong => "request line too long",
        HttpRejectReason.InvalidVersion => "invalid HTTP version",
        HttpRejectReason.UnsupportedVersion => "HTTP version not supported",
        HttpRejectReason.InvalidHeader => "malformed header field",
        HttpRejectReason.WhitespaceBeforeColon => "whitespace between header name and colon",
        HttpRejectReason.ObsoleteLineFolding => "obsolete line folding",
        HttpRejectReason.HeadersTooLarge => "header section too large",
        HttpRejectReason.TooManyHeaders => "too many header fields",
        HttpRejectReason.HeaderTimeout => "request head not received in time",
        HttpRejectReason.InvalidHost => "missing or invalid Host",
        HttpRejectReason.InvalidContentLength => "invalid Content-Length",
        HttpRejectReason.ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
        HttpRejectReason.ChunkedNotFinal => "chunked is not the final transfer coding",
        HttpRejectReason.UnsupportedTransferEncoding => "transfer coding not implemented",
        HttpRejectReason.TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
        HttpRejectReason.InvalidChunk => "malformed chunked body",
        HttpRejectReason.UnexpectedEndOfBody => "connection closed before the end of the body",
        HttpRejectReason.InvalidStatusLine => "malformed status line",
        HttpRejectReason.BodyTooLarge => "request body too large",
        _ => reason.ToString(),
    };
}
