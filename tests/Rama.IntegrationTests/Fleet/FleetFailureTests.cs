using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>
/// A member that dies or is cut off: the others mark it unreachable, the split-brain resolver (keep-majority) downs it,
/// it is removed, and the survivors keep proxying. Tuned: heartbeat pause 2 s, stable-after 3 s.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetFailureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_killed_node_is_downed_and_removed_while_the_survivors_proxy_without_a_failure_and_it_rejoins_at_the_same_address()
    {
        await using var fleet = new FleetHarness(output);
        await using var origin = await KestrelOrigin.StartAsync();
        await fleet.RunAsync(async () =>
        {
            var (lighthouse, nodes) = await fleet.StartConvergedAsync(3);
            var (first, second, victim) = (nodes[0], nodes[1], nodes[2]);
            // NodeProcess starts `env ... dotnet rama-node.dll`: env execs dotnet, which runs the node in-process.
            var commandLine = (await File.ReadAllTextAsync($"/proc/{victim.Process.Pid}/cmdline")).Replace('\0', ' ');
            Assert.Contains("rama-node.dll", commandLine, StringComparison.Ordinal);
            Assert.StartsWith("dotnet ", commandLine, StringComparison.Ordinal);

            await using var throughFirst = ProxyLoop.Start(first.Proxy, origin.Url("/hello"));
            await using var throughSecond = ProxyLoop.Start(second.Proxy, origin.Url("/hello"));
            await FleetHarness.UntilAsync(() => throughFirst.Successes > 0 && throughSecond.Successes > 0, "requests through both survivors");

            var killed = fleet.Elapsed;
            victim.Process.Kill();
            Assert.Equal(137, await fleet.ExitCodeAsync(victim, TimeSpan.FromSeconds(10))); // 128 + SIGKILL
            var (firstBefore, secondBefore) = (throughFirst.Successes, throughSecond.Successes);

            await fleet.WaitForLineAsync(lighthouse, "Marking node(s) as UNREACHABLE", victim.Address);
            var unreachable = fleet.Elapsed - killed;
            await FleetHarness.UntilAsync(() => new[] { lighthouse, first, second }.Any(m => FleetHarness.LineWith(m, "SBR took decision", victim.Address) is not null),
                "a survivor's split-brain resolver downs the killed node");
            var downed = fleet.Elapsed - killed;
            FleetMember[] survivors = [lighthouse, first, second];
            await fleet.WaitForViewAsync(lighthouse, v => v.AllUp(survivors), "the killed node removed, the three others Up");
            var removed = fleet.Elapsed - killed;
            await fleet.WaitForViewAsync(first, v => v.AllUp(survivors), "the killed node removed, the three others Up");
            fleet.Note($"kill -> unreachable {unreachable.TotalSeconds:F1} s, -> downed {downed.TotalSeconds:F1} s, -> removed {removed.TotalSeconds:F1} s");

            await throughFirst.DisposeAsync();
            await throughSecond.DisposeAsync();
            fleet.Note($"through {first.Name}: {throughFirst.Successes} ok ({throughFirst.Successes - firstBefore} after the kill); " +
                $"through {second.Name}: {throughSecond.Successes} ok ({throughSecond.Successes - secondBefore} after the kill)");
            Assert.Empty(throughFirst.Failures);
            Assert.Empty(throughSecond.Failures);
            Assert.True(throughFirst.Successes > firstBefore && throughSecond.Successes > secondBefore, "no request went through after the kill");

            // The same cluster address again: a new incarnation joins.
            var again = await fleet.StartNodeAsync("node3-again", lighthouse, port: victim.ClusterPort);
            Assert.Equal(victim.Address, again.Address);
            var view = await fleet.WaitForViewAsync(lighthouse, v => v.AllUp([.. survivors, again]), "the restarted node Up, four members");
            Assert.Equal(4, view.Members.Count);
        });
    }

    [Fact]
    public async Task A_node_partitioned_from_the_majority_is_downed_exits_3_and_stays_out_after_the_links_heal()
    {
        await using var fleet = new FleetHarness(output, faultInjection: true);
        await fleet.RunAsync(async () =>
        {
            var (lighthouse, nodes) = await fleet.StartConvergedAsync(3);
            // The cut node is the one that hosts the cluster singletons (the fleet coordinator and the sharding coordinator run
            // on the oldest proxy node): the hardest case. When it is downed, the next oldest asks it to hand over while it
            // exits and closes connections mid-handshake; over Akka.Remote 1.5.75's DotNetty that shut the asking, healthy
            // member down (TlsHandshakeFailureReason). Rama's fleet transport fails that association and Akka retries it.
            var status = await FleetShutdownTests.WaitForFleetAsync(fleet, nodes[0], v => v.Coordinator.Length > 0, "the coordinator placed");
            var cut = nodes.First(n => status.Coordinator.Contains("@" + n.HostPort, StringComparison.Ordinal));
            var (first, second) = (nodes.First(n => n != cut), nodes.Last(n => n != cut));
            FleetMember[] majority = [lighthouse, first, second];
            Assert.All([.. majority, cut], m => Assert.StartsWith("akka.trttl.ssl.tcp://rama@", m.Address, StringComparison.Ordinal));

            // Cut both ways from both sides: then healing the majority's side alone would let the cut node back, were it still alive.
            var partitioned = fleet.Elapsed;
            await fleet.PbmAsync(cut.Admin, "fault", "blackhole", lighthouse.HostPort, first.HostPort, second.HostPort);
            await Task.WhenAll(majority.Select(m => fleet.PbmAsync(m.Admin, "fault", "blackhole", cut.HostPort)));

            await fleet.WaitForViewAsync(lighthouse, v => v.AllUp(majority), "the cut node removed, the majority Up");
            var removed = fleet.Elapsed - partitioned;
            Assert.NotNull(majority.Select(m => FleetHarness.LineWith(m, "SBR took decision", cut.Address)).FirstOrDefault(l => l is not null));
            Assert.Equal(3, await fleet.ExitCodeAsync(cut));
            var exited = fleet.Elapsed - partitioned;
            fleet.Note($"partition -> removed {removed.TotalSeconds:F1} s, -> the cut node exited {exited.TotalSeconds:F1} s");
            Assert.Contains("downed by the fleet", cut.Process.Output, StringComparison.Ordinal);

            await Task.WhenAll(majority.Select(m => fleet.PbmAsync(m.Admin, "fault", "heal", cut.HostPort)));
            // It does not come back: over several gossip rounds (1 s each), the majority stays three, all Up.
            var healed = fleet.Elapsed;
            while (fleet.Elapsed - healed < TimeSpan.FromSeconds(4))
            {
                var view = await fleet.ShowAsync(first);
                Assert.True(view.AllUp(majority), $"after the heal: {view}");
            }

            Assert.True(cut.Process.Exited.IsCompleted);
        });
    }
}
