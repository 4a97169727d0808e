using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;

namespace Rama.Proxy.Upstream;

/// <summary>The pieces a proxy stack needs to route through upstreams, built together over one database.</summary>
public sealed record UpstreamProxying(UpstreamConnector Connector, IProxyAuthenticator Authenticator, ILayer<HttpRequest, HttpResponse> HttpLayer)
{
    /// <summary>
    /// Wraps <paramref name="direct"/> and <paramref name="authenticator"/> for routing through
    /// <paramref name="database"/> (which may be a <see cref="ReloadableProxyDatabase"/>).
    /// </summary>
    public static UpstreamProxying Create(IProxyDatabase database, UpstreamRoutingOptions options, ITcpConnector direct, IProxyAuthenticator authenticator,
        IDnsResolver? dns = null, TimeSpan? handshakeTimeout = null, string realm = "rama", ILoggerFactory? loggerFactory = null, TimeProvider? time = null,
        IConcurrencyLimiter? limiter = null, LimitOptions? limits = null, UpstreamFailureCache? failures = null,
        ITcpConnector? upstreams = null, Net.Destinations.DestinationPolicy? destinations = null)
    {
        loggerFactory ??= NullLoggerFactory.Instance;
        var router = new UpstreamRouter(database, options);
        failures ??= new UpstreamFailureCache(options.BackoffInitial, options.BackoffMax, time);
        var connector = new UpstreamConnector(direct, router, failures, dns, handshakeTimeout, time, loggerFactory.CreateLogger<UpstreamConnector>(), limiter, limits,
            upstreams, destinations);
        return new UpstreamProxying(connector, new UpstreamAuthenticator(authenticator, options.StrictLabels), new UpstreamHttpLayer(router, failures, realm));
    }
}
