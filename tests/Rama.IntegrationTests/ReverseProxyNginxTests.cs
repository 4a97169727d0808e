using System.Security.Cryptography;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// The node's reverse port (epoll transport on Linux x86-64, and the portable sockets transport) in front of a
/// real nginx origin, driven by curl and wrk: static files by Content-Length, gzip streamed chunked, HEAD, 404,
/// keep-alive reuse, and a short wrk load with no error and no non-2xx answer.
/// </summary>
public sealed class ReverseProxyNginxTests
{
    [Theory]
    [InlineData("Auto")]
    [InlineData("Sockets")]
    public async Task Nginx_behind_the_reverse_port_serves_curl_and_wrk_intact(string transport)
    {
        await using var nginx = await NginxOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--reverse", $"127.0.0.1:0=127.0.0.1:{nginx.Port}"],
            new Dictionary<string, string> { ["Rama__Proxy__ReverseTransport"] = transport });
        var proxy = $"http://{node.Endpoints[1]}";

        // Two files on one connection: both intact, one connection (keep-alive through the proxy).
        var small = Path.Combine(nginx.Root, "out-small");
        var big = Path.Combine(nginx.Root, "out-big");
        var both = await Cli.CurlAsync("-o", small, "-o", big, "-w", "%{num_connects} ", $"{proxy}/small.bin", $"{proxy}/big.bin");
        Assert.True(both.ExitCode == 0, both.Stderr);
        Assert.Equal("1 0 ", both.Text);
        Assert.Equal(nginx.Sha("small.bin"), Sha(small));
        Assert.Equal(nginx.Sha("big.bin"), Sha(big));

        // gzip: nginx streams it chunked (no Content-Length); curl decodes it back to the file.
        var gz = Path.Combine(nginx.Root, "out-gz");
        var chunked = await Cli.CurlAsync("--compressed", "-D", "-", "-o", gz, $"{proxy}/big.txt");
        Assert.True(chunked.ExitCode == 0, chunked.Stderr);
        Assert.Contains("Transfer-Encoding: chunked", chunked.Text, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Content-Encoding: gzip", chunked.Text, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(nginx.Sha("big.txt"), Sha(gz));

        var head = await Cli.CurlAsync("-I", $"{proxy}/big.bin");
        Assert.StartsWith("HTTP/1.1 200", head.Text, StringComparison.Ordinal);
        Assert.Contains($"Content-Length: {new FileInfo(Path.Combine(nginx.Root, "big.bin")).Length}", head.Text, StringComparison.Ordinal);
        Assert.Contains("Via: 1.1 rama", head.Text, StringComparison.Ordinal);

        var missing = await Cli.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", $"{proxy}/missing");
        Assert.Equal("404", missing.Text);

        // A short load: every answer a complete 200 (wrk counts short or broken responses as errors).
        var wrk = await Cli.RunAsync("wrk", ["-t1", "-c16", "-d2s", "--timeout", "5s", $"{proxy}/small.bin"], TimeSpan.FromSeconds(20));
        Assert.True(wrk.ExitCode == 0, wrk.Stderr);
        Assert.DoesNotContain("Socket errors", wrk.Text, StringComparison.Ordinal);
        Assert.DoesNotContain("Non-2xx", wrk.Text, StringComparison.Ordinal);
        var requests = long.Parse(wrk.Text.Split('\n').First(l => l.Contains("requests in", StringComparison.Ordinal)).Trim().Split(' ')[0],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(requests > 500, wrk.Text);
    }

    private static string Sha(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>nginx (single process, generated config in a temporary directory) serving generated files on 127.0.0.1, run as a <see cref="Upstream.PeerProcess"/>.</summary>
    private sealed class NginxOrigin : IAsyncDisposable
    {
        private readonly Upstream.PeerProcess _process;

        private NginxOrigin(Upstream.PeerProcess process, string root)
        {
            _process = process;
            Root = root;
        }

        public string Root { get; }

        public int Port => _process.Port;

        public string Sha(string name) => ReverseProxyNginxTests.Sha(Path.Combine(Root, name));

        public static async Task<NginxOrigin> StartAsync()
        {
            var root = Directory.CreateTempSubdirectory("rama-nginx-").FullName;
            await File.WriteAllBytesAsync(Path.Combine(root, "small.bin"), RandomNumberGenerator.GetBytes(1024));
            await File.WriteAllBytesAsync(Path.Combine(root, "big.bin"), RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 17));
            await File.WriteAllTextAsync(Path.Combine(root, "big.txt"), string.Concat(Enumerable.Range(0, 60_000).Select(i => $"line {i} of a text that compresses\n")));
            var port = Ports.Refused();
            var config = Path.Combine(root, "nginx.conf");
            await File.WriteAllTextAsync(config, NginxConfig.Text(root, $$"""
                  types { text/plain txt; application/octet-stream bin; }
                  gzip on; gzip_types text/plain; gzip_min_length 0; gzip_proxied any;
                  server { listen 127.0.0.1:{{port}}; root {{root}}; location / { } }
                """));
            var process = await Upstream.PeerProcess.StartAsync("nginx", "nginx", ["-p", root, "-c", config, "-e", Path.Combine(root, "error.log")], port, root);
            return new NginxOrigin(process, root);
        }

        public async ValueTask DisposeAsync()
        {
            await _process.DisposeAsync();
            Directory.Delete(Root, recursive: true);
        }
    }
}
