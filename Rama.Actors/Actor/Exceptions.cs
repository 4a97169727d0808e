namespace Rama.Actors.Actor;

/// <summary>Base of the runtime's exceptions.</summary>
public class ActorException : Exception
{
    public ActorException(string message)
        : base(message)
    {
    }

    public ActorException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The actor could not be created or started (constructor, PreStart, PostRestart); default directive: stop.</summary>
public class ActorInitializationException : ActorException
{
    public ActorInitializationException(IActorRef? actor, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Actor = actor;
    }

    public IActorRef? Actor { get; }
}

/// <summary>Thrown by an actor that received <see cref="Kill"/>; default directive: stop.</summary>
public sealed class ActorKilledException(string message) : ActorException(message);

/// <summary>An actor did not handle the <see cref="Terminated"/> of an actor it watched; default directive: stop.</summary>
public sealed class DeathPactException(IActorRef deadActor)
    : ActorException($"Monitored actor [{deadActor.Path}] terminated")
{
    public IActorRef DeadActor { get; } = deadActor;
}

/// <summary>An actor name is invalid or already taken among its siblings.</summary>
public sealed class InvalidActorNameException(string message) : ActorException(message);

/// <summary>An Ask got no answer within its timeout.</summary>
public sealed class AskTimeoutException(string message) : TimeoutException(message);
