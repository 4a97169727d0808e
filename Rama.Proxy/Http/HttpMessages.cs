using System.IO.Pipelines;
using Rama.Proxy.Core;

namespace Rama.Proxy.Http;

/// <summary>HTTP versions the codecs speak (RFC 9112 §2.3; RFC 9113 for HTTP/2).</summary>
public enum HttpProtocolVersion
{
    Http10,
    Http11,
    /// <summary>HTTP/2 (RFC 9113): set by the HTTP/2 server on the requests it maps from streams.</summary>
    Http2,
}

/// <summary>RFC 9112 §3.2: the four forms of request-target.</summary>
public enum RequestTargetForm
{
    /// <summary><c>/path?query</c> (§3.2.1): to an origin server.</summary>
    Origin,
    /// <summary><c>http://host:port/path</c> (§3.2.2): to a proxy.</summary>
    Absolute,
    /// <summary><c>host:port</c> (§3.2.3): CONNECT only.</summary>
    Authority,
    /// <summary><c>*</c> (§3.2.4): server-wide OPTIONS only.</summary>
    Asterisk,
}

/// <summary>How a message body is delimited on the wire (RFC 9112 §6.3).</summary>
public enum BodyFraming
{
    /// <summary>No body.</summary>
    None,
    /// <summary>Exactly Content-Length bytes.</summary>
    ContentLength,
    /// <summary>Chunked transfer coding (RFC 9112 §7.1).</summary>
    Chunked,
    /// <summary>Until the connection closes (responses only, §6.3 (7)).</summary>
    UntilClose,
}

/// <summary>
/// A request as a service sees it: the head as received (method, target and its form, version, the
/// ordered raw header fields) and a streamed body. Shared by the HTTP/1.1 server, and meant for the
/// reverse proxy, HTTP/2 and MITM to reuse.
/// </summary>
public sealed class HttpRequest
{
    private readonly Extensions? _parentExtensions;
    private Extensions? _extensions;

    public HttpRequest(string method, string target, RequestTargetForm targetForm, HttpProtocolVersion version, HttpHeaders headers, Extensions? parentExtensions = null)
    {
        Method = method;
        Target = target;
        TargetForm = targetForm;
        Version = version;
        Headers = headers;
        _parentExtensions = parentExtensions;
    }

    /// <summary>The method token as received (RFC 9110 §9.1: case-sensitive). Common methods are interned.</summary>
    public string Method { get; set; }

    /// <summary>The request-target as received.</summary>
    public string Target { get; set; }

    public RequestTargetForm TargetForm { get; set; }

    public HttpProtocolVersion Version { get; set; }

    public HttpHeaders Headers { get; }

    /// <summary>The body, streamed; empty when there is none. Do not complete it: the server owns it.</summary>
    public PipeReader Body { get; set; } = EmptyBody.Instance;

    /// <summary>
    /// Trailer fields (RFC 9110 §6.5) received after the body: set before <see cref="Body"/> completes, so a reader
    /// that read the body to its end sees them; null when there were none. HTTP/2 only for now.
    /// </summary>
    public HttpHeaders? Trailers { get; set; }

    /// <summary>The client connection the request arrived on (set by the HTTP server; null for a request built in code).</summary>
    public Net.ConnectionContext? Connection { get; internal set; }

    /// <summary>How the body is framed on the wire.</summary>
    public BodyFraming BodyFraming { get; set; }

    /// <summary>Body length when <see cref="BodyFraming"/> is <see cref="BodyFraming.ContentLength"/>.</summary>
    public long ContentLength { get; set; }

    /// <summary>Per-request values (the proven <see cref="ProxyUser"/>, ...); reads fall back to the connection's bag. Created on first use.</summary>
    public Extensions Extensions => _extensions ??= _parentExtensions is null ? new Extensions() : new Extensions(_parentExtensions);

    /// <summary>Makes this object the next request of the same connection (the in-place parser's reuse): no field of the last one survives.</summary>
    internal void Reset(string method, string target, RequestTargetForm targetForm, HttpProtocolVersion version)
    {
        Method = method;
        Target = target;
        TargetForm = targetForm;
        Version = version;
        Headers.Clear();
        Body = EmptyBody.Instance;
        Trailers = null;
        Connection = null;
        BodyFraming = BodyFraming.None;
        ContentLength = 0;
        _extensions = null;
    }

    public bool IsHead => ReferenceEquals(Method, HttpMethods.Head) || Method == HttpMethods.Head;

    public bool IsConnect => ReferenceEquals(Method, HttpMethods.Connect) || Method == HttpMethods.Connect;

