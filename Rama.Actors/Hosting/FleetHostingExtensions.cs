using Akka.Cluster.Hosting;
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
/// ask it <see cref="GetFleetStatus"/> or <see cref="DrainFleet"/>.
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
    /// singleton on role <c>proxy</c> with its proxy registered as <see cref="FleetShutdown"/>.
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
            .WithActors(async (system, registry, resolver) =>
            {
                var logger = Logger(resolver.GetService<IServiceProvider>());
                var listeners = await registry.GetAsync<ProxyListeners>().ConfigureAwait(false);
                system.ActorOf(FleetMemberActor.Props(listeners, logger), FleetMemberActor.Name);
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
