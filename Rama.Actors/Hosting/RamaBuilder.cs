using Microsoft.Extensions.DependencyInjection;
using Rama.Actors.Actor;

namespace Rama.Actors.Hosting;

/// <summary>A step run when the actor system starts (in registration order).</summary>
public delegate Task ActorStarter(ActorSystem system, IActorRegistry registry, IServiceProvider services, CancellationToken cancellationToken);

/// <summary>Configures the actor system hosted by <see cref="RamaServiceCollectionExtensions.AddRama"/> (Akka.Hosting's AkkaConfigurationBuilder shape).</summary>
public sealed class RamaBuilder
{
    internal RamaBuilder(IServiceCollection services, string systemName)
    {
        Services = services;
        SystemName = systemName;
    }

    public IServiceCollection Services { get; }

    public string SystemName { get; }

    internal List<ActorStarter> Starters { get; } = [];

    internal Dictionary<string, TimeSpan> PhaseTimeouts { get; } = new(StringComparer.Ordinal);

    /// <summary>Runs <paramref name="starter"/> when the system starts: create actors, register them.</summary>
    public RamaBuilder WithActors(ActorStarter starter)
    {
        Starters.Add(starter);
        return this;
    }

    /// <summary>Creates an actor at start-up and registers it under <typeparamref name="TKey"/>.</summary>
    public RamaBuilder WithActor<TKey>(Func<ActorSystem, IServiceProvider, Props> props, string name) =>
        WithActors((system, registry, services, _) =>
        {
            registry.Register<TKey>(system.ActorOf(props(system, services), name));
            return Task.CompletedTask;
        });

    /// <summary>Overrides one coordinated-shutdown phase timeout.</summary>
    public RamaBuilder WithShutdownPhaseTimeout(string phase, TimeSpan timeout)
    {
        PhaseTimeouts[phase] = timeout;
        return this;
    }
}