    public override string ToString() => $"{Method} {Target}";
}

/// <summary>
/// A response a service returns: status, reason, ordered header fields and a streamed body. The
/// server writes the framing headers itself (Content-Length / Transfer-Encoding / Connection);
/// see <see cref="BodyLength"/>.
/// </summary>
public sealed class HttpResponse(int status, HttpHeaders? headers = null)
{
    public int Status { get; set; } = status;

    /// <summary>The reason phrase; null writes the standard phrase of <see cref="Status"/>.</summary>
    public string? Reason { get; set; }

    public HttpHeaders Headers { get; } = headers ?? new HttpHeaders();

    /// <summary>
    /// The body, streamed; the server reads it to the end and completes it (a reader that throws
    /// mid-body aborts the client connection: a status can no longer be sent).
    /// </summary>
    public PipeReader Body { get; set; } = EmptyBody.Instance;

    /// <summary>
    /// Trailer fields to send after the body (gRPC's grpc-status): the server reads this once <see cref="Body"/> has
    /// completed, so a producer may set it up to completing the body's writer; null or empty sends none.
    /// The HTTP/2 client sets it on a response before completing the body. HTTP/2 only for now.
    /// </summary>
    public HttpHeaders? Trailers { get; set; }

    /// <summary>Length of <see cref="Body"/> when known (sent as Content-Length); null streams it chunked (HTTP/1.0: until close).</summary>
    public long? BodyLength { get; set; }

    /// <summary>
    /// Set on a 2xx answer to CONNECT (or a 101): after the head is flushed the server hands the
    /// client's transport to this callback (bytes the client pipelined after the head are still
    /// in its input) and closes the connection when it returns. A callback whose task is a
    /// <c>Task&lt;RelayResult&gt;</c> (a tunnel) reports the bytes it moved: the access entry of the
    /// request, written when the callback ends, adds them.
    /// </summary>
    public Func<IDuplexPipe, CancellationToken, Task>? OnUpgrade { get; set; }

    /// <summary>Ask the server to close the connection after this response.</summary>
    public bool CloseConnection { get; set; }

    /// <summary>A response with a short text body (errors, 407, ...).</summary>
    public static HttpResponse Text(int status, string text, bool close = false)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text + "\n");
        var response = new HttpResponse(status) { CloseConnection = close, BodyLength = bytes.Length };
        response.Headers.Add("Content-Type"u8.ToArray(), "text/plain; charset=utf-8"u8.ToArray());
        response.Body = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(bytes));
        return response;
    }
}

/// <summary>Well-known method tokens, interned so that the parser allocates no string for them.</summary>
public static class HttpMethods
{
    public const string Get = "GET";
    public const string Head = "HEAD";
    public const string Post = "POST";
    public const string Put = "PUT";
    public const string Delete = "DELETE";
    public const string Connect = "CONNECT";
    public const string Options = "OPTIONS";
    public const string Trace = "TRACE";
    public const string Patch = "PATCH";

    /// <summary>RFC 9110 §9.2.2: idempotent methods (safe to retry when nothing was sent).</summary>
    public static bool IsIdempotent(string method) => method is Get or Head or Options or Trace or Put or Delete;

    internal static string Intern(ReadOnlySpan<byte> token) => token switch
    {
        _ when token.SequenceEqual("GET"u8) => Get,
        _ when token.SequenceEqual("HEAD"u8) => Head,
        _ when token.SequenceEqual("POST"u8) => Post,
        _ when token.SequenceEqual("PUT"u8) => Put,
        _ when token.SequenceEqual("DELETE"u8) => Delete,
        _ when token.SequenceEqual("CONNECT"u8) => Connect,
        _ when token.SequenceEqual("OPTIONS"u8) => Options,
        _ when token.SequenceEqual("TRACE"u8) => Trace,
        _ when token.SequenceEqual("PATCH"u8) => Patch,
        _ => System.Text.Encoding.ASCII.GetString(token),
    };
}

/// <summary>An empty, completed body.</summary>
internal sealed class EmptyBody : PipeReader
{
    public static readonly EmptyBody Instance = new();

    public override bool TryRead(out ReadResult result)
    {
        result = new ReadResult(default, isCanceled: false, isCompleted: true);
        return true;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) =>
        new(new ReadResult(default, isCanceled: false, isCompleted: true));

    public override void AdvanceTo(SequencePosition consumed)
    {
    }

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
    }

    public override void CancelPendingRead()
    {
    }

    public override void Complete(Exception? exception = null)
    {
    }
}
