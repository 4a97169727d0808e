using System.Diagnostics;
using System.Diagnostics.Metrics;
using Rama.Proxy.Metrics;

namespace Rama.Proxy.Observability;

/// <summary>
/// Requests and tunnels on meter <c>Rama.Proxy</c>, by <see cref="AccessKind"/>: what the HTTP and SOCKS5 servers record,
/// over the instruments of <see cref="ProxyInstruments"/> (the leaf the listener, TLS and upstream code record to). The hot
/// path stays cheap: one instrument call with a <see cref="TagList"/> on the stack, tag values made once.
/// </summary>
internal static class ProxyMetrics
{
    /// <summary>The meter's name, for <c>AddMeter("Rama.Proxy")</c>.</summary>
    public const string MeterName = ProxyInstruments.MeterName;

    internal static Counter<long> Requests => ProxyInstruments.Requests;

    internal static Histogram<double> RequestDuration => ProxyInstruments.RequestDuration;

    internal static Counter<long> Io => ProxyInstruments.Io;

    internal static UpDownCounter<long> ActiveTunnels => ProxyInstruments.ActiveTunnels;

    internal static Histogram<double> TunnelDuration => ProxyInstruments.TunnelDuration;

    // Tag values made once: no string or box per recording.
    private static readonly object?[] s_statusCodes = BoxStatusCodes();
    private static readonly string[] s_statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    private static readonly string[] s_kinds = [.. Enum.GetNames<AccessKind>().Select(n => n.ToLowerInvariant())];

    private static object?[] BoxStatusCodes()
    {
        var boxes = new object?[600];
        for (var code = 100; code < boxes.Length; code++)
        {
            boxes[code] = code;
        }

        return boxes;
    }

    private static string Kind(AccessKind kind) => (uint)kind < (uint)s_kinds.Length ? s_kinds[(int)kind] : "other";

    /// <summary><c>network.protocol.version</c>: "2" for an HTTP/2 stream, else "1.1".</summary>
    private static string ProtocolVersion(string? protocol) => protocol is not null && protocol.EndsWith('2') ? "2" : "1.1";

    /// <summary>
    /// One request (or tunnel, for <see cref="AccessKind.Connect"/> and <see cref="AccessKind.Socks5"/>) ended: called beside
    /// the access-log entry, whether or not the access log is on. <paramref name="startedAt"/> is a <paramref name="time"/> timestamp.
    /// <paramref name="listener"/> is the instruments of the listener the connection came in on (<c>rama.listener</c>, as on
    /// its connection metrics; a layered connection, TLS or MITM, keeps its listener's); null for a connection from elsewhere.
    /// </summary>
    public static void RequestCompleted(AccessKind kind, ListenerMetrics? listener, string? protocol, string? method, int status, long fromClient, long toClient, TimeProvider time, long startedAt)
    {
        var kindText = Kind(kind);
        if (fromClient > 0 || toClient > 0)
        {
            Bytes(kindText, fromClient, toClient);
        }

        if (kind == AccessKind.Socks5 || status is < 100 or > 599)
        {
            return; // a SOCKS5 reply code or a raw relay: bytes only
        }

        var version = ProtocolVersion(protocol);
        if (Requests.Enabled)
        {
            var tags = new TagList
            {
                { "rama.proxy.kind", kindText },
                { "rama.http.status_class", s_statusClasses[(status / 100) - 1] },
                { "network.protocol.version", version },
            };
            if (listener is not null)
            {
                tags.Add(listener.Tag); // a tag made at bind: nothing allocated per request (TagList keeps 8 inline)
            }

            Requests.Add(1, in tags);
        }

        // A CONNECT's duration is its tunnel's (rama.proxy.tunnel.duration); a refused CONNECT is a request like any.
        if (RequestDuration.Enabled && !(kind == AccessKind.Connect && status == 200))
        {
            var tags = new TagList
            {
                { "http.request.method", Method(method) },
                { "http.response.status_code", s_statusCodes[status] },
                { "network.protocol.version", version },
                { "rama.proxy.kind", kindText },
            };
            if (listener is not null)
            {
                tags.Add(listener.Tag);
            }

            RequestDuration.Record(time.GetElapsedTime(startedAt).TotalSeconds, in tags);
        }
    }

    /// <summary>Bytes moved for a client: received from it and sent to it.</summary>
    public static void Bytes(AccessKind kind, long fromClient, long toClient) => Bytes(Kind(kind), fromClient, toClient);

    private static void Bytes(string kind, long fromClient, long toClient)
    {
        if (!Io.Enabled)
        {
            return;
        }

        if (fromClient > 0)
        {
            Io.Add(fromClient, new KeyValuePair<string, object?>("network.io.direction", "receive"), new KeyValuePair<string, object?>("rama.proxy.kind", kind));
        }

        if (toClient > 0)
        {
            Io.Add(toClient, new KeyValuePair<string, object?>("network.io.direction", "transmit"), new KeyValuePair<string, object?>("rama.proxy.kind", kind));
        }
    }

    /// <summary>OpenTelemetry's rule: a known method as is, any other as <c>_OTHER</c> (bounded cardinality).</summary>
    private static string Method(string? method) => method switch
    {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "_OTHER",
    };

    /// <summary>A tunnel opened; returns the timestamp to pass to <see cref="TunnelClosed"/>.</summary>
    public static long TunnelOpened(AccessKind kind)
    {
        ActiveTunnels.Add(1, new KeyValuePair<string, object?>("rama.proxy.kind", Kind(kind)));
        return Stopwatch.GetTimestamp();
    }

    /// <summary>The tunnel opened at <paramref name="openedAt"/> (from <see cref="TunnelOpened"/>) closed.</summary>
    public static void TunnelClosed(AccessKind kind, long openedAt)
    {
        var tag = new KeyValuePair<string, object?>("rama.proxy.kind", Kind(kind));
        ActiveTunnels.Add(-1, tag);
        if (TunnelDuration.Enabled)
        {
            TunnelDuration.Record(Stopwatch.GetElapsedTime(openedAt).TotalSeconds, tag);
        }
    }

    /// <summary><paramref name="count"/> access-log entries were dropped.</summary>
    public static void AccessLogEntriesDropped(long count) => ProxyInstruments.AccessLogEntriesDropped(count);
}
