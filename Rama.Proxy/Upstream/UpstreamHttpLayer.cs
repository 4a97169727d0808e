using Rama.Proxy.Core;
using Rama.Proxy.Http;

namespace Rama.Proxy.Upstream;

/// <summary>
/// The HTTP side of upstream routing, inside the auth layer: reads the <c>x-rama-proxy-filter</c> header
/// (used only when the username carries no labels; never forwarded), decides the route and answers
/// what cannot be routed: 407 when a filter is required and missing, 503 with the reason when the
/// filter matches no upstream (the proxy is up but has no upstream for this request right now; 502
/// would blame an upstream that was never contacted, 403 would say the request is forbidden).
/// A routed request gets its pool partition (so pooled connections never cross upstreams) and the
/// first-choice <see cref="SelectedUpstream"/> (the connector replaces it with the one used).
/// </summary>
public sealed class UpstreamHttpLayer(UpstreamRouter router, UpstreamFailureCache failures, string realm = "rama") : ILayer<HttpRequest, HttpResponse>
{
    private readonly ProxyAuthLayer _challenge = new(StaticProxyAuthenticator.None, realm);

    public IService<HttpRequest, HttpResponse> Layer(IService<HttpRequest, HttpResponse> inner) => new RoutingService(this, inner);

    private sealed class RoutingService(UpstreamHttpLayer layer, IService<HttpRequest, HttpResponse> inner) : IService<HttpRequest, HttpResponse>
    {
        public ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            var header = request.Headers.GetText(ProxyFilterHeader.Name);
            if (header is not null)
            {
                request.Headers.Remove("x-rama-proxy-filter"u8);
                if (!request.Extensions.Contains<RequestedProxyFilter>())
                {
                    if (!ProxyFilterHeader.TryParse(header, out var filter, out var session, out var error))
                    {
                        return ValueTask.FromResult(HttpResponse.Text(400, $"bad {ProxyFilterHeader.Name} header: {error}"));
                    }

                    request.Extensions.Set(new RequestedProxyFilter(filter, "header"));
                    if (session is not null)
                    {
                        request.Extensions.Set(new ProxySession(session));
                    }
                }
            }

            var route = layer.Route(request.Extensions);
            switch (route.Kind)
            {
                case UpstreamRouteKind.FilterRequired:
                    return ValueTask.FromResult(layer._challenge.Challenge(route.Reason));
                case UpstreamRouteKind.NoMatch:
                    return ValueTask.FromResult(HttpResponse.Text(503, route.Reason));
                case UpstreamRouteKind.Upstream:
                    var first = route.Candidates[0];
                    request.Extensions.Set(new ConnectionPoolPartition($"{route.Version}/{first.Id}"));
                    request.Extensions.Set(new SelectedUpstream(first, first.PreferredProtocol!.Value));
                    break;
            }

            return inner.ServeAsync(request, cancellationToken);
        }
    }

    private UpstreamRoute Route(Extensions extensions) => router.Route(extensions, failures.BackedOffCount);
}
