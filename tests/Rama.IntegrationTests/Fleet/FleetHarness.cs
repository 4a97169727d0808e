using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Rama.Testing;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace Rama.IntegrationTests.Fleet;

/// <summary>The fleet tests start four or five processes each: they run one at a time, after the parallel tests (2 cores).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FleetCollection
{
    public const string Name = "fleet processes";
}

/// <summary>One member as <c>pbm cluster show --json</c> lists it.</summary>
internal sealed record FleetMemberView(string Address, string Status, string Roles, string Reachability);

/// <summary>A member's view of the fleet (<c>pbm cluster show --json</c>).</summary>
internal sealed record ClusterView(IReadOnlyList<FleetMemberView> Members)
{
    public FleetMemberView? Find(FleetMember member) => Members.FirstOrDefault(m => m.Address == member.Address);

    /// <summary>Exactly these members, every one Up and reachable.</summary>
    public bool AllUp(IEnumerable<FleetMember> members)
    {
        var expected = members.ToList();
        return Members.Count == expected.Count && expected.All(m => Find(m) is { Status: "Up", Reachability: "reachable" });
    }

    /// <summary>Lists a member at this host:port, with any scheme (akka.tcp and akka.ssl.tcp differ only there).</summary>
    public bool Lists(string hostPort) => Members.Any(m => m.Address.EndsWith("@" + hostPort, StringComparison.Ordinal));

    public static ClusterView Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        var members = document.RootElement.GetProperty("members").EnumerateArray()
            .Select(m => new FleetMemberView(
                m.GetProperty("address").GetString()!,
                m.GetProperty("status").GetString()!,
                m.GetProperty("roles").GetString()!,
                m.GetProperty("reachability").GetString()!))
            .ToList();
        return new ClusterView(members);
    }

    public override string ToString() => string.Join("; ", Members.Select(m => $"{m.Address} {m.Status} [{m.Roles}] {m.Reachability}"));
}

/// <summary>A lighthouse or node process of a test fleet, with what it printed about itself.</summary>
internal sealed partial class FleetMember(string name, NodeProcess process, int clusterPort, bool isLighthouse)
{
    public string Name { get; } = name;

    public NodeProcess Process { get; } = process;

    public bool IsLighthouse { get; } = isLighthouse;

    /// <summary>The cluster port it was given (the same after a restart at the same address).</summary>
    public int ClusterPort { get; } = clusterPort;

    public string HostPort => $"127.0.0.1:{ClusterPort}";

    /// <summary>The Akka address it printed (scheme included).</summary>
    public string Address => Process.ClusterAddress ?? throw new InvalidOperationException($"{Name} has not printed its fleet address");

    /// <summary>Its admin endpoint, as <c>host:port</c> for pbm.</summary>
    public string Admin => Process.AdminEndpoint?.ToString() ?? throw new InvalidOperationException($"{Name} has not printed its admin endpoint");

    /// <summary>A node's first proxy listener (HTTP + SOCKS5).</summary>
    public IPEndPoint Proxy => ListenLine().Match(Process.Output) is { Success: true } m
        ? IPEndPoint.Parse(m.Groups[1].Value)
        : throw new InvalidOperationException($"{Name} has not printed a listener");

    public override string ToString() => $"{Name} (pid {Process.Pid}, {Process.ClusterAddress ?? HostPort}, admin {Process.AdminEndpoint})";

    [GeneratedRegex(@"listen-0 listening on (\S+:\d+)")]
    private static partial Regex ListenLine();
}

/// <summary>
/// Starts the processes of a test fleet on loopback (free ports, one shared secret, a short failure detector and
/// split-brain resolver), reads their views through pbm, keeps a timeline, and reaps every process at the end.
/// A failure inside <see cref="RunAsync"/> carries the timeline and every process's last lines.
/// </summary>
internal sealed class FleetHarness : IAsyncDisposable
{
    public const string Secret = "rama-fleet-tests-secret-0001";

    /// <summary>Failure detection and downing in a few seconds (Akka's defaults: 3 s pause, 20 s stable-after).</summary>
    public static readonly string[] Tuned = ["--stable-after", "3", "--heartbeat-pause", "2"];

    public static readonly TimeSpan Within = TimeSpan.FromSeconds(60);

    private readonly List<FleetMember> _members = [];
    private readonly List<string> _tempFiles = [];
    private readonly ConcurrentQueue<string> _timeline = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly ITestOutputHelper? _output;
    private readonly Dictionary<string, string> _environment = [];

