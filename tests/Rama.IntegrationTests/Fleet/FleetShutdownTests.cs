using System.Text.Json;
using Rama.Testing;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>One member as <c>pbm fleet status --json</c> lists it.</summary>
internal sealed record FleetPhaseView(string Address, string Roles, string Status, string Phase, string Open);

/// <summary>The fleet as its shutdown coordinator reports it (<c>pbm fleet status --json</c>).</summary>
internal sealed record FleetStatusView(IReadOnlyList<FleetPhaseView> Members, string Coordinator, int Serving, IReadOnlyDictionary<string, string> Fields)
{
    public FleetPhaseView? Find(FleetMember member) => Members.FirstOrDefault(m => m.Address == member.Address);

    public static FleetStatusView Parse(string json)
    {
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        var members = root.GetProperty("members").EnumerateArray()
            .Select(m => new FleetPhaseView(
                m.GetProperty("address").GetString()!,
                m.GetProperty("roles").GetString()!,
                m.GetProperty("status").GetString()!,
                m.GetProperty("phase").GetString()!,
                m.GetProperty("open").GetString()!))
            .ToList();
        var fields = root.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.String).ToDictionary(p => p.Name, p => p.Value.GetString()!);
        return new FleetStatusView(members, fields["coordinator"], int.Parse(fields["serving"], System.Globalization.CultureInfo.InvariantCulture), fields);
    }

    public override string ToString() => $"coordinator {Coordinator}: " + string.Join("; ", Members.Select(m => $"{m.Address} [{m.Roles}] {m.Status} {m.Phase} open {m.Open}"));
}

