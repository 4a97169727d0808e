using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>Who becomes a member: a lighthouse and its nodes converge; a member without the fleet's proof never does.</summary>
[Collection(FleetCollection.Name)]
public sealed class FleetMembershipTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_lighthouse_and_three_nodes_converge_Up_with_their_roles_in_every_view()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var lighthouse = await fleet.StartLighthouseAsync();
            var nodes = await Task.WhenAll(Enumerable.Range(1, 3).Select(i => fleet.StartNodeAsync($"node{i}", lighthouse)));
            var ready = fleet.Elapsed;
            FleetMember[] all = [lighthouse, .. nodes];

            var fromLighthouse = await fleet.WaitForViewAsync(lighthouse, v => v.AllUp(all), "all four Up");
            fleet.Note($"converged {(fleet.Elapsed - ready).TotalSeconds:F1} s after the last node was ready");
            var fromNode = await fleet.WaitForViewAsync(nodes[2], v => v.AllUp(all), "all four Up");

            foreach (var view in new[] { fromLighthouse, fromNode })
            {
                Assert.Equal("lighthouse", view.Find(lighthouse)!.Roles);
                Assert.All(nodes, n => Assert.Equal("proxy", view.Find(n)!.Roles));
            }

            Assert.All(all, m => Assert.StartsWith("akka.ssl.tcp://rama@127.0.0.1:", m.Address, StringComparison.Ordinal));
            Assert.Equal($"akka.ssl.tcp://rama@{lighthouse.HostPort}", lighthouse.Address);
        });
    }

    [Fact]
    public async Task A_lighthouse_and_a_node_configured_only_by_Lighthouse_variables_converge()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var lighthousePort = FleetHarness.FreePort();
            var lighthouse = await fleet.StartMemberAsync("lighthouse", lighthouse: true, lighthousePort, [], new Dictionary<string, string>
            {
                ["CLUSTER_IP"] = "127.0.0.1",
                ["CLUSTER_PORT"] = $"{lighthousePort}",
                ["CLUSTER_SECRET"] = FleetHarness.Secret,
            }, expectReady: true);
            var nodePort = FleetHarness.FreePort();
            var node = await fleet.StartMemberAsync("node1", lighthouse: false, nodePort, ["--listen", "127.0.0.1:0"], new Dictionary<string, string>
            {
                ["CLUSTER_SEEDS"] = $"127.0.0.1:{lighthousePort}",
                ["CLUSTER_PORT"] = $"{nodePort}",
                ["CLUSTER_IP"] = "127.0.0.1",
                ["CLUSTER_SECRET"] = FleetHarness.Secret,
            }, expectReady: true);

            Assert.Equal($"akka.ssl.tcp://rama@127.0.0.1:{lighthousePort}", lighthouse.Address);
            Assert.Equal($"akka.ssl.tcp://rama@127.0.0.1:{nodePort}", node.Address);
            var view = await fleet.WaitForViewAsync(lighthouse, v => v.AllUp([lighthouse, node]), "the lighthouse and the node Up");
            Assert.Equal("lighthouse", view.Find(lighthouse)!.Roles);
            Assert.Equal("proxy", view.Find(node)!.Roles);
        });
    }

    [Fact]
    public async Task A_node_with_the_wrong_secret_exits_2_and_one_without_a_secret_never_becomes_a_member()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var lighthouse = await fleet.StartLighthouseAsync();
            var wrong = await fleet.StartNodeAsync("wrong-secret", lighthouse, secret: "another-fleet-secret-0002", expectReady: false);
            var plain = await fleet.StartNodeAsync("no-secret", lighthouse, secret: null, expectReady: false);

            // The lighthouse's view, polled all along: neither ever appears in it, in any status.
            using var stop = new CancellationTokenSource();
            var views = new List<ClusterView>();
            var watching = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    var view = await fleet.ShowAsync(lighthouse);
                    lock (views)
                    {
                        views.Add(view);
                    }

                    await Task.Delay(200, CancellationToken.None); // the poll interval of a watch that runs until stopped
                }
            });

            Assert.Equal(2, await fleet.ExitCodeAsync(wrong));
            Assert.Contains("could not prove fleet membership", wrong.Process.Output, StringComparison.Ordinal);
            await fleet.WaitForLineAsync(lighthouse, "Refused cluster peer");

            // akka.tcp against akka.ssl.tcp: the lighthouse rejects the plain handshake, the node gives up one join round and retries.
            await fleet.WaitForLineAsync(lighthouse, "Rejected incoming connection", "TLS handshake failure");
            await fleet.WaitForLineAsync(plain, "Couldn't join seed nodes after");
            Assert.StartsWith("akka.tcp://", plain.Address, StringComparison.Ordinal);

            await stop.CancelAsync();
            await watching;
            var final = await fleet.ShowAsync(lighthouse);
            lock (views)
            {
                views.Add(final);
                fleet.Note($"{views.Count} views of the lighthouse polled");
                Assert.All(views, v => Assert.False(v.Lists(wrong.HostPort) || v.Lists(plain.HostPort), $"the lighthouse listed a member without the fleet's proof: {v}"));
            }

            Assert.True(final.AllUp([lighthouse]), $"the lighthouse's view: {final}");
            Assert.False(plain.Process.Exited.IsCompleted, "the node without a secret exited");
        });
    }

    [Fact]
    public async Task A_node_on_a_non_loopback_cluster_address_without_a_secret_refuses_to_start_with_exit_2()
    {
        await using var fleet = new FleetHarness(output);
        await fleet.RunAsync(async () =>
        {
            var node = await fleet.StartMemberAsync("node1", lighthouse: false, 1234,
                ["--cluster", "0.0.0.0:0", "--cluster-public", "127.0.0.1:1234", "--listen", "127.0.0.1:0"], environment: null, expectReady: false);

            Assert.Equal(2, await fleet.ExitCodeAsync(node, TimeSpan.FromSeconds(30)));
            Assert.Contains("--cluster-secret", node.Process.Output, StringComparison.Ordinal);
            Assert.DoesNotContain("Rama node ready", node.Process.Output, StringComparison.Ordinal);
        });
    }
}
