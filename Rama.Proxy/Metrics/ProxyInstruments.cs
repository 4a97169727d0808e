using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Security.Authentication;

namespace Rama.Proxy.Metrics;

/// <summary>
/// The instruments of meter <c>Rama.Proxy</c> (<see cref="MeterName"/>): what the framework's listeners, HTTP servers,
/// tunnels, upstream connector and TLS layer count. Names follow the OpenTelemetry semantic conventions where one exists
/// (<c>http.server.request.duration</c> with <c>http.response.status_code</c> and <c>network.protocol.version</c>;
/// Kestrel's <c>…active_connections</c> / <c>…rejected_connections</c> shape with <c>server.address</c> and <c>server.port</c>;
/// <c>network.io.direction</c>, <c>tls.protocol.version</c>, <c>error.type</c>); the rest are under <c>rama.*</c>.
/// <para>
/// The hot path stays cheap: every recording is one instrument call with a <see cref="TagList"/> on the stack, tag values
/// are strings and boxed numbers made once (per listener at bind, per status code at start-up), and an instrument nobody
/// listens to costs one <see cref="Instrument.Enabled"/> check.
/// </para>
/// <para>
/// A leaf of Rama.Proxy: the listener (Net), TLS, upstream and PROXY-protocol code below the HTTP and SOCKS5 servers record
/// here, so this folder names no other folder of the project; its recordings take primitive tag values (an enum's name, an id).
/// The request and tunnel recordings by <c>AccessKind</c> are Observability's <c>ProxyMetrics</c>, over these instruments.
/// </para>
/// </summary>
internal static class ProxyInstruments
{
    /// <summary>The meter's name, for <c>AddMeter("Rama.Proxy")</c>.</summary>
    public const string MeterName = "Rama.Proxy";

    internal static readonly Meter Meter = new(MeterName, typeof(ProxyInstruments).Assembly.GetName().Version?.ToString(3));

    // ---- listeners (Kestrel's kestrel.active_connections / kestrel.rejected_connections / kestrel.connection.duration) ----
    internal static readonly UpDownCounter<long> ActiveConnections = Meter.CreateUpDownCounter<long>(
        "rama.listener.active_connections", "{connection}", "Connections open on a listener.");

    internal static readonly Counter<long> AcceptedConnections = Meter.CreateCounter<long>(
        "rama.listener.accepted_connections", "{connection}", "Connections a listener accepted.");

    internal static readonly Counter<long> RejectedConnections = Meter.CreateCounter<long>(
        "rama.listener.rejected_connections", "{connection}", "Connections a listener refused before serving them (error.type says why).");

