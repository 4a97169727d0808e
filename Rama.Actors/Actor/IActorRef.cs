namespace Rama.Actors.Actor;

/// <summary>
/// A location-transparent handle to an actor. Equal when path and uid are equal, wherever the
/// actor lives. Messages are plain objects; nothing here assumes the actor is in this process.
/// </summary>
public interface IActorRef : IEquatable<IActorRef>, IComparable<IActorRef>
{
    ActorPath Path { get; }

    /// <summary>
    /// Sends a message, fire and forget. A <see langword="null"/> sender means "the current actor"
    /// when called from inside an actor (Akka.NET's <c>Tell(message)</c>), and no sender elsewhere;
    /// pass <see cref="ActorRefs.Nobody"/> to send explicitly without sender from inside an actor.
    /// </summary>
    void Tell(object message, IActorRef? sender = null);
}

/// <summary>Creates actors: the <see cref="ActorSystem"/> (top level) and an actor's context (children).</summary>
public interface IActorRefFactory
{
    IActorRef ActorOf(Props props, string? name = null);
}

/// <summary>Well-known references.</summary>
public static class ActorRefs
{
    /// <summary>A reference to no actor: messages to it are dropped, watching it yields <see cref="Terminated"/>.</summary>
    public static readonly IActorRef Nobody = NobodyActorRef.Instance;

    /// <summary>No sender (Akka.NET's <c>ActorRefs.NoSender</c> is null as well).</summary>
    public static readonly IActorRef? NoSender;
}

public static class ActorRefExtensions
{
    /// <summary>
    /// Sends a message keeping the original sender: from inside an actor, the sender of the
    /// message being processed.
    /// </summary>
    public static void Forward(this IActorRef receiver, object message)
    {
        var cell = ActorCell.Current;
        receiver.Tell(message, cell is null ? ActorRefs.Nobody : cell.Sender);
    }

    /// <summary>True when the reference points to an actor (not null and not <see cref="ActorRefs.Nobody"/>).</summary>
    public static bool IsNobody(this IActorRef? actorRef) => actorRef is null || actorRef is NobodyActorRef;
}
