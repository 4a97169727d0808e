using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;

namespace Rama.Admin.Cluster;

/// <summary>
/// How a member proves it belongs to the fleet, on Akka.Remote's TLS (DotNetty, mutual authentication): this member's
/// certificate, and the one CA whose certificates it admits.
/// <para>
/// With a shared secret no certificate is handed out: every member derives the same fleet CA key from the secret
/// (PBKDF2-SHA256, so a guess costs what it costs the members), makes the CA certificate from it and mints its own
/// leaf certificate at start, with a fresh key. Peers admit a leaf that chains to that CA. The secret never crosses the
/// wire; a member with another secret derives another CA, and neither side admits the other.
/// </para>
/// </summary>
public sealed class FleetCertificates : IDisposable
{
    // Changing these changes every fleet's CA: fixed for the wire format's life.
    private static readonly byte[] Salt = Encoding.ASCII.GetBytes("rama-fleet-ca/p-256/v1");
    private const int Iterations = 200_000;
    private static readonly DateTimeOffset CaNotBefore = new(2020, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset CaNotAfter = new(2100, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    private FleetCertificates(X509Certificate2 member, X509Certificate2 authority)
    {
        Member = member;
        Authority = authority;
    }

    /// <summary>This member's certificate, with its private key (presented as server and as client).</summary>
    public X509Certificate2 Member { get; }

    /// <summary>The CA every member's certificate must chain to.</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>A short name of the CA for logs (<c>fleet CA 1a2b3c4d</c>): two members with different ones hold different secrets.</summary>
    public string AuthorityId => Convert.ToHexStringLower(SHA256.HashData(Authority.PublicKey.EncodedKeyValue.RawData))[..8];

    /// <summary>The fleet CA of <paramref name="secret"/> and a fresh leaf for the member <paramref name="memberName"/>.</summary>
    public static FleetCertificates FromSecret(string secret, string memberName)
    {
        ArgumentException.ThrowIfNullOrEmpty(secret);
        using var caKey = DeriveCaKey(secret);
        var id = Convert.ToHexStringLower(SHA256.HashData(caKey.ExportSubjectPublicKeyInfo()))[..8];
        var caRequest = new CertificateRequest($"CN=Rama fleet CA {id}, O=Rama", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        // The same subject and key on every member; only the signature differs (ECDSA is randomised), which a chain ignores.
        using var selfSigned = caRequest.CreateSelfSigned(CaNotBefore, CaNotAfter);
        // Only the CA's public certificate is kept: the trust anchor of the validator; the key signs this member's leaf below and is gone.
        var authority = X509CertificateLoader.LoadCertificate(selfSigned.RawData);

        using var memberKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName($"CN={Sanitize(memberName)}, O=Rama fleet {id}"), memberKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuth, ClientAuth], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        var now = DateTimeOffset.UtcNow;
        using var unsigned = request.Create(authority.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), now.AddMinutes(-10), now.AddYears(1), serial);
        using var withKey = unsigned.CopyWithPrivateKey(memberKey);
        // Through PKCS#12 so SslStream gets a key it can use on every platform (an ephemeral key is refused on Windows).
        var member = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        return new FleetCertificates(member, authority);
    }

    /// <summary>The operator's certificates: this member's (PEM with <paramref name="keyFile"/>, or PKCS#12) and the CA (PEM).</summary>
    public static FleetCertificates FromFiles(string certificateFile, string? keyFile, string caFile)
    {
        X509Certificate2 member;
        if (keyFile is not null)
        {
            using var pem = X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
            member = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        else if (File.ReadAllText(certificateFile).Contains("-----BEGIN", StringComparison.Ordinal))
        {
            using var pem = X509Certificate2.CreateFromPemFile(certificateFile);
            member = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        else
        {
            member = X509CertificateLoader.LoadPkcs12FromFile(certificateFile, null);
        }

        if (!member.HasPrivateKey)
        {
            member.Dispose();
            throw new CryptographicException($"{certificateFile} holds no private key: give the key with --cluster-key");
        }

        var authority = X509CertificateLoader.LoadCertificateFromFile(caFile);
        return new FleetCertificates(member, authority);
    }

    /// <summary>
    /// Akka.Remote's certificate check for both directions: the peer's certificate must chain to <see cref="Authority"/>
    /// alone (not the machine's roots), be in its validity period and be allowed for client and server authentication.
    /// A refusal is logged with what was wrong (another fleet's CA: most likely another secret).
    /// </summary>
    public CertificateValidationCallback Validator(Action<string, string>? refused = null) => (certificate, _, peer, _, log) =>
    {
        var reason = Check(certificate);
        if (reason is null)
        {
            return true;
        }

        log.Warning("Refused cluster peer {0}: {1}", peer, reason);
        refused?.Invoke(peer, reason);
        return false;
    };

    /// <summary>Null when <paramref name="certificate"/> belongs to this fleet; otherwise why not.</summary>
    public string? Check(X509Certificate2? certificate)
    {
        if (certificate is null)
        {
            return "it presented no certificate (mutual TLS is required)";
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(ServerAuth);
        chain.ChainPolicy.ApplicationPolicy.Add(ClientAuth);
        if (chain.Build(certificate))
        {
            return null;
        }

        var statuses = chain.ChainStatus.Select(s => s.Status).ToHashSet();
        if (statuses.Contains(X509ChainStatusFlags.PartialChain) || statuses.Contains(X509ChainStatusFlags.UntrustedRoot))
        {
            return $"its certificate ({certificate.Subject}) was issued by '{certificate.Issuer}', not by this fleet's CA '{Authority.Subject}' " +
                "(another --cluster-secret, or a certificate from another CA)";
        }

        return $"its certificate ({certificate.Subject}) failed validation: {string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()))}";
    }

    public void Dispose()
    {
        Member.Dispose();
        Authority.Dispose();
    }

    /// <summary>The P-256 key of the fleet CA: PBKDF2 of the secret, re-derived with a counter in the rare case it is not below the curve's order.</summary>
    private static ECDsa DeriveCaKey(string secret)
    {
        var password = Encoding.UTF8.GetBytes(secret);
        for (var attempt = 0; ; attempt++)
        {
            var salt = attempt == 0 ? Salt : [.. Salt, (byte)attempt];
            var d = Rfc2898DeriveBytes.Pbkdf2(password, salt, Iterations, HashAlgorithmName.SHA256, 32);
            try
            {
                var key = ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = d });
                return key;
            }
            catch (CryptographicException) when (attempt < 8)
            {
                // D was 0 or not below the order n (probability about 2^-32): derive again.
            }
            finally
            {
                CryptographicOperations.ZeroMemory(d);
            }
        }
    }

    private static string Sanitize(string name) => new([.. name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or '@' or ':' ? c : '-')]);
}
