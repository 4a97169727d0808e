using Akka;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Listeners;

namespace Rama.Actors.Hosting;

/// <summary>What <see cref="RamaAkkaExtensions.AddRama"/> starts: the node's listeners and how long a drain may take.</summary>
public sealed record RamaSettings
{
    /// <summary>The listeners, built once at start-up from the host's services (each with the stack serving it).</summary>
    public required Func<IServiceProvider, IReadOnlyList<ListenerSpec>> Listeners { get; init; }

    /// <summary>How long <c>service-requests-done</c> waits for connections in flight before closing them. Default 20 s.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(20);
}

/// <summary>The registry key of the listener supervisor (<c>IRequiredActor&lt;ProxyListeners&gt;</c>): ask it <see cref="GetListenerStatus"/>.</summary>
public sealed class ProxyListeners
{
    private ProxyListeners()
    {
    }
}

/// <summary>Rama on Akka.Hosting's builder: <c>services.AddAkka("rama", (akka, sp) => akka.AddRama(settings))</c>.</summary>
public static class RamaAkkaExtensions
{
    /// <summary>Name of the listener supervisor under <c>/user</c>.</summary>
    public const string ListenersActorName = "rama-listeners";

    /// <summary>
    /// Starts one listener actor per endpoint under <c>/user/rama-listeners</c> when the actor system starts (the host
    /// fails to start with a <see cref="ListenerBindException"/> when an endpoint cannot be bound), registers the
    /// supervisor as <see cref="ProxyListeners"/>, and adds coordinated-shutdown tasks: <c>service-unbind</c> stops
    /// accepting, <c>service-requests-done</c> waits up to the drain timeout for connections in flight and closes the
    /// rest (its phase timeout is raised to the drain timeout plus 5 s, the only HOCON this sets).
    /// </summary>
    public static AkkaConfigurationBuilder AddRama(this AkkaConfigurationBuilder builder, RamaSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var phaseTimeout = settings.DrainTimeout + TimeSpan.FromSeconds(5);
        builder.AddHocon(
            $"akka.coordinated-shutdown.phases.service-requests-done.timeout = {(long)phaseTimeout.TotalMilliseconds}ms",
            HoconAddMode.Prepend);
        return builder.WithActors(async (system, registry, resolver) =>
        {
            var services = resolver.GetService<IServiceProvider>();
            var logger = services.GetService<ILoggerFactory>()?.CreateLogger("Rama.Actors.Listeners") ?? NullLogger.Instance;
            var listeners = settings.Listeners(services);
            var supervisor = system.ActorOf(ListenerSupervisor.Props(listeners, logger), ListenersActorName);
            registry.Register<ProxyListeners>(supervisor);

            var shutdown = CoordinatedShutdown.Get(system);
            shutdown.AddTask(CoordinatedShutdown.PhaseServiceUnbind, "unbind-rama-listeners", async () =>
            {
                await supervisor.Ask<AllListenersUnbound>(UnbindAllListeners.Instance, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                return Done.Instance;
            });
            shutdown.AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "drain-rama-listeners", async () =>
            {
                await supervisor.Ask<AllListenersDrained>(new DrainAllListeners(settings.DrainTimeout), phaseTimeout).ConfigureAwait(false);
                return Done.Instance;
            });

            await supervisor.Ask<AllListenersBound>(BindAllListeners.Instance, TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        });
    }
}
