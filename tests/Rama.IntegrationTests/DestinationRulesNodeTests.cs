using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// rama-node with destination rules from a JSON config file (the default denials forced on, as on a public listener):
/// curl through HTTP forward, CONNECT and SOCKS5 gets the rule's answer, allowed destinations pass, and each refusal is
/// an access-log line.
/// </summary>
public sealed class DestinationRulesNodeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rama-destinations").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Rules_from_a_config_file_refuse_the_admin_port_smtp_and_link_local_and_allow_the_origin()
    {
        await using var origin = TinyHttpOrigin.Start("hello from origin");
        var admin = Ports.Refused();
        var config = Path.Combine(_dir, "node.json");
        await File.WriteAllTextAsync(config, $$"""
            { "Rama": { "Destinations": { "Defaults": "on", "Rules": [
                { "Name": "no-smtp", "Action": "deny", "Ports": [ "25" ] },
                { "Name": "origin", "Action": "allow", "Cidrs": [ "127.0.0.1" ], "Ports": [ "{{origin.Port}}" ] }
            ] } } }
            """);
        await using var node = await NodeProcess.StartAsync(["--config", config, "--listen", "127.0.0.1:0", "--admin", $"127.0.0.1:{admin}"]);
        var proxy = $"http://{node.Endpoint}";
        Assert.Contains("destinations: 2 rule(s) + default denials", node.Output, StringComparison.Ordinal);

        var allowed = await Cli.CurlAsync("-x", proxy, $"http://127.0.0.1:{origin.Port}/");
        Assert.Equal("hello from origin", allowed.Text);

        var adminPort = await Cli.CurlAsync("-x", proxy, "-w", "\n%{http_code}", $"http://127.0.0.1:{admin}/");
        Assert.Equal($"Forbidden: destination 127.0.0.1:{admin} denied by rule 'admin-port'\n\n403", adminPort.Text);

        var smtp = await Cli.CurlAsync("-p", "-x", proxy, "http://127.0.0.1:25/");
        Assert.Equal(56, smtp.ExitCode);
        Assert.Contains("403", smtp.Stderr, StringComparison.Ordinal);

        var metadata = await Cli.CurlAsync("--socks5-hostname", node.Endpoint.ToString(), "http://169.254.169.254/latest/meta-data/");
        Assert.Equal(97, metadata.ExitCode);

        await node.WaitForLineAsync(" socks5 CONNECT 169.254.169.254:80 2 ", TimeSpan.FromSeconds(10));
        Assert.Contains($" forward GET http://127.0.0.1:{admin}/ 403 ", node.Output, StringComparison.Ordinal);
        Assert.Contains(" connect CONNECT 127.0.0.1:25 403 ", node.Output, StringComparison.Ordinal);
        Assert.Contains($" forward GET http://127.0.0.1:{origin.Port}/ 200 ", node.Output, StringComparison.Ordinal);
    }
}
