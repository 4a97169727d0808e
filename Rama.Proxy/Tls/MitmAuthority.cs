using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Rama.Proxy.Tls;

/// <summary>
/// The MITM certificate authority: a CA (loaded from PEM files, or generated on first run into a
/// directory) that mints leaf certificates per host name on the fly. ECDSA P-256 keys (a key and a
/// signature take well under a millisecond, RSA-2048 key generation takes tens). Leaves are cached
/// per name; under concurrent demand each name is minted once (one <see cref="Lazy{T}"/> per name).
/// </summary>
public sealed class MitmAuthority : IDisposable
{
    /// <summary>File names inside a CA directory.</summary>
    public const string CertificateFile = "rama-ca.pem";
    public const string KeyFile = "rama-ca.key";

    private readonly ConcurrentDictionary<string, Lazy<SslStreamCertificateContext>> _leaves = new(StringComparer.OrdinalIgnoreCase);
    private readonly int _maxCached;
    private long _minted;

    public MitmAuthority(X509Certificate2 certificate, int maxCachedLeaves = 10_000)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (!certificate.HasPrivateKey)
        {
            throw new ArgumentException("the MITM CA certificate needs its private key", nameof(certificate));
        }

        Certificate = certificate;
        _maxCached = maxCachedLeaves;
    }

    /// <summary>The CA certificate (with its key). Clients must trust it.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Leaves minted since start (a cache hit mints nothing).</summary>
    public long Minted => Interlocked.Read(ref _minted);

    /// <summary>The CA certificate as PEM: what a client imports to trust the proxy.</summary>
    public string ExportCertificatePem() => Certificate.ExportCertificatePem();

    /// <summary>A new CA: ECDSA P-256, CA:true pathlen 0, keyCertSign, valid 10 years.</summary>
    public static MitmAuthority Create(string commonName = "Rama MITM CA", TimeProvider? time = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={commonName}, O=Rama"), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = (time ?? TimeProvider.System).GetUtcNow();
        using var created = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(10));
        return new MitmAuthority(X509Certificate2.CreateFromPem(created.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem()));
    }

    /// <summary>Loads the CA from a PEM certificate and its PEM key.</summary>
    public static MitmAuthority Load(string certificateFile, string keyFile) => new(X509Certificate2.CreateFromPemFile(certificateFile, keyFile));

    /// <summary>Loads the CA from <paramref name="directory"/>, generating and saving one there first when absent (key file mode 0600).</summary>
    public static MitmAuthority LoadOrCreate(string directory)
    {
        var certificatePath = Path.Combine(directory, CertificateFile);
        var keyPath = Path.Combine(directory, KeyFile);
        if (File.Exists(certificatePath) && File.Exists(keyPath))
        {
            return Load(certificatePath, keyPath);
        }

        Directory.CreateDirectory(directory);
        var authority = Create();
        using (var key = authority.Certificate.GetECDsaPrivateKey()!)
        {
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using var writer = new StreamWriter(keyPath, System.Text.Encoding.ASCII, options);
            writer.Write(key.ExportPkcs8PrivateKeyPem());
        }

        File.WriteAllText(certificatePath, authority.ExportCertificatePem());
        return authority;
    }

    /// <summary>The leaf for <paramref name="host"/>, minted on first use and cached.</summary>
    public SslStreamCertificateContext GetLeaf(string host)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        if (_leaves.Count >= _maxCached && !_leaves.ContainsKey(host))
        {
            _leaves.Clear(); // bounded memory; a rare re-mint is cheap
        }

        // GetOrAdd may build several Lazy wrappers under a race, but only the stored one is ever evaluated.
        return _leaves.GetOrAdd(host, static (name, self) => new Lazy<SslStreamCertificateContext>(() => self.Mint(name), LazyThreadSafetyMode.ExecutionAndPublication), this).Value;
    }

    private SslStreamCertificateContext Mint(string host)
    {
        Interlocked.Increment(ref _minted);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={Sanitize(host)}"), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        if (IPAddress.TryParse(host, out var address))
        {
            san.AddIpAddress(address);
        }
        else
        {
            san.AddDnsName(host);
        }

        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false)); // id-kp-serverAuth
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F; // RFC 5280 §4.1.2.2: a positive serial
        var now = DateTimeOffset.UtcNow;
        var notAfter = now.AddDays(397) < Certificate.NotAfter ? now.AddDays(397) : new DateTimeOffset(Certificate.NotAfter.ToUniversalTime()); // CA/B forum: at most 398 days
        using var issued = request.Create(Certificate, now.AddDays(-1), notAfter, serial);
        var leaf = issued.CopyWithPrivateKey(key);
        return SslStreamCertificateContext.Create(leaf, additionalCertificates: null, offline: true);
    }

    private static string Sanitize(string host) => new([.. host.Where(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or ':' or '_')]);

    public void Dispose() => Certificate.Dispose();
}
