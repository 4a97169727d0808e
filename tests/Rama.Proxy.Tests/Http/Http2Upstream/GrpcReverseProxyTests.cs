using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// gRPC through the reverse proxy, HTTP/2 end to end: python grpcio (1.51, generic handlers, no codegen) as client and server,
/// our Http2Server in front of the reverse service of an h2c:// upstream. Unary, bidirectional streaming, error status in
/// trailers, cancellation passed on as RST_STREAM, deadlines.
/// </summary>
public class GrpcReverseProxyTests
{
    [Fact]
    public async Task Unary_call_goes_through()
    {
        await using var peer = await GrpcServer.StartAsync();
        await using var proxy = H2ReverseHarness.Http2Clients(peer.Upstream);
        var (code, output) = await GrpcServer.ClientAsync(proxy.Port, "unary");
        Assert.True(code == 0, output);
        Assert.Equal("echo:hello", output.Trim());
        Assert.True(proxy.Server.AcceptedConnections >= 1);
    }

    [Fact]
    public async Task Bidirectional_stream_of_100_messages_each_way()
    {
        await using var peer = await GrpcServer.StartAsync();
        await using var proxy = H2ReverseHarness.Http2Clients(peer.Upstream);
        var (code, output) = await GrpcServer.ClientAsync(proxy.Port, "bidi");
        Assert.True(code == 0, output);
        Assert.Equal("received 100", output.Trim());
    }

    [Fact]
    public async Task Server_error_status_reaches_the_client_in_trailers()
    {
        await using var peer = await GrpcServer.StartAsync();
        await using var proxy = H2ReverseHarness.Http2Clients(peer.Upstream);
        var (code, output) = await GrpcServer.ClientAsync(proxy.Port, "error");
        Assert.True(code == 0, output);
        Assert.Equal("INVALID_ARGUMENT bad request: fail", output.Trim());
    }

    [Fact]
    public async Task Client_cancellation_mid_stream_cancels_the_server_handler()
    {
        await using var peer = await GrpcServer.StartAsync();
        await using var proxy = H2ReverseHarness.Http2Clients(peer.Upstream);
        var (code, output) = await GrpcServer.ClientAsync(proxy.Port, "cancel");
        Assert.True(code == 0, output);
        Assert.Contains("client cancelled", output, StringComparison.Ordinal);
        await peer.WaitForLineAsync("CANCELLED Hang", TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Client_deadline_is_deadline_exceeded_and_cancels_the_server_handler()
    {
        await using var peer = await GrpcServer.StartAsync();
        await using var proxy = H2ReverseHarness.Http2Clients(peer.Upstream);
        var (code, output) = await GrpcServer.ClientAsync(proxy.Port, "deadline");
        Assert.True(code == 0, output);
        Assert.StartsWith("DEADLINE_EXCEEDED", output.Trim(), StringComparison.Ordinal);
        await peer.WaitForLineAsync("CANCELLED Slow", TimeSpan.FromSeconds(10));
    }

    /// <summary>The python gRPC server (grpc_peer.py beside this file), and runs of its client.</summary>
    private sealed class GrpcServer : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _lines = new();
        private readonly SemaphoreSlim _lineArrived = new(0);

        private GrpcServer(Process process)
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

        public static async Task<GrpcServer> StartAsync()
        {
            var server = new GrpcServer(Process.Start(Python("server"))!);
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
}
