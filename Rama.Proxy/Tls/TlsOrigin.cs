using System.IO.Pipelines;
using System.Security.Authentication;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tls;

/// <summary>
/// TLS to an origin for the HTTP forwarder (<see cref="ForwardProxyService"/>): the TLS termination proxy re-encrypting to its
/// upstream, and the MITM tunnel's origin. The TLS stream over the dialed socket is what the forwarder pools.
/// </summary>
internal static class TlsOrigin
{
    /// <summary>
    /// A securer that runs the client handshake for the server name <paramref name="serverName"/> picks per request (SNI and verification).
    /// <paramref name="offerHttp2"/>: ALPN offers h2 before the options' protocols (RFC 9113 §3.2), and the result says whether the origin chose it.
    /// </summary>
    public static OriginSecurer Securer(TlsClientOptions options, Func<HttpRequest, HostPort, string> serverName, TimeProvider time,
        Action<HttpRequest, string, string>? onFailure = null, bool offerHttp2 = false)
    {
        var withHttp2 = offerHttp2
            ? options with { ApplicationProtocols = ["h2", .. options.ApplicationProtocols.Where(p => p != "h2").DefaultIfEmpty("http/1.1")] }
            : options;
        return async (request, target, socket, cancellationToken) =>
        {
            var name = serverName(request, target);
            // An HTTP/1.1 upgrade (WebSocket) needs an HTTP/1.1 connection: h2 is not offered for it (RFC 9113 §8.6).
            var offer = offerHttp2 && !request.Headers.Contains(HeaderNames.Upgrade);
            try
            {
                var tls = await TlsClient.ConnectAsync(socket, name, offer ? withHttp2 : options, socket, cancellationToken, time).ConfigureAwait(false);
                var http2 = offer && tls.Stream.NegotiatedApplicationProtocol == System.Net.Security.SslApplicationProtocol.Http2;
                return new SecuredOrigin(new Connection(tls, socket), ForwardError.None, "", http2);
            }
            catch (Exception ex) when (ex is AuthenticationException or IOException
                                           || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                onFailure?.Invoke(request, name, ex.Message);
                await socket.DisposeAsync().ConfigureAwait(false);
                return new SecuredOrigin(null, ForwardError.ConnectFailed, "origin TLS: " + ex.Message);
            }
        };
    }

    /// <summary>The plaintext side of a TLS origin connection; disposing it closes the TLS session and the socket.</summary>
    private sealed class Connection(SslDuplexPipe tls, SocketConnection socket) : IOriginConnection
    {
        public PipeReader Input => tls.Input;

        public PipeWriter Output => tls.Output;

        public CancellationToken ConnectionClosed => socket.ConnectionClosed;

        public ValueTask DisposeAsync() => tls.DisposeAsync();
    }
}

/// <summary>The result of dialling the TLS termination proxy's upstream for a raw relay: a plaintext pipe and what owns it, or why not.</summary>
internal readonly record struct OriginDial(IDuplexPipe? Pipe, IAsyncDisposable? Owner, ForwardError Error, string Detail)
{
    public static OriginDial Failed(ForwardError error, string detail) => new(null, null, error, detail);
}
