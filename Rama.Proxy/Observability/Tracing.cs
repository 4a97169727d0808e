using System.Diagnostics;
using System.Net;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Proxy.Observability;

/// <summary>
/// Rama's traces: the <see cref="ActivitySource"/> <c>Rama.Proxy</c>, one server span per proxied request (forward, reverse,
/// TLS termination in HTTP mode, MITM-decrypted; HTTP/1.1 and HTTP/2 streams) and per tunnel (HTTP CONNECT, SOCKS5
/// CONNECT, a WebSocket upgrade: its request's span lasts as long as the tunnel). Attributes follow the OpenTelemetry
/// semantic conventions for HTTP servers where one exists (<c>http.request.method</c>, <c>url.full</c> / <c>url.path</c>,
/// <c>server.address</c>, <c>server.port</c>, <c>http.response.status_code</c>, <c>network.protocol.version</c>,
/// <c>client.address</c>, <c>error.type</c>) and are Rama's own otherwise (<c>rama.upstream</c>, <c>rama.user</c>,
/// <c>rama.fingerprint.ja4</c>, <c>rama.fingerprint.ja4h</c>, <c>rama.fingerprint.akamai</c>, <c>rama.listener</c>,
/// <c>rama.kind</c>).
/// <para>
/// This folder sits on Core, Metrics and Net only: the attributes read from other folders' values are set beside those
/// values (<c>HttpTracing</c>, <c>Socks5Tracing</c>, <c>UpstreamTracing</c>, <c>FingerprintTracing</c>), which use this class.
/// </para>
/// <para>
/// Propagation (W3C Trace Context): an incoming <c>traceparent</c> / <c>tracestate</c> is the parent of the server span,
/// and the request goes on to the origin with <c>traceparent</c> rewritten to the span (same trace id, Rama's span id as
/// the parent id; <c>tracestate</c> passed on as received). Without a span (no listener, or not sampled) the request's
/// fields are forwarded untouched, as any proxy forwards fields it does not own.
/// </para>
/// <para>
/// Cost when nobody listens: one <see cref="ActivitySource.HasListeners"/> check per request or tunnel, no allocation.
/// </para>
/// </summary>
public static class ProxyTracing
{
    /// <summary>The name of the source (and of the OpenTelemetry tracer) of Rama's spans.</summary>
    public const string SourceName = "Rama.Proxy";

    /// <summary>The source of Rama's spans.</summary>
    public static ActivitySource Source { get; } = new(SourceName, typeof(ProxyTracing).Assembly.GetName().Version?.ToString());

    /// <summary>True when some listener (an OpenTelemetry tracer provider, a test's <see cref="ActivityListener"/>) listens to <see cref="Source"/>.</summary>
    public static bool IsEnabled => Source.HasListeners();

    /// <summary>The current span when it is one of Rama's (for a hook that has no handle on it); null when nobody listens.</summary>
    internal static Activity? Current => Source.HasListeners() && Activity.Current is { } current && ReferenceEquals(current.Source, Source) ? current : null;

    /// <summary>
    /// Names the connections of <paramref name="stack"/> after their listener (<c>rama.listener</c> on their spans). The
    /// name is set on the connection only while tracing is on: nothing is done per connection otherwise.
    /// </summary>
    public static IService<ConnectionContext, Unit> ForListener(string listener, IService<ConnectionContext, Unit> stack)
    {
        ArgumentException.ThrowIfNullOrEmpty(listener);
        ArgumentNullException.ThrowIfNull(stack);
        var name = new ListenerName(listener);
        // The epoll transport is chosen by the stack's type (ISocketTransportService): the wrapper keeps it.
        return stack is ISocketTransportService ? new NamedSocketStack(name, stack) : new NamedStack(name, stack);
    }

    private class NamedStack(ListenerName name, IService<ConnectionContext, Unit> inner) : IService<ConnectionContext, Unit>, IAsyncDisposable
    {
        public ValueTask<Unit> ServeAsync(ConnectionContext connection, CancellationToken cancellationToken)
        {
            if (IsEnabled)
            {
                connection.Extensions.Set(name);
            }

            return inner.ServeAsync(connection, cancellationToken);
        }

        public ValueTask DisposeAsync() => inner is IAsyncDisposable owned ? owned.DisposeAsync() : ValueTask.CompletedTask;
    }

    private sealed class NamedSocketStack(ListenerName name, IService<ConnectionContext, Unit> inner) : NamedStack(name, inner), ISocketTransportService;

    /// <summary>
    /// Marks <paramref name="activity"/> failed by <paramref name="exception"/> and stops it. Returns false: for exception
    /// filters (<c>catch (Exception ex) when (ProxyTracing.Fail(activity, ex))</c> catches nothing).
    /// </summary>
    internal static bool Fail(Activity? activity, Exception exception)
    {
        if (activity is null)
        {
            return false;
        }

        if (activity.IsAllDataRequested)
        {
            activity.SetTag("error.type", exception.GetType().FullName);
            activity.SetStatus(ActivityStatusCode.Error, exception.Message);
        }

        activity.Stop();
        return false;
    }

    // ---- attributes ---------------------------------------------------------------------------

    internal static void TagConnection(Activity activity, ConnectionContext connection)
    {
        if (connection.RemoteEndPoint is { } client)
        {
            activity.SetTag("client.address", client.Address.ToString());
            activity.SetTag("client.port", client.Port);
        }

        if (connection.Extensions.Get<ListenerName>() is { } listener)
        {
            activity.SetTag("rama.listener", listener.Name);
        }

    }

    internal static string KindText(AccessKind kind) => kind switch
    {
        AccessKind.Forward => "forward",
        AccessKind.Connect => "connect",
        AccessKind.Socks5 => "socks5",
        AccessKind.Reverse => "reverse",
        AccessKind.Tls => "tls",
        AccessKind.Mitm => "mitm",
        AccessKind.Echo => "echo",
        _ => "http",
    };

    internal static string StatusText(int status) => status.ToString(System.Globalization.CultureInfo.InvariantCulture);

}

/// <summary>The name of the listener a connection came in on (for <c>rama.listener</c>); set by <see cref="ProxyTracing.ForListener"/>.</summary>
public sealed record ListenerName(string Name);
