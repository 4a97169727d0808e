using System.Net;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>samples/Rama.Samples.EmbeddedNode, the host app the README shows: Rama's listener beside the app's own actor in one Akka.NET system.</summary>
public sealed class EmbeddedSampleTests
{
    [Fact]
    public async Task The_embedded_sample_serves_curl_over_http_and_socks5_and_drains_on_ctrl_c()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var app = await NodeProcess.StartAsync(["127.0.0.1:0"], expectListening: false,
            project: "samples/Rama.Samples.EmbeddedNode", assembly: "Rama.Samples.EmbeddedNode");
        var line = await app.WaitForLineAsync("embedded Rama node: proxy listening on ", TimeSpan.FromSeconds(30));
        var endpoint = IPEndPoint.Parse(line[(line.LastIndexOf(' ') + 1)..]);
        Assert.NotEqual(0, endpoint.Port);

        var http = await Cli.CurlAsync("-x", $"http://{endpoint}", origin.Url("/hello"));
        Assert.Equal(0, http.ExitCode);
        Assert.Equal("hello from origin", http.Text);
        var socks = await Cli.CurlAsync("--socks5", endpoint.ToString(), origin.Url("/hello"));
        Assert.Equal(0, socks.ExitCode);
        Assert.Equal("hello from origin", socks.Text);

        app.Interrupt();
        Assert.Equal(0, await app.Exited.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("Listener edge", app.Output, StringComparison.Ordinal);
        Assert.Contains("drained", app.Output, StringComparison.Ordinal);
    }
}
