using System.IO.Pipelines;
using System.Text;
using Rama.Proxy.Net;
using Rama.Proxy.Socks5;

namespace Rama.Proxy.Http;

/// <summary>
/// The client side of <c>CONNECT</c> (RFC 9110 §9.3.6) to an upstream HTTP proxy over an established
/// connection: sends the request (with <c>Proxy-Authorization: Basic</c> when a credential is given),
/// reads the response head; a 2xx turns the connection into a tunnel, and bytes after the head stay
/// in the input for the tunnel.
/// </summary>
internal static class HttpConnectClient
{
    private static readonly HttpLimits Limits = new();

    public static async ValueTask<UpstreamHandshakeResult> ConnectAsync(IDuplexPipe upstream, HostPort target, string? user, string? password,
        CancellationToken cancellationToken)
    {
        var authority = target.ToString();
        var request = new StringBuilder()
            .Append("CONNECT ").Append(authority).Append(" HTTP/1.1\r\n")
            .Append("Host: ").Append(authority).Append("\r\n");
        if (user is not null)
        {
            // RFC 7617 §2: base64(user-id ":" password), UTF-8.
            request.Append("Proxy-Authorization: Basic ").Append(Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":" + password))).Append("\r\n");
        }

        request.Append("\r\n");
        await upstream.Output.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), cancellationToken).ConfigureAwait(false);

        ResponseHead? head;
        try
        {
            head = await Http1ResponseReader.ReadFinalHeadAsync(upstream.Input, Limits, HttpMethods.Connect, rejectSwitchingProtocols: false, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpCodecException ex) when (ex.Reason != HttpRejectReason.UnexpectedEndOfBody)
        {
            return UpstreamHandshakeResult.Upstream("upstream answered CONNECT with a malformed response: " + ex.Message);
        }
        catch (HttpCodecException)
        {
            head = null;
        }

        if (head is null)
        {
            return UpstreamHandshakeResult.Upstream("upstream closed before answering CONNECT");
        }

        return head.Status switch
        {
            >= 200 and < 300 => UpstreamHandshakeResult.Ok,
            407 => UpstreamHandshakeResult.Upstream("upstream refused our credentials (407)"),
            403 => UpstreamHandshakeResult.Target(ConnectError.NotAllowed, $"upstream forbids CONNECT {authority} (403)"),
            504 => UpstreamHandshakeResult.Target(ConnectError.TimedOut, "upstream: target timed out (504)"),
            502 or 503 => UpstreamHandshakeResult.Target(ConnectError.Failed, $"upstream could not reach {authority} ({head.Status})"),
            _ => UpstreamHandshakeResult.Upstream($"upstream answered CONNECT with {head.Status}"),
        };
    }
}