    public FleetHarness(ITestOutputHelper? output, bool faultInjection = false)
    {
        _output = output;
        if (faultInjection)
        {
            _environment["Rama__Cluster__FaultInjection"] = "true";
        }
    }

    public IReadOnlyList<FleetMember> Members => _members;

    /// <summary>Time since the harness was created (the timeline's clock).</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Runs a test body; any failure is rethrown with the timeline and every process's output tail.</summary>
    public async Task RunAsync(Func<Task> body)
    {
        try
        {
            await body();
        }
        catch (Exception ex)
        {
            throw new XunitException($"{ex.GetType().Name}: {ex.Message}\n{Report()}", ex);
        }
    }

    public void Note(string text)
    {
        var line = $"+{_clock.Elapsed.TotalSeconds:F1}s {text}";
        _timeline.Enqueue(line);
        _output?.WriteLine(line);
    }

    /// <summary>Writes <paramref name="text"/> to a new temporary file (deleted when the harness is disposed) and returns its path.</summary>
    public string TempFile(string prefix, string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}.csv");
        File.WriteAllText(path, text);
        lock (_tempFiles)
        {
            _tempFiles.Add(path);
        }

        return path;
    }

    /// <summary>A loopback port that was free a moment ago (bound on port 0, then released).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public Task<FleetMember> StartLighthouseAsync(string name = "lighthouse", int? port = null, IEnumerable<string>? args = null)
    {
        var clusterPort = port ?? FreePort();
        return StartMemberAsync(name, lighthouse: true, clusterPort,
            ["--cluster", $"127.0.0.1:{clusterPort}", "--cluster-secret", Secret, .. Tuned, .. args ?? []], environment: null, expectReady: true);
    }

    /// <summary>A node seeded from <paramref name="seed"/>; <paramref name="secret"/> null means none.</summary>
    public Task<FleetMember> StartNodeAsync(string name, FleetMember seed, int? port = null, string? secret = Secret,
        IEnumerable<string>? args = null, bool expectReady = true)
    {
        var clusterPort = port ?? FreePort();
        List<string> arguments = ["--cluster", $"127.0.0.1:{clusterPort}", "--seeds", seed.HostPort, "--listen", "127.0.0.1:0", .. Tuned];
        if (secret is not null)
        {
            arguments.AddRange(["--cluster-secret", secret]);
        }

        return StartMemberAsync(name, lighthouse: false, clusterPort, [.. arguments, .. args ?? []], environment: null, expectReady);
    }

    /// <summary>Starts a member with exactly these arguments (plus the fleet's environment) and, unless told otherwise, waits until it is ready.</summary>
    public async Task<FleetMember> StartMemberAsync(string name, bool lighthouse, int clusterPort, IEnumerable<string> args,
        IDictionary<string, string>? environment, bool expectReady)
    {
        var env = new Dictionary<string, string>(_environment);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            env[key] = value;
        }

        var process = lighthouse
            ? await NodeProcess.StartAsync(args, env, expectListening: false, project: "Rama.Lighthouse", assembly: "rama-lighthouse")
            : await NodeProcess.StartAsync(args, env, expectListening: false);
        var member = new FleetMember(name, process, clusterPort, lighthouse);
        lock (_members)
        {
            _members.Add(member);
        }

        Note($"{name} started, pid {process.Pid}");
        if (expectReady)
        {
            var ready = lighthouse ? "Rama lighthouse ready" : "Rama node ready";
            await UntilAsync(() => process.Output.Contains(ready, StringComparison.Ordinal) || process.Exited.IsCompleted, $"{name} ready");
            if (process.Exited.IsCompleted)
            {
                throw new InvalidOperationException($"{name} exited with {process.Exited.Result} before it was ready");
            }

            Note($"{member} ready");
        }

        return member;
    }

    /// <summary>A lighthouse and <paramref name="nodes"/> nodes, all Up in the lighthouse's view.</summary>
    public async Task<(FleetMember Lighthouse, FleetMember[] Nodes)> StartConvergedAsync(int nodes, Func<int, string[]>? args = null)
    {
        var lighthouse = await StartLighthouseAsync();
        var started = await Task.WhenAll(Enumerable.Range(1, nodes).Select(i => StartNodeAsync($"node{i}", lighthouse, args: args?.Invoke(i))));
        FleetMember[] all = [lighthouse, .. started];
        await WaitForViewAsync(lighthouse, v => v.AllUp(all), $"the lighthouse and {nodes} nodes all Up");
        // Converged means every member has seen every other Up (what a write to "all replicas" goes by), not only the seed.
        await Task.WhenAll(started.Select(node => WaitForViewAsync(node, v => v.AllUp(all), $"{node.Name} sees the lighthouse and {nodes} nodes all Up")));
        return (lighthouse, started);
    }

    /// <summary><c>pbm &lt;admin&gt; cluster show --json</c> against <paramref name="via"/>.</summary>
    public async Task<ClusterView> ShowAsync(FleetMember via)
    {
        var result = await Pbm.RunAsync(via.Admin, "cluster", "show", "--json");
        return result.Exit == 0
            ? ClusterView.Parse(result.Output)
            : throw new InvalidOperationException($"pbm {via.Admin} cluster show --json: {result}");
    }

    /// <summary>Polls <paramref name="via"/>'s view until <paramref name="condition"/> holds; notes every change of view on the timeline.</summary>
    public async Task<ClusterView> WaitForViewAsync(FleetMember via, Func<ClusterView, bool> condition, string what, TimeSpan? within = null)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)((within ?? Within).TotalSeconds * Stopwatch.Frequency);
        string? last = null;
        while (true)
        {
            string seen;
            try
            {
                var view = await ShowAsync(via);
                seen = view.ToString();
                if (seen != last)
                {
                    Note($"{via.Name} sees: {seen}");
                }

                if (condition(view))
                {
                    return view;
                }
            }
            catch (InvalidOperationException ex)
            {
                seen = ex.Message;
                if (seen != last)
                {
                    Note(seen);
                }
            }

            last = seen;
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"{via.Name}'s view: not '{what}' within {(within ?? Within).TotalSeconds} s; last: {last}");
            }

            await Task.Delay(100); // the poll interval: each look starts a pbm process
        }
    }

    /// <summary>Runs pbm and requires exit 0.</summary>
    public async Task<Pbm.Result> PbmAsync(params string[] args)
    {
        var result = await Pbm.RunAsync(args);
        Note($"pbm {string.Join(' ', args)}: {result}");
        return result.Exit == 0 ? result : throw new InvalidOperationException($"pbm {string.Join(' ', args)}: {result}");
    }

    /// <summary>Polls a condition with a deadline (the shared <see cref="Eventually"/>, with the fleet's default bound).</summary>
    public static Task UntilAsync(Func<bool> condition, string what, TimeSpan? within = null) =>
        Eventually.TrueAsync(condition, within ?? Within, $"not '{what}' within {(within ?? Within).TotalSeconds} s");

    /// <summary>As <see cref="UntilAsync(Func{bool}, string, TimeSpan?)"/>, for a condition that asks something (awaited, never blocked on).</summary>
    public static Task UntilAsync(Func<Task<bool>> condition, string what, TimeSpan? within = null) =>
        Eventually.TrueAsync(condition, within ?? Within, $"not '{what}' within {(within ?? Within).TotalSeconds} s");

    /// <summary>Waits for an output line of <paramref name="member"/> that contains every one of <paramref name="parts"/>.</summary>
    public async Task<string> WaitForLineAsync(FleetMember member, params string[] parts)
    {
        string? found = null;
        await UntilAsync(() => (found = LineWith(member, parts)) is not null, $"{member.Name} prints a line with {string.Join(" + ", parts)}");
        return found!;
    }

    public static string? LineWith(FleetMember member, params string[] parts) =>
        member.Process.Output.Split('\n').FirstOrDefault(l => parts.All(p => l.Contains(p, StringComparison.Ordinal)));

    /// <summary>Waits for <paramref name="member"/>'s process to exit and returns its exit code.</summary>
    public async Task<int> ExitCodeAsync(FleetMember member, TimeSpan? within = null)
    {
        try
        {
            var code = await member.Process.Exited.WaitAsync(within ?? Within);
            Note($"{member.Name} exited with {code}");
            return code;
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{member.Name} still running after {(within ?? Within).TotalSeconds} s");
        }
    }

    public string Report()
    {
        var text = new StringBuilder();
        text.AppendLine("--- timeline ---");
        foreach (var line in _timeline)
        {
            text.AppendLine(line);
        }

        foreach (var member in _members)
        {
            var state = member.Process.Exited.IsCompleted ? $"exited {member.Process.Exited.Result}" : "running";
            text.AppendLine($"--- {member}: {state}; last lines ---");
            text.AppendLine(member.Process.Tail());
        }

        return text.ToString();
    }

    /// <summary>SIGTERM the nodes, then the lighthouses (each leaves the fleet fastest while a seed is still there); SIGKILL whatever is left after 20 s.</summary>
    public async ValueTask DisposeAsync()
    {
        var started = Stopwatch.StartNew();
        var nodes = _members.Where(m => !m.IsLighthouse).ToList();
        await TerminateAsync(nodes, TimeSpan.FromSeconds(20));
        await TerminateAsync(_members.Except(nodes).ToList(), TimeSpan.FromSeconds(20) - started.Elapsed);
        foreach (var member in _members)
        {
            await member.Process.DisposeAsync();
        }

        Note($"reaped {_members.Count} processes in {started.Elapsed.TotalSeconds:F1} s");
        foreach (var file in _tempFiles)
        {
            File.Delete(file);
        }
    }

    private static async Task TerminateAsync(List<FleetMember> members, TimeSpan within)
    {
        var running = members.Where(m => !m.Process.Exited.IsCompleted).ToList();
        running.ForEach(m => m.Process.Terminate());
        var all = Task.WhenAll(running.Select(m => m.Process.Exited));
        if (within <= TimeSpan.Zero || await Task.WhenAny(all, Task.Delay(within)) != all)
        {
            foreach (var member in running.Where(m => !m.Process.Exited.IsCompleted))
            {
                member.Process.Kill();
            }

            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5)));
        }
    }
}

