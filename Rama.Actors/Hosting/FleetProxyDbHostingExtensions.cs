using System.Globalization;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.DistributedData;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Upstreams;
using Rama.Proxy.Upstream;
using AkkaCluster = Akka.Cluster.Cluster;

namespace Rama.Actors.Hosting;

/// <summary>What <see cref="FleetProxyDbHostingExtensions.WithRamaFleetProxyDb"/> starts.</summary>
public sealed record FleetProxyDbSettings
{
    /// <summary>This node's replica; pass its <see cref="FleetProxyDatabase.Database"/> to the node's stacks.</summary>
    public required FleetProxyDatabase Replica { get; init; }

    /// <summary>Where DistributedData keeps the partitions on disk (a file per partition, <see cref="Upstreams.FileDurableStore"/>), so the records survive a restart of every node. Null: in memory only.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Records that seed the fleet's database when it is empty (<c>--proxydb</c> on a fleet node). Null or empty: none.</summary>
    public IReadOnlyList<UpstreamProxy>? Seed { get; init; }

    /// <summary>Where <see cref="Seed"/> came from, for the log line.</summary>
    public string SeedSource { get; init; } = "seed";

    /// <summary>How long a write waits for every proxy node (then as long again for a majority). Default 3 s.</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(3);
}

/// <summary>The registry key of the <c>proxydb</c> shard region (<c>IRequiredActor&lt;ProxyDbRegion&gt;</c>).</summary>
public sealed class ProxyDbRegion
{
    private ProxyDbRegion()
    {
    }
}

/// <summary>The registry key of this node's replica actor.</summary>
public sealed class ProxyDbReplica
{
    private ProxyDbReplica()
    {
    }
}

/// <summary>The fleet's proxy database on Akka.Hosting's builder (Akka.Cluster.Sharding + Akka.DistributedData).</summary>
public static class FleetProxyDbHostingExtensions
{
    /// <summary>Name of the replica actor under <c>/user</c>.</summary>
    public const string ReplicaActorName = "rama-proxydb-replica";

    /// <summary>
    /// Starts, on a fleet member with the <c>proxy</c> role: Akka.DistributedData's replicator on the proxy nodes (durable
    /// keys <c>proxydb-*</c> in files under <see cref="FleetProxyDbSettings.DataDirectory"/> when set), the <c>proxydb</c>
    /// shard region (one entity per partition, the only writer of its records), and the replica actor that keeps
    /// <see cref="FleetProxyDbSettings.Replica"/> current. When this node is Up and the fleet's database is empty, the
    /// <see cref="FleetProxyDbSettings.Seed"/> records are loaded through the entities (all or none).
    /// </summary>
    public static AkkaConfigurationBuilder WithRamaFleetProxyDb(this AkkaConfigurationBuilder builder, FleetProxyDbSettings settings)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(settings);
        var ddata = new DDataOptions { Role = ProxyDbPartitions.Role };
        if (settings.DataDirectory is { } directory)
        {
            ddata.Durable = new DurableOptions { Keys = [ProxyDbPartitions.KeyPrefix + "*"] };
        }

        builder.WithDistributedData(ddata);
        // Subscribers (the replica actor) hear of changes at most this often, and a write acknowledged by every replica (WriteAll)
        // waits for that tick before the node selects with it: Akka's 500 ms was most of the time a record added on one node took to
        // become selectable on another (p50 274 ms of a 1 s bound, 2026-12-06), 200 ms still left up to 200 ms of the bound to the
        // tick (1,009 ms once under the full suite's load). At 50 ms an idle tick costs nothing (no key changed, no message), and a
        // burst of writes is bounded by the replica's own rebuild throttle (the next rebuild waits as long as the last one took).
        builder.AddHocon("akka.cluster.distributed-data.notify-subscribers-interval = 50ms", HoconAddMode.Prepend);
        // Gossip sends up to max-delta-elements keys' whole values in one message: at 100,000 records a partition's value
        // is ~50 KB, so 4 keys per message (~200 KB) stay far under Akka.Remote's frame (benchmarks/fleet_proxydb.py).
        builder.AddHocon("akka.cluster.distributed-data.max-delta-elements = 4", HoconAddMode.Prepend);
        if (settings.DataDirectory is { } dir)
        {
            // Akka.Hosting has no option for the store class (its options are LMDB's): FileDurableStore says why not LMDB.
            builder.AddHocon(
                $"akka.cluster.distributed-data.durable.store-actor-class = \"{typeof(FileDurableStore).FullName}, {typeof(FileDurableStore).Assembly.GetName().Name}\"\n" +
                $"akka.cluster.distributed-data.durable.{FileDurableStore.DirectoryKey} = \"{dir.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)}\"",
                HoconAddMode.Prepend);
        }

