using System.Buffers;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Rama.Admin.Admin;

/// <summary>
/// The HTTP side of the admin endpoint, on the same port as <c>pbm</c>: the server tells them apart by the first byte
/// (a pbm request line is JSON and starts with <c>{</c>; an HTTP request line starts with a method's letter). One request
/// per connection (<c>Connection: close</c>), a head of at most <see cref="MaxHeadBytes"/> within the admin request
/// timeout, GET and HEAD only:
/// <list type="bullet">
/// <item><c>/healthz</c>: 200 while the process serves (liveness); no token.</item>
/// <item><c>/readyz</c>: 200 when every <see cref="IReadinessCheck"/> passes, else 503 with the first reason; no token.</item>
/// <item><c>/metrics</c>: the Prometheus text exposition; with an admin token, only with <c>Authorization: Bearer &lt;token&gt;</c> (401 otherwise).</item>
/// </list>
/// </summary>
internal sealed partial class AdminHttp(IReadOnlyList<IReadinessCheck> readiness, RequestDelegate? metrics, IServiceProvider? services,
    Func<string?, bool> tokenMatches, ILogger logger)
{
    /// <summary>Longest request head read (request line and headers): an operator's probe or scraper sends a few hundred bytes.</summary>
    internal const int MaxHeadBytes = 8192;

    /// <summary>How long a readiness check may take before the endpoint answers 503.</summary>
    internal static readonly TimeSpan ReadinessTimeout = TimeSpan.FromSeconds(2);

    /// <summary>True when <paramref name="first"/> (the connection's first byte) starts an HTTP request line rather than a pbm request.</summary>
    public static bool IsHttp(byte first) => first is >= (byte)'A' and <= (byte)'Z';

    /// <summary>Reads one request from <paramref name="stream"/> and answers it; the caller closes the connection.</summary>
    public async Task ServeAsync(Stream stream, string peer, CancellationToken timeout, CancellationToken stopping)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxHeadBytes);
        try
        {
            var (head, problem) = await ReadHeadAsync(stream, buffer, timeout).ConfigureAwait(false);
            if (head is null)
            {
                if (problem is not null)
                {
                    LogBadHttp(logger, peer, problem.Value.Reason);
                    await WriteAsync(stream, problem.Value.Status, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(problem.Value.Reason + "\n"), null, head: false, stopping).ConfigureAwait(false);
                }

                return;
            }

            var request = head.Value;
            var isHead = request.Method == "HEAD";
            if (request.Method is not ("GET" or "HEAD"))
            {
                await WriteTextAsync(stream, 405, "only GET and HEAD are served here", "Allow: GET, HEAD\r\n", false, stopping).ConfigureAwait(false);
                return;
            }

            switch (request.Path)
            {
                case "/healthz":
                    await WriteTextAsync(stream, 200, "ok", null, isHead, stopping).ConfigureAwait(false);
                    return;
                case "/readyz":
                    var reason = await NotReadyReasonAsync(stopping).ConfigureAwait(false);
                    await WriteTextAsync(stream, reason is null ? 200 : 503, reason is null ? "ready" : "not ready: " + reason, null, isHead, stopping).ConfigureAwait(false);
                    return;
                case "/metrics":
                    if (!tokenMatches(request.BearerToken))
                    {
                        LogMetricsRefused(logger, peer);
                        await WriteTextAsync(stream, 401, "the admin token is required: Authorization: Bearer <token>",
                            "WWW-Authenticate: Bearer realm=\"rama-admin\"\r\n", isHead, stopping).ConfigureAwait(false);
                        return;
                    }

                    await ScrapeAsync(stream, request, isHead, stopping).ConfigureAwait(false);
                    return;
                default:
                    await WriteTextAsync(stream, 404, "not found: the admin endpoint serves /healthz, /readyz and /metrics over HTTP (and pbm)", null, isHead, stopping).ConfigureAwait(false);
                    return;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task<string?> NotReadyReasonAsync(CancellationToken stopping)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        timeout.CancelAfter(ReadinessTimeout);
        foreach (var check in readiness)
        {
            try
            {
                if (await check.NotReadyReasonAsync(timeout.Token).ConfigureAwait(false) is { } reason)
                {
                    return reason;
                }
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                return $"a readiness check did not answer within {ReadinessTimeout.TotalSeconds:0} s";
            }
        }

        return null;
    }

    private async Task ScrapeAsync(Stream stream, HttpHead request, bool isHead, CancellationToken stopping)
    {
        if (metrics is null)
        {
            await WriteTextAsync(stream, 404, "metrics are not exported by this process", null, isHead, stopping).ConfigureAwait(false);
            return;
        }

        // The OpenTelemetry Prometheus exporter's middleware, run on an HttpContext of its own: it negotiates the format
        // from Accept, collects (with its short response cache) and writes the exposition to the body.
        using var body = new MemoryStream();
        var context = new DefaultHttpContext { RequestServices = services! };
        context.Request.Method = request.Method;
        context.Request.Path = request.Path;
        if (request.Accept is { } accept)
        {
            context.Request.Headers.Accept = accept;
        }

        context.Response.Body = body;
        await metrics(context).ConfigureAwait(false);
        var extra = context.Response.Headers.LastModified is { Count: > 0 } modified ? $"Last-Modified: {modified}\r\n" : null;
        await WriteAsync(stream, context.Response.StatusCode, context.Response.ContentType ?? "text/plain; charset=utf-8; version=0.0.4",
            body.GetBuffer().AsMemory(0, (int)body.Length), extra, isHead, stopping).ConfigureAwait(false);
    }

    private static Task WriteTextAsync(Stream stream, int status, string text, string? headers, bool head, CancellationToken cancellationToken) =>
        WriteAsync(stream, status, "text/plain; charset=utf-8", Encoding.UTF8.GetBytes(text + "\n"), headers, head, cancellationToken);

    private static async Task WriteAsync(Stream stream, int status, string contentType, ReadOnlyMemory<byte> body, string? headers, bool head, CancellationToken cancellationToken)
    {
        var text = $"HTTP/1.1 {status} {Reason(status)}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nCache-Control: no-store\r\n{headers}Connection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(text), cancellationToken).ConfigureAwait(false);
        if (!head)
        {
            await stream.WriteAsync(body, cancellationToken).ConfigureAwait(false);
        }

        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string Reason(int status) => status switch
    {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    };

    /// <summary>The parts of a request head the endpoint uses.</summary>
    internal readonly record struct HttpHead(string Method, string Path, string? BearerToken, string? Accept);

    /// <summary>Reads until the blank line that ends the head (RFC 9112 §2.1), at most <see cref="MaxHeadBytes"/>, and parses it.</summary>
    private static async Task<(HttpHead? Head, (int Status, string Reason)? Problem)> ReadHeadAsync(Stream stream, byte[] buffer, CancellationToken timeout)
    {
        var filled = 0;
        while (true)
        {
            int read;
            try
            {
                read = await stream.ReadAsync(buffer.AsMemory(filled, MaxHeadBytes - filled), timeout).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                return (null, (408, "no complete request head in time"));
            }

            if (read == 0)
            {
                return (null, filled == 0 ? null : (400, "the request head ended before its blank line"));
            }

            var searchFrom = Math.Max(0, filled - 3);
            filled += read;
            var end = buffer.AsSpan(searchFrom, filled - searchFrom).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                return Parse(buffer.AsSpan(0, searchFrom + end));
            }

            if (filled == MaxHeadBytes)
            {
                return (null, (431, $"the request head is longer than {MaxHeadBytes} bytes"));
            }
        }
    }

    /// <summary>Parses a request head (without its final blank line).</summary>
    internal static (HttpHead? Head, (int Status, string Reason)? Problem) Parse(ReadOnlySpan<byte> head)
    {
        var lineEnd = head.IndexOf("\r\n"u8);
        var requestLine = lineEnd < 0 ? head : head[..lineEnd];
        // RFC 9112 §3: method SP request-target SP HTTP-version.
        var firstSpace = requestLine.IndexOf((byte)' ');
        var lastSpace = requestLine.LastIndexOf((byte)' ');
        if (firstSpace <= 0 || lastSpace <= firstSpace + 1 || requestLine[(firstSpace + 1)..lastSpace].Contains((byte)' '))
        {
            return (null, (400, "the request line is not 'METHOD /path HTTP/1.1'"));
        }

        var version = requestLine[(lastSpace + 1)..];
        if (!version.SequenceEqual("HTTP/1.1"u8) && !version.SequenceEqual("HTTP/1.0"u8))
        {
            return (null, (505, "only HTTP/1.0 and HTTP/1.1 are served here"));
        }

        var method = Encoding.ASCII.GetString(requestLine[..firstSpace]);
        var target = requestLine[(firstSpace + 1)..lastSpace];
        var query = target.IndexOf((byte)'?');
        var path = Encoding.ASCII.GetString(query < 0 ? target : target[..query]);
        string? bearer = null;
        string? accept = null;
        var rest = lineEnd < 0 ? [] : head[(lineEnd + 2)..];
        while (!rest.IsEmpty)
        {
            var next = rest.IndexOf("\r\n"u8);
            var line = next < 0 ? rest : rest[..next];
            rest = next < 0 ? [] : rest[(next + 2)..];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                return (null, (400, "a header line has no name"));
            }

            var name = line[..colon];
            var value = line[(colon + 1)..].Trim((byte)' ').Trim((byte)'\t');
            if (Ascii.EqualsIgnoreCase(name, "authorization"u8) && value.Length > 7 && Ascii.EqualsIgnoreCase(value[..7], "bearer "u8))
            {
                bearer = Encoding.UTF8.GetString(value[7..].Trim((byte)' '));
            }
            else if (Ascii.EqualsIgnoreCase(name, "accept"u8))
            {
                accept = Encoding.ASCII.GetString(value);
            }
        }

        return (new HttpHead(method, path, bearer, accept), null);
    }

    [LoggerMessage(EventId = 9110, Level = LogLevel.Debug, Message = "admin HTTP request from {Peer} refused: {Problem}")]
    private static partial void LogBadHttp(ILogger logger, string peer, string problem);

    [LoggerMessage(EventId = 9111, Level = LogLevel.Warning, Message = "admin /metrics request from {Peer} refused: bad or missing bearer token")]
    private static partial void LogMetricsRefused(ILogger logger, string peer);
}
