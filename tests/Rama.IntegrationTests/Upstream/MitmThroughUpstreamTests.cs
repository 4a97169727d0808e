using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Rama.Testing;

namespace Rama.IntegrationTests.Upstream;

/// <summary>
/// rama-node with --proxydb and --mitm: a decrypted tunnel's origin connections (the first, and each redial after the origin
/// closed) leave through the upstream the request selected, a real tinyproxy here: the TLS origin answers with the source
/// address it saw, tinyproxy's own (127.0.0.13), never the node's.
/// </summary>
[Collection("upstream peers")]
public sealed class MitmThroughUpstreamTests(UpstreamPeersFixture peers) : IAsyncLifetime
{
    private readonly TestPki _pki = new();
    private X509Certificate2 _originCertificate = null!;
    private RawOrigin _origin = null!;

    public Task InitializeAsync()
    {
        var (cert, key) = _pki.Issue("localhost", false, "localhost", "127.0.0.1");
        using (var pem = X509Certificate2.CreateFromPemFile(cert, key))
        {
            _originCertificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }

        _origin = new RawOrigin(AnswerWithSourceAddressAndCloseAsync);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _origin.DisposeAsync();
        _originCertificate.Dispose();
        _pki.Dispose();
    }

    // One request per TLS connection, answered with the peer's address and Connection: close: every request needs a new origin connection.
    private async Task AnswerWithSourceAddressAndCloseAsync(Socket socket)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            await using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false));
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificate = _originCertificate,
                ApplicationProtocols = [SslApplicationProtocol.Http11],
            }, cts.Token);
            var head = new StringBuilder();
            var buffer = new byte[4096];
            while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await ssl.ReadAsync(buffer, cts.Token);
                if (n == 0)
                {
                    return;
                }

                head.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }

            var path = head.ToString().Split(' ')[1];
            var body = Encoding.ASCII.GetBytes($"{path} from {((System.Net.IPEndPoint)socket.RemoteEndPoint!).Address}\n");
            await ssl.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n").Concat(body).ToArray(), cts.Token);
            await ssl.ShutdownAsync();
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
        {
            // The assertions say what went wrong; a torn connection here is not the finding.
        }
    }

    [Fact]
    public async Task Every_origin_connection_of_a_decrypted_tunnel_leaves_through_the_selected_tinyproxy()
    {
        var caDir = Path.Combine(_pki.Directory, "mitm-ca");
        var export = await Cli.RunAsync("dotnet", [NodeProcess.NodeDll(), "ca", "export", "--mitm-ca-dir", caDir], TimeSpan.FromSeconds(30));
        var mitmCa = Path.Combine(_pki.Directory, "mitm-ca.pem");
        await File.WriteAllTextAsync(mitmCa, export.Text);
        var db = Path.Combine(peers.Directory, $"proxydb-{Guid.NewGuid():N}.csv");
        await File.WriteAllTextAsync(db, peers.DatabaseCsv());
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--auth", "john:pw", "--proxydb", db,
            "--mitm", "--mitm-ca-dir", caDir, "--mitm-upstream-ca", _pki.CaFile]);
        var origin = $"https://localhost:{_origin.Port}";

        // Two URLs in one curl run share one tunnel; the origin closes after each answer, so the second is a redial.
        var result = await Cli.CurlAsync("-x", $"http://127.0.0.1:{node.Endpoint.Port}", "-U", "john-id-tiny:pw", "--cacert", mitmCa,
            $"{origin}/first", $"{origin}/second");

        Assert.True(result.ExitCode == 0, result.Stderr + node.Output);
        var tiny = UpstreamPeersFixture.SourceOf["tiny"];
        Assert.Equal($"/first from {tiny}\n/second from {tiny}\n", result.Text);
        Assert.Equal(2, _origin.Accepted);
        await node.WaitForLineAsync($"mitm GET https://localhost:{_origin.Port}/second 200", TimeSpan.FromSeconds(5)); // decrypted, not relayed
    }
}
