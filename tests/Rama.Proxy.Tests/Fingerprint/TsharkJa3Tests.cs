using System.Diagnostics;
using System.Text.Json;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Tls;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Fingerprint;

/// <summary>
/// Our JA3 of real clients (curl, openssl, chromium) equals the JA3 Wireshark's tshark computes from
/// a capture of the same handshake; the echo service reports ours.
/// </summary>
public sealed class TsharkJa3Tests : IDisposable
{
    private readonly TestPki _pki = new();
    private readonly (string Cert, string Key) _leaf;

    public TsharkJa3Tests() => _leaf = _pki.Issue("localhost", false, "localhost", "127.0.0.1");

    public void Dispose() => _pki.Dispose();

    [Theory]
    [InlineData("curl")]
    [InlineData("openssl")]
    [InlineData("chromium")]
    public async Task Our_ja3_equals_tsharks_for_the_same_handshake(string client)
    {
        var tls = new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(_leaf.Cert, _leaf.Key), ApplicationProtocols = ["http/1.1"] };
        await using var server = new ProxyHarness(TlsStacks.Echo(tls));
        // tshark decodes live (-l: a line per packet as it arrives), the port forced to TLS.
        using var tshark = Process.Start(new ProcessStartInfo("tshark",
            ["-i", "lo", "-f", $"tcp port {server.Port}", "-l", "-d", $"tcp.port=={server.Port},tls", "-Y", "tls.handshake.type==1", "-T", "fields", "-e", "tls.handshake.ja3"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        })!;
        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        tshark.ErrorDataReceived += (_, e) =>
        {
            if (e.Data?.Contains("Capturing on", StringComparison.Ordinal) == true)
            {
                ready.TrySetResult();
            }
        };
        tshark.OutputDataReceived += (_, e) =>
        {
            if (!string.IsNullOrWhiteSpace(e.Data))
            {
                lines.Enqueue(e.Data.Trim());
            }
        };
        tshark.BeginErrorReadLine();
        tshark.BeginOutputReadLine();
        var ours = new List<string>();
        try
        {
            await ready.Task.WaitAsync(TimeSpan.FromSeconds(20));
            // "Capturing on" can precede the capture filter being live: a handshake tshark missed is run again.
            for (var attempt = 0; attempt < 3 && lines.IsEmpty; attempt++)
            {
                ours.Add(await RunClientAsync(client, server.Port));
                var deadline = Stopwatch.StartNew();
                while (lines.IsEmpty && deadline.Elapsed < TimeSpan.FromSeconds(5))
                {
                    await Task.Delay(50);
                }
            }
        }
        finally
        {
            await Cli.RunAsync("kill", ["-INT", tshark.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await tshark.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
        }

        var theirs = lines.ToArray();
        Assert.NotEmpty(theirs);
        Assert.Contains(ours[^1], theirs);
    }

    /// <summary>Runs the client against the echo service and returns the ja3_hash it reported.</summary>
    private async Task<string> RunClientAsync(string client, int port)
    {
        var url = $"https://localhost:{port}/ja3";
        string json;
        switch (client)
        {
            case "curl":
                json = (await Cli.CurlAsync("--cacert", _pki.CaFile, url)).Text;
                break;
            case "openssl":
                var request = System.Text.Encoding.ASCII.GetBytes($"GET /ja3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                var output = (await Cli.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-servername", "localhost", "-quiet", "-CAfile", _pki.CaFile], TimeSpan.FromSeconds(20), request)).Text;
                json = output[output.IndexOf('{', StringComparison.Ordinal)..];
                break;
            default:
                var profile = Directory.CreateTempSubdirectory("rama-chromium-");
                try
                {
                    var dom = (await Cli.RunAsync("chromium",
                    [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--ignore-certificate-errors", $"--user-data-dir={profile.FullName}", "--dump-dom", url,
                    ], TimeSpan.FromSeconds(60))).Text;
                    json = System.Net.WebUtility.HtmlDecode(dom[dom.IndexOf('{', StringComparison.Ordinal)..(dom.LastIndexOf('}') + 1)]);
                }
                finally
                {
                    profile.Delete(recursive: true);
                }

                break;
        }

        using var document = JsonDocument.Parse(json);
        return document.RootElement.GetProperty("tls").GetProperty("ja3_hash").GetString()!;
    }
}
