using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Rama.IntegrationTests.Upstream;

/// <summary>
/// A real peer daemon (microsocks, danted, tinyproxy, squid) in the foreground, ready once its port
/// accepts connections; stopped with SIGTERM (so it reaps its own children), then killed with its tree.
/// A daemon that is missing or does not come up fails the test with its output: never a silent skip.
/// </summary>
internal sealed partial class PeerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private PeerProcess(string name, Process process, int port)
    {
        Name = name;
        _process = process;
        Port = port;
    }

    public string Name { get; }

    public int Port { get; }

    public string Output => string.Join('\n', _output);

    public static async Task<PeerProcess> StartAsync(string name, string command, IEnumerable<string> args, int port, string workingDirectory)
    {
        var path = Which(command) ?? throw new InvalidOperationException(
            $"{name}: '{command}' is not installed; ./test.sh installs the peers (apt-get install microsocks dante-server tinyproxy squid)");
        var psi = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        foreach (var arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = psi };
        var peer = new PeerProcess(name, process, port);
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { peer._output.Enqueue(e.Data); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { peer._output.Enqueue(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{name} exited with {process.ExitCode} before listening on {port}:\n{peer.Output}");
            }

            using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                try
                {
                    await probe.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
                    return peer;
                }
                catch (SocketException)
                {
                }
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(20))
            {
                await peer.DisposeAsync();
                throw new TimeoutException($"{name} did not listen on {port} within 20 s:\n{peer.Output}");
            }

            await Task.Delay(50);
        }
    }

    private static string? Which(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':').Concat(["/usr/sbin", "/sbin"])
            .Select(dir => Path.Combine(dir, command)).FirstOrDefault(File.Exists);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _ = kill(_process.Id, 15);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await _process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }

        _process.Dispose();
    }
}