    internal static readonly Histogram<double> ConnectionDuration = Meter.CreateHistogram(
        "rama.listener.connection.duration", "s", "How long connections stayed open.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });

    // ---- requests -------------------------------------------------------------------------------------------------------
    internal static readonly Histogram<double> RequestDuration = Meter.CreateHistogram(
        "http.server.request.duration", "s", "Duration of HTTP server requests (tunnels are in rama.proxy.tunnel.duration).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });

    internal static readonly Counter<long> Requests = Meter.CreateCounter<long>(
        "rama.proxy.requests", "{request}", "Requests answered, by kind, status class and protocol (a CONNECT is counted when its tunnel ends).");

    internal static readonly Counter<long> Io = Meter.CreateCounter<long>(
        "rama.proxy.io", "By", "Payload bytes received from clients (network.io.direction=receive) and sent to them (transmit).");

    // ---- tunnels --------------------------------------------------------------------------------------------------------
    internal static readonly UpDownCounter<long> ActiveTunnels = Meter.CreateUpDownCounter<long>(
        "rama.proxy.active_tunnels", "{tunnel}", "CONNECT and SOCKS5 tunnels open.");

    internal static readonly Histogram<double> TunnelDuration = Meter.CreateHistogram(
        "rama.proxy.tunnel.duration", "s", "How long tunnels stayed open.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = TunnelBuckets });

    // ---- upstreams ------------------------------------------------------------------------------------------------------
    internal static readonly Counter<long> UpstreamSelections = Meter.CreateCounter<long>(
        "rama.upstream.selections", "{selection}", "Connections made through an upstream proxy.");

    internal static readonly Counter<long> UpstreamFailures = Meter.CreateCounter<long>(
        "rama.upstream.failures", "{failure}", "Upstream proxies that failed a connection (they are backed off).");

    internal static readonly Counter<long> UpstreamBackoffs = Meter.CreateCounter<long>(
        "rama.upstream.backoffs", "{backoff}", "Back-offs started or extended for an upstream proxy.");

    // ---- TLS ------------------------------------------------------------------------------------------------------------
    internal static readonly Counter<long> TlsHandshakes = Meter.CreateCounter<long>(
        "rama.tls.handshakes", "{handshake}", "TLS handshakes completed by TLS-terminating listeners.");

    internal static readonly Counter<long> TlsHandshakeFailures = Meter.CreateCounter<long>(
        "rama.tls.handshake_failures", "{handshake}", "TLS handshakes refused or failed (error.type says why).");

    // ---- access log -----------------------------------------------------------------------------------------------------
    internal static readonly Counter<long> AccessLogDropped = Meter.CreateCounter<long>(
        "rama.access_log.dropped", "{entry}", "Access-log entries dropped because the writer fell behind.");

    private static double[] DurationBuckets => [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private static double[] TunnelBuckets => [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

    /// <summary>A connection went through upstream proxy <paramref name="id"/>.</summary>
    public static void UpstreamSelected(string id) => UpstreamSelections.Add(1, new KeyValuePair<string, object?>("rama.upstream.id", id));

    /// <summary>Upstream proxy <paramref name="id"/> failed and is backed off for <paramref name="backoff"/>.</summary>
    public static void UpstreamFailed(string id, TimeSpan backoff)
    {
        var tag = new KeyValuePair<string, object?>("rama.upstream.id", id);
        UpstreamFailures.Add(1, tag);
        if (backoff > TimeSpan.Zero)
        {
            UpstreamBackoffs.Add(1, tag);
        }
    }

    /// <summary>A TLS handshake completed with <paramref name="protocol"/>.</summary>
    public static void TlsHandshake(SslProtocols protocol) => TlsHandshakes.Add(1, new KeyValuePair<string, object?>("tls.protocol.version", protocol switch
    {
        SslProtocols.Tls13 => "1.3",
        SslProtocols.Tls12 => "1.2",
        _ => "other",
    }));

    /// <summary>A TLS handshake failed or was refused for <paramref name="reason"/> (<c>error.type</c>: the reason's name, made once per enum).</summary>
    public static void TlsHandshakeFailed<TReason>(TReason reason) where TReason : struct, Enum =>
        TlsHandshakeFailures.Add(1, new KeyValuePair<string, object?>("error.type", EnumTag<TReason>.Of(reason)));

    /// <summary><paramref name="count"/> access-log entries were dropped.</summary>
    public static void AccessLogEntriesDropped(long count)
    {
        if (count > 0)
        {
            AccessLogDropped.Add(count);
        }
    }
}

/// <summary>The names of an enum's values as tag values, made once: no string per recording.</summary>
internal static class EnumTag<T> where T : struct, Enum
{
    private static readonly Dictionary<T, string> s_names = Enum.GetValues<T>().Distinct().ToDictionary(v => v, v => v.ToString());

    /// <summary>The value's name; "other" for a value the enum does not name.</summary>
    public static string Of(T value) => s_names.GetValueOrDefault(value, "other");
}

/// <summary>
/// One listener's connection instruments with its tags made once at bind (<c>rama.listener</c>, <c>server.address</c>,
/// <c>server.port</c>): recording a connection builds a <see cref="TagList"/> from fields, nothing else.
/// </summary>
internal sealed class ListenerMetrics
{
    private readonly string _name;
    private readonly string _address;
    private readonly object _port;

    public ListenerMetrics(string? name, IPEndPoint endpoint)
    {
        _address = endpoint.Address.ToString();
        _port = endpoint.Port;
        _name = name ?? _address + ":" + endpoint.Port.ToString(CultureInfo.InvariantCulture);
        Tag = new KeyValuePair<string, object?>("rama.listener", _name);
    }

    /// <summary><c>rama.listener</c> with this listener's name, made once: the request metrics of its connections carry it too.</summary>
    public KeyValuePair<string, object?> Tag { get; }

    private TagList Tags => new()
    {
        Tag,
        { "server.address", _address },
        { "server.port", _port },
    };

    /// <summary>A connection was accepted; returns the timestamp to pass to <see cref="Closed"/>.</summary>
    public long Accepted()
    {
        var tags = Tags;
        ProxyInstruments.AcceptedConnections.Add(1, in tags);
        ProxyInstruments.ActiveConnections.Add(1, in tags);
        return Stopwatch.GetTimestamp();
    }

    /// <summary>The connection accepted at <paramref name="acceptedAt"/> closed.</summary>
    public void Closed(long acceptedAt)
    {
        var tags = Tags;
        ProxyInstruments.ActiveConnections.Add(-1, in tags);
        if (ProxyInstruments.ConnectionDuration.Enabled)
        {
            ProxyInstruments.ConnectionDuration.Record(Stopwatch.GetElapsedTime(acceptedAt).TotalSeconds, in tags);
        }
    }

    /// <summary>
    /// A connection this listener accepted was refused before it was served (a limit, a bad PROXY header):
    /// <paramref name="reason"/> is a short constant (<c>error.type</c>), never text built per connection.
    /// </summary>
    public void Rejected(string reason)
    {
        var tags = Tags;
        tags.Add("error.type", reason);
        ProxyInstruments.RejectedConnections.Add(1, in tags);
    }
}
