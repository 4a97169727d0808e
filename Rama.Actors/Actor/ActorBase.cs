namespace Rama.Actors.Actor;

/// <summary>
/// The base of every actor. Create actors through <see cref="Props"/> and <c>ActorOf</c>, never with
/// <see langword="new"/>. Lifecycle defaults follow Akka: PreRestart stops the children and calls
/// PostStop; PostRestart calls PreStart.
/// </summary>
public abstract class ActorBase
{
    private readonly ActorCell _cell;

    protected ActorBase()
    {
        _cell = ActorCell.TakeConstructing()
            ?? throw new ActorInitializationException(
                null, $"{GetType().Name} must be created through Props and ActorOf, not with 'new'.");
    }

    protected IActorContext Context => _cell;

    protected IActorRef Self => _cell.Self;

    /// <summary>The sender of the message being processed.</summary>
    protected IActorRef Sender => _cell.Sender;

    internal Receive InitialBehavior => Receive;

    /// <summary>Handles a message; returns false when it does not.</summary>
    protected abstract bool Receive(object message);

    protected virtual void PreStart()
    {
    }

    protected virtual void PostStop()
    {
    }

    protected virtual void PreRestart(Exception reason, object? message)
    {
        foreach (var child in Context.Children)
        {
            Context.Unwatch(child);
            Context.Stop(child);
        }

        PostStop();
    }

    protected virtual void PostRestart(Exception reason) => PreStart();

    /// <summary>
    /// A message no behavior handled: an unhandled <see cref="Terminated"/> fails the actor with
    /// <see cref="DeathPactException"/>; anything else is published as <see cref="UnhandledMessage"/>.
    /// </summary>
    protected virtual void Unhandled(object message)
    {
        if (message is Terminated terminated)
        {
            throw new DeathPactException(terminated.ActorRef);
        }

        _cell.SystemImpl.EventStream.Publish(new UnhandledMessage(message, Sender, Self));
    }

    /// <summary>How this actor supervises its children; <see cref="Props.WithSupervisorStrategy"/> wins over it.</summary>
    protected virtual SupervisorStrategy SupervisorStrategy() => Actor.SupervisorStrategy.DefaultStrategy;

    protected void Become(Receive receive) => _cell.Become(receive);

    protected void BecomeStacked(Receive receive) => _cell.BecomeStacked(receive);

    protected void UnbecomeStacked() => _cell.UnbecomeStacked();

    internal virtual void AfterConstruction()
    {
    }

    internal void InvokeUnhandled(object message) => Unhandled(message);

    internal SupervisorStrategy InvokeSupervisorStrategy() => SupervisorStrategy();

    internal void AroundPreStart() => PreStart();

    internal void AroundPostStop() => PostStop();

    internal void AroundPreRestart(Exception reason, object? message) => PreRestart(reason, message);

    internal void AroundPostRestart(Exception reason) => PostRestart(reason);

    /// <summary>Runs an async handler with Akka's ReceiveAsync semantics (no other message until it completes).</summary>
    private protected void RunTask(Func<Task> handler) => _cell.RunTask(handler);
}

/// <summary>A behavior that handles every message it is given.</summary>
public delegate void UntypedReceive(object message);

/// <summary>An actor with one <see cref="OnReceive"/> method; call <see cref="ActorBase.Unhandled"/> for what it does not handle.</summary>
public abstract class UntypedActor : ActorBase
{
    protected sealed override bool Receive(object message)
    {
        OnReceive(message);
        return true;
    }

    protected abstract void OnReceive(object message);

    protected void Become(UntypedReceive receive) => Become(Wrap(receive));

    protected void BecomeStacked(UntypedReceive receive) => BecomeStacked(Wrap(receive));

    private static Receive Wrap(UntypedReceive receive) => message =>
    {
        receive(message);
        return true;
    };
}
