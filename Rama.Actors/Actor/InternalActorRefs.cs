using System.Collections.Concurrent;

namespace Rama.Actors.Actor;

/// <summary>What the runtime needs of a reference beyond <see cref="IActorRef"/>.</summary>
internal interface IInternalActorRef : IActorRef
{
    /// <summary>The system the reference belongs to; null for <see cref="NobodyActorRef"/>.</summary>
    ActorSystemImpl? System { get; }

    bool IsTerminated { get; }

    void SendSystemMessage(SystemMessage message);

    void Stop();
}

/// <summary>Equality by path and uid, for every reference kind.</summary>
internal abstract class ActorRefBase : IInternalActorRef
{
    public abstract ActorPath Path { get; }

    public abstract ActorSystemImpl? System { get; }

    public abstract bool IsTerminated { get; }

    public abstract void Tell(object message, IActorRef? sender = null);

    public abstract void SendSystemMessage(SystemMessage message);

    public abstract void Stop();

    public bool Equals(IActorRef? other) =>
        other is not null && Path.Uid == other.Path.Uid && Path.Equals(other.Path);

    public override bool Equals(object? obj) => obj is IActorRef other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Path.Uid, Path);

    public int CompareTo(IActorRef? other)
    {
        if (other is null)
        {
            return 1;
        }

        var byPath = string.CompareOrdinal(Path.ToString(), other.Path.ToString());
        return byPath != 0 ? byPath : Path.Uid.CompareTo(other.Path.Uid);
    }

    public override string ToString() => Path.Uid == ActorPath.UndefinedUid ? $"[{Path}]" : $"[{Path}#{Path.Uid}]";

    /// <summary>The sender to record: null means "the current actor" inside an actor (Akka.NET's implicit sender).</summary>
    protected static IActorRef? ResolveSender(IActorRef? sender) => sender ?? ActorCell.Current?.Self;
}

/// <summary>A reference without a cell: system messages are ignored except Watch, answered with "already dead".</summary>
internal abstract class MinimalActorRef : ActorRefBase
{
    public override bool IsTerminated => true;

    public override void SendSystemMessage(SystemMessage message)
    {
        if (message is Watch watch && !ReferenceEquals(watch.Watcher, this))
        {
            watch.Watcher.SendSystemMessage(new DeathWatchNotification(watch.Watchee, existenceConfirmed: false, addressTerminated: false));
        }
    }

    public override void Stop()
    {
    }
}

internal sealed class NobodyActorRef : MinimalActorRef
{
    public static readonly NobodyActorRef Instance = new();

    private static readonly ActorPath NobodyPath = ActorPath.Root(new Address("rama", "all-systems")) / "Nobody";

    private NobodyActorRef()
    {
    }

    public override ActorPath Path => NobodyPath;

    public override ActorSystemImpl? System => null;

    public override void Tell(object message, IActorRef? sender = null)
    {
    }
}

/// <summary><c>/deadLetters</c>: publishes every message as <see cref="DeadLetter"/> on the event stream.</summary>
internal sealed class DeadLetterActorRef(ActorSystemImpl system, ActorPath path) : MinimalActorRef
{
    public override ActorPath Path { get; } = path;

    public override ActorSystemImpl System { get; } = system;

    public override void Tell(object message, IActorRef? sender = null)
    {
        switch (message)
        {
            case DeadLetter deadLetter:
                Publish(deadLetter);
                break;
            case Identify identify:
                sender?.Tell(new ActorIdentity(identify.MessageId, null), this);
                break;
            default:
                Publish(new DeadLetter(message, ResolveSender(sender) ?? System.DeadLetters, this));
                break;
        }
    }

    private void Publish(DeadLetter deadLetter)
    {
        // A dead letter about a dead letter would loop through dead subscribers; drop it.
        if (deadLetter.Message is DeadLetter)
        {
            return;
        }

        System.LogDeadLetter(deadLetter);
        System.EventStream.Publish(deadLetter);
    }
}

/// <summary>
/// The parent of the root guardian (Akka's "bubble walker"): stops the root when it fails and
/// completes the system's termination when the root has stopped.
/// </summary>
internal sealed class RootParentActorRef(ActorSystemImpl system, ActorPath path) : MinimalActorRef
{
    public override ActorPath Path { get; } = path;

    public override ActorSystemImpl System { get; } = system;

    public override bool IsTerminated => false;

    public override void Tell(object message, IActorRef? sender = null)
    {
    }

    public override void SendSystemMessage(SystemMessage message)
    {
        switch (message)
        {
            case Failed failed:
                System.LogGuardianFailed(failed.Cause);
                ((IInternalActorRef)failed.Child).Stop();
                break;
            case DeathWatchNotification notification when notification.Actor.Equals(System.RootGuardian):
                System.OnRootTerminated();
                break;
        }
    }
}

/// <summary><c>/temp</c>: holds short-lived references such as Ask's promise actors.</summary>
internal sealed class TempContainer(ActorSystemImpl system, ActorPath path) : MinimalActorRef
{
    private readonly ConcurrentDictionary<string, IInternalActorRef> _children = new(StringComparer.Ordinal);
    private long _counter;

    public override ActorPath Path { get; } = path;

    public override ActorSystemImpl System { get; } = system;

    public override bool IsTerminated => false;

    public override void Tell(object message, IActorRef? sender = null) =>
        System.DeadLetters.Tell(new DeadLetter(message, sender ?? System.DeadLetters, this));

    public ActorPath NewTempPath() => Path / ActorNames.Auto(Interlocked.Increment(ref _counter) - 1);

    public void Add(IInternalActorRef actor) => _children[actor.Path.Name] = actor;

    public void Remove(IInternalActorRef actor) => _children.TryRemove(actor.Path.Name, out _);

    public IInternalActorRef? Get(string name) => _children.GetValueOrDefault(name);
}
