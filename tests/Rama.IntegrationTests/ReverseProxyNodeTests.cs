using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>The node started with --reverse: a plain HTTP port in front of one upstream.</summary>
public sealed class ReverseProxyNodeTests
{
    [Fact]
    public async Task Node_with_reverse_forwards_plain_requests_to_its_upstream()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--reverse", $"127.0.0.1:0=127.0.0.1:{origin.Port}"]);
        Assert.Equal(2, node.Endpoints.Count);
        Assert.Contains("HTTP reverse proxy to 127.0.0.1:", node.Output, StringComparison.Ordinal);

        var reverse = node.Endpoints[1];
        var result = await Cli.CurlAsync("-i", $"http://{reverse}/hello");
        Assert.Equal(0, result.ExitCode);
        Assert.StartsWith("HTTP/1.1 200", result.Text, StringComparison.Ordinal);
        Assert.Contains("Via: 1.1 rama", result.Text, StringComparison.Ordinal);
        Assert.EndsWith("hello from origin", result.Text, StringComparison.Ordinal);

        // The forward port still serves the forward proxy.
        var forward = await Cli.CurlAsync("-x", $"http://{node.Endpoints[0]}", origin.Url("/hello"));
        Assert.Equal("hello from origin", forward.Text);
    }

    [Fact]
    public async Task Node_with_only_reverse_listens_on_no_forward_proxy_port()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--reverse", $"127.0.0.1:0=127.0.0.1:{origin.Port}"]);
        var endpoint = Assert.Single(node.Endpoints);
        Assert.DoesNotContain("HTTP proxy + SOCKS5", node.Output, StringComparison.Ordinal);
        var result = await Cli.CurlAsync($"http://{endpoint}/hello");
        Assert.Equal("hello from origin", result.Text);
    }

    [Fact]
    public async Task A_malformed_reverse_option_is_refused()
    {
        await using var node = await NodeProcess.StartAsync(["--reverse", "127.0.0.1:0"], expectListening: false);
        var exitCode = await node.Exited.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, exitCode);
        Assert.Contains("--reverse", node.Output, StringComparison.Ordinal);
    }
}
