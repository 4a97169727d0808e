using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Rama.Actors.Limits;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Hosting;

/// <summary>The registry key of the <c>limits</c> shard region (<c>IRequiredActor&lt;LimitsRegion&gt;</c>).</summary>
public sealed class LimitsRegion
{
    private LimitsRegion()
    {
    }
}

/// <summary>
/// A fleet node's limits and shared upstream health: pass <see cref="Limiter"/> and <see cref="Health"/>'s cache to the
/// node's forward-proxy stacks (<c>ForwardProxyExtras.Limiter</c>, <c>UpstreamHealth</c>) and the whole to
/// <see cref="FleetLimitsHostingExtensions.WithRamaFleetLimits"/>, which connects them to the fleet once the actor system runs.
/// </summary>
public sealed class FleetLimits : IDisposable
{
    public FleetLimits(UpstreamRoutingOptions routing, FleetLimitSettings? settings = null, ILogger? logger = null)
    {
        Settings = settings ?? new FleetLimitSettings();
        Limiter = new FleetConcurrencyLimiter(Settings, logger);
        Health = new FleetUpstreamHealth(routing);
    }

    public FleetLimitSettings Settings { get; }

    public FleetConcurrencyLimiter Limiter { get; }

    public FleetUpstreamHealth Health { get; }

    public void Dispose() => Limiter.Dispose();
}

/// <summary>The fleet's limits on Akka.Hosting's builder (Akka.Cluster.Sharding + DistributedPubSub).</summary>
public static class FleetLimitsHostingExtensions
{
    /// <summary>Name of the health subscriber under <c>/user</c>.</summary>
    public const string HealthSubscriberName = "rama-upstream-health";

    /// <summary>
    /// Starts, on a proxy node: the <c>limits</c> shard region (one entity per upstream and per user, role <c>proxy</c>),
    /// DistributedPubSub's mediator, and the subscriber that applies the fleet's upstream health to this node's cache;
    /// then attaches <paramref name="limits"/> to them.
    /// </summary>
    public static AkkaConfigurationBuilder WithRamaFleetLimits(this AkkaConfigurationBuilder builder, FleetLimits limits)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(limits);
        return builder
            .WithDistributedPubSub(Rama.Admin.Cluster.ClusterOptions.ProxyRole)
            .WithShardRegion<LimitsRegion>(
                LimitKeys.TypeName,
                (system, _, _) => key => LimitEntity.Props(key, limits.Settings, DistributedPubSub.Get(system).Mediator),
                LimitMessageExtractor.Instance,
                new ShardOptions { Role = Rama.Admin.Cluster.ClusterOptions.ProxyRole })
            .WithActors((system, registry, resolver) =>
            {
                var logger = resolver.GetService<IServiceProvider>().GetService<ILoggerFactory>()?.CreateLogger("Rama.Actors.Limits");
                var region = registry.Get<LimitsRegion>();
                var self = Cluster.Get(system).SelfUniqueAddress;
                var mediator = DistributedPubSub.Get(system).Mediator;
                system.ActorOf(UpstreamHealthSubscriber.Props(limits.Health.Cache, mediator), HealthSubscriberName);
                limits.Limiter.Attach(region, self, logger);
                limits.Health.Attach(region, self);
            });
    }

    /// <summary><see cref="WithRamaFleetLimits"/> when <paramref name="limits"/> is set (a fleet node), otherwise nothing.</summary>
    public static AkkaConfigurationBuilder WithRamaFleetLimitsWhen(this AkkaConfigurationBuilder builder, FleetLimits? limits) =>
        limits is null ? builder : builder.WithRamaFleetLimits(limits);
}