        return builder
            .WithShardRegion<ProxyDbRegion>(
                ProxyDbPartitions.TypeName,
                (system, _, _) => entityId => ProxyDbPartitionActor.Props(
                    int.Parse(entityId, CultureInfo.InvariantCulture), DistributedData.Get(system).Replicator, settings.WriteTimeout),
                ProxyDbMessageExtractor.Instance,
                new ShardOptions { Role = ProxyDbPartitions.Role })
            .WithActors((system, registry, resolver) =>
            {
                var services = resolver.GetService<IServiceProvider>();
                var logger = services.GetService<ILoggerFactory>()?.CreateLogger("Rama.Actors.Upstreams") ?? NullLogger.Instance;
                var replicator = DistributedData.Get(system).Replicator;
                var replica = system.ActorOf(ProxyDbReplicaActor.Props(settings.Replica, replicator, services.GetService<TimeProvider>()), ReplicaActorName);
                registry.Register<ProxyDbReplica>(replica);
                if (settings.Seed is { Count: > 0 } seed)
                {
                    var region = registry.Get<ProxyDbRegion>();
                    AkkaCluster.Get(system).RegisterOnMemberUp(() => _ = SeedAsync(replicator, region, seed, settings, logger));
                }
            });
    }

    /// <summary>
    /// <see cref="WithRamaFleetProxyDb"/> when <paramref name="replica"/> is set (a fleet node), otherwise nothing: the
    /// one-line form for a host that decides at start whether it is a fleet member.
    /// </summary>
    public static AkkaConfigurationBuilder WithRamaFleetProxyDbWhen(this AkkaConfigurationBuilder builder, FleetProxyDatabase? replica,
        string? dataDirectory, IReadOnlyList<UpstreamProxy>? seed, string? seedSource) =>
        replica is null ? builder : builder.WithRamaFleetProxyDb(new FleetProxyDbSettings
        {
            Replica = replica,
            DataDirectory = dataDirectory,
            Seed = seed,
            SeedSource = seedSource ?? "seed",
        });

    /// <summary>Loads <paramref name="seed"/> when no partition of the fleet's database (read from a majority) holds a record.</summary>
    private static async Task SeedAsync(IActorRef replicator, IActorRef region, IReadOnlyList<UpstreamProxy> seed, FleetProxyDbSettings settings, ILogger logger)
    {
        try
        {
            // Right after Up, the other proxy nodes' replicators may not answer yet: a few tries before giving up.
            var existing = -1;
            for (var attempt = 1; existing < 0; attempt++)
            {
                try
                {
                    var counts = await Task.WhenAll(Enumerable.Range(0, ProxyDbPartitions.Count).Select(p => CountAsync(p))).ConfigureAwait(false);
                    existing = counts.Sum();
                }
                catch (Exception ex) when (ex is TimeoutException or AskTimeoutException && attempt < SeedReadAttempts)
                {
                    await Task.Delay(settings.WriteTimeout).ConfigureAwait(false); // back-off between tries: the replicators that timed out need time to come up
                }
            }

            if (existing > 0)
            {
                FleetProxyDbLog.SeedSkipped(logger, settings.SeedSource, existing);
                return;
            }

            var result = await new ProxyDbWriter(region, settings.WriteTimeout * 3).LoadAsync(seed).ConfigureAwait(false);
            if (result.Ok)
            {
                FleetProxyDbLog.Seeded(logger, settings.SeedSource, result.Records);
            }
            else
            {
                FleetProxyDbLog.SeedFailed(logger, settings.SeedSource, string.Join("; ", result.Problems));
            }
        }
        catch (Exception ex) when (ex is TimeoutException or AskTimeoutException or InvalidOperationException)
        {
            FleetProxyDbLog.SeedFailed(logger, settings.SeedSource, ex.Message);
        }

        async Task<int> CountAsync(int partition)
        {
            var key = ProxyDbPartitions.Key(partition);
            var answer = await replicator.Ask(Dsl.Get(key, new ReadMajority(settings.WriteTimeout)), settings.WriteTimeout * 2).ConfigureAwait(false);
            return answer switch
            {
                GetSuccess success => ProxyDbPartitions.Records(success.Get(key)).Count,
                NotFound => 0,
                _ => throw new TimeoutException($"no majority of the proxy nodes answered for partition {partition}"),
            };
        }
    }

    /// <summary>How many times seeding reads the fleet's database before it gives up.</summary>
    private const int SeedReadAttempts = 5;
}

/// <summary>Log lines of the fleet's proxy database (event ids 1300-1319).</summary>
internal static partial class FleetProxyDbLog
{
    [LoggerMessage(1300, LogLevel.Information, "Fleet proxy database seeded from {Source}: {Records} records")]
    public static partial void Seeded(ILogger logger, string source, int records);

    [LoggerMessage(1301, LogLevel.Information, "Fleet proxy database already holds {Records} records: {Source} not loaded (the fleet's database wins)")]
    public static partial void SeedSkipped(ILogger logger, string source, int records);

    [LoggerMessage(1302, LogLevel.Warning, "Fleet proxy database: seeding from {Source} failed: {Reason}")]
    public static partial void SeedFailed(ILogger logger, string source, string reason);
}
