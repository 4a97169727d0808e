using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// rama-node with a JSON config file holding a reverse listener's Routes and Clusters (YARP's shape), nginx origins that
/// answer their name, curl as the client; the file is rewritten while a keep-alive connection stays open.
/// </summary>
public sealed class ReverseRoutesNodeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("rama-routes-node").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Config(string apiCluster, string siteDestinations) => $$"""
        {
          "Rama": {
            "Listeners": {
              "web": {
                "Kind": "reverse",
                "Bind": "127.0.0.1:0",
                "Routes": {
                  "api": { "ClusterId": "{{apiCluster}}", "Match": { "Path": "/api/{**catch-all}" }, "Transforms": [ { "ResponseHeader": "X-Route", "Set": "api" } ] },
                  "site": { "ClusterId": "site", "Match": { "Hosts": [ "*.example" ] } }
                },
                "Clusters": {
                  "api": { "Destinations": { "a": { "Address": "http://127.0.0.1:{{s_ports[0]}}" } } },
                  "site": { "LoadBalancingPolicy": "RoundRobin", "Destinations": { {{siteDestinations}} } }
                }
              }
            }
          }
        }
        """;

    private static readonly int[] s_ports = [Ports.Refused(), Ports.Refused(), Ports.Refused()];

    private static string Destination(char name) => $"\"{name}\": {{ \"Address\": \"http://127.0.0.1:{s_ports[name - 'a']}\" }}";

    [Fact]
    public async Task Routes_from_a_config_file_route_by_path_and_host_and_a_changed_file_reroutes_without_dropping_a_keep_alive_connection()
    {
        await using var a = await StartNginxAsync("a", s_ports[0]);
        await using var b = await StartNginxAsync("b", s_ports[1]);
        await using var c = await StartNginxAsync("c", s_ports[2]);
        var config = Path.Combine(_dir, "node.json");
        await File.WriteAllTextAsync(config, Config("api", $"{Destination('b')}, {Destination('c')}"));
        await using var node = await NodeProcess.StartAsync(["--config", config]);
        Assert.Contains("HTTP reverse proxy, 2 route(s) to 2 cluster(s) of 3 destination(s)", node.Output, StringComparison.Ordinal);
        var proxy = $"http://{node.Endpoint}";

        var api = await Cli.CurlAsync("-i", $"{proxy}/api/users");
        Assert.StartsWith("HTTP/1.1 200", api.Text, StringComparison.Ordinal);
        Assert.Contains("X-Route: api", api.Text, StringComparison.Ordinal);
        Assert.EndsWith("a", api.Text, StringComparison.Ordinal);
        var site = await Cli.CurlAsync(["-H", "Host: www.example", .. Enumerable.Repeat($"{proxy}/", 4)]);
        Assert.Equal("bbcc", string.Concat(site.Text.Order())); // round robin: two each
        var none = await Cli.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: other.test", $"{proxy}/");
        Assert.Equal("404", none.Text);

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(node.Endpoint);
        Assert.Equal("a", await GetAsync(client, "/api/x"));

        // The api route now goes to the site cluster, which has only c: the open connection sees it.
        await File.WriteAllTextAsync(config, Config("site", Destination('c')));
        await node.WaitForLineAsync("Listener web: routes reloaded", TimeSpan.FromSeconds(20));
        Assert.Equal("c", await GetAsync(client, "/api/x"));
        Assert.Equal("c", (await Cli.CurlAsync($"{proxy}/api/y")).Text);

        // An invalid file is refused with the problem in the log; the routes in use stay.
        await File.WriteAllTextAsync(config, Config("site", "\"x\": { \"Address\": \"ftp://127.0.0.1:21\" }"));
        await node.WaitForLineAsync("changed configuration refused", TimeSpan.FromSeconds(20));
        Assert.Contains("'ftp', not supported", node.Output, StringComparison.Ordinal);
        Assert.Equal("c", await GetAsync(client, "/api/x"));
    }

    private static async Task<string> GetAsync(Socket socket, string path)
    {
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: www.example\r\n\r\n"));
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var text = Encoding.ASCII.GetString([.. received]);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                Assert.StartsWith("HTTP/1.1 200", text, StringComparison.Ordinal);
                var length = int.Parse(text[..end].Split("\r\n").Single(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))[15..].Trim(),
                    System.Globalization.CultureInfo.InvariantCulture);
                if (text.Length >= end + 4 + length)
                {
                    return text.Substring(end + 4, length);
                }
            }

            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.True(n > 0, "the node closed the keep-alive connection");
            received.AddRange(buffer.AsSpan(0, n));
        }
    }

    private async Task<Upstream.PeerProcess> StartNginxAsync(string name, int port)
    {
        var root = Directory.CreateDirectory(Path.Combine(_dir, "nginx-" + name)).FullName;
        var conf = Path.Combine(root, "nginx.conf");
        await File.WriteAllTextAsync(conf, NginxConfig.Text(root, $$"""
              server { listen 127.0.0.1:{{port}}; location / { default_type text/plain; return 200 "{{name}}"; } }
            """));
        return await Upstream.PeerProcess.StartAsync("nginx " + name, "nginx", ["-p", root, "-c", conf, "-e", Path.Combine(root, "error.log")], port, root);
    }
}
