namespace Rama.Actors.Actor;

/// <summary>Marks messages handled by the runtime before the actor's behavior.</summary>
public interface IAutoReceivedMessage;

/// <summary>A message that does not reset the receive timeout.</summary>
public interface INotInfluenceReceiveTimeout;

/// <summary>Stops the actor once the messages queued before it have been processed.</summary>
public sealed class PoisonPill : IAutoReceivedMessage
{
    public static readonly PoisonPill Instance = new();

    private PoisonPill()
    {
    }

    public override string ToString() => "<PoisonPill>";
}

/// <summary>Makes the actor throw <see cref="ActorKilledException"/>; its supervisor decides (default: stop).</summary>
public sealed class Kill : IAutoReceivedMessage
{
    public static readonly Kill Instance = new();

    private Kill()
    {
    }

    public override string ToString() => "<Kill>";
}

/// <summary>Sent to watchers of an actor once it has stopped.</summary>
/// <param name="ActorRef">The actor that stopped.</param>
/// <param name="ExistenceConfirmed">False when the actor was unknown or already gone when watched.</param>
/// <param name="AddressTerminated">True when its node is gone (remote DeathWatch).</param>
public sealed record Terminated(IActorRef ActorRef, bool ExistenceConfirmed, bool AddressTerminated)
    : IAutoReceivedMessage, IPossiblyHarmful;

/// <summary>Marks messages that should not be sent to an actor by strangers (Akka's marker).</summary>
public interface IPossiblyHarmful;

/// <summary>Asks an actor for its reference; it answers <see cref="ActorIdentity"/>.</summary>
public sealed record Identify(object? MessageId) : IAutoReceivedMessage;

/// <summary>The answer to <see cref="Identify"/>; <see cref="Subject"/> is null when there is no such actor.</summary>
public sealed record ActorIdentity(object? MessageId, IActorRef? Subject);

/// <summary>Sent to an actor that has received nothing for its receive timeout.</summary>
public sealed class ReceiveTimeout : IPossiblyHarmful
{
    public static readonly ReceiveTimeout Instance = new();

    private ReceiveTimeout()
    {
    }

    public override string ToString() => "<ReceiveTimeout>";
}

/// <summary>Status replies; a <see cref="Failure"/> faults an Ask.</summary>
public abstract class Status
{
    private protected Status()
    {
    }

    public sealed class Success(object? status) : Status
    {
        public object? Status { get; } = status;

        public override string ToString() => $"Success: {Status}";
    }

    public sealed class Failure(Exception cause, object? state = null) : Status
    {
        public Exception Cause { get; } = cause;

        public object? State { get; } = state;

        public override string ToString() => $"Failure: {Cause}";
    }
}

/// <summary>A message that could not be delivered, published on the event stream.</summary>
public sealed record DeadLetter(object Message, IActorRef Sender, IActorRef Recipient);

/// <summary>A message an actor did not handle, published on the event stream.</summary>
public sealed record UnhandledMessage(object Message, IActorRef Sender, IActorRef Recipient);
