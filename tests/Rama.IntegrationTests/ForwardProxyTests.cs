using System.Security.Cryptography;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>curl, a real client, through a real node: every proxy mode the README shows.</summary>
public sealed class ForwardProxyTests(ProxyNodesFixture nodes) : IClassFixture<ProxyNodesFixture>
{
    private KestrelOrigin Origin => nodes.Origin;

    [Fact]
    public async Task Curl_get_through_the_http_proxy()
    {
        var result = await Cli.CurlAsync("-x", $"http://{nodes.OpenProxy}", Origin.Url("/hello"));
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("hello from origin", result.Text);
    }

    [Fact]
    public async Task Curl_head_through_the_http_proxy_gets_headers_and_no_body()
    {
        var result = await Cli.CurlAsync("-I", "-x", $"http://{nodes.OpenProxy}", Origin.Url("/hello"));
        Assert.Equal(0, result.ExitCode);
        Assert.StartsWith("HTTP/1.1 200", result.Text, StringComparison.Ordinal);
        Assert.Contains("Content-Length: 17", result.Text, StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData(10 * 1024 * 1024, false)]
    [InlineData(300_000, true)]
    public async Task Curl_post_body_is_streamed_to_the_origin_intact(int size, bool chunked)
    {
        var body = new byte[size];
        Random.Shared.NextBytes(body);
        var file = Path.GetTempFileName();
        await File.WriteAllBytesAsync(file, body);
        try
        {
            string[] framing = chunked ? ["-H", "Transfer-Encoding: chunked"] : ["-H", "Content-Type: application/octet-stream"];
            var result = await Cli.CurlAsync(["-x", $"http://{nodes.OpenProxy}", .. framing, "--data-binary", "@" + file, Origin.Url("/upload")]);
            Assert.Equal(0, result.ExitCode);
            Assert.Equal($"{body.Length} {Convert.ToHexStringLower(SHA256.HashData(body))}", result.Text);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Curl_gets_a_chunked_response_through_the_proxy()
    {
        var result = await Cli.CurlAsync("-x", $"http://{nodes.OpenProxy}", Origin.Url("/chunked"));
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("chunk0;chunk1;chunk2;chunk3;chunk4;", result.Text);
    }

    [Fact]
    public async Task Curl_connect_tunnel_with_p()
    {
        var result = await Cli.CurlAsync("-p", "-x", $"http://{nodes.OpenProxy}", Origin.Url("/hello"));
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("hello from origin", result.Text);
    }

    [Fact]
    public async Task Curl_reuses_the_proxy_connection_and_the_proxy_reuses_the_origin_connection()
    {
        var marker = Guid.NewGuid().ToString("N");
        var url = Origin.Url("/hello?reuse=" + marker);
        var result = await Cli.CurlAsync("-v", "-x", $"http://{nodes.OpenProxy}", url, url, url);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal(string.Concat(Enumerable.Repeat("hello from origin", 3)), result.Text);
        Assert.Contains("Re-using existing connection", result.Stderr, StringComparison.Ordinal);
        var originConnections = Origin.Seen.Where(s => s.Contains(marker, StringComparison.Ordinal)).Select(s => s[s.LastIndexOf("conn=", StringComparison.Ordinal)..]).ToList();
        Assert.Equal(3, originConnections.Count);
        Assert.Single(originConnections.Distinct());
    }

    [Fact]
    public async Task Curl_socks5_and_socks5_hostname_through_the_same_port()
    {
        var socks = await Cli.CurlAsync("--socks5", nodes.OpenProxy, Origin.Url("/hello"));
        Assert.Equal(0, socks.ExitCode);
        Assert.Equal("hello from origin", socks.Text);
        var hostname = await Cli.CurlAsync("--socks5-hostname", nodes.OpenProxy, $"http://localhost:{Origin.Port}/hello");
        Assert.Equal(0, hostname.ExitCode);
        Assert.Equal("hello from origin", hostname.Text);
    }

    [Fact]
    public async Task With_auth_every_mode_works_with_the_right_credentials()
    {
        var http = await Cli.CurlAsync("-U", "john:s3cret", "-x", $"http://{nodes.AuthedProxy}", Origin.Url("/hello"));
        Assert.Equal("hello from origin", http.Text);
        var connect = await Cli.CurlAsync("-p", "-U", "john:s3cret", "-x", $"http://{nodes.AuthedProxy}", Origin.Url("/hello"));
        Assert.Equal("hello from origin", connect.Text);
        var socks = await Cli.CurlAsync("--socks5", $"john:s3cret@{nodes.AuthedProxy}", Origin.Url("/hello"));
        Assert.Equal("hello from origin", socks.Text);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Wrong_or_missing_credentials_get_407_and_never_reach_the_target(bool tunnel)
    {
        var marker = "/hello?marker=" + Guid.NewGuid().ToString("N");
        string[] mode = tunnel ? ["-p"] : [];
        var none = await Cli.CurlAsync([.. mode, "-o", "/dev/null", "-w", "%{http_code}", "-x", $"http://{nodes.AuthedProxy}", Origin.Url(marker)]);
        var wrong = await Cli.CurlAsync([.. mode, "-o", "/dev/null", "-w", "%{http_code}", "-U", "john:nope", "-x", $"http://{nodes.AuthedProxy}", Origin.Url(marker)]);
        if (tunnel)
        {
            Assert.NotEqual(0, none.ExitCode); // curl reports the failed CONNECT
            Assert.Contains("407", none.Stderr + none.Text, StringComparison.Ordinal);
            Assert.Contains("407", wrong.Stderr + wrong.Text, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal("407", none.Text);
            Assert.Equal("407", wrong.Text);
        }

        Assert.DoesNotContain(Origin.Seen, s => s.Contains(marker, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_407_carries_proxy_authenticate()
    {
        var result = await Cli.CurlAsync("-i", "-x", $"http://{nodes.AuthedProxy}", Origin.Url("/hello"));
        Assert.Contains("407", result.Text.Split('\n')[0], StringComparison.Ordinal);
        Assert.Contains("Proxy-Authenticate: Basic", result.Text, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Socks5_wrong_credentials_fail_and_never_reach_the_target()
    {
        var marker = "/hello?socks=" + Guid.NewGuid().ToString("N");
        var result = await Cli.CurlAsync("--socks5", $"john:nope@{nodes.AuthedProxy}", Origin.Url(marker));
        Assert.NotEqual(0, result.ExitCode);
        Assert.DoesNotContain(Origin.Seen, s => s.Contains(marker, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Refused_target_answers_502_and_unresolvable_name_answers_502()
    {
        var refused = await Cli.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", $"http://{nodes.OpenProxy}", $"http://127.0.0.1:{Ports.Refused()}/");
        Assert.Equal("502", refused.Text);
        var unresolved = await Cli.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", $"http://{nodes.OpenProxy}", "http://nosuch.invalid/");
        Assert.Equal("502", unresolved.Text);
    }
}
