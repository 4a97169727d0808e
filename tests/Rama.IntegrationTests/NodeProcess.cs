using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Rama.IntegrationTests;

/// <summary>A real rama-node process: started with arguments, read through its console output, stopped with SIGTERM.</summary>
internal sealed partial class NodeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly TaskCompletionSource<int> _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private NodeProcess(Process process) => _process = process;

    public IReadOnlyList<IPEndPoint> Endpoints { get; private set; } = [];

    public IPEndPoint Endpoint => Endpoints[0];

    public int Pid => _process.Id;

    public string Output => string.Join('\n', _lines);

    public Task<int> Exited => _exited.Task;

    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Rama.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("Rama.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>The node built alongside these tests (same configuration).</summary>
    public static string NodeDll(string project = "Rama.Node", string assembly = "rama-node")
    {
        var configuration = AppContext.BaseDirectory.Contains("/Release/", StringComparison.Ordinal) ? "Release" : "Debug";
        var path = Path.Combine(RepoRoot, project, "bin", configuration, "net10.0", assembly + ".dll");
        return File.Exists(path) ? path : throw new FileNotFoundException("build the solution first", path);
    }

    /// <summary>Starts a node and waits until it says what it listens on (or exits).</summary>
    public static async Task<NodeProcess> StartAsync(IEnumerable<string> args, IDictionary<string, string>? environment = null,
        string? workingDirectory = null, bool expectListening = true, string project = "Rama.Node", string assembly = "rama-node",
        Action<int, string>? onLine = null)
    {
        // Through env(1) with SIGINT back at its default: a shell that runs the tests in the background hands its
        // children SIGINT ignored, and the node (rightly) keeps a disposition it inherited, so Interrupt would do nothing.
        var psi = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Path.GetTempPath(),
        };
        psi.ArgumentList.Add("--default-signal=INT");
        psi.ArgumentList.Add("dotnet");
        psi.ArgumentList.Add(NodeDll(project, assembly));
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        psi.Environment["DOTNET_ENVIRONMENT"] = "Production";
        psi.Environment["Logging__Console__FormatterName"] = "simple";
        // Many nodes run at once: each takes a free admin port unless a test names one (the command line wins).
        psi.Environment["Rama__Admin__Bind"] = "127.0.0.1:0";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[key] = value;
        }

        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var node = new NodeProcess(process);
        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var endpoints = new List<IPEndPoint>();
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            node._lines.Enqueue(line);
            onLine?.Invoke(process.Id, line);
            var match = ListeningLine().Match(line);
            if (match.Success)
            {
                lock (endpoints)
                {
                    endpoints.Add(IPEndPoint.Parse(match.Groups[1].Value));
                }
            }

            if (line.Contains("Rama node ready", StringComparison.Ordinal))
            {
                listening.TrySetResult();
            }
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Exited += (_, _) =>
        {
            process.WaitForExit(); // flush the output events
            node._exited.TrySetResult(process.ExitCode);
            listening.TrySetResult();
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (expectListening)
        {
            await listening.Task.WaitAsync(TimeSpan.FromSeconds(30));
            if (node._exited.Task.IsCompleted)
            {
                throw new InvalidOperationException($"node exited with {node._exited.Task.Result}:\n{node.Output}");
            }

            lock (endpoints)
            {
                node.Endpoints = [.. endpoints];
            }
        }

        return node;
    }

    [GeneratedRegex(@"Rama node: \S+ listening on (\S+:\d+)")]
    private static partial Regex ListeningLine();

    [GeneratedRegex(@"admin endpoint (\S+:\d+) \(pbm\)")]
    private static partial Regex AdminLine();

    [GeneratedRegex(@"(?:Rama node: fleet member|Rama lighthouse:) (akka[a-z.]*://\S+)")]
    private static partial Regex ClusterAddressLine();

    /// <summary>The admin endpoint the process printed ("admin endpoint 127.0.0.1:PORT (pbm)"); null until it did.</summary>
    public IPEndPoint? AdminEndpoint => FirstMatch(AdminLine()) is { } text ? IPEndPoint.Parse(text) : null;

    /// <summary>This member's fleet address as it printed it (a node's "fleet member ...", the lighthouse's first line); null until it did.</summary>
    public string? ClusterAddress => FirstMatch(ClusterAddressLine());

    /// <summary>The last <paramref name="count"/> lines of output, each cut to <paramref name="width"/> characters (for failure messages).</summary>
    public string Tail(int count = 40, int width = 400) =>
        string.Join('\n', _lines.TakeLast(count).Select(l => l.Length <= width ? l : l[..width] + " ..."));

    /// <summary>SIGKILL: gone at once, no shutdown work. env(1) execs dotnet, and dotnet runs the app in-process, so <see cref="Pid"/> is the app.</summary>
    public void Kill() => _process.Kill();

    private string? FirstMatch(Regex regex) =>
        _lines.Select(l => regex.Match(l)).FirstOrDefault(m => m.Success)?.Groups[1].Value;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    /// <summary>Sends SIGTERM (what docker stop and systemd send).</summary>
    public void Terminate() => _ = kill(_process.Id, 15);

    /// <summary>Sends SIGINT (Ctrl+C).</summary>
    public void Interrupt() => Interrupt(_process.Id);

    /// <summary>SIGINT (Ctrl+C) to a process, e.g. from <see cref="StartAsync"/>'s onLine before the node is returned.</summary>
    public static void Interrupt(int pid) => _ = kill(pid, 2);

    /// <summary>Resident set size now and its high-water mark, from /proc (bytes).</summary>
    public (long Rss, long Peak) Memory()
    {
        long rss = 0, peak = 0;
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                rss = ParseKb(line);
            }
            else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                peak = ParseKb(line);
            }
        }

        return (rss, peak);

        static long ParseKb(string line) =>
            long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>Waits for an output line containing <paramref name="text"/>.</summary>
    public async Task<string> WaitForLineAsync(string text, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            var line = _lines.FirstOrDefault(l => l.Contains(text, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            await Task.Delay(25);
        }

        throw new TimeoutException($"no line with '{text}' within {within}:\n{Output}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Terminate();
            if (await Task.WhenAny(_exited.Task, Task.Delay(TimeSpan.FromSeconds(30))) != _exited.Task)
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        _process.Dispose();
    }
}
