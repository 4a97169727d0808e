using System.Net;
using System.Net.Sockets;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>SIGTERM runs coordinated shutdown: unbind, drain, exit 0.</summary>
public sealed class ShutdownTests
{
    [Fact]
    public async Task Sigterm_lets_the_request_in_flight_finish_refuses_new_connections_and_exits_0()
    {
        await using var origin = await KestrelOrigin.StartAsync();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--drain-timeout", "10"]);
        var proxy = $"http://127.0.0.1:{node.Endpoint.Port}";

        var inFlight = Cli.CurlAsync("-x", proxy, origin.Url("/hold"));
        await origin.HoldReached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var signalled = DateTime.UtcNow;
        node.Terminate();

        // Once unbound, new connections are refused.
        await Eventually.TrueAsync(() => Sockets.IsRefused(node.Endpoint), TimeSpan.FromSeconds(5), "the node kept accepting after SIGTERM");
        Assert.False(node.Exited.IsCompleted, "the node exited before its request in flight finished");

        origin.Release.SetResult();
        var result = await inFlight;
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("held response", result.Text);

        var exitCode = await node.Exited.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(0, exitCode);
        Assert.True(DateTime.UtcNow - signalled < TimeSpan.FromSeconds(10), "exit took longer than the drain timeout");
        Assert.Contains("open connections: 0", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_tunnel_that_outlives_the_drain_timeout_is_closed_and_the_node_still_exits_0()
    {
        await using var echo = RawOrigin.Echo();
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--drain-timeout", "1"]);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(node.Endpoint);
        await client.SendAsync(System.Text.Encoding.ASCII.GetBytes($"CONNECT 127.0.0.1:{echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{echo.Port}\r\n\r\n"));
        var buffer = new byte[1024];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var n = await client.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        Assert.StartsWith("HTTP/1.1 200", System.Text.Encoding.ASCII.GetString(buffer, 0, n), StringComparison.Ordinal);

        var signalled = DateTime.UtcNow;
        node.Terminate();
        var exitCode = await node.Exited.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(0, exitCode);
        Assert.True(DateTime.UtcNow - signalled < TimeSpan.FromSeconds(6), $"exit took {DateTime.UtcNow - signalled}");
        Assert.Contains("closed 1 connections after the drain timeout", node.Output, StringComparison.Ordinal);
        // The tunnel was closed: reading gives end-of-stream or a reset.
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(client));
    }

    [Fact]
    public async Task Ctrl_c_also_shuts_down_cleanly()
    {
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0"]);
        node.Interrupt();
        Assert.Equal(0, await node.Exited.WaitAsync(TimeSpan.FromSeconds(15)));
    }

    [Fact]
    public async Task Ctrl_c_while_the_node_is_still_starting_exits_0_without_a_crash()
    {
        // SIGINT the moment the first listener is bound, while the host is still starting (it used to abort with an
        // unhandled TaskCanceledException, exit 134). The window is a few ms wide, so several tries; each must exit 0.
        for (var attempt = 0; attempt < 6; attempt++)
        {
            await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0"], expectListening: false,
                onLine: (pid, line) =>
                {
                    if (line.Contains("Listener ", StringComparison.Ordinal) && line.Contains(" bound ", StringComparison.Ordinal))
                    {
                        NodeProcess.Interrupt(pid);
                    }
                });
            var exitCode = await node.Exited.WaitAsync(TimeSpan.FromSeconds(15));
            Assert.True(exitCode == 0, $"attempt {attempt}: exit {exitCode}\n{node.Output}");
            Assert.DoesNotContain("Unhandled exception", node.Output, StringComparison.Ordinal);
        }
    }
}
