using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Rama.IntegrationTests.Upstream;
using Xunit.Abstractions;

namespace Rama.IntegrationTests.Fleet;

/// <summary>
/// kill -9 of the node that owns a shard of the fleet's proxy database, with requests routed through a real upstream
/// (tinyproxy, whose source address the origin reports) on the survivors all along: selection keeps working from their
/// replicas, the shard's ownership moves, and writes to it resume.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetShardOwnerTests(ITestOutputHelper output, UpstreamPeersFixture peers) : IClassFixture<UpstreamPeersFixture>
{
    [Fact]
    public async Task Killing_the_owner_of_a_database_shard_fails_no_request_on_the_survivors_and_writes_to_it_resume()
    {
        await using var fleet = new FleetHarness(output);
        var db = fleet.TempFile("rama-fleet-owner", peers.DatabaseCsv());
        await fleet.RunAsync(async () =>
        {
            var (_, nodes) = await fleet.StartConvergedAsync(3, i => i == 1 ? ["--proxydb", db] : []);
            await Task.WhenAll(nodes.Select(n => FleetAdmin.UntilSelectableAsync(n, "u-id-tiny", "tiny")));

            // The partition of tinyproxy's record, and the node whose shard region hosts that partition's entity.
            var partition = FleetAdmin.Rows(await FleetAdmin.AdminFramesAsync(nodes[0], "proxydb", "list"), "records").Single(r => r[0] == "tiny")[^1];
            FleetMember? owner = null;
            foreach (var node in nodes)
            {
                var here = FleetAdmin.Rows(await FleetAdmin.AdminFramesAsync(node, "sharding", "shard-stats", "proxydb"), "shards on this node");
                owner = here.Any(r => r[0] == partition) ? node : owner;
            }

            Assert.NotNull(owner);
            var survivors = nodes.Where(n => n != owner).ToArray();
            fleet.Note($"record tiny is in partition {partition}, owned by {owner!.Name}; survivors {string.Join(", ", survivors.Select(s => s.Name))}");

            // Requests through tinyproxy (the filter header names it) on each survivor, paced, all along.
            await using var loops = new ProxyLoops([.. survivors.Select(s => ProxyLoop.Start(s.Proxy, peers.OriginUrl, filter: "id=tiny", expected: "127.0.0.13"))]);
            await FleetHarness.UntilAsync(() => loops.Successes >= 10, "the survivors route through tinyproxy");

            var clock = Stopwatch.StartNew();
            owner.Process.Kill();
            var before = loops.Successes;

            // Writes to the same partition from a survivor: refused or timed out while the shard has no home, then done.
            var id = IdInPartition(int.Parse(partition, CultureInfo.InvariantCulture));
            var line = $"{id},1,0,1,0,0,0,1,0,0,127.0.0.1:{peers.Ports["squid"]},b,na,us,,,,7018,";
            var attempts = 0;
            TimeSpan? resumed = null;
            while (resumed is null)
            {
                attempts++;
                var frames = await FleetAdmin.AdminFramesAsync(survivors[0], "proxydb", "add", line);
                // Done, or refused because the record exists: an earlier try that timed out at the admin was applied after all.
                if (frames.Any(f => f.GetProperty("type").GetString() == "fields" && f.GetProperty("fields").TryGetProperty("result", out _))
                    || frames.Any(f => f.TryGetProperty("message", out var message) && (message.GetString() ?? "").Contains($"record '{id}' exists", StringComparison.Ordinal)))
                {
                    resumed = clock.Elapsed;
                }

                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"writes to partition {partition} never resumed: {string.Join(" | ", frames)}");
                if (resumed is null)
                {
                    await Task.Delay(100); // between tries: a refusal can come at once while the shard has no home
                }
            }

            await Task.WhenAll(survivors.Select(n => FleetAdmin.UntilSelectableAsync(n, $"u-id-{id}", id)));
            var after = loops.Successes;
            await FleetHarness.UntilAsync(() => loops.Successes >= after + 10, "requests still routed after the write");
            await loops.DisposeAsync();

            var newOwner = "";
            foreach (var node in survivors)
            {
                var here = FleetAdmin.Rows(await FleetAdmin.AdminFramesAsync(node, "sharding", "shard-stats", "proxydb"), "shards on this node");
                newOwner = here.Any(r => r[0] == partition) ? node.Name : newOwner;
            }

            fleet.Note($"{owner.Name} killed: writes to partition {partition} resumed after {resumed.Value.TotalSeconds:F1} s ({attempts} tries), " +
                       $"the shard now on {newOwner}; {loops.Successes - before} requests routed through tinyproxy on the survivors meanwhile, {loops.Failures.Count} failed");
            Assert.Empty(loops.Failures);
            Assert.NotEqual("", newOwner);

            // pbm proxydb stats: every surviving proxy node's replica, on one version, with the selections it routed.
            var stats = await FleetAdmin.AdminFramesAsync(survivors[1], "proxydb", "stats");
            var replicas = FleetAdmin.Rows(stats, "replicas");
            fleet.Note("proxydb stats replicas: " + string.Join(" | ", replicas.Select(r => string.Join(" ", r))));
            Assert.Equal(survivors.Select(n => n.Address).Order(StringComparer.Ordinal), replicas.Select(r => r[0]));
            Assert.Single(replicas.Select(r => r[1]).Distinct());
            Assert.All(replicas, r => Assert.True(long.Parse(r[5], CultureInfo.InvariantCulture) > 0, $"{r[0]} routed no selection"));
            Assert.Equal("yes", (await FleetAdmin.AskAsync(survivors[1], "proxydb", "stats"))["replicasAgree"]);
        });
    }

    /// <summary>A record id in <paramref name="partition"/> (FNV-1a64 of the lower-case id modulo 256, the fleet's documented partitioning).</summary>
    private static string IdInPartition(int partition)
    {
        for (var i = 0; ; i++)
        {
            var id = $"moved{i}";
            var hash = 14695981039346656037UL;
            foreach (var b in Encoding.UTF8.GetBytes(id))
            {
                hash ^= b;
                hash *= 1099511628211UL;
            }

            if ((int)(hash % 256) == partition)
            {
                return id;
            }
        }
    }
}
