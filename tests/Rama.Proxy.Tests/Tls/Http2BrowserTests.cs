using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Rama.Proxy.Core;
using Rama.Proxy.Mitm;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// Headless chromium (Debian) speaking h2 to Rama: through MITM to an nginx h2 origin (the decrypted requests are HTTP/2
/// on the client side), and straight to the echo listener, whose Akamai fingerprint has chromium's known shape.
/// </summary>
public sealed class Http2BrowserTests : LocalhostTlsTests
{
    private static string[] Chromium(string profile, params string[] extra) =>
    [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--ignore-certificate-errors", // the MITM leaf and the test CA are not in chromium's store
        $"--user-data-dir={profile}", .. extra,
    ];

    [Fact]
    public async Task Chromium_through_mitm_loads_an_https_page_over_h2_from_an_nginx_h2_origin()
    {
        await using var nginx = await NginxTls.StartAsync(Localhost.Cert, Localhost.Key, "<html><body><p id=x>served by nginx over tls</p></body></html>");
        using var authority = MitmAuthority.Create();
        var log = new RecordingAccessLog();
        var mitm = new MitmTunnel(new MitmOptions
        {
            Authority = authority,
            Upstream = new TlsClientOptions { ExtraTrustedRoots = TlsFiles.LoadAuthorities(Pki.CaFile) },
        }, accessLog: log);
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5), AllowDestination = IPAddress.IsLoopback },
        }, StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Tunnel = mitm }, accessLog: log));
        var profile = Directory.CreateTempSubdirectory("rama-chromium-h2-");
        try
        {
            var result = await Cli.RunAsync("chromium", Chromium(profile.FullName, $"--proxy-server=http://127.0.0.1:{proxy.Port}", "--proxy-bypass-list=<-loopback>",
                "--dump-dom", $"https://localhost:{nginx.Port}/index.html"), TimeSpan.FromSeconds(60));

            Assert.True(result.Text.Contains("served by nginx over tls", StringComparison.Ordinal),
                $"DOM:\n{result.Text}\n{result.Stderr}\nproxy:\n{string.Join('\n', log.Entries.Select(e => $"{e.Kind} {e.Method} {e.Target} {e.Status} {e.Protocol}"))}");
            var page = Assert.Single(log.Entries, e => e.Kind == AccessKind.Mitm && e.Target == "/index.html");
            Assert.Equal("HTTP/2", page.Protocol); // chromium and the MITM agreed on h2 (ALPN)
            Assert.Equal(200, page.Status);
            Assert.StartsWith("1:65536;2:0;", page.Http2Fingerprint, StringComparison.Ordinal);
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Chromium_speaks_h2_to_the_https_proxy_for_an_http_page_and_a_connect_tunnel()
    {
        await using var tlsOrigin = await NginxTls.StartAsync(Localhost.Cert, Localhost.Key, "<html><body><p id=x>served by nginx over tls</p></body></html>");
        await using var plainOrigin = await Http.Http2Upstream.NginxH2Origin.StartAsync(tls: false, http2: false);
        var log = new RecordingAccessLog();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions
        {
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5), AllowDestination = IPAddress.IsLoopback },
        }, StaticProxyAuthenticator.None, extras: new ForwardProxyExtras
        {
            Https = new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(Localhost.Cert, Localhost.Key) },
        }, accessLog: log));
        var profile = Directory.CreateTempSubdirectory("rama-chromium-https-proxy-");
        try
        {
            string[] viaProxy = [$"--proxy-server=https://127.0.0.1:{proxy.Port}", "--proxy-bypass-list=<-loopback>"];
            string Seen() => string.Join('\n', log.Entries.Select(e => $"{e.Kind} {e.Method} {e.Target} {e.Status} {e.Protocol} up={e.BytesFromClient} down={e.BytesToClient}"));

            // An http:// page: an h2 request whose :scheme, :authority and :path name the origin (the absolute form of HTTP/1.1).
            var page = await Cli.RunAsync("chromium", Chromium(profile.FullName, [.. viaProxy, "--dump-dom", $"http://127.0.0.1:{plainOrigin.Port}/page"]), TimeSpan.FromSeconds(60));
            Assert.True(page.Text.Contains("HTTP/1.1 GET /page", StringComparison.Ordinal), $"DOM:\n{page.Text}\n{page.Stderr}\nproxy:\n{Seen()}");
            var forwarded = log.Entries.Where(e => e.Target == $"http://127.0.0.1:{plainOrigin.Port}/page").ToList();
            Assert.NotEmpty(forwarded);
            Assert.All(forwarded, e => Assert.Equal("HTTP/2", e.Protocol));
            Assert.True(forwarded.Any(e => e.Status == 200), Seen());

            // An https:// page: CONNECT on an h2 stream (RFC 9113 §8.5), the stream carrying chromium's TLS to nginx.
            var secure = await Cli.RunAsync("chromium", Chromium(profile.FullName, [.. viaProxy, "--dump-dom", $"https://localhost:{tlsOrigin.Port}/index.html"]), TimeSpan.FromSeconds(60));
            Assert.True(secure.Text.Contains("served by nginx over tls", StringComparison.Ordinal), $"DOM:\n{secure.Text}\n{secure.Stderr}\nproxy:\n{Seen()}");
            // (chromium may open more than one tunnel to the origin; each is a stream of the h2 connection to the proxy)
            var tunnels = log.Entries.Where(e => e.Method == "CONNECT" && e.Target == $"localhost:{tlsOrigin.Port}").ToList();
            Assert.NotEmpty(tunnels);
            Assert.All(tunnels, e => Assert.Equal("HTTP/2", e.Protocol));
            // The page proves both ways; the count up can be lost when chromium's exit resets the stream mid-copy, so only the one down is checked.
            Assert.True(tunnels.Any(e => e.Status == 200 && e.BytesToClient > 0), Seen());
        }
        finally
        {
            profile.Delete(recursive: true);
        }

        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Chromium_to_the_echo_listener_over_h2_shows_its_akamai_fingerprint()
    {
        await using var echo = new ProxyHarness(TlsStacks.Echo(new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(Localhost.Cert, Localhost.Key) }));
        var profile = Directory.CreateTempSubdirectory("rama-chromium-echo-");
        try
        {
            var result = await Cli.RunAsync("chromium", Chromium(profile.FullName, "--dump-dom", $"https://127.0.0.1:{echo.Port}/fingerprint"), TimeSpan.FromSeconds(60));

            var akamai = Regex.Match(result.Text, "\"akamai\": \"([^\"]+)\"");
            Assert.True(akamai.Success, result.Text + result.Stderr);
            var parts = akamai.Groups[1].Value.Split('|');
            // Chromium's SETTINGS: HEADER_TABLE_SIZE 65536, ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 6 MiB, MAX_HEADER_LIST_SIZE 256 KiB;
            // the connection window raised by 15 MiB - 65535; no PRIORITY frames; pseudo-headers :method :authority :scheme :path.
            Assert.Equal("1:65536;2:0;4:6291456;6:262144", parts[0]);
            Assert.Equal("15663105", parts[1]);
            Assert.Equal("0", parts[2]);
            Assert.Equal("m,a,s,p", parts[3]);
            Assert.Contains("\"version\": \"HTTP/2\"", result.Text, StringComparison.Ordinal);
            Assert.Contains("\"alpn\": \"h2\"", result.Text, StringComparison.Ordinal);
            Assert.Matches("\"ja4h\": \"ge20", result.Text);
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }

    /// <summary>nginx serving one page over TLS with http2 (and HTTP/1.1) from a temporary prefix; killed on dispose.</summary>
    private sealed class NginxTls : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _dir;

        private NginxTls(Process process, string dir, int port)
        {
            _process = process;
            _dir = dir;
            Port = port;
        }

        public int Port { get; }

        public static async Task<NginxTls> StartAsync(string cert, string key, string page)
        {
            var dir = Directory.CreateTempSubdirectory("rama-nginx-tls-").FullName;
            Directory.CreateDirectory(Path.Combine(dir, "www"));
            await File.WriteAllTextAsync(Path.Combine(dir, "www", "index.html"), page);
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            var conf = Path.Combine(dir, "nginx.conf");
            await File.WriteAllTextAsync(conf, NginxConfig.Text(dir, $$"""
                    types { text/html html; }
                    server {
                        listen 127.0.0.1:{{port}} ssl http2;
                        ssl_certificate {{cert}};
                        ssl_certificate_key {{key}};
                        root {{dir}}/www;
                        location = /favicon.ico { return 204; }
                    }
                """, errorLevel: "info"));
            try
            {
                return new NginxTls(await NginxConfig.StartAsync(dir, conf, port), dir, port);
            }
            catch
            {
                Directory.Delete(dir, recursive: true);
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            _process.Dispose();
            Directory.Delete(_dir, recursive: true);
        }
    }
}
