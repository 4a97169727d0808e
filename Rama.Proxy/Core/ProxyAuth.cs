using System.Security.Cryptography;
using System.Text;

namespace Rama.Proxy.Core;

/// <summary>The identity a client proved (HTTP Proxy-Authorization or SOCKS5 RFC 1929), kept in the extensions bag.</summary>
public sealed record ProxyUser(string Name);

/// <summary>Why offered credentials were refused (e.g. an unknown username label), in the extensions bag: the 407 body and logs say it.</summary>
public sealed record ProxyAuthFailure(string Reason);

/// <summary>Checks proxy credentials; shared by the HTTP and SOCKS5 servers.</summary>
public interface IProxyAuthenticator
{
    /// <summary>False when the proxy is open (no credentials asked).</summary>
    bool IsRequired { get; }

    /// <summary>The proven user, or null when the credentials are wrong.</summary>
    ProxyUser? Authenticate(string user, string password);

    /// <summary>
    /// Like <see cref="Authenticate(string, string)"/>, for offered credentials, with the request's (HTTP)
    /// or connection's (SOCKS5) extensions: an authenticator may record what the username carries
    /// (routing labels) or a <see cref="ProxyAuthFailure"/>. A failure recorded there is answered even
    /// when the proxy is open. Called whenever credentials are offered, also on an open proxy.
    /// </summary>
    ProxyUser? Authenticate(string user, string password, Extensions extensions) => Authenticate(user, password);
}

/// <summary>A fixed user/password table; comparisons are constant-time.</summary>
public sealed class StaticProxyAuthenticator : IProxyAuthenticator
{
    private readonly Dictionary<string, byte[]> _passwords;

    public StaticProxyAuthenticator(IEnumerable<KeyValuePair<string, string>> users)
    {
        _passwords = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (user, password) in users)
        {
            _passwords[user] = SHA256.HashData(Encoding.UTF8.GetBytes(password));
        }
    }

    /// <summary>No users: an open proxy.</summary>
    public static StaticProxyAuthenticator None { get; } = new([]);

    public bool IsRequired => _passwords.Count > 0;

    public ProxyUser? Authenticate(string user, string password)
    {
        var offered = SHA256.HashData(Encoding.UTF8.GetBytes(password));
        if (!_passwords.TryGetValue(user, out var expected))
        {
            CryptographicOperations.FixedTimeEquals(offered, offered); // same work for unknown users
            return null;
        }

        return CryptographicOperations.FixedTimeEquals(offered, expected) ? new ProxyUser(user) : null;
    }

    /// <summary>Parses <c>user:pass</c> (the password may contain ':').</summary>
    public static KeyValuePair<string, string> ParseCredential(string text)
    {
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            throw new FormatException($"credential '{text}' must be user:password");
        }

        return new(text[..colon], text[(colon + 1)..]);
    }
}
