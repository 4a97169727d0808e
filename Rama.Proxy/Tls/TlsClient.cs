using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Rama.Proxy.Tls;

/// <summary>Options of TLS origination (to an upstream). Verification is on unless explicitly turned off.</summary>
public sealed record TlsClientOptions
{
    /// <summary>ALPN offered upstream. Default http/1.1 only: our HTTP/2 does not exist yet.</summary>
    public IReadOnlyList<string> ApplicationProtocols { get; init; } = ["http/1.1"];

    /// <summary>Extra roots trusted besides the system store (a test CA, a private PKI).</summary>
    public X509Certificate2Collection? ExtraTrustedRoots { get; init; }

    /// <summary>Accept any upstream certificate. Default off; for debugging only.</summary>
    public bool SkipVerification { get; init; }

    /// <summary>Default: the system's choice (TLS 1.2 and 1.3 on current OpenSSL).</summary>
    public SslProtocols EnabledProtocols { get; init; } = SslProtocols.None;

    /// <summary>Longest upstream handshake. Default 10 s, as the server side.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>TLS origination over any duplex pipe (a dialled socket).</summary>
public static class TlsClient
{
    /// <summary>
    /// Runs the client handshake for <paramref name="serverName"/> (SNI and the name verified) and
    /// returns the plaintext pipe; disposing it disposes <paramref name="owned"/> (the socket) too.
    /// Throws <see cref="AuthenticationException"/> when the upstream cannot be verified.
    /// </summary>
    public static async ValueTask<SslDuplexPipe> ConnectAsync(IDuplexPipe wire, string serverName, TlsClientOptions options, IAsyncDisposable? owned,
        CancellationToken cancellationToken, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var ssl = new SslStream(new DuplexPipeStream(wire), leaveInnerStreamOpen: false);
        using var timeout = new CancellationTokenSource(options.HandshakeTimeout, time ?? TimeProvider.System);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = serverName,
                ApplicationProtocols = options.ApplicationProtocols.Count == 0 ? null : [.. options.ApplicationProtocols.Select(p => new SslApplicationProtocol(p))],
                EnabledSslProtocols = options.EnabledProtocols,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, certificate, _, errors) => Verify(options, certificate, errors),
            }, linked.Token).ConfigureAwait(false);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return new SslDuplexPipe(ssl, wire, owned);
    }

    private static bool Verify(TlsClientOptions options, X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (options.SkipVerification || errors == SslPolicyErrors.None)
        {
            return true;
        }

        // Only an unknown root may be forgiven, and only by an extra root we were given; a wrong name never.
        if (errors != SslPolicyErrors.RemoteCertificateChainErrors || options.ExtraTrustedRoots is not { Count: > 0 } roots || certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(leaf);
    }
}