/// <summary>Requests through a node's HTTP proxy to an origin, one after another on fresh connections, counting failures.</summary>
internal sealed class ProxyLoop : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly Task _loop;
    private int _successes;
    private int _disposed;

    private ProxyLoop(IPEndPoint proxy, string url, string? filter, string expected) => _loop = RunAsync(proxy, url, filter, expected);

    public int Successes => Volatile.Read(ref _successes);

    public IReadOnlyCollection<string> Failures => _failures;

    /// <summary>Starts the loop; <paramref name="filter"/> goes in <c>x-rama-proxy-filter</c> (routing through an upstream), <paramref name="expected"/> is the body of a success.</summary>
    public static ProxyLoop Start(IPEndPoint proxy, string url, string? filter = null, string expected = "hello from origin") => new(proxy, url, filter, expected);

    private async Task RunAsync(IPEndPoint proxy, string url, string? filter, string expected)
    {
        await Task.Yield();
        using var handler = new SocketsHttpHandler { Proxy = new WebProxy($"http://{proxy}"), UseProxy = true };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) };
        while (!_stop.IsCancellationRequested)
        {
            var started = DateTime.UtcNow;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, url);
                request.Headers.ConnectionClose = true; // a new connection to the proxy each time
                if (filter is not null)
                {
                    request.Headers.Add("x-rama-proxy-filter", filter);
                }
                using var response = await client.SendAsync(request, _stop.Token);
                var body = await response.Content.ReadAsStringAsync(_stop.Token);
                if (response.StatusCode == HttpStatusCode.OK && body == expected)
                {
                    Interlocked.Increment(ref _successes);
                }
                else
                {
                    _failures.Enqueue($"{started:HH:mm:ss.fff} via {proxy}: {(int)response.StatusCode} {body}");
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
            {
                _failures.Enqueue($"{started:HH:mm:ss.fff} via {proxy}: {ex.GetType().Name} {ex.Message}");
            }

            // Paced, so two loops leave the fleet's heartbeats some CPU on a 2-core machine.
            await Task.Delay(50, CancellationToken.None);
        }
    }

    /// <summary>Stops the loop after the request in progress; calling it again does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _stop.CancelAsync();
            await _loop;
            _stop.Dispose();
        }
    }
}

/// <summary>Several <see cref="ProxyLoop"/>s counted together, stopped together.</summary>
internal sealed class ProxyLoops(ProxyLoop[] loops) : IAsyncDisposable
{
    public IReadOnlyList<ProxyLoop> All => loops;

    public int Successes => loops.Sum(l => l.Successes);

    public IReadOnlyList<string> Failures => [.. loops.SelectMany(l => l.Failures)];

    public async ValueTask DisposeAsync()
    {
        foreach (var loop in loops)
        {
            await loop.DisposeAsync();
        }
    }
}
