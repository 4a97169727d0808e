using System.Security.Cryptography;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

/// <summary>The forward proxy with curl as the real client and a raw-socket origin, all on loopback.</summary>
public class ForwardProxyCurlTests
{
    [Fact]
    public async Task Get_through_the_proxy_returns_the_origin_body()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, stdout, stderr) = await Curl.RunAsync("-x", proxy.Url, origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
        var seen = Assert.Single(origin.Requests);
        Assert.Equal("GET /hello HTTP/1.1", seen.RequestLine);
        Assert.Equal($"127.0.0.1:{origin.Port}", seen.Header("Host"));
        Assert.Equal("1.1 rama", seen.Header("Via"));
    }

    [Fact]
    public async Task Head_through_the_proxy_returns_the_head_without_a_body()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, stdout, stderr) = await Curl.RunAsync("-I", "-x", proxy.Url, origin.Url("/x"));
        Assert.True(code == 0, stderr);
        Assert.Contains("HTTP/1.1 200", stdout, StringComparison.Ordinal);
        Assert.Contains("Content-Length: 5", stdout, StringComparison.Ordinal);
        Assert.Contains("X-Head: yes", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Post_of_10_MB_streams_the_exact_bytes_to_the_origin()
    {
        var file = Path.Combine(Path.GetTempPath(), $"rama-post-{Guid.NewGuid():N}.bin");
        var payload = new byte[10 * 1024 * 1024];
        new Random(42).NextBytes(payload);
        await File.WriteAllBytesAsync(file, payload);
        try
        {
            await using var origin = new TestOrigin();
            await using var proxy = new ProxyHarness();
            var (code, stdout, stderr) = await Curl.RunAsync("-x", proxy.Url, "--data-binary", "@" + file, origin.Url("/hash"));
            Assert.True(code == 0, stderr);
            Assert.Equal(Convert.ToHexString(SHA256.HashData(payload)), stdout);
            Assert.Equal(payload.Length, Assert.Single(origin.Requests).BodyLength);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Chunked_post_and_chunked_response_are_relayed()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, stdout, stderr) = await Curl.RunAsync("-x", proxy.Url, "-H", "Transfer-Encoding: chunked", "--data-binary", "some chunked body", origin.Url("/chunked"));
        Assert.True(code == 0, stderr);
        Assert.Equal("first;second;" + new string('x', 10000), stdout);
        var seen = Assert.Single(origin.Requests);
        Assert.Equal("chunked", seen.Header("Transfer-Encoding"));
        Assert.Equal(17, seen.BodyLength);
    }

    [Fact]
    public async Task Keep_alive_reuses_the_client_and_the_origin_connection()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, stdout, stderr) = await Curl.RunAsync("-v", "-x", proxy.Url, origin.Url("/hello"), origin.Url("/chunked"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello" + "first;second;" + new string('x', 10000), stdout);
        Assert.Contains("Re-using existing", stderr, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(1, proxy.Server.AcceptedConnections);
        Assert.Equal(1, origin.Connections);
        Assert.Equal(2, origin.Requests.Count);
    }

    [Fact]
    public async Task Header_order_and_case_reach_the_origin_unchanged()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, stdout, stderr) = await Curl.RunAsync("-x", proxy.Url, "-H", "X-Zeta: 1", "-H", "x-alpha: two", "-H", "X-MiXeD-CaSe: 3", "-H", "x-zeta: 4", origin.Url("/headers"));
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n');
        var custom = lines.Where(l => l.StartsWith("X-", StringComparison.OrdinalIgnoreCase)).ToArray();
        Assert.Equal(["X-Zeta: 1", "x-alpha: two", "X-MiXeD-CaSe: 3", "x-zeta: 4"], custom);
        Assert.StartsWith("Host: ", lines[0], StringComparison.Ordinal);
        Assert.Equal("Via: 1.1 rama", lines[^1]);
    }

    [Fact]
    public async Task Hop_by_hop_headers_are_not_forwarded()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, _, stderr) = await Curl.RunAsync("-x", proxy.Url,
            "-H", "Connection: X-Secret, keep-alive", "-H", "X-Secret: s", "-H", "Keep-Alive: timeout=5", "-H", "TE: trailers",
            "-H", "Proxy-Connection: keep-alive", "-H", "Upgrade: websocket", "-H", "Trailer: X-T", "-H", "X-Kept: yes", origin.Url("/headers"));
        Assert.True(code == 0, stderr);
        var seen = Assert.Single(origin.Requests);
        foreach (var name in new[] { "Connection", "X-Secret", "Keep-Alive", "TE", "Proxy-Connection", "Upgrade", "Trailer", "Proxy-Authorization" })
        {
            Assert.Null(seen.Header(name));
        }

        Assert.Equal("yes", seen.Header("X-Kept"));
    }

    [Fact]
    public async Task Connect_tunnel_carries_a_request_with_curl_p()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var (code, stdout, stderr) = await Curl.RunAsync("-v", "-p", "-x", proxy.Url, origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
        Assert.Contains("200 Connection established", stderr, StringComparison.Ordinal);
        var seen = Assert.Single(origin.Requests);
        Assert.Null(seen.Header("Via")); // the tunnel carries the client's bytes untouched
    }

    [Fact]
    public async Task Auth_required_without_credentials_answers_407_and_never_contacts_the_origin()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(authenticator: Users());
        var (code, stdout, stderr) = await Curl.RunAsync("-i", "-x", proxy.Url, origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 407", stdout, StringComparison.Ordinal);
        Assert.Contains("Proxy-Authenticate: Basic realm=\"rama\"", stdout, StringComparison.Ordinal);
        Assert.Equal(0, origin.Connections);
    }

    [Fact]
    public async Task Auth_with_wrong_credentials_answers_407()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(authenticator: Users());
        var (code, stdout, _) = await Curl.RunAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", proxy.Url, "-U", "alice:wrong", origin.Url("/hello"));
        Assert.Equal(0, code);
        Assert.Equal("407", stdout);
        Assert.Equal(0, origin.Connections);
    }

    [Fact]
    public async Task Auth_with_right_credentials_is_forwarded_without_the_credentials()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(authenticator: Users());
        var (code, stdout, stderr) = await Curl.RunAsync("-x", proxy.Url, "-U", "alice:s3cret:with:colons", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
        Assert.Null(Assert.Single(origin.Requests).Header("Proxy-Authorization"));
    }

    [Fact]
    public async Task Auth_applies_to_connect_tunnels()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(authenticator: Users());
        var denied = await Curl.RunAsync("-p", "-x", proxy.Url, origin.Url("/hello"));
        Assert.NotEqual(0, denied.ExitCode);
        Assert.Equal(0, origin.Connections);
        var (code, stdout, stderr) = await Curl.RunAsync("-p", "-x", proxy.Url, "-U", "alice:s3cret:with:colons", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
    }

    private static StaticProxyAuthenticator Users() => new([new("alice", "s3cret:with:colons")]);
}
