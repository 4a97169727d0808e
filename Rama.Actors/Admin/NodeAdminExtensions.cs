using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Rama.Admin.Admin;

namespace Rama.Actors.Admin;

/// <summary>The proxy node's palettes of <c>pbm</c>.</summary>
public static class NodeAdminExtensions
{
    /// <summary>
    /// Registers the <c>node</c> palette (<c>pbm node status</c>) with the admin endpoint of
    /// <c>services.AddRamaAdmin(options)</c>; it asks the listener supervisor that <c>akka.AddRama(settings)</c> starts.
    /// Also the <c>fleet</c> palette (<c>pbm fleet status|drain|roll</c>), which asks the coordinator that
    /// <c>akka.AddRamaFleet(cluster)</c> starts (on a node alone it says so).
    /// </summary>
    public static IServiceCollection AddRamaNodeAdmin(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, NodePalette>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, FleetPalette>());
        // /readyz on a proxy node: its listeners are bound and not draining.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IReadinessCheck, ListenersReadiness>());
        return services;
    }
}
