using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>
/// A reverse proxy (RFC 9110 §3.7 "gateway") to one configured upstream: origin-form requests (and
/// the path of an absolute-form one, RFC 9112 §3.2.2) are forwarded over pooled connections with the
/// forward proxy's forwarder. Nothing is rewritten beyond what a proxy must do: hop-by-hop fields
/// removed (RFC 9110 §7.6.1), Via added (§7.6.3), framing normalised; the client's Host is kept.
/// CONNECT is refused (405): a reverse listener never opens tunnels. The upstream's scheme says the protocol
/// (<see cref="UpstreamTarget"/>: HTTP/1.1, h2c, or https with h2 when ALPN agrees).
/// </summary>
internal sealed class ReverseProxyService(ForwardProxyService forwarder, UpstreamTarget upstream) : Core.IService<HttpRequest, HttpResponse>
{
    /// <summary>An HTTP/1.1 upstream.</summary>
    public ReverseProxyService(ForwardProxyService forwarder, HostPort upstream)
        : this(forwarder, UpstreamTarget.Http1(upstream))
    {
    }

    public ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        switch (request.TargetForm)
        {
            case RequestTargetForm.Origin:
                return forwarder.ForwardAsync(request, upstream, authority: null, request.Target, cancellationToken);
            case RequestTargetForm.Asterisk:
                return forwarder.ForwardAsync(request, upstream, authority: null, "*", cancellationToken);
            case RequestTargetForm.Absolute when ForwardProxyService.TrySplitAbsoluteTarget(request.Target, out _, out _, out var pathAndQuery):
                // RFC 9112 §3.2.2: a server MUST accept absolute-form; the upstream gets origin-form.
                return forwarder.ForwardAsync(request, upstream, authority: null, pathAndQuery, cancellationToken);
            case RequestTargetForm.Authority:
                var refused = HttpResponse.Text(405, "CONNECT is not served by a reverse proxy");
                refused.Headers.Add("Allow"u8.ToArray(), "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"u8.ToArray());
                return ValueTask.FromResult(refused);
            default:
                return ValueTask.FromResult(forwarder.Fail(request, ForwardError.BadTarget, "unsupported request target"));
        }
    }
}
