using Rama.Proxy.Core;

namespace Rama.Proxy.Upstream;

/// <summary>
/// Reads routing labels from the username (<see cref="ProxyUsername"/>) and checks the password against
/// the base user with the inner authenticator; the same for HTTP proxy auth and SOCKS5 RFC 1929. On
/// success the request's extensions get the <see cref="RequestedProxyFilter"/> and
/// <see cref="ProxySession"/>; a bad label records a <see cref="ProxyAuthFailure"/> naming it (407, or
/// the RFC 1929 failure status). On an open proxy any base user is accepted, labels still apply.
/// </summary>
public sealed class UpstreamAuthenticator(IProxyAuthenticator inner, bool strictLabels = true) : IProxyAuthenticator
{
    public bool IsRequired => inner.IsRequired;

    public ProxyUser? Authenticate(string user, string password) => Authenticate(user, password, new Extensions());

    public ProxyUser? Authenticate(string user, string password, Extensions extensions)
    {
        if (!ProxyUsername.TryParse(user, out var parsed, out var error, strictLabels))
        {
            extensions.Set(new ProxyAuthFailure(error));
            return null;
        }

        var proven = inner.IsRequired ? inner.Authenticate(parsed.BaseUser, password) : new ProxyUser(parsed.BaseUser);
        if (proven is null)
        {
            return null;
        }

        if (parsed.HasLabels)
        {
            extensions.Set(new RequestedProxyFilter(parsed.Filter, "username"));
            if (parsed.Session is { } session)
            {
                extensions.Set(new ProxySession(session));
            }
        }

        return proven;
    }
}
