using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Rama.Proxy.Tls;

/// <summary>Chooses the certificate for a ClientHello: by SNI from files, or minted by the MITM authority.</summary>
public interface IServerCertificateSelector
{
    /// <summary>The certificate (with its chain) to present, or null to refuse the handshake (unrecognized_name).</summary>
    ValueTask<SslStreamCertificateContext?> SelectAsync(TlsClientHello hello, CancellationToken cancellationToken);
}

/// <summary>What happens when the SNI names no certificate we hold (RFC 6066 §3).</summary>
public enum UnknownServerNamePolicy
{
    /// <summary>Present the default certificate (the first one added). What nginx and haproxy do.</summary>
    UseDefault,
    /// <summary>Fail the handshake with the unrecognized_name alert.</summary>
    Reject,
}

/// <summary>
/// Certificates keyed by host name, exact names first, then one-label wildcards (<c>*.example.com</c>,
/// RFC 6125 §6.4.3). A hello without SNI, or with an unknown name, gets the default (first added)
/// certificate unless the policy rejects it. Built once at start-up; lookups are lock-free.
/// </summary>
public sealed class ServerCertificates : IServerCertificateSelector
{
    private readonly Dictionary<string, SslStreamCertificateContext> _byName = new(StringComparer.OrdinalIgnoreCase);
    private SslStreamCertificateContext? _default;

    public UnknownServerNamePolicy UnknownServerName { get; init; } = UnknownServerNamePolicy.UseDefault;

    public int Count => _byName.Count;

    /// <summary>
    /// Adds a certificate for <paramref name="names"/> (none: the DNS names of its subject alternative
    /// name extension). The first certificate added is the default.
    /// </summary>
    public ServerCertificates Add(X509Certificate2 certificate, X509Certificate2Collection? chain = null, IEnumerable<string>? names = null)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (!certificate.HasPrivateKey)
        {
            throw new ArgumentException($"certificate {certificate.Subject} has no private key", nameof(certificate));
        }

        var context = SslStreamCertificateContext.Create(certificate, chain, offline: true);
        _default ??= context;
        var list = names?.ToList() is { Count: > 0 } given ? given : DnsNames(certificate);
        foreach (var name in list)
        {
            _byName[name.TrimEnd('.')] = context;
        }

        return this;
    }

    /// <summary>Loads a certificate from PEM files (the certificate file may carry the chain after the leaf) or a PFX/PKCS#12 file (no key file).</summary>
    public ServerCertificates AddFiles(string certificateFile, string? keyFile, string? password = null, IEnumerable<string>? names = null)
    {
        var (leaf, chain) = TlsFiles.LoadCertificate(certificateFile, keyFile, password);
        return Add(leaf, chain, names);
    }

    public ValueTask<SslStreamCertificateContext?> SelectAsync(TlsClientHello hello, CancellationToken cancellationToken) => new(Select(hello?.ServerName));

    /// <summary>The certificate for a name (null name: no SNI).</summary>
    public SslStreamCertificateContext? Select(string? serverName)
    {
        if (serverName is null)
        {
            return _default;
        }

        if (_byName.TryGetValue(serverName, out var exact))
        {
            return exact;
        }

        var dot = serverName.IndexOf('.', StringComparison.Ordinal);
        if (dot > 0 && _byName.TryGetValue(string.Concat("*", serverName.AsSpan(dot)), out var wildcard))
        {
            return wildcard;
        }

        return UnknownServerName == UnknownServerNamePolicy.UseDefault ? _default : null;
    }

    private static List<string> DnsNames(X509Certificate2 certificate)
    {
        var names = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san)
            {
                names.AddRange(san.EnumerateDnsNames());
            }
        }

        return names;
    }
}

/// <summary>Certificate and key files: PEM (certificate chain + PKCS#8/RSA/EC key) or PKCS#12.</summary>
public static class TlsFiles
{
    public static (X509Certificate2 Leaf, X509Certificate2Collection Chain) LoadCertificate(string certificateFile, string? keyFile, string? password = null)
    {
        ArgumentNullException.ThrowIfNull(certificateFile);
        var extension = Path.GetExtension(certificateFile);
        if (keyFile is null && (extension.Equals(".pfx", StringComparison.OrdinalIgnoreCase) || extension.Equals(".p12", StringComparison.OrdinalIgnoreCase)))
        {
            var all = X509CertificateLoader.LoadPkcs12CollectionFromFile(certificateFile, password, X509KeyStorageFlags.Exportable);
            var leaf = all.FirstOrDefault(c => c.HasPrivateKey) ?? throw new ArgumentException($"{certificateFile} holds no certificate with a private key");
            var rest = new X509Certificate2Collection();
            rest.AddRange(all.Where(c => !ReferenceEquals(c, leaf)).ToArray());
            return (leaf, rest);
        }

        var pem = new X509Certificate2Collection();
        pem.ImportFromPemFile(certificateFile);
        if (pem.Count == 0)
        {
            throw new ArgumentException($"{certificateFile} holds no PEM certificate");
        }

        var withKey = password is null
            ? X509Certificate2.CreateFromPemFile(certificateFile, keyFile ?? certificateFile)
            : X509Certificate2.CreateFromEncryptedPemFile(certificateFile, password, keyFile ?? certificateFile);
        var chain = new X509Certificate2Collection();
        chain.AddRange(pem.Skip(1).ToArray());
        return (withKey, chain);
    }

    /// <summary>Loads every certificate of a PEM file (trust anchors: client CAs, extra upstream roots).</summary>
    public static X509Certificate2Collection LoadAuthorities(string pemFile)
    {
        var collection = new X509Certificate2Collection();
        collection.ImportFromPemFile(pemFile);
        return collection.Count > 0 ? collection : throw new ArgumentException($"{pemFile} holds no PEM certificate");
    }
}
