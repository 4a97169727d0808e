namespace Rama.Proxy.Http;

/// <summary>
/// Limits of the HTTP/1.1 codec and server connection. Every default names where it comes from.
/// Call <see cref="Validate"/> at start-up.
/// </summary>
public sealed record HttpLimits
{
    /// <summary>
    /// Longest request line (method, target, version; CRLF not counted) before 414. Default 8 KiB:
    /// nginx's <c>large_client_header_buffers 4 8k</c> (a request line must fit one 8 KiB buffer) and
    /// Kestrel's <c>MaxRequestLineSize</c>. Also bounds an upstream status line (then 502).
    /// </summary>
    public int MaxRequestLineBytes { get; init; } = 8 * 1024;

    /// <summary>
    /// Largest header section (every field line with its CRLF, plus the empty line) before 431.
    /// Default 32 KiB: Kestrel's <c>MaxRequestHeadersTotalSize</c>. Also bounds chunked trailers and
    /// an upstream response head (then 502).
    /// </summary>
    public int MaxHeaderBytes { get; init; } = 32 * 1024;

    /// <summary>Most field lines in a header section before 431. Default 100: Kestrel's <c>MaxRequestHeaderCount</c>.</summary>
    public int MaxHeaderCount { get; init; } = 100;

    /// <summary>
    /// Longest a request head may take to arrive, counted from its first byte; a client that
    /// trickles bytes does not extend it (slowloris). Then 408 and close. Also how long a new
    /// connection may stay silent before its first request. Default 30 s: Kestrel's <c>RequestHeadersTimeout</c>.
    /// </summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a persistent connection may sit idle between requests before it is closed. Default 130 s: Kestrel's <c>KeepAliveTimeout</c> (2 min 10 s).</summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(130);

    /// <summary>
    /// Longest chunk-size line (size, extensions; CRLF not counted) in a chunked body before 400.
    /// Default 4 KiB: our choice; a size needs at most 16 hex digits, the rest is extensions, which
    /// are ignored but must stay bounded (RFC 9112 §7.1.1).
    /// </summary>
    public int MaxChunkLineBytes { get; init; } = 4 * 1024;

    /// <summary>
    /// Most unread request-body bytes the server reads and discards after a response to keep the
    /// connection; a longer rest closes it instead. Default 1 MiB: our choice (nginx discards
    /// unread bodies within <c>lingering_time</c>; a proxy has no reason to read more).
    /// </summary>
    public long MaxDrainBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// After a response with <c>Connection: close</c>, how long the server keeps reading (and
    /// discarding) what the client still sends, so that closing does not reset the connection
    /// before the client read the response. Default 5 s: nginx's <c>lingering_timeout</c>.
    /// </summary>
    public TimeSpan LingeringCloseTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Largest request body in bytes: a larger Content-Length gets 413 before the body is read; a chunked body that grows
    /// past it gets 413 (the exchange upstream, if started, is aborted). Null (default): no limit; bodies are streamed, never
    /// buffered (nginx's <c>client_max_body_size</c>, Kestrel's <c>MaxRequestBodySize</c>; set by <c>--max-body-size</c>).
    /// </summary>
    public long? MaxRequestBodySize { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        Positive(MaxRequestLineBytes, nameof(MaxRequestLineBytes));
        Positive(MaxHeaderBytes, nameof(MaxHeaderBytes));
        Positive(MaxHeaderCount, nameof(MaxHeaderCount));
        Positive(MaxChunkLineBytes, nameof(MaxChunkLineBytes));
        if (MaxDrainBytes < 0)
        {
            throw new ArgumentException($"{nameof(HttpLimits)}.{nameof(MaxDrainBytes)} must be 0 or more, was {MaxDrainBytes}", nameof(MaxDrainBytes));
        }

        if (MaxRequestBodySize < 0)
        {
            throw new ArgumentException($"{nameof(HttpLimits)}.{nameof(MaxRequestBodySize)} must be 0 or more, was {MaxRequestBodySize}", nameof(MaxRequestBodySize));
        }

        PositiveTime(HeaderTimeout, nameof(HeaderTimeout));
        PositiveTime(KeepAliveTimeout, nameof(KeepAliveTimeout));
        PositiveTime(LingeringCloseTimeout, nameof(LingeringCloseTimeout));
    }

    internal static void Positive(long value, string name)
    {
        if (value <= 0)
        {
            throw new ArgumentException($"{name} must be positive, was {value}", name);
        }
    }

    internal static void PositiveTime(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero && value != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentException($"{name} must be positive, was {value}", name);
        }
    }
}
