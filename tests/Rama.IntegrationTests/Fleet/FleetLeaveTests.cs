using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>A node that leaves (pbm cluster leave, SIGTERM) goes Leaving, Exiting, Removed, drains and exits 0; it is never downed.</summary>
[Collection(FleetCollection.Name)]
public sealed class FleetLeaveTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Pbm_cluster_leave_removes_the_node_which_drains_and_exits_0_and_it_rejoins_at_the_same_address()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (lighthouse, nodes) = await fleet.StartConvergedAsync(2);
            var (stays, leaver) = (nodes[0], nodes[1]);

            var asked = fleet.Elapsed;
            await fleet.PbmAsync(lighthouse.Admin, "cluster", "leave", leaver.HostPort);
            Assert.Equal(0, await fleet.ExitCodeAsync(leaver));
            var exited = fleet.Elapsed - asked;
            await fleet.WaitForViewAsync(lighthouse, v => v.AllUp([lighthouse, stays]), "the leaver removed");
            var removed = fleet.Elapsed - asked;
            fleet.Note($"leave -> exit 0 {exited.TotalSeconds:F1} s, -> removed from the lighthouse's view {removed.TotalSeconds:F1} s");

            AssertLeftGracefully(fleet, leaver, [lighthouse, stays]);
            Assert.Contains("Rama node left the fleet", leaver.Process.Output, StringComparison.Ordinal);
            Assert.Contains("Drain finished", leaver.Process.Output, StringComparison.Ordinal);
            Assert.Contains("open connections: 0", leaver.Process.Output, StringComparison.Ordinal);

            var again = await fleet.StartNodeAsync("node2-again", lighthouse, port: leaver.ClusterPort);
            Assert.Equal(leaver.Address, again.Address);
            await fleet.WaitForViewAsync(lighthouse, v => v.AllUp([lighthouse, stays, again]), "the node Up again");
        });
    }

    [Fact]
    public async Task Sigterm_with_a_request_and_a_tunnel_in_flight_lets_both_finish_then_the_node_leaves_and_exits_0()
    {
        await using var fleet = new FleetHarness(output);
        await using var origin = await KestrelOrigin.StartAsync();
        await using var echo = RawOrigin.Echo();
        await fleet.RunAsync(async () =>
        {
            var (lighthouse, nodes) = await fleet.StartConvergedAsync(2);
            var (stays, leaver) = (nodes[0], nodes[1]);
            var proxy = $"http://{leaver.Proxy}";

            var inFlight = Cli.CurlAsync("-x", proxy, origin.Url("/hold"));
            await origin.HoldReached.Task.WaitAsync(TimeSpan.FromSeconds(10));
            using var tunnel = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await tunnel.ConnectAsync(leaver.Proxy);
            await tunnel.SendAsync(Encoding.ASCII.GetBytes($"CONNECT 127.0.0.1:{echo.Port} HTTP/1.1\r\nHost: 127.0.0.1:{echo.Port}\r\n\r\n"));
            var established = Encoding.ASCII.GetString(await Sockets.ReceiveExactlyAsync(tunnel, "HTTP/1.1 200".Length));
            Assert.Equal("HTTP/1.1 200", established);
            await ReadHeadRestAsync(tunnel);

            var signalled = fleet.Elapsed;
            leaver.Process.Terminate();
            await FleetHarness.UntilAsync(() => Sockets.IsRefused(leaver.Proxy), "the node stops accepting after SIGTERM", TimeSpan.FromSeconds(10));
            Assert.False(leaver.Process.Exited.IsCompleted, "the node exited with a request in flight");

            // The tunnel still carries bytes, then the client closes it; the held request answers.
            await tunnel.SendAsync("ping"u8.ToArray());
            Assert.Equal("ping", Encoding.ASCII.GetString(await Sockets.ReceiveExactlyAsync(tunnel, 4)));
            tunnel.Shutdown(SocketShutdown.Send);
            Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(tunnel));
            origin.Release.SetResult();
            var result = await inFlight;
            Assert.Equal(0, result.ExitCode);
            Assert.Equal("held response", result.Text);

            Assert.Equal(0, await fleet.ExitCodeAsync(leaver));
            var exited = fleet.Elapsed - signalled;
            await fleet.WaitForViewAsync(lighthouse, v => v.AllUp([lighthouse, stays]), "the node removed");
            fleet.Note($"SIGTERM -> exit 0 {exited.TotalSeconds:F1} s (held request released in between)");
            AssertLeftGracefully(fleet, leaver, [lighthouse, stays]);
            // Coordinated shutdown's order: the listeners drain (service-requests-done) before the node leaves (cluster-leave).
            var drained = leaver.Process.Output.IndexOf("Drain finished", StringComparison.Ordinal);
            var leaving = leaver.Process.Output.IndexOf($"Marked address [{leaver.Address}] as [Leaving]", StringComparison.Ordinal);
            Assert.True(drained >= 0 && leaving > drained, $"drain at {drained}, leaving at {leaving}");
            Assert.Contains("open connections: 0", leaver.Process.Output, StringComparison.Ordinal);
        });
    }

    /// <summary>Left: it went Leaving and Exiting, said so, and no one marked it unreachable or downed it.</summary>
    private static void AssertLeftGracefully(FleetHarness fleet, FleetMember leaver, FleetMember[] others)
    {
        FleetMember[] all = [.. others, leaver];
        Assert.Contains(all, m => FleetHarness.LineWith(m, $"Marked address [{leaver.Address}] as [Leaving]") is not null);
        // The leader logs the move; the leaver itself is the leader when its address sorts first among the members.
        Assert.Contains(all, m => FleetHarness.LineWith(m, "Leader is moving node", leaver.Address, "[Exiting]") is not null);
        foreach (var other in others)
        {
            Assert.Null(FleetHarness.LineWith(other, "Marking node(s) as UNREACHABLE", leaver.Address));
            Assert.Null(FleetHarness.LineWith(other, "SBR took decision", leaver.Address));
        }

        fleet.Note($"{leaver.Name} left: Leaving, Exiting, Removed; never unreachable or downed");
    }

    /// <summary>Reads the rest of the CONNECT answer's head, up to the blank line.</summary>
    private static async Task ReadHeadRestAsync(Socket socket)
    {
        var seen = new StringBuilder();
        while (!seen.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            seen.Append((char)(await Sockets.ReceiveExactlyAsync(socket, 1))[0]);
        }
    }
}
