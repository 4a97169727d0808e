using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Rama.Admin.Cluster;

namespace Rama.Admin.Tests.Cluster;

/// <summary>The fleet CA derived from the secret: the same secret admits, another secret or a stranger's certificate is refused.</summary>
public sealed class FleetCertificatesTests
{
    private const string Secret = "a-fleet-secret-of-24-chars";

    [Fact]
    public void Two_members_with_the_same_secret_derive_the_same_CA_and_admit_each_other()
    {
        using var first = FleetCertificates.FromSecret(Secret, "127.0.0.1:4053");
        using var second = FleetCertificates.FromSecret(Secret, "127.0.0.1:4054");

        Assert.Equal(first.AuthorityId, second.AuthorityId);
        Assert.Equal(first.Authority.Subject, second.Authority.Subject);
        Assert.NotEqual(first.Member.Thumbprint, second.Member.Thumbprint); // every member mints its own leaf
        Assert.Null(first.Check(second.Member));
        Assert.Null(second.Check(first.Member));
    }

    [Fact]
    public void The_leaf_is_for_client_and_server_authentication_and_holds_its_key_but_the_CA_key_is_never_kept()
    {
        using var certificates = FleetCertificates.FromSecret(Secret, "node1:4054");

        Assert.True(certificates.Member.HasPrivateKey);
        Assert.False(certificates.Authority.HasPrivateKey);
        var usages = certificates.Member.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value).ToList();
        Assert.Contains("1.3.6.1.5.5.7.3.1", usages);
        Assert.Contains("1.3.6.1.5.5.7.3.2", usages);
        Assert.Equal(certificates.Authority.Subject, certificates.Member.Issuer);
    }

    [Fact]
    public void A_member_of_another_secret_is_refused_naming_the_other_CA()
    {
        using var ours = FleetCertificates.FromSecret(Secret, "127.0.0.1:4053");
        using var theirs = FleetCertificates.FromSecret("another-fleet-secret-0002", "127.0.0.1:4054");

        Assert.NotEqual(ours.AuthorityId, theirs.AuthorityId);
        var reason = ours.Check(theirs.Member);
        Assert.NotNull(reason);
        Assert.Contains("not by this fleet's CA", reason, StringComparison.Ordinal);
        Assert.Contains("another --cluster-secret", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_self_signed_stranger_and_no_certificate_are_refused()
    {
        using var ours = FleetCertificates.FromSecret(Secret, "127.0.0.1:4053");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Rama fleet CA 00000000, O=Rama", key, HashAlgorithmName.SHA256);
        using var stranger = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));

        Assert.NotNull(ours.Check(stranger));
        Assert.Equal("it presented no certificate (mutual TLS is required)", ours.Check(null));
    }

    [Fact]
    public void Operator_certificates_from_PEM_files_admit_what_their_CA_issued()
    {
        var directory = Directory.CreateTempSubdirectory("rama-fleet-certs-");
        try
        {
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var caRequest = new CertificateRequest("CN=Operator fleet CA", caKey, HashAlgorithmName.SHA256);
            caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
            X509Certificate2 Issue(string name, out ECDsa memberKey)
            {
                memberKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                var request = new CertificateRequest($"CN={name}", memberKey, HashAlgorithmName.SHA256);
                request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
                return request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30), RandomNumberGenerator.GetBytes(8));
            }

            using var node1 = Issue("node1", out var key1);
            using var node2 = Issue("node2", out var key2);
            var caFile = Path.Combine(directory.FullName, "ca.pem");
            File.WriteAllText(caFile, ca.ExportCertificatePem());
            File.WriteAllText(Path.Combine(directory.FullName, "node1.pem"), node1.ExportCertificatePem());
            File.WriteAllText(Path.Combine(directory.FullName, "node1.key"), key1.ExportPkcs8PrivateKeyPem());

            using var fromFiles = FleetCertificates.FromFiles(Path.Combine(directory.FullName, "node1.pem"), Path.Combine(directory.FullName, "node1.key"), caFile);
            using var secretFleet = FleetCertificates.FromSecret(Secret, "127.0.0.1:4053");

            Assert.True(fromFiles.Member.HasPrivateKey);
            Assert.Null(fromFiles.Check(node2));
            Assert.NotNull(fromFiles.Check(secretFleet.Member));
            key1.Dispose();
            key2.Dispose();
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
