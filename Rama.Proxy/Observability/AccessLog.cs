using System.Net;
using Rama.Proxy.Net;

namespace Rama.Proxy.Observability;

/// <summary>What an access-log entry records: a request, or a tunnel.</summary>
public enum AccessKind
{
    /// <summary>A request served by an HTTP server that is not one of the others (an application behind <c>HttpServer.Create</c>).</summary>
    Http,

    /// <summary>A request forwarded by the HTTP forward proxy (absolute-form target).</summary>
    Forward,

    /// <summary>An HTTP CONNECT tunnel (one entry when it ends; a refused CONNECT is one entry with its status).</summary>
    Connect,

    /// <summary>A SOCKS5 CONNECT tunnel (one entry when it ends; a refused request is one entry with its reply code).</summary>
    Socks5,

    /// <summary>A request forwarded by the reverse proxy.</summary>
    Reverse,

    /// <summary>A request forwarded by the TLS-termination proxy in HTTP mode, or a connection relayed in TCP mode.</summary>
    Tls,

    /// <summary>A request decrypted inside a CONNECT or SOCKS5 tunnel by the MITM proxy.</summary>
    Mitm,

    /// <summary>A request answered by the echo server.</summary>
    Echo,
}

/// <summary>
/// One access-log line, as data: built on the connection's path from values the connection already has (no string is
/// formatted here), and formatted later by the sink's writer. Passed by reference (<c>in</c>); a sink that keeps it copies it.
/// </summary>
public readonly record struct AccessLogEntry
{
    /// <summary>When the request or tunnel ended (UTC).</summary>
    public DateTimeOffset Time { get; init; }

    /// <summary>What this entry records.</summary>
    public AccessKind Kind { get; init; }

    /// <summary>The client's address (after a PROXY-protocol header, the original client's); null when unknown.</summary>
    public IPEndPoint? Client { get; init; }

    /// <summary>The proven proxy user; null when none.</summary>
    public string? User { get; init; }

    /// <summary>The request method (<c>CONNECT</c> for tunnels); null for a raw relay.</summary>
    public string? Method { get; init; }

    /// <summary>The request-target as received; null for a SOCKS5 tunnel or a raw relay (then <see cref="Authority"/> is the target).</summary>
    public string? Target { get; init; }

    /// <summary>
    /// The host:port of a tunnel (SOCKS5, a raw TLS relay's upstream) or, for <see cref="AccessKind.Mitm"/>, of the tunnel the
    /// request was decrypted in; <c>default</c> (null host) when none.
    /// </summary>
    public HostPort Authority { get; init; }

    /// <summary>The HTTP status answered, or the SOCKS5 reply code (0 = succeeded); 0 for a raw relay.</summary>
    public int Status { get; init; }

    /// <summary>Bytes from the client: the request body, or what the client sent through the tunnel.</summary>
    public long BytesFromClient { get; init; }

    /// <summary>Bytes to the client: the response body as written (as the access line of before counted), or what the target sent through a tunnel.</summary>
    public long BytesToClient { get; init; }

    /// <summary>From the first byte of the request (or the start of the tunnel's negotiation) to the end.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>The id of the upstream proxy the request or tunnel went through; null when direct.</summary>
    public string? Upstream { get; init; }

    /// <summary>The listener's name, when the sink was given one (<see cref="AccessLogs.ForListener"/>); else null.</summary>
    public string? Listener { get; init; }

    /// <summary>The process-unique connection id (as in the debug log).</summary>
    public long ConnectionId { get; init; }

    /// <summary>The client's protocol when it is not HTTP/1.x: <c>HTTP/2</c> for a request on an HTTP/2 stream; null for HTTP/1.x, tunnels and relays.</summary>
    public string? Protocol { get; init; }

    /// <summary>The client connection's Akamai HTTP/2 fingerprint (<c>S|WU|P|PS</c>) for an HTTP/2 request; else null.</summary>
    public string? Http2Fingerprint { get; init; }

    /// <summary>
    /// Why the request or connection was refused (a limit, a rule), as the refusal's body or log names it; null for an
    /// ordinary answer. Set from <see cref="AccessRefusal"/> in the request's or connection's extensions.
    /// </summary>
    public string? Reason { get; init; }

    /// <summary>The target as text: <see cref="Target"/>, else <see cref="Authority"/>, else "-". Allocates: for writers, not for the connection's path.</summary>
    public string TargetText => Target ?? (Authority.Host is null ? "-" : Authority.ToString());
}

/// <summary>
/// Put in a request's (or a SOCKS5 connection's) extensions by the layer that refuses it (a user limit, the body limit),
/// so that its access-log entry carries <see cref="AccessLogEntry.Reason"/>.
/// </summary>
public sealed record AccessRefusal(string Reason);

/// <summary>
/// Where access-log entries go. <see cref="Write"/> is called on the connection's path, once per request and once per
/// tunnel: it must not block, await or throw (a sink that falls behind drops the entry and counts it).
/// </summary>
public interface IAccessLog
{
    /// <summary>False when entries are discarded: producers skip building them.</summary>
    bool IsEnabled { get; }

    /// <summary>Records one entry, or drops it; never blocks.</summary>
    void Write(in AccessLogEntry entry);
}

/// <summary>Ready-made access-log sinks.</summary>
public static class AccessLogs
{
    /// <summary>Discards every entry (<see cref="IAccessLog.IsEnabled"/> is false): the access log turned off.</summary>
    public static IAccessLog Off { get; } = new OffAccessLog();

    /// <summary>
    /// The default sink of every stack built without one: the lines of before, through <see cref="Microsoft.Extensions.Logging.ILogger"/>
    /// at Information (category <c>Rama.Proxy.Http.AccessLog</c> event 2001 for HTTP requests and CONNECT tunnels,
    /// <c>Rama.Proxy.Socks5</c> event 3003 for SOCKS5 tunnels, <c>Rama.Proxy.Tls.Mitm</c> event 7100 besides 2001 for MITM requests).
    /// Formats on the caller's thread: the cost the streamed access log (Rama.Actors) removes.
    /// </summary>
    public static IAccessLog ToLogger(Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory) =>
        loggerFactory is null || ReferenceEquals(loggerFactory, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance)
            ? Off
            : new LoggerAccessLog(loggerFactory);

    /// <summary>A sink that stamps <paramref name="listener"/> on each entry and passes it to <paramref name="inner"/> (one per listener, made at start-up).</summary>
    public static IAccessLog ForListener(this IAccessLog inner, string listener)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentException.ThrowIfNullOrEmpty(listener);
        return inner.IsEnabled ? new ListenerAccessLog(inner, listener) : inner;
    }

    private sealed class OffAccessLog : IAccessLog
    {
        public bool IsEnabled => false;

        public void Write(in AccessLogEntry entry)
        {
        }
    }

    private sealed class ListenerAccessLog(IAccessLog inner, string listener) : IAccessLog
    {
        public bool IsEnabled => inner.IsEnabled;

        public void Write(in AccessLogEntry entry) => inner.Write(entry with { Listener = listener });
    }
}
