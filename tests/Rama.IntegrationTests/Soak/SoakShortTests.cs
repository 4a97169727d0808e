using System.Globalization;
using System.Text.Json;
using Rama.Testing;

namespace Rama.IntegrationTests.Soak;

/// <summary>
/// The short form of benchmarks/soak (issue 15): the same driver, the same rules, for 40 s against a real node built with
/// these tests and a real nginx origin, with curl and raw-socket clients. Forward, CONNECT, SOCKS5 and reverse clients
/// must all succeed; vanishing clients, slowloris and garbage must be answered and closed; afterwards the node must hold
/// no connection, no extra socket descriptor and no open-connection or tunnel count in /metrics, and stop cleanly on
/// SIGTERM. Shortened for the suite: an 8 s header timeout (slowloris gets its 408 several times), pooled origin
/// connections idle out after 5 s (the settle wait stays short), and the memory rule allows 48 MiB because 40 s is
/// still the node's warm-up (it catches a gross leak, such as a buffer kept per vanished client; the 10-minute run in
/// benchmarks/results catches a slow one). About 60 s.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")] // /proc and nginx: Linux only
public sealed class SoakShortTests
{
    [Fact]
    public async Task Forty_seconds_of_mixed_load_leave_no_error_no_connection_and_flat_memory()
    {
        var directory = Directory.CreateTempSubdirectory("rama-soak-test-");
        try
        {
            var report = Path.Combine(directory.FullName, "soak.md");
            var json = Path.Combine(directory.FullName, "soak.json");
            var result = await Cli.RunAsync("/usr/bin/python3",
            [
                Path.Combine(NodeProcess.RepoRoot, "benchmarks", "soak"),
                "--duration", "40", "--warmup", "15", "--clients", "3", "--sample", "2",
                "--header-timeout", "8", "--slowloris-interval", "1", "--settle", "40", "--rss-tolerance", "48",
                "--node", NodeProcess.NodeDll(),
                "--node-env", "Rama__Proxy__Http__PooledConnectionIdleTimeout=00:00:05",
                "--out", report, "--json", json,
            ], TimeSpan.FromSeconds(120));

            var output = result.Text + "\n" + result.Stderr;
            Assert.True(File.Exists(json), "the soak wrote no figures:\n" + output);
            using var figures = JsonDocument.Parse(await File.ReadAllTextAsync(json));
            var verdict = string.Join('\n', figures.RootElement.GetProperty("verdict").EnumerateArray()
                .Select(v => $"{(v.GetProperty("ok").GetBoolean() ? "pass" : "FAIL")} {v.GetProperty("rule").GetString()}: {v.GetProperty("detail").GetString()}"));
            Assert.True(result.ExitCode == 0, $"soak exited {result.ExitCode}:\n{verdict}\n{output[Math.Max(0, output.Length - 4000)..]}");
            Assert.True(figures.RootElement.GetProperty("passed").GetBoolean(), verdict);

            // Every kind of client ran and was judged: a driver that did nothing cannot pass.
            var counts = figures.RootElement.GetProperty("counts").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
            int Ok(string prefix) => counts.Where(c => c.Key.StartsWith(prefix, StringComparison.Ordinal) && c.Key.EndsWith(":ok", StringComparison.Ordinal)).Sum(c => c.Value);
            foreach (var kind in new[] { "forward-get", "forward-put", "connect-get", "socks5-get", "reverse-get", "reverse-put" })
            {
                Assert.True(Ok(kind) > 0, $"no successful {kind}: {string.Join(", ", counts.Select(c => c.Key + "=" + c.Value.ToString(CultureInfo.InvariantCulture)))}");
            }

            Assert.True(Ok("vanish-") >= 10, "too few vanishing clients ran");
            Assert.True(Ok("slowloris-proxy") > 0 && Ok("slowloris-reverse") > 0, "slowloris never got its 408 on both listeners");
            Assert.True(Ok("garbage-") > 0, "no garbage connection was judged");
            Assert.DoesNotContain(counts, c => c.Key.EndsWith(":error", StringComparison.Ordinal));
            Assert.Contains("## The curve", await File.ReadAllTextAsync(report), StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
