using Akka;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Rama.Admin.Admin;

/// <summary>
/// The admin endpoint on the host: <c>services.AddRamaAdmin(options)</c> registers the endpoint and the built-in
/// palettes (<c>cluster</c>, <c>actor</c>), and <c>akka.AddRamaAdmin()</c> on Akka.Hosting's builder binds it when the
/// actor system starts. More palettes: <c>services.AddSingleton&lt;IAdminPalette, MyPalette&gt;()</c>.
/// </summary>
public static class AdminHostingExtensions
{
    /// <summary>Name of the coordinated-shutdown task that closes the admin endpoint.</summary>
    public const string ShutdownTaskName = "close-rama-admin";

    /// <summary>Registers <see cref="AdminEndpoint"/> (with every <see cref="IAdminPalette"/> of the container) and the <c>cluster</c> and <c>actor</c> palettes.</summary>
    public static IServiceCollection AddRamaAdmin(this IServiceCollection services, AdminOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(options);
        services.TryAddSingleton(sp => new AdminEndpoint(
            sp.GetRequiredService<AdminOptions>(),
            sp.GetServices<IAdminPalette>(),
            sp.GetService<ILoggerFactory>()?.CreateLogger("Rama.Admin.Admin") ?? NullLogger.Instance,
            sp.GetService<TimeProvider>() ?? TimeProvider.System,
            sp.GetServices<IReadinessCheck>(),
            AdminMetrics.BuildScrape(sp),
            sp));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, ClusterPalette>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IAdminPalette, ActorPalette>());
        // /readyz: the actor system runs, is not shutting down and, in a fleet, this member is Up (first: its reason wins).
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IReadinessCheck, SystemReadiness>());
        // /metrics: meters Rama.Proxy and Rama.Fleet through OpenTelemetry's Prometheus exporter.
        AdminMetrics.Register(services);
        return services;
    }

    /// <summary>
    /// Binds the admin endpoint registered by <see cref="AddRamaAdmin(IServiceCollection, AdminOptions)"/> when the actor
    /// system starts (the host fails to start with <see cref="AdminBindException"/> when its address cannot be bound),
    /// and closes it in coordinated shutdown's <c>before-actor-system-terminate</c> phase: after the listeners drained,
    /// so <c>pbm node status</c> answers during the drain. Does nothing when the endpoint is not registered.
    /// </summary>
    public static AkkaConfigurationBuilder AddRamaAdmin(this AkkaConfigurationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.WithActors((system, _, resolver) =>
        {
            var services = resolver.GetService<IServiceProvider>();
            if (services.GetService<AdminEndpoint>() is not { } endpoint || CoordinatedShutdown.Get(system).ShutdownReason is not null)
            {
                return;
            }

            var fleetMetrics = new FleetMetrics(system);
            endpoint.Start();
            CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeActorSystemTerminate, ShutdownTaskName, async () =>
            {
                await endpoint.StopAsync().ConfigureAwait(false);
                fleetMetrics.Dispose();
                return Done.Instance;
            });
        });
    }
}
