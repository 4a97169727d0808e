using System.Diagnostics;
using System.Globalization;
using Rama.Proxy.Fingerprint;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Upstream;

namespace Rama.Proxy.Socks5;

/// <summary>The SOCKS5 side of Rama's traces (<see cref="ProxyTracing"/>): one server span per SOCKS5 connection, lasting as long as its tunnel.</summary>
internal static class Socks5Tracing
{
    /// <summary>Starts the server span of a SOCKS5 connection (its tunnel); null when nobody listens.</summary>
    internal static Activity? Start(ConnectionContext connection)
    {
        if (!ProxyTracing.IsEnabled)
        {
            return null;
        }

        var activity = ProxyTracing.Source.StartActivity("SOCKS5 CONNECT", ActivityKind.Server);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("rama.kind", "socks5");
            ProxyTracing.TagConnection(activity, connection);
            FingerprintTracing.TagConnection(activity, connection.Extensions);
        }

        return activity;
    }

    /// <summary>Records a SOCKS5 request's target and reply on <paramref name="activity"/> (the reply code as <c>rama.socks5.reply</c>; not 0 is an error).</summary>
    internal static void SetReply(Activity? activity, ConnectionContext connection, HostPort target, int reply)
    {
        if (activity is null || !activity.IsAllDataRequested)
        {
            return;
        }

        if (target.Host is not null)
        {
            activity.SetTag("server.address", target.Host);
            activity.SetTag("server.port", target.Port);
        }

        activity.SetTag("rama.socks5.reply", reply);
        UpstreamTracing.TagOutcome(activity, connection.Extensions);
        if (reply != 0)
        {
            activity.SetTag("error.type", "socks5_reply_" + reply.ToString(CultureInfo.InvariantCulture));
            activity.SetStatus(ActivityStatusCode.Error);
        }
    }
}
