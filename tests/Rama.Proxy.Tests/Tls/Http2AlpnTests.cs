using System.Text.Json;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Mitm;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// ALPN h2 on the TLS listeners that parse HTTP (RFC 9113 §3.2): TLS termination in HTTP mode, MITM's client side, the
/// echo listener (with h2c prior knowledge too), with curl as the client; TCP-mode termination never offers h2. The
/// Akamai fingerprint of the h2 client is in the echo JSON and in the access entries.
/// </summary>
public sealed class Http2AlpnTests : LocalhostTlsTests
{
    // The node's default ALPN list (http/1.1): the HTTP listeners add h2 in front of it.
    private TlsServerOptions ServerTls() => new() { Certificates = new ServerCertificates().AddFiles(Localhost.Cert, Localhost.Key), ApplicationProtocols = ["http/1.1"] };

    [Fact]
    public async Task Termination_in_http_mode_negotiates_h2_with_curl_and_http11_when_the_client_offers_only_that()
    {
        await using var origin = new TestOrigin();
        var log = new RecordingAccessLog();
        await using var proxy = new ProxyHarness(TlsStacks.Termination(ServerTls(),
            new TlsTerminationOptions { Upstream = new HostPort("127.0.0.1", origin.Port), Mode = TerminationMode.Http }, accessLog: log));

        var h2 = await Cli.CurlAsync("--http2", "--cacert", Pki.CaFile, "-w", "\nversion=%{http_version}", $"https://localhost:{proxy.Port}/hello");
        Assert.True(h2.ExitCode == 0, h2.Stderr);
        Assert.Equal("hello\nversion=2", h2.Text);
        Assert.Equal("GET /hello HTTP/1.1", Assert.Single(origin.Requests).RequestLine); // HTTP/1.1 to the upstream
        Assert.Equal($"localhost:{proxy.Port}", origin.Requests.Single().Header("Host"));

        var h1 = await Cli.CurlAsync("--http1.1", "--cacert", Pki.CaFile, "-w", "\nversion=%{http_version}", $"https://localhost:{proxy.Port}/hello");
        Assert.True(h1.ExitCode == 0, h1.Stderr);
        Assert.Equal("hello\nversion=1.1", h1.Text);

        await proxy.AssertNoOpenConnectionsAsync();
        var entries = log.Entries.ToArray();
        Assert.Equal(2, entries.Length);
        Assert.All(entries, e => Assert.Equal(AccessKind.Tls, e.Kind));
        Assert.Single(entries, e => e.Protocol == "HTTP/2" && e.Http2Fingerprint is not null && e.BytesToClient == 5);
        Assert.Single(entries, e => e.Protocol is null);
    }

    [Fact]
    public async Task Termination_in_tcp_mode_does_not_offer_h2()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(TlsStacks.Termination(ServerTls(),
            new TlsTerminationOptions { Upstream = new HostPort("127.0.0.1", origin.Port), Mode = TerminationMode.Tcp }));

