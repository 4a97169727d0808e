using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>
/// deploy/fleet, the compose topology as local processes: <c>up</c> on free ports forms a cluster of four members Up
/// (the lighthouse's pbm says so), the nodes proxy to the origin, <c>up</c> again starts nothing, <c>status</c> shows
/// the processes and the cluster, <c>down</c> leaves no process behind; a failing <c>up</c> prints the failing log and
/// stops what it started; busy ports are refused before anything starts. Each test has its own state directory and
/// reaps every process it saw, whatever happened.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")] // a bash/python3 script over /proc: Linux only
public sealed partial class FleetScriptTests : IAsyncLifetime
{
    private static readonly string[] Roles = ["origin", "lighthouse", "node1", "node2", "node3"];
    private readonly string _state = Path.Combine(Path.GetTempPath(), "rama-fleet-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly int _base = FreeBasePort();
    private readonly HashSet<int> _pids = [];

    private static string Configuration => AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";

    public Task InitializeAsync() => Task.CompletedTask;

    [Fact]
    public async Task Up_forms_a_four_member_cluster_status_shows_it_and_down_leaves_no_process()
    {
        var up = await FleetAsync(TimeSpan.FromSeconds(180), "up");
        RecordPids();
        Assert.True(up.ExitCode == 0, $"fleet up exited {up.ExitCode}:\n{up.Stdout}\n{up.Stderr}");
        Assert.Contains("4 members Up", up.Stdout, StringComparison.Ordinal);
        Assert.All(Roles, role => Assert.Contains(role, up.Stdout, StringComparison.Ordinal));

        // The cluster as the lighthouse's admin endpoint sees it, through pbm.
        var pbm = await Cli.RunAsync("dotnet", [NodeProcess.NodeDll("Rama.Cmd", "pbm"), $"127.0.0.1:{_base + 2}", "cluster", "show", "--json"], TimeSpan.FromSeconds(30));
        Assert.True(pbm.ExitCode == 0, $"pbm exited {pbm.ExitCode}: {pbm.Stderr}");
        var members = JsonDocument.Parse(pbm.Stdout).RootElement.GetProperty("members").EnumerateArray()
            .Select(m => (Address: m.GetProperty("address").GetString()!, Status: m.GetProperty("status").GetString()!)).ToList();
        Assert.Equal(4, members.Count);
        Assert.All(members, m => Assert.Equal("Up", m.Status));
        int[] clusterPorts = [_base + 1, _base + 12, _base + 22, _base + 32];
        Assert.Equal(clusterPorts, members.Select(m => int.Parse(m.Address[(m.Address.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).Order());

        // The processes, with the generated secret kept off their command lines and in a file only its owner reads.
        var status = await StatusJsonAsync();
        Assert.Equal(0, status.ExitCode);
        var processes = status.Document.GetProperty("processes").EnumerateArray().ToDictionary(p => p.GetProperty("role").GetString()!);
        Assert.Equal(Roles.Order(StringComparer.Ordinal), processes.Keys.Order(StringComparer.Ordinal));
        Assert.All(processes.Values, p => Assert.True(p.GetProperty("alive").GetBoolean(), $"{p.GetProperty("role")} is not running"));
        var secretFile = Path.Combine(_state, "secret");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secretFile));
        var secret = (await File.ReadAllTextAsync(secretFile)).Trim();
        Assert.True(secret.Length >= 16);
        foreach (var pid in _pids)
        {
            Assert.DoesNotContain(secret, await File.ReadAllTextAsync($"/proc/{pid}/cmdline"), StringComparison.Ordinal);
        }

        // Traffic: node1's proxy and node2's reverse listener reach the origin.
        var proxied = await Cli.CurlAsync("-x", $"http://127.0.0.1:{_base + 10}", $"http://127.0.0.1:{_base}/");
        Assert.True(proxied.ExitCode == 0, proxied.Stderr);
        Assert.Contains("Rama fleet origin", proxied.Text, StringComparison.Ordinal);
        var reversed = await Cli.CurlAsync($"http://127.0.0.1:{_base + 21}/healthz");
        Assert.True(reversed.ExitCode == 0, reversed.Stderr);
        Assert.Equal("ok\n", reversed.Text);

        // Up again: nothing new starts.
        var again = await FleetAsync(TimeSpan.FromSeconds(120), "up");
        Assert.True(again.ExitCode == 0, $"second up exited {again.ExitCode}:\n{again.Stdout}\n{again.Stderr}");
        Assert.Contains("already up", again.Stdout, StringComparison.Ordinal);
        Assert.Equal(_pids.Order(), ReadPids().Values.Order());

        var table = await FleetAsync(TimeSpan.FromSeconds(60), "status");
        Assert.True(table.ExitCode == 0, $"status exited {table.ExitCode}:\n{table.Stdout}\n{table.Stderr}");
        Assert.Contains("5 of 5 processes running", table.Stdout, StringComparison.Ordinal);
        Assert.Contains("count: 4", table.Stdout, StringComparison.Ordinal);

        var down = await FleetAsync(TimeSpan.FromSeconds(120), "down");
        Assert.True(down.ExitCode == 0, $"down exited {down.ExitCode}:\n{down.Stdout}\n{down.Stderr}");
        Assert.All(_pids, pid => Assert.False(Alive(pid), $"pid {pid} still runs after down"));
        Assert.Empty(Directory.GetFiles(_state, "*.pid"));
        Assert.Equal(3, (await FleetAsync(TimeSpan.FromSeconds(30), "status")).ExitCode);

        // Down with nothing running is fine.
        Assert.Equal(0, (await FleetAsync(TimeSpan.FromSeconds(30), "down")).ExitCode);
    }

    [Fact]
    public async Task Up_that_fails_prints_the_failing_log_and_stops_what_it_started()
    {
        // Valid for the lighthouse (it has no such key), refused by every node at start (exit 2).
        var up = await FleetAsync(TimeSpan.FromSeconds(180), ["up"], new() { ["Rama__DrainTimeout"] = "bogus" });
        RecordPids();
        foreach (Match started in StartedPid().Matches(up.Stderr))
        {
            _pids.Add(int.Parse(started.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.Equal(1, up.ExitCode);
        Assert.Contains("exited with 2", up.Stderr, StringComparison.Ordinal);
        Assert.Contains("Rama:DrainTimeout", up.Stderr, StringComparison.Ordinal);
        Assert.Contains("stopping what this `up` started", up.Stderr, StringComparison.Ordinal);
        Assert.Equal(5, _pids.Count);
        Assert.All(_pids, pid => Assert.False(Alive(pid), $"pid {pid} still runs after the failed up"));
        Assert.Empty(Directory.GetFiles(_state, "*.pid"));
    }

    [Fact]
    public async Task Up_on_a_busy_port_starts_nothing()
    {
        using var busy = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        busy.Bind(new IPEndPoint(IPAddress.Loopback, _base + 12)); // node1's cluster port
        busy.Listen();
        var up = await FleetAsync(TimeSpan.FromSeconds(180), "up");
        RecordPids();
        Assert.Equal(2, up.ExitCode);
        Assert.Contains($"node1 cluster 127.0.0.1:{_base + 12}", up.Stderr, StringComparison.Ordinal);
        Assert.Empty(_pids);
    }

    public async Task DisposeAsync()
    {
        RecordPids();
        if (_pids.Any(Alive))
        {
            try
            {
                await FleetAsync(TimeSpan.FromSeconds(90), "down");
            }
            catch (TimeoutException)
            {
            }
        }

        foreach (var pid in _pids.Where(Alive))
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill(entireProcessTree: true);
            }
            catch (ArgumentException)
            {
            }
        }

        try
        {
            Directory.Delete(_state, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private Task<Result> FleetAsync(TimeSpan timeout, params string[] args) => FleetAsync(timeout, args, []);

    /// <summary>deploy/fleet with this test's state directory, base port and build, bounded in time.</summary>
    private async Task<Result> FleetAsync(TimeSpan timeout, string[] args, Dictionary<string, string> environment)
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
        psi.Environment["RAMA_FLEET_BASE_PORT"] = _base.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["RAMA_FLEET_CONFIGURATION"] = Configuration;
        psi.Environment["RAMA_FLEET_TIMEOUT"] = "90"; // a loaded 2-core machine starts four .NET processes slowly
        foreach (var (key, value) in environment)
        {
            psi.Environment[key] = value;
        }

        using var process = Process.Start(psi)!;
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

        return new Result(process.ExitCode, await stdout, await stderr);
    }

    private async Task<(int ExitCode, JsonElement Document)> StatusJsonAsync()
    {
        var status = await FleetAsync(TimeSpan.FromSeconds(60), "status", "--json");
        return (status.ExitCode, JsonDocument.Parse(status.Stdout).RootElement.Clone());
    }

    private Dictionary<string, int> ReadPids()
    {
        var pids = new Dictionary<string, int>(StringComparer.Ordinal);
        if (Directory.Exists(_state))
        {
            foreach (var file in Directory.GetFiles(_state, "*.pid"))
            {
                if (int.TryParse(File.ReadAllText(file).Trim(), System.Globalization.CultureInfo.InvariantCulture, out var pid))
                {
                    pids[Path.GetFileNameWithoutExtension(file)] = pid;
                }
            }
        }

        return pids;
    }

    /// <summary>Remembers every pid the fleet wrote, so Dispose can reap them even after a failed assertion.</summary>
    private void RecordPids()
    {
        foreach (var pid in ReadPids().Values)
        {
            _pids.Add(pid);
        }

    }

    /// <summary>Running, and not a zombie waiting for a parent that exited.</summary>
    private static bool Alive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var state = stat[stat.LastIndexOf(')') + 2];
            return state is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>A base port with the fleet's 40 ports free, below the ephemeral range (port-0 listeners of other tests).</summary>
    internal static int FreeBasePort()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var candidate = Random.Shared.Next(15_000, 32_000 - 40) / 10 * 10;
            if (Enumerable.Range(candidate, 40).All(PortFree))
            {
                return candidate;
            }
        }

        throw new InvalidOperationException("no 40 free ports between 15000 and 32000 on 127.0.0.1");

        static bool PortFree(int port)
        {
            try
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }

    private sealed record Result(int ExitCode, string Stdout, string Stderr);

    [GeneratedRegex(@"\(pid (\d+)\)")]
    private static partial Regex StartedPid();
}
