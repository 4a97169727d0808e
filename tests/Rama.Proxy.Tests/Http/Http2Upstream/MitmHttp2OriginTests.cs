using Rama.Proxy.Core;
using Rama.Proxy.Mitm;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>The MITM proxy's origin side: it offers ALPN h2 and forwards decrypted requests over HTTP/2 when the origin (nginx) chooses it.</summary>
public class MitmHttp2OriginTests
{
    [Fact]
    public async Task Mitm_speaks_http2_to_an_origin_that_offers_it()
    {
        await using var nginx = await NginxH2Origin.StartAsync(tls: true);
        using var authority = MitmAuthority.Create();
        var caFile = Path.Combine(Path.GetTempPath(), $"rama-mitm-ca-{Guid.NewGuid():N}.pem");
        await File.WriteAllTextAsync(caFile, authority.ExportCertificatePem());
        try
        {
            var mitm = new MitmTunnel(new MitmOptions { Authority = authority, Upstream = new TlsClientOptions { ExtraTrustedRoots = [nginx.Certificate!] } });
            await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } },
                StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Tunnel = mitm }));
            var result = await Cli.CurlAsync("--proxy", $"http://127.0.0.1:{proxy.Port}", "--cacert", caFile,
                $"https://localhost:{nginx.Port}/one", $"https://localhost:{nginx.Port}/two");
            Assert.True(result.ExitCode == 0, result.Stderr);
            // nginx saw HTTP/2 (the client spoke HTTP/1.1 to the MITM), the client's Host as :authority, no Via (MITM stays invisible)
            Assert.Equal($"HTTP/2.0 GET /one localhost:{nginx.Port} HTTP/2.0 GET /two localhost:{nginx.Port} ", result.Text);
        }
        finally
        {
            File.Delete(caFile);
        }
    }
}
