using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>How an operator starts a node: options, config file, environment, secure defaults.</summary>
public sealed class NodeCommandLineTests
{
    [Theory]
    [InlineData("0.0.0.0:0")]
    [InlineData("[::]:0")]
    public async Task Refuses_a_public_address_without_auth(string address)
    {
        await using var node = await NodeProcess.StartAsync(["--listen", address], expectListening: false);
        var exitCode = await node.Exited.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(0, exitCode);
        Assert.Contains("--allow-open-proxy", node.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_public_address_is_allowed_with_auth_or_with_allow_open_proxy()
    {
        await using (var withAuth = await NodeProcess.StartAsync(["--listen", "0.0.0.0:0", "--auth", "ops:pw"]))
        {
            Assert.Equal("0.0.0.0", withAuth.Endpoint.Address.ToString());
        }

        await using var open = await NodeProcess.StartAsync(["--listen", "0.0.0.0:0", "--allow-open-proxy"]);
        Assert.Contains("open proxy", open.Output, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Listen_is_repeatable_and_each_endpoint_serves()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0"]);
        Assert.Equal(2, node.Endpoints.Count);
        foreach (var endpoint in node.Endpoints)
        {
            var result = await Cli.CurlAsync("-x", $"http://{endpoint}", origin.Url("/hello"));
            Assert.Equal("hello from origin", result.Text);
        }
    }

    [Fact]
    public async Task Config_file_and_environment_variables_set_the_options()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        var config = Path.Combine(Path.GetTempPath(), $"rama-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(config, """{ "Rama": { "Listen": [ "127.0.0.1:0" ], "Auth": [ "fromfile:pw1" ] } }""");
        try
        {
            await using var node = await NodeProcess.StartAsync(["--config", config], new Dictionary<string, string> { ["Rama__Auth__1"] = "fromenv:pw2" });
            var proxy = $"http://127.0.0.1:{node.Endpoint.Port}";
            Assert.Equal("hello from origin", (await Cli.CurlAsync("-U", "fromfile:pw1", "-x", proxy, origin.Url("/hello"))).Text);
            Assert.Equal("hello from origin", (await Cli.CurlAsync("-U", "fromenv:pw2", "-x", proxy, origin.Url("/hello"))).Text);
            Assert.Equal("407", (await Cli.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", proxy, origin.Url("/hello"))).Text);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Invalid_options_fail_with_a_clear_message()
    {
        await using var node = await NodeProcess.StartAsync(["--listen", "not-an-address"], expectListening: false);
        Assert.NotEqual(0, await node.Exited.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("not-an-address", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Lighthouse_starts_and_stops_cleanly()
    {
        await using var lighthouse = await NodeProcess.StartAsync([], expectListening: false, project: "Rama.Lighthouse", assembly: "rama-lighthouse");
        await lighthouse.WaitForLineAsync("Rama lighthouse started", TimeSpan.FromSeconds(30));
        lighthouse.Terminate();
        Assert.Equal(0, await lighthouse.Exited.WaitAsync(TimeSpan.FromSeconds(15)));
    }
}
