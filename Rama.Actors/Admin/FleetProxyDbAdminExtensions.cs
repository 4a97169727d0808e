using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Rama.Actors.Upstreams;
using Rama.Admin.Admin;

namespace Rama.Actors.Admin;

/// <summary>The fleet proxy database's palettes of <c>pbm</c>.</summary>
public static class FleetProxyDbAdminExtensions
{
    /// <summary>
    /// Registers, with the admin endpoint of <c>services.AddRamaAdmin(options)</c>, the <c>proxydb</c> palette (the fleet's
    /// proxy database, through the shard region and the replica that <c>akka.WithRamaFleetProxyDb(settings)</c> starts)
    /// and the <c>sharding</c> palette (Akka's sharding statistics). Only on a fleet node.
    /// </summary>
    public static IServiceCollection AddRamaFleetProxyDbAdmin(this IServiceCollection services, FleetProxyDatabase replica)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(replica);
        services.TryAddSingleton(replica);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, ProxyDbPalette>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, ShardingPalette>());
        return services;
    }
}
