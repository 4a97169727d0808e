namespace Rama.Actors.Actor;

/// <summary>
/// Messages between the runtime's cells. A mailbox processes them before user messages,
/// also while user messages are suspended (failure, restart, ReceiveAsync).
/// </summary>
internal abstract class SystemMessage;

/// <summary>Create the actor instance and run PreStart.</summary>
internal sealed class Create : SystemMessage
{
    public static readonly Create Instance = new();
}

/// <summary>Restart after <see cref="Cause"/> (supervisor's Restart directive).</summary>
internal sealed class Recreate(Exception cause) : SystemMessage
{
    public Exception Cause { get; } = cause;
}

/// <summary>Stop processing user messages (the parent failed, or AllForOne is about to restart).</summary>
internal sealed class Suspend : SystemMessage
{
    public static readonly Suspend Instance = new();
}

/// <summary>Resume user messages; <see cref="CausedByFailure"/> is set for the supervisor's Resume directive.</summary>
internal sealed class Resume(Exception? causedByFailure) : SystemMessage
{
    public Exception? CausedByFailure { get; } = causedByFailure;
}

/// <summary>Stop the actor (children first, then PostStop).</summary>
internal sealed class Terminate : SystemMessage
{
    public static readonly Terminate Instance = new();
}

/// <summary>A child failed; its supervisor (the receiver) decides.</summary>
internal sealed class Failed(IActorRef child, Exception cause, int uid) : SystemMessage
{
    public IActorRef Child { get; } = child;

    public Exception Cause { get; } = cause;

    public int Uid { get; } = uid;
}

internal sealed class Watch(IInternalActorRef watchee, IInternalActorRef watcher) : SystemMessage
{
    public IInternalActorRef Watchee { get; } = watchee;

    public IInternalActorRef Watcher { get; } = watcher;
}

internal sealed class Unwatch(IInternalActorRef watchee, IInternalActorRef watcher) : SystemMessage
{
    public IInternalActorRef Watchee { get; } = watchee;

    public IInternalActorRef Watcher { get; } = watcher;
}

/// <summary>A watched actor (or a child) has stopped.</summary>
internal sealed class DeathWatchNotification(IActorRef actor, bool existenceConfirmed, bool addressTerminated) : SystemMessage
{
    public IActorRef Actor { get; } = actor;

    public bool ExistenceConfirmed { get; } = existenceConfirmed;

    public bool AddressTerminated { get; } = addressTerminated;
}

/// <summary>A continuation of a ReceiveAsync handler, run on the actor's mailbox.</summary>
internal sealed class AsyncContinuation(SendOrPostCallback callback, object? state) : SystemMessage
{
    public SendOrPostCallback Callback { get; } = callback;

    public object? State { get; } = state;
}

/// <summary>The task of a ReceiveAsync handler completed; user messages may flow again.</summary>
internal sealed class AsyncTaskCompleted(Task task) : SystemMessage
{
    public Task Task { get; } = task;
}