        var result = await Cli.CurlAsync("--http2", "--cacert", Pki.CaFile, "-w", "\nversion=%{http_version}", $"https://localhost:{proxy.Port}/hello");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal("hello\nversion=1.1", result.Text); // the relayed origin speaks HTTP/1.1: h2 must not have been agreed
    }

    [Fact]
    public async Task Mitm_serves_curl_over_h2_and_logs_the_decrypted_h2_request()
    {
        await using var origin = new ProxyHarness(TlsStacks.Echo(ServerTls()));
        using var authority = MitmAuthority.Create();
        var caFile = Path.Combine(Pki.Directory, "mitm-ca.pem");
        File.WriteAllText(caFile, authority.ExportCertificatePem());
        var log = new RecordingAccessLog();
        var mitm = new MitmTunnel(new MitmOptions
        {
            Authority = authority,
            Upstream = new TlsClientOptions { ExtraTrustedRoots = TlsFiles.LoadAuthorities(Pki.CaFile) },
        }, accessLog: log);
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } },
            StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Tunnel = mitm }, accessLog: log));

        var result = await Cli.CurlAsync("--http2", "--proxy", $"http://127.0.0.1:{proxy.Port}", "--cacert", caFile, "-H", "X-Secret: seen",
            "-w", "\n%{http_version}", $"https://localhost:{origin.Port}/decrypted?h2=1");

        Assert.True(result.ExitCode == 0, result.Stderr);
        var lines = result.Text.Split('\n');
        Assert.Equal("2", lines[^1]); // curl and the MITM agreed on h2
        using var json = JsonDocument.Parse(string.Join('\n', lines[..^1]));
        Assert.Equal("/decrypted?h2=1", json.RootElement.GetProperty("target").GetString());
        Assert.Contains(json.RootElement.GetProperty("headers").EnumerateArray(), h => h[1].GetString() == "seen");
        await proxy.AssertNoOpenConnectionsAsync();
        var entry = Assert.Single(log.Entries, e => e.Kind == AccessKind.Mitm);
        Assert.Equal("HTTP/2", entry.Protocol);
        Assert.Equal("/decrypted?h2=1", entry.Target);
        Assert.Equal(200, entry.Status);
        Assert.Equal(new HostPort("localhost", origin.Port), entry.Authority);
    }

    [Fact]
    public async Task Curl_http2_through_the_https_proxy_reaches_an_h2_origin_end_to_end()
    {
        await using var origin = new ProxyHarness(TlsStacks.Echo(ServerTls()));
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None,
            extras: new ForwardProxyExtras { Https = ServerTls() }));

        var result = await Cli.CurlAsync("--http2", "--proxy", $"https://localhost:{proxy.Port}", "--proxy-cacert", Pki.CaFile, "--cacert", Pki.CaFile,
            "-w", "\n%{http_version}", $"https://localhost:{origin.Port}/through");

        Assert.True(result.ExitCode == 0, result.Stderr);
        var lines = result.Text.Split('\n');
        Assert.Equal("2", lines[^1]);
        using var json = JsonDocument.Parse(string.Join('\n', lines[..^1]));
        Assert.Equal("HTTP/2", json.RootElement.GetProperty("version").GetString());
        Assert.Equal("h2", json.RootElement.GetProperty("tls").GetProperty("alpn").GetString());
    }

    [Theory]
    [InlineData("h2c")]
    [InlineData("h2")]
    public async Task Echo_answers_h2_with_the_akamai_fingerprint_and_its_parts(string mode)
    {
        await using var echo = new ProxyHarness(TlsStacks.Echo(ServerTls()));
        var result = mode == "h2c"
            ? await Cli.CurlAsync("--http2-prior-knowledge", $"http://127.0.0.1:{echo.Port}/fp")
            : await Cli.CurlAsync("--http2", "--cacert", Pki.CaFile, $"https://localhost:{echo.Port}/fp");

        Assert.True(result.ExitCode == 0, result.Stderr);
        using var json = JsonDocument.Parse(result.Text);
        var root = json.RootElement;
        Assert.Equal("HTTP/2", root.GetProperty("version").GetString());
        var akamai = root.GetProperty("akamai").GetString()!;
        var parts = akamai.Split('|');
        Assert.Equal(4, parts.Length);
        var http2 = root.GetProperty("http2");
        var settings = http2.GetProperty("settings").EnumerateArray().Select(s => $"{s.GetProperty("id").GetInt32()}:{s.GetProperty("value").GetInt64()}").ToArray();
        Assert.Equal(parts[0], string.Join(';', settings));
        Assert.Contains("3:100", settings); // nghttp2 (curl's h2) announces SETTINGS_MAX_CONCURRENT_STREAMS 100
        Assert.Equal(parts[1], http2.GetProperty("window_update").GetInt32().ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("m,p,s,a", parts[3]); // curl's pseudo-header order
        Assert.Equal(parts[3], http2.GetProperty("pseudo_header_order").GetString());
        Assert.StartsWith("ge20nn", root.GetProperty("ja4h").GetString(), StringComparison.Ordinal); // JA4H: GET, HTTP/2, no cookie, no referer
        if (mode == "h2")
        {
            Assert.Equal("h2", root.GetProperty("tls").GetProperty("alpn").GetString());
        }

        // HTTP/1.1 on the same port has no h2 fingerprint.
        var h1 = await Cli.CurlAsync("--http1.1", $"http://127.0.0.1:{echo.Port}/fp");
        using var plain = JsonDocument.Parse(h1.Text);
        Assert.Equal(JsonValueKind.Null, plain.RootElement.GetProperty("akamai").ValueKind);
        Assert.StartsWith("ge11", plain.RootElement.GetProperty("ja4h").GetString(), StringComparison.Ordinal);
    }
}
