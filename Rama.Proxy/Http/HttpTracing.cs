using System.Diagnostics;
using System.Text;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Http;

/// <summary>
/// The HTTP side of Rama's traces (<see cref="ProxyTracing"/>): the server span of a request, its attributes, and W3C Trace
/// Context on its fields. Here, beside the HTTP types it reads, so that Observability does not depend on Http.
/// </summary>
internal static class HttpTracing
{
    internal static ReadOnlySpan<byte> TraceParent => "traceparent"u8;

    internal static ReadOnlySpan<byte> TraceState => "tracestate"u8;

    /// <summary>
    /// Starts the server span of <paramref name="request"/> (null when nobody listens, when the sampler drops it, or for a
    /// server that is not a proxy) and makes it current, so the forwarder and nested tunnels see it. The outgoing
    /// <c>traceparent</c> is rewritten to the span. Stop it (dispose) when the request or its tunnel ends, after
    /// <see cref="SetResponse"/>.
    /// </summary>
    internal static Activity? StartRequest(HttpRequest request, ConnectionContext? connection, AccessKind kind)
    {
        if (!ProxyTracing.Source.HasListeners() || kind is AccessKind.Http or AccessKind.Echo)
        {
            return null;
        }

        return StartRequestCore(request, connection, kind);
    }

    private static Activity? StartRequestCore(HttpRequest request, ConnectionContext? connection, AccessKind kind)
    {
        var parent = ParentOf(request.Headers);
        var activity = parent is { } remote
            ? ProxyTracing.Source.StartActivity(request.Method, ActivityKind.Server, remote)
            : ProxyTracing.Source.StartActivity(request.Method, ActivityKind.Server);
        if (activity is null)
        {
            return null;
        }

        // W3C Trace Context §3.2: the origin's parent is our span; the trace id (and tracestate) are the client's.
        if (activity.IdFormat == ActivityIdFormat.W3C && activity.Id is { } id)
        {
            SetTraceParent(request.Headers, id);
        }

        if (activity.IsAllDataRequested)
        {
            TagRequest(activity, request, connection, request.IsConnect ? AccessKind.Connect : kind);
        }

        return activity;
    }

    /// <summary>Records the answer on <paramref name="activity"/>: status, selected upstream, user (known only after the request was served).</summary>
    internal static void SetResponse(Activity? activity, HttpRequest request, int status)
    {
        if (activity is null || !activity.IsAllDataRequested)
        {
            return;
        }

        activity.SetTag("http.response.status_code", status);
        Upstream.UpstreamTracing.TagOutcome(activity, request.Extensions);
        if (status >= 500)
        {
            // OpenTelemetry HTTP server spans: 5xx is an error of the server; 4xx is the client's.
            activity.SetTag("error.type", ProxyTracing.StatusText(status));
            activity.SetStatus(ActivityStatusCode.Error);
        }
    }

    private static void TagRequest(Activity activity, HttpRequest request, ConnectionContext? connection, AccessKind kind)
    {
        activity.SetTag("http.request.method", request.Method);
        activity.SetTag("rama.kind", ProxyTracing.KindText(kind));
        activity.SetTag("network.protocol.name", "http");
        activity.SetTag("network.protocol.version", request.Version switch
        {
            HttpProtocolVersion.Http10 => "1.0",
            HttpProtocolVersion.Http2 => "2",
            _ => "1.1",
        });
        switch (request.TargetForm)
        {
            case RequestTargetForm.Authority when HostPort.TryParse(request.Target, 0, out var authority):
                activity.SetTag("server.address", authority.Value.Host);
                activity.SetTag("server.port", authority.Value.Port);
                break;
            case RequestTargetForm.Absolute:
                activity.SetTag("url.full", request.Target);
                if (Uri.TryCreate(request.Target, UriKind.Absolute, out var uri))
                {
                    activity.SetTag("url.scheme", uri.Scheme);
                    activity.SetTag("server.address", uri.IdnHost);
                    activity.SetTag("server.port", uri.Port);
                }

                break;
            default:
                var target = request.Target;
                var query = target.IndexOf('?', StringComparison.Ordinal);
                activity.SetTag("url.path", query < 0 ? target : target[..query]);
                if (query >= 0)
                {
                    activity.SetTag("url.query", target[(query + 1)..]);
                }

                var scheme = kind == AccessKind.Mitm || connection?.Extensions.Contains<Tls.TlsConnectionInfo>() == true ? "https" : "http";
                activity.SetTag("url.scheme", scheme);
                if (request.Headers.GetText("Host") is { } host && HostPort.TryParse(host, scheme == "https" ? 443 : 80, out var hostPort))
                {
                    activity.SetTag("server.address", hostPort.Value.Host);
                    activity.SetTag("server.port", hostPort.Value.Port);
                    if (kind == AccessKind.Mitm)
                    {
                        activity.SetTag("url.full", "https://" + host + target);
                    }
                }

                break;
        }

        if (request.Headers.GetText("User-Agent") is { } agent)
        {
            activity.SetTag("user_agent.original", agent);
        }

        activity.SetTag("rama.fingerprint.ja4h", (request.Extensions.Get<Fingerprint.Ja4H>() ?? Fingerprint.Ja4H.Cached(request)).Fingerprint);
        if (request.Extensions.Get<Http2.Http2Fingerprint>() is { } http2)
        {
            activity.SetTag("rama.fingerprint.akamai", http2.Akamai);
        }

        if (connection is not null)
        {
            ProxyTracing.TagConnection(activity, connection);
            Fingerprint.FingerprintTracing.TagConnection(activity, connection.Extensions);
        }
    }

    // ---- W3C Trace Context ----------------------------------------------------------------------

    /// <summary>The remote parent from <c>traceparent</c> (and <c>tracestate</c>); null when absent or invalid (W3C §3.2.2.1: then ignored).</summary>
    internal static ActivityContext? ParentOf(HttpHeaders headers)
    {
        if (!headers.TryGetValue(TraceParent, out var value) || value.Length is < 55 or > 512)
        {
            return null;
        }

        var traceState = headers.TryGetValue(TraceState, out var state) ? Encoding.Latin1.GetString(state.Span) : null;
        return ActivityContext.TryParse(Encoding.Latin1.GetString(value.Span), traceState, isRemote: true, out var context) ? context : null;
    }

    /// <summary>Replaces every <c>traceparent</c> of <paramref name="headers"/> with <paramref name="id"/> (W3C §3.2: exactly one).</summary>
    internal static void SetTraceParent(HttpHeaders headers, string id)
    {
        headers.Remove(TraceParent);
        headers.Add("traceparent"u8.ToArray(), Encoding.ASCII.GetBytes(id));
    }
}
