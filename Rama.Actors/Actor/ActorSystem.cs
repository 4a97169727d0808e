using Microsoft.Extensions.Logging;

namespace Rama.Actors.Actor;

/// <summary>
/// A hierarchy of actors with its guardians (<c>/user</c>, <c>/system</c>), <c>/temp</c>,
/// <c>/deadLetters</c>, event stream and scheduler.
/// </summary>
public abstract class ActorSystem : IActorRefFactory, IAsyncDisposable
{
    private protected ActorSystem()
    {
    }

    public abstract string Name { get; }

    /// <summary>The local address, <c>rama://name</c>.</summary>
    public abstract Address Address { get; }

    public abstract ActorSystemSettings Settings { get; }

    public abstract EventStream EventStream { get; }

    public abstract IScheduler Scheduler { get; }

    public abstract IActorRef DeadLetters { get; }

    public abstract ILoggerFactory LoggerFactory { get; }

    /// <summary>Completes once every actor has stopped.</summary>
    public abstract Task WhenTerminated { get; }

    /// <summary>Creates and starts a new actor system. Names: ASCII letters, digits, '-' and '_', starting with a letter or digit.</summary>
    public static ActorSystem Create(string name, ActorSystemSettings? settings = null)
    {
        var system = new ActorSystemImpl(name, settings ?? new ActorSystemSettings());
        system.Start();
        return system;
    }

    /// <summary>Creates a top-level actor under <c>/user</c>.</summary>
    public abstract IActorRef ActorOf(Props props, string? name = null);

    /// <summary>Stops an actor (after the message it is processing).</summary>
    public abstract void Stop(IActorRef actor);

    /// <summary>
    /// Runs <see cref="Shutdown.CoordinatedShutdown"/> (whose last phase stops all actors) unless
    /// <see cref="Shutdown.CoordinatedShutdownSettings.RunByActorSystemTerminate"/> is off; completes with <see cref="WhenTerminated"/>.
    /// </summary>
    public abstract Task Terminate();

    public async ValueTask DisposeAsync()
    {
        await Terminate().ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }

    public override string ToString() => Address.ToString();
}
