using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// The TLS termination proxy's HTTP mode on the proxies' forwarder: bodies stream both ways (an origin's early answer reaches
/// the client while it still uploads) and origin connections are pooled across client connections. Clients are curl and SslStream.
/// </summary>
public sealed class TlsTerminationHttpModeTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);
    private readonly TestPki _pki = new();
    private readonly (string Cert, string Key) _a;

    public TlsTerminationHttpModeTests() => _a = _pki.Issue("a", false, "a.test");

    public void Dispose() => _pki.Dispose();

    private ProxyHarness Termination(int upstreamPort) => new(TlsStacks.Termination(
        new TlsServerOptions
        {
            Certificates = new ServerCertificates().AddFiles(_a.Cert, _a.Key),
            ApplicationProtocols = ["http/1.1"],
        },
        new TlsTerminationOptions { Upstream = new HostPort("127.0.0.1", upstreamPort), Mode = TerminationMode.Http }));

    [Fact]
    public async Task An_origin_answering_before_the_request_body_ends_is_heard_while_the_client_still_uploads()
    {
        var uploadedBeforeAnswer = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            // Refuses the upload at once (nginx's client_max_body_size answer), then drains whatever comes until the proxy closes.
            await socket.SendAsync("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 5\r\nConnection: close\r\n\r\nearly"u8.ToArray(), cts.Token);
            var buffer = new byte[64 * 1024];
            try
            {
                while (await socket.ReceiveAsync(buffer, cts.Token) > 0)
                {
                }
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException)
            {
            }
        });
        await using var proxy = Termination(origin.Port);
        using var socket = await proxy.ConnectAsync();
        await using var tls = await HandshakeAsync(socket, _pki.CaFile);
        using var cts = new CancellationTokenSource(Bound);

        // Announces 100 MB, sends 256 KiB of it and then only reads: a forwarder that sends the whole body first never answers.
        await tls.WriteAsync("POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100000000\r\n\r\n"u8.ToArray(), cts.Token);
        var chunk = new byte[16 * 1024];
        for (var i = 0; i < 16; i++)
        {
            await tls.WriteAsync(chunk, cts.Token);
        }

        await tls.FlushAsync(cts.Token);
        var answer = await ReadUntilAsync(tls, "early", cts.Token);

        Assert.StartsWith("HTTP/1.1 413 ", answer, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\nearly", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", answer, StringComparison.OrdinalIgnoreCase); // the rest of the upload cannot follow on this connection
    }

    [Fact]
    public async Task Origin_connections_are_pooled_across_client_connections()
    {
        await using var origin = new TestOrigin();
        await using var proxy = Termination(origin.Port);
        var url = $"https://a.test:{proxy.Port}/hello";
        var resolve = $"a.test:{proxy.Port}:127.0.0.1";

        for (var i = 0; i < 3; i++)
        {
            // A new curl each time: a new client connection and TLS session, the same origin connection behind it.
            var result = await Cli.CurlAsync("--fail", "--cacert", _pki.CaFile, "--resolve", resolve, url);
            Assert.True(result.ExitCode == 0, result.Stderr);
            Assert.Equal("hello", result.Text);
        }

        Assert.Equal(3, origin.Requests.Count);
        Assert.Equal(1, origin.Connections);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task A_large_upload_streams_through_and_arrives_intact()
    {
        var payload = new byte[32 * 1024 * 1024];
        new Random(7).NextBytes(payload);
        var file = Path.Combine(_pki.Directory, "upload.bin");
        await File.WriteAllBytesAsync(file, payload);
        await using var origin = new TestOrigin();
        await using var proxy = Termination(origin.Port);

        var result = await Cli.CurlAsync("--fail", "-H", "Expect:", "--cacert", _pki.CaFile, "--resolve", $"a.test:{proxy.Port}:127.0.0.1",
            "--data-binary", "@" + file, $"https://a.test:{proxy.Port}/hash");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(payload)), result.Text);
        Assert.Equal(payload.Length, Assert.Single(origin.Requests).BodyLength);
        await proxy.AssertNoOpenConnectionsAsync();
    }

    private static async Task<SslStream> HandshakeAsync(Socket socket, string caFile)
    {
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        var policy = new System.Security.Cryptography.X509Certificates.X509ChainPolicy
        {
            TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust,
            RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.AddRange(TlsFiles.LoadAuthorities(caFile));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "a.test", CertificateChainPolicy = policy }).WaitAsync(Bound);
        return tls;
    }

    private static async Task<string> ReadUntilAsync(Stream stream, string end, CancellationToken cancellationToken)
    {
        var text = new StringBuilder();
        var buffer = new byte[4096];
        while (!text.ToString().EndsWith(end, StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer, cancellationToken);
            if (read == 0)
            {
                break;
            }

            text.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }

        return text.ToString();
    }
}
