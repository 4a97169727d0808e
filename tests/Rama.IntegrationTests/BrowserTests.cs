using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>A real browser (Debian chromium, headless) through the node, as HTTP proxy and as SOCKS5 proxy.</summary>
public sealed class BrowserTests(ProxyNodesFixture nodes) : IClassFixture<ProxyNodesFixture>
{
    [Theory]
    [InlineData("http")]
    [InlineData("socks5")]
    public async Task Chromium_loads_a_page_through_the_node(string scheme)
    {
        var profile = Directory.CreateTempSubdirectory("rama-chromium-");
        try
        {
            var result = await Cli.RunAsync("chromium",
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                $"--user-data-dir={profile.FullName}",
                $"--proxy-server={scheme}://{nodes.OpenProxy}",
                // Chromium skips proxies for loopback targets unless told not to.
                "--proxy-bypass-list=<-loopback>",
                "--dump-dom", nodes.Origin.Url("/hello?browser=" + scheme),
            ], TimeSpan.FromSeconds(60));
            Assert.Contains("hello from origin", result.Text, StringComparison.Ordinal);
            Assert.Contains(nodes.Origin.Seen, s => s.Contains("browser=" + scheme, StringComparison.Ordinal));
            // And it went through the node, not around it: the node logged the request (HTTP) or the tunnel (SOCKS5).
            await nodes.Open.WaitForLineAsync(scheme == "http" ? "browser=http" : $"socks5 ", TimeSpan.FromSeconds(10));
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }
}
