using Microsoft.Extensions.Logging;
using Rama.Actors.Shutdown;

namespace Rama.Actors.Actor;

/// <summary>Settings of an <see cref="ActorSystem"/>; defaults are Akka's.</summary>
public sealed record ActorSystemSettings
{
    /// <summary>Default timeout of Ask. Akka: <c>akka.actor.ask-timeout</c> is infinite, Rama's fleet default is 5 s (ARCHITECTURE.md).</summary>
    public TimeSpan AskTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>User messages an actor processes per mailbox run before yielding the thread. Akka: <c>throughput = 30</c>.</summary>
    public int Throughput { get; init; } = 30;

    /// <summary>Clock of the scheduler, timers, Ask timeouts, restart windows and shutdown phases.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Loggers for the runtime and for actors; none when null.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>How <c>/user</c> supervises top-level actors. Akka: <c>guardian-supervisor-strategy</c> = default strategy.</summary>
    public SupervisorStrategy GuardianSupervisorStrategy { get; init; } = SupervisorStrategy.DefaultStrategy;

    public CoordinatedShutdownSettings CoordinatedShutdown { get; init; } = new();

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(AskTimeout, TimeSpan.Zero, nameof(AskTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(Throughput, 1, nameof(Throughput));
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentNullException.ThrowIfNull(GuardianSupervisorStrategy);
        ArgumentNullException.ThrowIfNull(CoordinatedShutdown);
        CoordinatedShutdown.Validate();
    }
}
