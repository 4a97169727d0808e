using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// A real node's admin endpoint scraped by a real Prometheus (Debian's <c>prometheus</c>), and its probes during a
/// SIGTERM drain.
/// </summary>
public sealed class MetricsNodeTests
{
    private const string Token = "scrape-token-1234";

    [Fact]
    public async Task Prometheus_scrapes_the_node_with_its_bearer_token_and_answers_queries_for_rama_metrics()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--admin-token", Token]);
        var admin = node.AdminEndpoint ?? throw new InvalidOperationException("the node did not say its admin endpoint:\n" + node.Output);
        for (var i = 0; i < 3; i++)
        {
            var result = await Cli.CurlAsync("-x", $"http://127.0.0.1:{node.Endpoint.Port}", origin.Url("/hello"));
            Assert.Equal(0, result.ExitCode);
        }

        var directory = Directory.CreateTempSubdirectory("rama-prometheus-");
        var webPort = Ports.Refused();
        var config = Path.Combine(directory.FullName, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: rama
                static_configs:
                  - targets: ['{admin}']
                authorization:
                  type: Bearer
                  credentials: {Token}
            """);
        using var prometheus = Process.Start(new ProcessStartInfo("prometheus")
        {
            ArgumentList =
            {
                "--config.file=" + config,
                "--storage.tsdb.path=" + Path.Combine(directory.FullName, "data"),
                $"--web.listen-address=127.0.0.1:{webPort}",
            },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        prometheus.OutputDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
        prometheus.ErrorDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
        prometheus.BeginOutputReadLine();
        prometheus.BeginErrorReadLine();
        try
        {
            var api = $"http://127.0.0.1:{webPort}/api/v1/query?query=";
            double requests = 0;
            double up = 0;
            await Eventually.TrueAsync(async () =>
            {
                up = await QueryAsync(api + Uri.EscapeDataString("up{job=\"rama\"}")) ?? 0;
                requests = await QueryAsync(api + Uri.EscapeDataString("sum(rama_proxy_requests_total{rama_proxy_kind=\"forward\",rama_http_status_class=\"2xx\"})")) ?? 0;
                return up == 1 && requests >= 3;
            }, TimeSpan.FromSeconds(60), () => "Prometheus never had the node's requests; its log:\n" + string.Join('\n', log.TakeLast(20)));

            Assert.Equal(3, requests);
            var accepted = await QueryAsync(api + Uri.EscapeDataString("sum(rama_listener_accepted_connections_total)"));
            Assert.Equal(3, accepted);
            var members = await QueryAsync(api + Uri.EscapeDataString("sum(rama_actor_system_uptime_seconds_total)"));
            Assert.True(members > 0, "no Rama.Fleet metric");
        }
        finally
        {
            prometheus.Kill(entireProcessTree: true);
            await prometheus.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task Readyz_is_200_after_start_and_503_while_a_sigterm_drains_a_request_in_flight()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--drain-timeout", "20"]);
        var admin = node.AdminEndpoint ?? throw new InvalidOperationException("no admin endpoint:\n" + node.Output);
        var readyz = $"http://{admin}/readyz";

        var ready = await Cli.CurlAsync("-s", "-w", "%{http_code}", "-o", "/dev/null", readyz);
        var inFlight = Cli.CurlAsync("-x", $"http://127.0.0.1:{node.Endpoint.Port}", origin.Url("/hold"));
        await origin.HoldReached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        node.Terminate();
        string during = "";
        await Eventually.TrueAsync(() =>
        {
            var answer = Cli.CurlAsync("-s", "-w", "\n%{http_code}", readyz).GetAwaiter().GetResult().Text;
            during = answer;
            return answer.EndsWith("\n503", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(10), "readyz did not turn 503 during the drain");
        var alive = await Cli.CurlAsync("-s", "-w", "%{http_code}", "-o", "/dev/null", $"http://{admin}/healthz");
        Assert.False(inFlight.IsCompleted, "the request in flight ended before the probe was read");
        origin.Release.SetResult();
        var result = await inFlight;

        Assert.Equal("200", ready.Text);
        Assert.StartsWith("not ready: draining", during, StringComparison.Ordinal);
        Assert.Equal("200", alive.Text);
        Assert.Equal("held response", result.Text);
        Assert.Equal(0, await node.Exited.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    /// <summary>The first sample's value of an instant query; null when the result is empty.</summary>
    private static async Task<double?> QueryAsync(string url)
    {
        var result = await Cli.CurlAsync("-s", "--max-time", "5", url);
        if (result.ExitCode != 0 || !result.Text.StartsWith('{'))
        {
            return null; // not up yet ("Service Unavailable" while its storage opens)
        }

        using var document = JsonDocument.Parse(result.Text);
        var samples = document.RootElement.GetProperty("data").GetProperty("result");
        return samples.GetArrayLength() == 0
            ? null
            : double.Parse(samples[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
    }
}
