using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Rama.Actors.Actor;
using Rama.Actors.Hosting;
using Rama.Actors.Shutdown;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Proxy;

/// <summary>What the node listens on and which stack serves each connection.</summary>
public sealed record ProxyListenerSettings(
    IReadOnlyList<IPEndPoint> Endpoints,
    Func<IServiceProvider, IService<ConnectionContext, Unit>> Stack,
    TimeSpan DrainTimeout)
{
    /// <summary>More endpoints, each with its own stack (TLS termination, echo, ...); bound after <see cref="Endpoints"/>, in order.</summary>
    public IReadOnlyList<ProxyListenerEndpoint> Extra { get; init; } = [];
}

/// <summary>An endpoint served by its own stack.</summary>
public sealed record ProxyListenerEndpoint(IPEndPoint Endpoint, Func<IServiceProvider, IService<ConnectionContext, Unit>> Stack);

/// <summary>The registry key of the listener supervisor, and what it bound.</summary>
public sealed class ProxyListeners
{
    private volatile IReadOnlyList<IPEndPoint> _bound = [];

    /// <summary>The endpoints bound at start-up (real ports when 0 was asked for).</summary>
    public IReadOnlyList<IPEndPoint> BoundEndpoints => _bound;

    internal void SetBound(IReadOnlyList<IPEndPoint> endpoints) => _bound = endpoints;
}

public static class ProxyListenerBuilderExtensions
{
    /// <summary>
    /// Starts one listener actor per endpoint under <c>/user/proxy-listeners</c> at start-up (the
    /// host fails to start when an endpoint cannot be bound), and hooks coordinated shutdown:
    /// <c>service-unbind</c> stops accepting, <c>service-requests-done</c> waits up to the drain
    /// timeout for connections in flight and closes the rest.
    /// </summary>
    public static RamaBuilder WithProxyListeners(this RamaBuilder builder, ProxyListenerSettings settings)
    {
        builder.Services.AddSingleton<ProxyListeners>();
        return builder.WithActors(async (system, registry, services, cancellationToken) =>
        {
            var stack = settings.Stack(services);
            var loggerFactory = services.GetService<Microsoft.Extensions.Logging.ILoggerFactory>() ?? Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
            List<(IPEndPoint, IService<ConnectionContext, Unit>)> listeners = [.. settings.Endpoints.Select(e => (e, stack))];
            listeners.AddRange(settings.Extra.Select(x => (x.Endpoint, x.Stack(services))));
            var supervisor = system.ActorOf(Props.Create(() => new ListenerSupervisor(listeners, loggerFactory)), "proxy-listeners");
            registry.Register<ProxyListeners>(supervisor);

            var bound = await supervisor.Ask<AllListenersBound>(BindAllListeners.Instance, TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            services.GetRequiredService<ProxyListeners>().SetBound([.. bound.Endpoints.Select(IPEndPoint.Parse)]);

            var shutdown = CoordinatedShutdown.Get(system);
            shutdown.AddTask(CoordinatedShutdown.PhaseServiceUnbind, "unbind-proxy-listeners",
                () => supervisor.Ask<Done>(UnbindAllListeners.Instance, TimeSpan.FromSeconds(5)));
            shutdown.AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "drain-proxy-listeners", async () =>
            {
                await supervisor.Ask<AllListenersDrained>(new DrainAllListeners(settings.DrainTimeout), settings.DrainTimeout + TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                return Done.Instance;
            });
        });
    }
}
