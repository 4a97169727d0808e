using System.Buffers;
using System.Buffers.Text;
using System.Text;
using Rama.Proxy.Core;

namespace Rama.Proxy.Http;

/// <summary>
/// <c>Proxy-Authorization: Basic</c> (RFC 9110 §11.7.2, RFC 7617). When credentials are required and
/// missing or wrong: 407 with <c>Proxy-Authenticate: Basic realm="..."</c>, and the inner service
/// (so the target) is never called. The proven <see cref="ProxyUser"/> goes in the request's
/// extensions. The field is consumed by this proxy and never forwarded (RFC 9110 §11.7.2).
/// </summary>
public sealed class ProxyAuthLayer(IProxyAuthenticator authenticator, string realm = "rama") : ILayer<HttpRequest, HttpResponse>
{
    private readonly byte[] _challenge = Encoding.ASCII.GetBytes($"Basic realm=\"{realm}\", charset=\"UTF-8\"");

    public IService<HttpRequest, HttpResponse> Layer(IService<HttpRequest, HttpResponse> inner) => new AuthService(this, inner);

    private sealed class AuthService(ProxyAuthLayer layer, IService<HttpRequest, HttpResponse> inner) : IService<HttpRequest, HttpResponse>
    {
        public ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
        {
            // Offered credentials are checked even on an open proxy: the username may carry routing labels.
            var offered = request.Headers.TryGetValue(HeaderNames.ProxyAuthorization, out var credentials);
            if (layer.IsRequired || offered)
            {
                var user = offered ? layer.Authenticate(credentials.Span, request.Extensions) : null;
                var failure = request.Extensions.Get<ProxyAuthFailure>();
                if (user is null && (layer.IsRequired || failure is not null))
                {
                    request.Headers.Remove(HeaderNames.ProxyAuthorization);
                    return ValueTask.FromResult(layer.Challenge(failure?.Reason));
                }

                if (user is not null)
                {
                    request.Extensions.Set(user);
                }
            }

            request.Headers.Remove(HeaderNames.ProxyAuthorization);
            return inner.ServeAsync(request, cancellationToken);
        }
    }

    private bool IsRequired => authenticator.IsRequired;

    /// <summary>A 407 with the Basic challenge; <paramref name="reason"/> (an unknown label, ...) goes in the body.</summary>
    internal HttpResponse Challenge(string? reason)
    {
        var response = HttpResponse.Text(407, reason is null ? "proxy authentication required" : "proxy authentication required: " + reason);
        response.Headers.Add("Proxy-Authenticate"u8.ToArray(), _challenge);
        return response;
    }

    /// <summary>Checks <c>Basic base64(user ":" password)</c>; null when malformed or wrong.</summary>
    internal ProxyUser? Authenticate(ReadOnlySpan<byte> value, Extensions? extensions = null)
    {
        // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP token68 ]; the scheme is case-insensitive.
        value = value.Trim(" \t"u8);
        if (value.Length < 7 || !Ascii.EqualsIgnoreCase(value[..6], "Basic "u8))
        {
            return null;
        }

        var token = value[6..].TrimStart(" "u8);
        if (token.Length > 4096)
        {
            return null;
        }

        var decoded = ArrayPool<byte>.Shared.Rent(Base64.GetMaxDecodedFromUtf8Length(token.Length));
        try
        {
            if (Base64.DecodeFromUtf8(token, decoded, out _, out var written) != OperationStatus.Done)
            {
                return null;
            }

            var pair = decoded.AsSpan(0, written);
            var colon = pair.IndexOf((byte)':');
            if (colon < 0)
            {
                return null;
            }

            // RFC 7617 §2.1: user-id and password are UTF-8 (we announce charset="UTF-8").
            var user = Encoding.UTF8.GetString(pair[..colon]);
            var password = Encoding.UTF8.GetString(pair[(colon + 1)..]);
            return extensions is null ? authenticator.Authenticate(user, password) : authenticator.Authenticate(user, password, extensions);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(decoded, clearArray: true);
        }
    }
}