/// <summary>
/// <c>pbm fleet status</c> and <c>pbm fleet drain</c> against real processes: the coordinator (a cluster singleton on
/// the proxy nodes) collects every member's phase, and drains every proxy node as SIGTERM does while the lighthouse stays.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetShutdownTests(ITestOutputHelper output)
{
    internal static async Task<FleetStatusView> FleetStatusAsync(FleetMember via)
    {
        var result = await Pbm.RunAsync(via.Admin, "fleet", "status", "--json");
        return result.Exit == 0
            ? FleetStatusView.Parse(result.Output)
            : throw new InvalidOperationException($"pbm {via.Admin} fleet status --json: {result}");
    }

    /// <summary>Polls <c>pbm fleet status</c> through <paramref name="via"/> until <paramref name="condition"/> holds; notes every change.</summary>
    internal static async Task<FleetStatusView> WaitForFleetAsync(FleetHarness fleet, FleetMember via, Func<FleetStatusView, bool> condition, string what, TimeSpan? within = null)
    {
        var deadline = fleet.Elapsed + (within ?? FleetHarness.Within);
        string? last = null;
        while (true)
        {
            string seen;
            try
            {
                var view = await FleetStatusAsync(via);
                seen = view.ToString();
                if (seen != last)
                {
                    fleet.Note($"{via.Name} fleet status: {seen}");
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
                    fleet.Note(seen);
                }
            }

            last = seen;
            if (fleet.Elapsed > deadline)
            {
                throw new TimeoutException($"{via.Name}'s fleet status: not '{what}'; last: {last}");
            }

            await Task.Delay(200); // the poll interval: each look starts a pbm process
        }
    }

    [Fact]
    public async Task Fleet_status_lists_every_member_with_its_phase_the_same_through_every_node()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var (lighthouse, nodes) = await fleet.StartConvergedAsync(3);
            var status = await WaitForFleetAsync(fleet, nodes[0], s => s.Serving == 3, "three nodes serving");

            Assert.Equal(4, status.Members.Count);
            Assert.Equal(("lighthouse", "Up", "up"), (status.Find(lighthouse)!.Roles, status.Find(lighthouse)!.Status, status.Find(lighthouse)!.Phase));
            Assert.All(nodes, n => Assert.Equal(("proxy", "Up", "serving", "0"), (status.Find(n)!.Roles, status.Find(n)!.Status, status.Find(n)!.Phase, status.Find(n)!.Open)));
            // One coordinator for the fleet, on a proxy node; every node's admin endpoint reaches it.
            Assert.Contains(status.Coordinator, nodes.Select(n => n.Address));
            foreach (var node in nodes.Skip(1))
            {
                var through = await FleetStatusAsync(node);
                Assert.Equal(status.Coordinator, through.Coordinator);
                Assert.Equal(3, through.Serving);
            }

            // The lighthouse carries no proxy code: no fleet palette there.
            var atLighthouse = await Pbm.RunAsync(lighthouse.Admin, "fleet", "status");
            Assert.Equal(2, atLighthouse.Exit);
        });
    }

    [Fact]
    public async Task Fleet_drain_under_load_refuses_new_connections_lets_requests_in_flight_finish_every_node_exits_0_and_the_lighthouse_stays()
    {
        await using var fleet = new FleetHarness(output);
        await using var origin = await KestrelOrigin.StartAsync();
        await fleet.RunAsync(async () =>
        {
            var (lighthouse, nodes) = await fleet.StartConvergedAsync(2);
            await WaitForFleetAsync(fleet, nodes[0], s => s.Serving == 2, "two nodes serving");
            await using var loops = new ProxyLoops([.. nodes.Select(n => ProxyLoop.Start(n.Proxy, origin.Url("/hello")))]);
            await FleetHarness.UntilAsync(() => loops.All.All(l => l.Successes > 0), "requests through both nodes");
            var inFlight = Cli.CurlAsync("-x", $"http://{nodes[1].Proxy}", origin.Url("/hold"));
            await origin.HoldReached.Task.WaitAsync(TimeSpan.FromSeconds(10));

            var asked = fleet.Elapsed;
            var drain = await fleet.PbmAsync(nodes[0].Admin, "fleet", "drain", "--json");
            Assert.All(nodes, n => Assert.Contains(n.Address, drain.Output, StringComparison.Ordinal));
            Assert.DoesNotContain(lighthouse.Address, drain.Output, StringComparison.Ordinal);

            // Every node stops accepting; the one with a request in flight waits for it (drain timeout 20 s).
            await FleetHarness.UntilAsync(() => nodes.All(n => Sockets.IsRefused(n.Proxy)), "every node refuses new connections", TimeSpan.FromSeconds(10));
            var refused = fleet.Elapsed - asked;
            Assert.False(nodes[1].Process.Exited.IsCompleted, "the node exited with a request in flight");
            var before = loops.All.Sum(l => l.Successes);
            origin.Release.SetResult();
            var held = await inFlight;
            Assert.Equal((0, "held response"), (held.ExitCode, held.Text));

            foreach (var node in nodes)
            {
                Assert.Equal(0, await fleet.ExitCodeAsync(node));
            }

            var exited = fleet.Elapsed - asked;
            await fleet.WaitForViewAsync(lighthouse, v => v.AllUp([lighthouse]), "the lighthouse alone, Up");
            Assert.False(lighthouse.Process.Exited.IsCompleted);
            await loops.DisposeAsync();
            fleet.Note($"fleet drain -> every node refuses {refused.TotalSeconds:F1} s, -> every node exited 0 {exited.TotalSeconds:F1} s " +
                $"(held request released in between); {loops.All.Sum(l => l.Successes)} requests ok ({before} before the drain), {loops.All.Sum(l => l.Failures.Count)} refused");

            // What failed was refused at connect: a request the nodes had accepted was never cut.
            Assert.All(loops.All.SelectMany(l => l.Failures), f => Assert.Contains("Connection refused", f, StringComparison.Ordinal));
            foreach (var node in nodes)
            {
                Assert.Contains("Fleet: draining this node and leaving (pbm fleet drain)", node.Process.Output, StringComparison.Ordinal);
                var drained = node.Process.Output.IndexOf("Drain finished", StringComparison.Ordinal);
                var leaving = node.Process.Output.IndexOf($"Marked address [{node.Address}] as [Leaving]", StringComparison.Ordinal);
                Assert.True(drained >= 0 && leaving > drained, $"{node.Name}: drain at {drained}, leaving at {leaving}");
                Assert.Contains("open connections: 0", node.Process.Output, StringComparison.Ordinal);
            }
        });
    }
}
