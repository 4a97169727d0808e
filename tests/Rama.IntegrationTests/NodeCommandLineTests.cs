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
        var port = Fleet.FleetHarness.FreePort();
        await using var lighthouse = await NodeProcess.StartAsync(["--cluster", $"127.0.0.1:{port}"], expectListening: false, project: "Rama.Lighthouse", assembly: "rama-lighthouse");
        await lighthouse.WaitForLineAsync("Rama lighthouse ready", TimeSpan.FromSeconds(30));
        Assert.Equal($"akka.tcp://rama@127.0.0.1:{port}", lighthouse.ClusterAddress);
        lighthouse.Terminate();
        Assert.Equal(0, await lighthouse.Exited.WaitAsync(TimeSpan.FromSeconds(15)));
    }

    // Issue 11, item 5: one options model.

    private static async Task<NodeProcess> RunToExitAsync(string[] args, IDictionary<string, string>? environment = null, string project = "Rama.Node", string assembly = "rama-node")
    {
        var node = await NodeProcess.StartAsync(args, environment, expectListening: false, project: project, assembly: assembly);
        await node.Exited.WaitAsync(TimeSpan.FromSeconds(30));
        return node;
    }

    [Theory]
    [InlineData("--upstream-proxy-protocol", "v3", "Rama:Tls:UpstreamProxyProtocol (--upstream-proxy-protocol) is 'v3': allowed are v1, v2")]
    [InlineData("--unknown-sni", "foo", "Rama:Tls:UnknownSni (--unknown-sni) is 'foo': allowed are default, reject")]
    [InlineData("--client-cert", "bogus", "Rama:Tls:ClientCertificates (--client-cert) is 'bogus': allowed are none, optional, required")]
    [InlineData("--drain-timeout", "soon", "Rama:DrainTimeout (--drain-timeout) is 'soon'")]
    public async Task A_bad_value_exits_2_naming_the_key_the_value_and_what_is_allowed(string option, string value, string expected)
    {
        await using var node = await RunToExitAsync(["--listen", "127.0.0.1:0", option, value]);
        Assert.Equal(2, await node.Exited);
        Assert.Contains(expected, node.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("listening on", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_listener_kind_or_key_from_the_environment_exits_2()
    {
        await using var node = await RunToExitAsync([], new Dictionary<string, string>
        {
            ["Rama__Listeners__edge__Kind"] = "socks4",
            ["Rama__Listeners__edge__Bind"] = "127.0.0.1:0",
            ["Rama__Listeners__web__Kind"] = "proxy",
            ["Rama__Listeners__web__Bind"] = "127.0.0.1:0",
            ["Rama__Listeners__web__Auht__0"] = "a:b",
        });
        Assert.Equal(2, await node.Exited);
        Assert.Contains("Rama:Listeners:edge:Kind is 'socks4': allowed are proxy, reverse, tls, echo", node.Output, StringComparison.Ordinal);
        Assert.Contains("Rama:Listeners:web:Auht is not a key of a proxy listener", node.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Rama.Node", "rama-node")]
    [InlineData("Rama.Lighthouse", "rama-lighthouse")]
    public async Task Version_prints_the_version_and_exits_0(string project, string assembly)
    {
        await using var process = await RunToExitAsync(["--version"], project: project, assembly: assembly);
        Assert.Equal(0, await process.Exited);
        Assert.Matches($"^{assembly} \\d+\\.\\d+\\.\\d+", process.Output);
        Assert.DoesNotContain("started", process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Config_show_prints_the_merged_configuration_with_secrets_redacted_and_exits_0()
    {
        var config = Path.Combine(Path.GetTempPath(), $"rama-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(config, """{ "Rama": { "DrainTimeout": "00:00:07", "Listeners": { "edge": { "Kind": "proxy", "Bind": "127.0.0.1:9000", "Auth": [ "edge:filepw" ] } } } }""");
        try
        {
            await using var node = await RunToExitAsync(["config", "show", "--config", config, "--drain-timeout", "3", "--auth", "john:clipw"],
                new Dictionary<string, string> { ["Rama__Listeners__edge__Bind"] = "127.0.0.1:9001", ["Rama__System__Name"] = "fleet-a" });
            Assert.Equal(0, await node.Exited);
            var output = node.Output;
            Assert.Contains("Rama:DrainTimeout = 00:00:03", output, StringComparison.Ordinal);
            Assert.Contains("Rama:System:Name = fleet-a", output, StringComparison.Ordinal);
            Assert.Contains("Rama:Listeners:edge:Kind = proxy", output, StringComparison.Ordinal);
            Assert.Contains("Rama:Listeners:edge:Bind = 127.0.0.1:9001", output, StringComparison.Ordinal);
            Assert.Contains("Rama:Listeners:edge:Auth:0 = edge:***", output, StringComparison.Ordinal);
            Assert.Contains("Rama:Auth:0 = john:***", output, StringComparison.Ordinal);
            Assert.DoesNotContain("filepw", output, StringComparison.Ordinal);
            Assert.DoesNotContain("clipw", output, StringComparison.Ordinal);
            Assert.DoesNotContain("listening on", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task A_listener_declared_only_in_a_config_file_serves_curl_and_an_environment_variable_overrides_one_of_its_keys()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        var config = Path.Combine(Path.GetTempPath(), $"rama-{Guid.NewGuid():N}.json");
        // 192.0.2.1 (TEST-NET-1) is no address of this machine: the node can only start if the environment's Bind wins.
        await File.WriteAllTextAsync(config, """
            { "Rama": { "Listeners": {
                "web": { "Kind": "proxy", "Bind": "127.0.0.1:0", "Auth": [ "web:pw" ] },
                "edge": { "Kind": "proxy", "Bind": "192.0.2.1:80" } } } }
            """);
        try
        {
            await using var node = await NodeProcess.StartAsync(["--config", config], new Dictionary<string, string> { ["Rama__Listeners__edge__Bind"] = "127.0.0.1:0" });
            Assert.Equal(2, node.Endpoints.Count);
            Assert.Contains("edge listening on 127.0.0.1:", node.Output, StringComparison.Ordinal);
            Assert.Contains("web listening on 127.0.0.1:", node.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("8080", node.Output, StringComparison.Ordinal);
            var web = node.Endpoints[1]; // entries in key order: edge, web
            Assert.Equal("hello from origin", (await Cli.CurlAsync("-U", "web:pw", "-x", $"http://{web}", origin.Url("/hello"))).Text);
            Assert.Equal("407", (await Cli.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", "-x", $"http://{web}", origin.Url("/hello"))).Text);
            Assert.Equal("hello from origin", (await Cli.CurlAsync("-x", $"http://{node.Endpoints[0]}", origin.Url("/hello"))).Text);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Theory]
    [InlineData("--listen", "")]
    [InlineData("--reverse", "=127.0.0.1:1")]
    public async Task A_second_node_on_a_port_in_use_exits_2_naming_the_address(string option, string suffix)
    {
        await using var first = await NodeProcess.StartAsync([option, "127.0.0.1:0" + suffix]);
        var address = first.Endpoint.ToString();
        await using var second = await RunToExitAsync([option, address + suffix]);
        Assert.Equal(2, await second.Exited);
        Assert.Contains(address, second.Output, StringComparison.Ordinal);
        Assert.Contains("address already in use", second.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Rama node ready", second.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void The_lighthouse_build_output_holds_no_proxy_code()
    {
        var directory = Path.GetDirectoryName(NodeProcess.NodeDll("Rama.Lighthouse", "rama-lighthouse"))!;
        Assert.True(File.Exists(Path.Combine(directory, "Rama.Admin.dll")));
        Assert.False(File.Exists(Path.Combine(directory, "Rama.Proxy.dll")));
        Assert.False(File.Exists(Path.Combine(directory, "Rama.Actors.dll")));
    }
}
