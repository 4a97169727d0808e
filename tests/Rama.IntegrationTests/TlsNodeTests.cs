using System.Text.Json;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>The TLS features of rama-node, configured from the command line and an appsettings-shaped file.</summary>
public sealed class TlsNodeTests : IDisposable
{
    private readonly TestPki _pki = new();

    public void Dispose() => _pki.Dispose();

    [Fact]
    public async Task Termination_from_a_config_file_serves_each_sni_name_its_certificate()
    {
        var a = _pki.Issue("a", false, "a.test");
        var b = _pki.Issue("b", false, "b.test");
        await using var origin = TinyHttpOrigin.Start("terminated by the node");
        var config = Path.Combine(_pki.Directory, "node.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
        {
            Rama = new
            {
                Tls = new
                {
                    Listen = new[] { "127.0.0.1:0" },
                    Upstream = $"127.0.0.1:{origin.Port}",
                    UpstreamMode = "Http",
                    UnknownSni = "Reject",
                    Certificates = new[]
                    {
                        new { Names = new[] { "a.test" }, Cert = a.Cert, Key = a.Key },
                        new { Names = new[] { "b.test" }, Cert = b.Cert, Key = b.Key },
                    },
                },
            },
        }));
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--config", config]);
        var port = node.Endpoints[1].Port;
        foreach (var name in new[] { "a.test", "b.test" })
        {
            var result = await Cli.CurlAsync("-v", "--cacert", _pki.CaFile, "--resolve", $"{name}:{port}:127.0.0.1", $"https://{name}:{port}/");
            Assert.True(result.ExitCode == 0, result.Stderr + node.Output);
            Assert.Equal("terminated by the node", result.Text);
            Assert.Contains($"subject: CN={name}", result.Stderr, StringComparison.Ordinal);
        }

        var unknown = await Cli.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-servername", "c.test"], TimeSpan.FromSeconds(20), stdin: []);
        Assert.Contains("unrecognized name", unknown.Stderr, StringComparison.Ordinal);
        await node.WaitForLineAsync("ja4=t13d", TimeSpan.FromSeconds(5)); // HTTP mode logs each request with its fingerprints
    }

    [Fact]
    public async Task The_node_is_an_https_proxy_and_an_https_echo_with_cert_and_key()
    {
        var leaf = _pki.Issue("localhost", false, "localhost", "127.0.0.1");
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--echo-listen", "127.0.0.1:0", "--cert", leaf.Cert, "--key", leaf.Key]);
        var proxy = node.Endpoints[0].Port;
        var echo = node.Endpoints[1].Port;
        var common = new[] { "--proxy", $"https://localhost:{proxy}", "--proxy-cacert", _pki.CaFile };
        var http = await Cli.CurlAsync([.. common, $"http://127.0.0.1:{echo}/over-https-proxy"]);
        Assert.Contains("\"target\": \"/over-https-proxy\"", http.Text, StringComparison.Ordinal);
        var https = await Cli.CurlAsync([.. common, "--cacert", _pki.CaFile, $"https://localhost:{echo}/tls-in-tls"]);
        using var json = JsonDocument.Parse(https.Text);
        Assert.Equal("localhost", json.RootElement.GetProperty("tls").GetProperty("sni").GetString());
        Assert.Matches("^[0-9a-f]{32}$", json.RootElement.GetProperty("tls").GetProperty("ja3_hash").GetString()!);
        Assert.StartsWith("t13d", json.RootElement.GetProperty("tls").GetProperty("ja4").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Mitm_with_an_exported_ca_decrypts_and_logs_the_request()
    {
        var leaf = _pki.Issue("localhost", false, "localhost", "127.0.0.1");
        var caDir = Path.Combine(_pki.Directory, "mitm-ca");
        var export = await Cli.RunAsync("dotnet", [NodeProcess.NodeDll(), "ca", "export", "--mitm-ca-dir", caDir], TimeSpan.FromSeconds(30));
        Assert.StartsWith("-----BEGIN CERTIFICATE-----", export.Text, StringComparison.Ordinal);
        var exported = Path.Combine(_pki.Directory, "exported-ca.pem");
        await File.WriteAllTextAsync(exported, export.Text);
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--echo-listen", "127.0.0.1:0", "--cert", leaf.Cert, "--key", leaf.Key,
            "--mitm", "--mitm-ca-dir", caDir, "--mitm-upstream-ca", _pki.CaFile]);
        var result = await Cli.CurlAsync("--proxy", $"http://127.0.0.1:{node.Endpoints[0].Port}", "--cacert", exported, $"https://localhost:{node.Endpoints[1].Port}/secret-path");
        Assert.True(result.ExitCode == 0, result.Stderr + node.Output);
        Assert.Contains("\"target\": \"/secret-path\"", result.Text, StringComparison.Ordinal);
        // The access log: the decrypted request, and the CONNECT tunnel it came through with the bytes that crossed it.
        await node.WaitForLineAsync($"mitm GET https://localhost:{node.Endpoints[1].Port}/secret-path 200", TimeSpan.FromSeconds(5));
        var tunnel = await node.WaitForLineAsync($"connect CONNECT localhost:{node.Endpoints[1].Port} 200", TimeSpan.FromSeconds(5));
        Assert.DoesNotContain(" up=0 ", tunnel, StringComparison.Ordinal);
        Assert.DoesNotContain(" down=0 ", tunnel, StringComparison.Ordinal);
    }
}
