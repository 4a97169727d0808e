using Akka;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.DistributedData;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Shutdown;
using Rama.Admin.Cluster;
using ClusterOptions = Rama.Admin.Cluster.ClusterOptions;

namespace Rama.Actors.Hosting;

/// <summary>
/// The registry key of the fleet's shutdown coordinator's singleton proxy (<c>IRequiredActor&lt;FleetShutdown&gt;</c>):
/// ask it <see cref="GetFleetStatus"/>, <see cref="DrainFleet"/> or <see cref="StartRoll"/>.
/// </summary>
public sealed class FleetShutdown
{
    private FleetShutdown()
    {
    }
}

/// <summary>The fleet's shutdown coordination on Akka.Hosting's builder: <c>akka.AddRama(settings).AddRamaFleet(clusterOptions)</c>.</summary>
public static class FleetHostingExtensions
{
    /// <summary>
    /// On a fleet member (<see cref="ClusterOptions.Enabled"/>; otherwise nothing): starts this node's member actor at
    /// <c>/user/rama-fleet-member</c> (it answers the node's phase from the listener supervisor that
    /// <see cref="RamaAkkaExtensions.AddRama"/> starts, so call this after it) and the coordinator as a cluster
    /// singleton on role <c>proxy</c> with its proxy registered as <see cref="FleetShutdown"/>, and Akka.DistributedData's
    /// replicator on every proxy node (role <c>proxy</c>), which keeps a roll's plan while the singleton moves.
    /// </summary>
    public static AkkaConfigurationBuilder AddRamaFleet(this AkkaConfigurationBuilder builder, ClusterOptions cluster)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(cluster);
        if (!cluster.Enabled)
        {
            return builder;
        }

        return builder
            // The roll's plan is replicated among the proxy nodes (the lighthouse runs no replicator): a fallback, so a
            // stricter setting elsewhere (the fleet proxy database's, the same role) wins.
            .AddHocon($"akka.cluster.distributed-data.role = \"{ClusterOptions.ProxyRole}\"", HoconAddMode.Append)
            .WithActors(async (system, registry, resolver) =>
            {
                var logger = Logger(resolver.GetService<IServiceProvider>());
                // Every proxy node holds a replica of the roll's plan, so a coordinator that moves finds it.
                _ = DistributedData.Get(system);
                var listeners = await registry.GetAsync<ProxyListeners>().ConfigureAwait(false);
                system.ActorOf(FleetMemberActor.Props(listeners, logger), FleetMemberActor.Name);
                // Rama.Fleet's sharding gauges (shards and entities per type on this node), stopped with the actor system.
                var sharding = new Admin.ShardingMetrics(system);
                CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeActorSystemTerminate, "stop-rama-sharding-metrics", () =>
                {
                    sharding.Dispose();
                    return Task.FromResult(Done.Instance);
                });
            })
            .WithSingleton<FleetShutdown>(
                FleetCoordinator.Name,
                (_, _, resolver) => FleetCoordinator.Props(Logger(resolver.GetService<IServiceProvider>())),
                new ClusterSingletonOptions { Role = ClusterOptions.ProxyRole },
                createProxyToo: true);
    }

    private static ILogger Logger(IServiceProvider services) =>
        services.GetService<ILoggerFactory>()?.CreateLogger("Rama.Actors.Shutdown") ?? NullLogger.Instance;
}
