namespace Rama.Actors.Actor;

/// <summary>A reference to an actor of this process: delivers straight into its mailbox.</summary>
internal sealed class LocalActorRef : ActorRefBase
{
    public LocalActorRef(ActorSystemImpl system, Props props, IInternalActorRef parent, ActorPath path)
    {
        System = system;
        Path = path;
        var mailbox = new Mailbox(system.Settings.Throughput);
        Cell = new ActorCell(system, this, props, parent, mailbox);
        mailbox.SetCell(Cell);
    }

    public ActorCell Cell { get; }

    public override ActorPath Path { get; }

    public override ActorSystemImpl System { get; }

    public override bool IsTerminated => Cell.IsTerminated;

    /// <summary>Posts Create once the parent has registered the child.</summary>
    public void Start() => Cell.SendSystemMessage(Create.Instance);

    public override void Tell(object message, IActorRef? sender = null)
    {
        ArgumentNullException.ThrowIfNull(message);
        Cell.Post(new Envelope(message, ResolveSender(sender)));
    }

    public override void SendSystemMessage(SystemMessage message) => Cell.SendSystemMessage(message);

    public override void Stop() => Cell.SendSystemMessage(Terminate.Instance);
}
