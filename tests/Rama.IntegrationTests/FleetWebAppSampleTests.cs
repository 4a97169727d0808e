using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// samples/Rama.Samples.FleetWebApp, an ASP.NET Core app that embeds a fleet node (AddRama next to its own endpoints),
/// run as a member of a real fleet: a rama-lighthouse process and the sample as a second process, on loopback with a
/// cluster secret (mutual TLS), observed through the sample's GET /cluster and through pbm at the lighthouse.
/// </summary>
public sealed class FleetWebAppSampleTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task The_fleet_web_app_joins_the_lighthouse_serves_its_cluster_view_and_the_proxy_and_leaves_gracefully_on_ctrl_c()
    {
        var secret = "fleet-webapp-" + Guid.NewGuid().ToString("N");
        var secretOnly = new Dictionary<string, string> { ["CLUSTER_SECRET"] = secret }; // Lighthouse's variable, read by both
        var lighthouseCluster = FreePort();
        var lighthouseAdmin = $"127.0.0.1:{FreePort()}";
        await using var origin = await KestrelOrigin.StartAsync();
        await using var lighthouse = await NodeProcess.StartAsync(["--cluster", $"127.0.0.1:{lighthouseCluster}", "--admin", lighthouseAdmin],
            secretOnly, expectListening: false, project: "Rama.Lighthouse", assembly: "rama-lighthouse");
        await lighthouse.WaitForLineAsync("Rama lighthouse ready", Deadline);

        var appCluster = FreePort();
        await using var app = await NodeProcess.StartAsync(
            ["--cluster", $"127.0.0.1:{appCluster}", "--seeds", $"127.0.0.1:{lighthouseCluster}", "--urls", "http://127.0.0.1:0"],
            secretOnly, expectListening: false, project: "samples/Rama.Samples.FleetWebApp", assembly: "Rama.Samples.FleetWebApp");
        await app.WaitForLineAsync("Rama fleet web app ready", Deadline);
        var web = After(await app.WaitForLineAsync("Rama fleet web app: web ", TimeSpan.FromSeconds(1)), ": web ");
        var proxy = IPEndPoint.Parse(After(await app.WaitForLineAsync("Rama fleet web app: proxy edge listening on ", TimeSpan.FromSeconds(1)), "listening on "));
        var appAddress = $"akka.ssl.tcp://rama@127.0.0.1:{appCluster}";
        var lighthouseAddress = $"akka.ssl.tcp://rama@127.0.0.1:{lighthouseCluster}";

        // The app's own endpoint: the fleet as its actor sees it, both members Up with their roles.
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = new Uri(web) };
        var view = await PollAsync(async () =>
        {
            using var document = JsonDocument.Parse(await http.GetStringAsync("/cluster"));
            var root = document.RootElement.Clone();
            var members = root.GetProperty("members").EnumerateArray().ToList();
            return members.Count == 2 && members.All(m => m.GetProperty("status").GetString() == "Up") ? root : (JsonElement?)null;
        }, "GET /cluster lists two members Up", app, lighthouse);
        Assert.Equal(appAddress, view.GetProperty("self").GetString());
        Assert.Equal("Up", view.GetProperty("selfStatus").GetString());
        var byAddress = view.GetProperty("members").EnumerateArray().ToDictionary(m => m.GetProperty("address").GetString()!);
        Assert.Equal(["lighthouse"], byAddress[lighthouseAddress].GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        Assert.Equal(["proxy"], byAddress[appAddress].GetProperty("roles").EnumerateArray().Select(r => r.GetString()));
        Assert.True(byAddress[appAddress].GetProperty("self").GetBoolean());
        Assert.All(byAddress.Values, m => Assert.True(m.GetProperty("reachable").GetBoolean()));
        Assert.Empty(view.GetProperty("unreachable").EnumerateArray());
        Assert.Contains(view.GetProperty("leader").GetString(), byAddress.Keys);
        Assert.Contains("Rama fleet web app", await http.GetStringAsync("/"), StringComparison.Ordinal);

        // The lighthouse sees the app as a member Up, through pbm.
        await PollAsync(async () =>
        {
            var (members, _) = await PbmClusterShowAsync(lighthouseAdmin);
            return members.TryGetValue(appAddress, out var member) && member.Status == "Up" && member.Roles == "proxy" ? true : (bool?)null;
        }, "pbm cluster show at the lighthouse lists the app Up", app, lighthouse);

        // The embedded proxy carries traffic.
        var proxied = await Cli.CurlAsync("-x", $"http://{proxy}", origin.Url("/hello"));
        Assert.True(proxied.ExitCode == 0, proxied.Stderr);
        Assert.Equal("hello from origin", proxied.Text);
        var socks = await Cli.CurlAsync("--socks5", proxy.ToString(), origin.Url("/hello"));
        Assert.True(socks.ExitCode == 0, socks.Stderr);
        Assert.Equal("hello from origin", socks.Text);

        // Ctrl+C: the app leaves the fleet (Leaving -> Exiting -> Removed) and exits 0; the lighthouse removes it
        // without ever marking it unreachable.
        app.Interrupt();
        Assert.Equal(0, await app.Exited.WaitAsync(TimeSpan.FromSeconds(45)));
        Assert.Contains("Drain finished", app.Output, StringComparison.Ordinal);
        Assert.Contains($"Marked address [{appAddress}] as [Leaving]", app.Output, StringComparison.Ordinal);
        await PollAsync(async () =>
        {
            var (members, fields) = await PbmClusterShowAsync(lighthouseAdmin);
            return members.Count == 1 && members.ContainsKey(lighthouseAddress) && fields.GetProperty("unreachable").GetString() == "0" ? true : (bool?)null;
        }, "the lighthouse removed the app", app, lighthouse);
        Assert.DoesNotContain("UNREACHABLE", lighthouse.Output, StringComparison.Ordinal); // Akka.Cluster: "Marking node(s) as UNREACHABLE"
        Assert.False(lighthouse.Exited.IsCompleted, "the lighthouse stopped with the app");
    }

    private static string After(string line, string marker)
    {
        var value = line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..];
        var space = value.IndexOf(' ', StringComparison.Ordinal);
        return space < 0 ? value : value[..space];
    }

    private static async Task<(Dictionary<string, (string Status, string Roles)> Members, JsonElement Fields)> PbmClusterShowAsync(string admin)
    {
        var pbm = await Cli.RunAsync("dotnet", [NodeProcess.NodeDll("Rama.Cmd", "pbm"), admin, "cluster", "show", "--json"], TimeSpan.FromSeconds(30));
        Assert.True(pbm.ExitCode == 0, $"pbm exited {pbm.ExitCode}: {pbm.Stderr}");
        using var document = JsonDocument.Parse(pbm.Stdout);
        var root = document.RootElement.Clone();
        var members = root.GetProperty("members").EnumerateArray().ToDictionary(
            m => m.GetProperty("address").GetString()!,
            m => (m.GetProperty("status").GetString()!, m.GetProperty("roles").GetString()!));
        return (members, root);
    }

    /// <summary>Polls <paramref name="probe"/> until it returns a value, within <see cref="Deadline"/>; a failed probe is retried.</summary>
    private static async Task<T> PollAsync<T>(Func<Task<T?>> probe, string what, NodeProcess app, NodeProcess lighthouse) where T : struct
    {
        var deadline = DateTime.UtcNow + Deadline;
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await probe() is { } value)
                {
                    return value;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
            {
                last = ex;
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"not within {Deadline}: {what} ({last?.Message})\n--- app:\n{app.Output}\n--- lighthouse:\n{lighthouse.Output}");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
