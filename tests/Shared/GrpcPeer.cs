using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Testing;

/// <summary>
/// The python gRPC peer (grpc_peer.py beside this file; Debian's python3-grpcio 1.51 with generic handlers, no codegen): its
/// server on 127.0.0.1:0 as an h2c upstream, and runs of its client cases (unary, bidi, error, cancel, deadline).
/// </summary>
internal sealed class GrpcPeer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly SemaphoreSlim _lineArrived = new(0);

    private GrpcPeer(Process process)
    {
        _process = process;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } line)
            {
                _lines.Enqueue(line);
                _lineArrived.Release();
            }
        };
        _process.BeginOutputReadLine();
    }

    public UpstreamTarget Upstream { get; private set; }

    private static string Script([CallerFilePath] string source = "") => Path.Combine(Path.GetDirectoryName(source)!, "grpc_peer.py");

    private static ProcessStartInfo Python(params string[] args)
    {
        // -I: isolated (no current directory on sys.path, no user site); grpc is the system's python3-grpcio.
        var psi = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetTempPath(),
        };
        foreach (var arg in (string[])["-I", Script(), .. args])
        {
            psi.ArgumentList.Add(arg);
        }

        foreach (var name in (string[])["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "grpc_proxy"])
        {
            psi.Environment.Remove(name);
        }

        psi.Environment["no_grpc_proxy"] = "*";
        return psi;
    }

    public static async Task<GrpcPeer> StartAsync()
    {
        var server = new GrpcPeer(Process.Start(Python("server"))!);
        try
        {
            var line = await server.WaitForLineAsync("PORT ", TimeSpan.FromSeconds(20));
            server.Upstream = new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", int.Parse(line["PORT ".Length..], System.Globalization.CultureInfo.InvariantCulture)));
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs one client case against 127.0.0.1:<paramref name="port"/>: its exit code and its output (stderr after stdout).</summary>
    public static async Task<(int Code, string Output)> ClientAsync(int port, string testCase)
    {
        using var process = Process.Start(Python("client", port.ToString(System.Globalization.CultureInfo.InvariantCulture), testCase))!;
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        var output = await stdout;
        var errors = await stderr;
        return (process.ExitCode, process.ExitCode == 0 ? output : output + errors);
    }

    /// <summary>Waits for a line of the server's output starting with <paramref name="prefix"/>.</summary>
    public async Task<string> WaitForLineAsync(string prefix, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        var seen = new List<string>();
        while (true)
        {
            while (_lines.TryDequeue(out var line))
            {
                seen.Add(line);
                if (line.StartsWith(prefix, StringComparison.Ordinal))
                {
                    return line;
                }
            }

            var left = timeout - deadline.Elapsed;
            if (left <= TimeSpan.Zero || _process.HasExited && _lines.IsEmpty)
            {
                throw new TimeoutException($"no line '{prefix}' from the gRPC server within {timeout} (saw: {string.Join(" | ", seen)}; exited: {_process.HasExited})");
            }

            await _lineArrived.WaitAsync(left);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.StandardInput.Close(); // the server stops at the end of its stdin
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
            _lineArrived.Dispose();
        }
    }
}
