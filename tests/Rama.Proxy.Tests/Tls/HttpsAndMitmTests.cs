using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;
using Xunit.Abstractions;
using Rama.Proxy.Mitm;

namespace Rama.Proxy.Tests.Tls;

/// <summary>The HTTPS proxy (curl --proxy https://) and the MITM proxy, with curl as the client and a TLS echo origin.</summary>
public sealed class HttpsAndMitmTests : IDisposable
{
    private readonly TestPki _pki = new();
    private readonly (string Cert, string Key) _localhost;
    private readonly ITestOutputHelper _output;

    public HttpsAndMitmTests(ITestOutputHelper output)
    {
        _output = output;
        _localhost = _pki.Issue("localhost", false, "localhost", "127.0.0.1");
    }

    public void Dispose() => _pki.Dispose();

    private TlsServerOptions ServerTls() => new() { Certificates = new ServerCertificates().AddFiles(_localhost.Cert, _localhost.Key) };

    private static ForwardProxyOptions ProxyOptions => new() { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } };

    [Fact]
    public async Task Curl_uses_the_https_proxy_for_http_and_https_targets()
    {
        await using var origin = new ProxyHarness(TlsStacks.Echo(ServerTls()));
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(ProxyOptions, StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Https = ServerTls() }));
        var common = new[] { "--proxy", $"https://localhost:{proxy.Port}", "--proxy-cacert", _pki.CaFile };
        var http = await Cli.CurlAsync([.. common, $"http://127.0.0.1:{origin.Port}/plain"]);
        Assert.True(http.ExitCode == 0, http.Stderr);
        Assert.Contains("\"target\": \"/plain\"", http.Text, StringComparison.Ordinal);
        var https = await Cli.CurlAsync([.. common, "--cacert", _pki.CaFile, $"https://localhost:{origin.Port}/secure"]);
        Assert.True(https.ExitCode == 0, https.Stderr);
        Assert.Contains("\"target\": \"/secure\"", https.Text, StringComparison.Ordinal);
        Assert.Contains("\"sni\": \"localhost\"", https.Text, StringComparison.Ordinal);
        // The plain port still serves plain clients.
        var plain = await Cli.CurlAsync("--proxy", $"http://127.0.0.1:{proxy.Port}", $"http://127.0.0.1:{origin.Port}/still-plain");
        Assert.Contains("\"target\": \"/still-plain\"", plain.Text, StringComparison.Ordinal);
    }

    private (ProxyHarness Proxy, MitmAuthority Authority, string CaFile) StartMitm(ILoggerFactory? loggers = null, bool trustOrigin = true)
    {
        var authority = MitmAuthority.Create();
        var caFile = Path.Combine(_pki.Directory, "mitm-ca.pem");
        File.WriteAllText(caFile, authority.ExportCertificatePem());
        var mitm = new MitmTunnel(new MitmOptions
        {
            Authority = authority,
            Upstream = new TlsClientOptions { ExtraTrustedRoots = trustOrigin ? TlsFiles.LoadAuthorities(_pki.CaFile) : null },
        }, loggers);
        var proxy = new ProxyHarness(ForwardProxyStack.Create(ProxyOptions, StaticProxyAuthenticator.None, loggers, extras: new ForwardProxyExtras { Tunnel = mitm }));
        return (proxy, authority, caFile);
    }

    [Fact]
    public async Task Mitm_curl_sees_the_origin_content_while_the_proxy_logs_the_decrypted_request()
    {
        var log = new ListLoggerProvider();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(log).SetMinimumLevel(LogLevel.Information));
        await using var origin = new ProxyHarness(TlsStacks.Echo(ServerTls()));
        var (proxy, authority, caFile) = StartMitm(loggers);
        await using (proxy)
        {
            using (authority)
            {
                foreach (var via in new[] { "--proxy", "--socks5-hostname" })
                {
                    var address = via == "--proxy" ? $"http://127.0.0.1:{proxy.Port}" : $"127.0.0.1:{proxy.Port}";
                    var result = await Cli.CurlAsync(via, address, "--cacert", caFile, "-H", "X-Secret: seen-by-mitm", $"https://localhost:{origin.Port}/decrypted?via={via}");
                    Assert.True(result.ExitCode == 0, result.Stderr);
                    using var json = JsonDocument.Parse(result.Text);
                    Assert.Equal($"/decrypted?via={via}", json.RootElement.GetProperty("target").GetString());
                    Assert.Contains(json.RootElement.GetProperty("headers").EnumerateArray(), h => h[1].GetString() == "seen-by-mitm");
                    await Eventually.TrueAsync(() => log.Lines.Any(l => l.Contains($"GET /decrypted?via={via}", StringComparison.Ordinal) && l.Contains("MITM", StringComparison.Ordinal)),
                        TimeSpan.FromSeconds(5), "the decrypted request was not logged");
                }

                Assert.Equal(1, authority.Minted); // one name, one leaf, though two tunnels
            }
        }
    }

    [Fact]
    public async Task Mitm_verifies_the_origin_by_default()
    {
        await using var origin = new ProxyHarness(TlsStacks.Echo(ServerTls()));
        var (proxy, authority, caFile) = StartMitm(trustOrigin: false);
        await using (proxy)
        {
            using (authority)
            {
                var result = await Cli.CurlAsync("--proxy", $"http://127.0.0.1:{proxy.Port}", "--cacert", caFile, "-w", "%{http_code}", "-o", "/dev/null", $"https://localhost:{origin.Port}/");
                Assert.Equal("502", result.Text);
            }
        }
    }

    [Fact]
    public async Task Two_hundred_concurrent_first_handshakes_to_new_names_mint_each_certificate_once()
    {
        await using var origin = RawOrigin.Echo();
        var (proxy, authority, _) = StartMitm();
        await using (proxy)
        {
            using (authority)
            {
                const int clients = 200;
                const int names = 40;
                var clock = Stopwatch.StartNew();
                var subjects = await Task.WhenAll(Enumerable.Range(0, clients).Select(i => HandshakeThroughMitmAsync(proxy.Port, origin.Port, $"host{i % names}.test", authority.Certificate)));
                clock.Stop();
                _output.WriteLine($"{clients} concurrent CONNECT + TLS handshakes over {names} new names: {clock.Elapsed.TotalMilliseconds:0} ms, {authority.Minted} leaves minted");
                Assert.Equal(names, authority.Minted);
                for (var i = 0; i < clients; i++)
                {
                    Assert.Equal($"CN=host{i % names}.test", subjects[i]);
                }
            }
        }
    }

    private static async Task<string> HandshakeThroughMitmAsync(int proxyPort, int originPort, string serverName, X509Certificate2 ca)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxyPort), cts.Token);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"CONNECT 127.0.0.1:{originPort} HTTP/1.1\r\nHost: 127.0.0.1:{originPort}\r\n\r\n"), cts.Token);
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            Assert.Equal(1, await stream.ReadAsync(one, cts.Token));
            head.Append((char)one[0]);
        }

        Assert.StartsWith("HTTP/1.1 200", head.ToString(), StringComparison.Ordinal);
        await using var ssl = new SslStream(stream);
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName,
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(X509CertificateLoader.LoadCertificate(certificate!.GetRawCertData()));
            },
        }, cts.Token);
        return ssl.RemoteCertificate!.Subject;
    }

    [Fact]
    public void Minting_is_once_per_name_under_contention_and_fast()
    {
        using var authority = MitmAuthority.Create();
        var clock = Stopwatch.StartNew();
        authority.GetLeaf("warm-up.test");
        var single = Stopwatch.StartNew();
        for (var i = 0; i < 100; i++)
        {
            authority.GetLeaf($"sequential{i}.test");
        }

        _output.WriteLine($"minting: {single.Elapsed.TotalMilliseconds / 100:0.00} ms per leaf (100 sequential, after a {clock.Elapsed.TotalMilliseconds - single.Elapsed.TotalMilliseconds:0.0} ms warm-up)");
        var contexts = new ConcurrentBag<SslStreamCertificateContext>();
        Parallel.For(0, 2000, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i => contexts.Add(authority.GetLeaf($"n{i % 100}.test")));
        Assert.Equal(201, authority.Minted);
        Assert.Equal(100, contexts.Distinct().Count());
    }

    [Fact]
    public void A_ca_generated_into_a_directory_is_loaded_again()
    {
        var dir = Path.Combine(_pki.Directory, "ca");
        using var first = MitmAuthority.LoadOrCreate(dir);
        using var second = MitmAuthority.LoadOrCreate(dir);
        Assert.Equal(first.Certificate.Thumbprint, second.Certificate.Thumbprint);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, MitmAuthority.KeyFile)));
        }

        Assert.StartsWith("-----BEGIN CERTIFICATE-----", first.ExportCertificatePem(), StringComparison.Ordinal);
    }
}
