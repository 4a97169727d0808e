using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Rama.Proxy.Tls;

/// <summary>Whether clients must present a certificate (mTLS).</summary>
public enum ClientCertificateMode
{
    None,
    /// <summary>Asked for; a client without one is let in, a client with an untrusted one is refused.</summary>
    Optional,
    Required,
}

/// <summary>Options of TLS termination. Every default names its source. Validated by the layer.</summary>
public sealed record TlsServerOptions
{
    /// <summary>How the certificate is chosen from the ClientHello (SNI map, or the MITM authority).</summary>
    public required IServerCertificateSelector Certificates { get; init; }

    /// <summary>
    /// ALPN protocols we accept, in our order of preference (RFC 7301). Default http/1.1; a listener that serves HTTP also
    /// offers h2 first (<see cref="Http2"/>), a raw TCP relay does not. Empty: no ALPN.
    /// </summary>
    public IReadOnlyList<string> ApplicationProtocols { get; init; } = ["http/1.1"];

    /// <summary>
    /// On a listener that parses HTTP (TLS termination in HTTP mode, the HTTPS proxy, MITM, echo): offer <c>h2</c> before
    /// the protocols of <see cref="ApplicationProtocols"/> when they include http/1.1, so a client that offers h2 gets it
    /// (RFC 9113 §3.2) and one that does not gets HTTP/1.1. Default true. Ignored in TCP mode (no HTTP is parsed there).
    /// </summary>
    public bool Http2 { get; init; } = true;

    /// <summary>The options of a listener that serves HTTP: h2 offered first when <see cref="Http2"/> is on and http/1.1 is offered.</summary>
    internal TlsServerOptions ForHttp() =>
        Http2 && ApplicationProtocols.Contains("http/1.1") && !ApplicationProtocols.Contains("h2")
            ? this with { ApplicationProtocols = ["h2", .. ApplicationProtocols] }
            : this;

    public ClientCertificateMode ClientCertificates { get; init; } = ClientCertificateMode.None;

    /// <summary>Roots that client certificates must chain to (required when client certificates are asked for).</summary>
    public X509Certificate2Collection? ClientCertificateAuthorities { get; init; }

    /// <summary>TLS 1.2 and 1.3 (RFC 8996 deprecates 1.0 and 1.1; Mozilla's "intermediate" profile).</summary>
    public SslProtocols EnabledProtocols { get; init; } = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>Longest time from accept to a finished handshake, ClientHello included. Default 10 s (haproxy's <c>timeout client</c> examples and nginx's <c>ssl_handshake_timeout</c> 60 s are looser; a handshake takes milliseconds).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Largest ClientHello accepted (handshake message bytes). Default 16 KiB: browsers' post-quantum hellos are about 2 KiB; one full record is 16 KiB (RFC 8446 §5.1).</summary>
    public int MaxClientHelloBytes { get; init; } = 16 * 1024;

    public void Validate()
    {
        ArgumentNullException.ThrowIfNull(Certificates);
        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("HandshakeTimeout must be positive", nameof(HandshakeTimeout));
        }

        if (MaxClientHelloBytes is < 512 or > 1024 * 1024)
        {
            throw new ArgumentException($"MaxClientHelloBytes must be within 512..1048576, was {MaxClientHelloBytes}", nameof(MaxClientHelloBytes));
        }

        if (ClientCertificates != ClientCertificateMode.None && ClientCertificateAuthorities is not { Count: > 0 })
        {
            throw new ArgumentException("client certificates need ClientCertificateAuthorities to verify them against", nameof(ClientCertificateAuthorities));
        }

        if (ApplicationProtocols.Any(p => string.IsNullOrEmpty(p) || p.Length > 255))
        {
            throw new ArgumentException("ALPN protocol names are 1..255 bytes (RFC 7301 §3.1)", nameof(ApplicationProtocols));
        }
    }
}

/// <summary>The outcome of a TLS handshake, in the connection's extensions bag.</summary>
public sealed record TlsConnectionInfo(
    SslProtocols Protocol,
    System.Net.Security.TlsCipherSuite CipherSuite,
    string? ApplicationProtocol,
    string? ServerName,
    X509Certificate2? ClientCertificate)
{
    /// <summary>"TLSv1.3"-style text.</summary>
    public string ProtocolText => Protocol switch
    {
        SslProtocols.Tls13 => "TLSv1.3",
        SslProtocols.Tls12 => "TLSv1.2",
        _ => Protocol.ToString(),
    };
}
