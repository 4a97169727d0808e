using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>
/// <c>deploy/fleet watch</c> with <c>pbm fleet roll</c>: the script's fleet (Akka's own failure-detector defaults) rolls
/// with every node started again by <c>watch</c> at its ports, while clients that move only on a refused connection see
/// no failed request.
/// </summary>
[Collection(FleetCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")] // a python3 script over /proc: Linux only
public sealed class FleetWatchTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), "rama-fleet-watch-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly int _base = FleetScriptTests.FreeBasePort();
    private readonly StringBuilder _watchOutput = new();
    private Process? _watch;

    private static string Configuration => AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";

    public Task InitializeAsync() => Task.CompletedTask;

    [Fact]
    public async Task Deploy_fleet_watch_starts_again_every_node_a_roll_stops_and_no_request_fails()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        var up = await FleetAsync(TimeSpan.FromSeconds(240), "up");
        Assert.True(up.ExitCode == 0, $"fleet up exited {up.ExitCode}:\n{up.Stdout}\n{up.Stderr}");
        _watch = Process.Start(FleetStart("watch"))!;
        _watch.OutputDataReceived += (_, e) => { lock (_watchOutput) { _watchOutput.AppendLine(e.Data); } };
        _watch.ErrorDataReceived += (_, e) => { lock (_watchOutput) { _watchOutput.AppendLine(e.Data); } };
        _watch.BeginOutputReadLine();
        _watch.BeginErrorReadLine();

        string[] admins = [.. new[] { 13, 23, 33 }.Select(o => $"127.0.0.1:{_base + o}")];
        async Task<FleetStatusView?> StatusAsync()
        {
            foreach (var admin in admins)
            {
                var result = await Pbm.RunAsync(admin, "fleet", "status", "--json");
                if (result.Exit == 0)
                {
                    return FleetStatusView.Parse(result.Output);
                }
            }

            return null;
        }

        var deadline = Stopwatch.StartNew();
        while ((await StatusAsync())?.Serving != 3)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "three nodes never served");
            await Task.Delay(500); // the poll interval: each look starts a pbm process
        }

        IPEndPoint[] proxies = [.. new[] { 10, 20, 30 }.Select(o => new IPEndPoint(IPAddress.Loopback, _base + o))];
        var clients = new[] { FailoverLoop.Start(proxies, 0, origin.Url("/hello")), FailoverLoop.Start(proxies, 1, origin.Url("/hello")) };
        await FleetHarness.UntilAsync(() => clients.All(c => c.Successes > 0), "requests through the fleet");

        var roll = await Pbm.RunAsync(admins[0], "fleet", "roll");
        Assert.True(roll.Exit == 0, $"pbm fleet roll: {roll}");
        var rolling = Stopwatch.StartNew();
        FleetStatusView? done = null;
        while (done is null)
        {
            Assert.True(rolling.Elapsed < TimeSpan.FromSeconds(240), $"the roll did not finish within 240 s; watch said:\n{WatchOutput()}");
            if (await StatusAsync() is { } view && view.Fields.GetValueOrDefault("roll") == "done")
            {
                done = view;
            }

            await Task.Delay(1000); // the poll interval of a roll that takes tens of seconds: each look starts a pbm process
        }

        foreach (var client in clients)
        {
            await client.DisposeAsync();
        }

        output.WriteLine($"deploy/fleet watch + pbm fleet roll: {done.Fields["rollDetail"]} ({rolling.Elapsed.TotalSeconds:F1} s by the test's clock); " +
            $"{clients.Sum(c => c.Successes)} requests ok, {clients.Sum(c => c.Failures.Count)} failed, {clients.Sum(c => c.Moves)} moves");
        output.WriteLine(WatchOutput());
        Assert.Equal("3/3", done.Fields["rolled"]);
        var failures = clients.SelectMany(c => c.Failures).ToList();
        Assert.True(failures.Count == 0, "failed requests:\n" + string.Join("\n", failures));
        foreach (var node in new[] { "node1", "node2", "node3" })
        {
            Assert.Contains($"{node} was not running: started it again", WatchOutput(), StringComparison.Ordinal);
        }
    }

    private string WatchOutput()
    {
        lock (_watchOutput)
        {
            return _watchOutput.ToString();
        }
    }

    public async Task DisposeAsync()
    {
        if (_watch is { HasExited: false })
        {
            _watch.Kill(entireProcessTree: true);
            await _watch.WaitForExitAsync();
        }

        _watch?.Dispose();
        try
        {
            await FleetAsync(TimeSpan.FromSeconds(120), "down");
        }
        catch (TimeoutException)
        {
        }

        try
        {
            Directory.Delete(_state, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private ProcessStartInfo FleetStart(params string[] args)
    {
        var psi = new ProcessStartInfo(Path.Combine(NodeProcess.RepoRoot, "deploy", "fleet"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = NodeProcess.RepoRoot,
        };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        psi.Environment["RAMA_FLEET_DIR"] = _state;
        psi.Environment["RAMA_FLEET_BASE_PORT"] = _base.ToString(CultureInfo.InvariantCulture);
        psi.Environment["RAMA_FLEET_CONFIGURATION"] = Configuration;
        psi.Environment["RAMA_FLEET_TIMEOUT"] = "120"; // a loaded 2-core machine starts four .NET processes slowly
        return psi;
    }

    private async Task<(int ExitCode, string Stdout, string Stderr)> FleetAsync(TimeSpan timeout, params string[] args)
    {
        using var process = Process.Start(FleetStart(args))!;
        using var cts = new CancellationTokenSource(timeout);
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"deploy/fleet {string.Join(' ', args)} did not finish within {timeout}");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
