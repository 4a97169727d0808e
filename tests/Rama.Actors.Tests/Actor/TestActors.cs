using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

/// <summary>Replies with what it gets.</summary>
internal sealed class EchoActor : ReceiveActor
{
    public EchoActor() => ReceiveAny(m => Sender.Tell(m, Self));
}

/// <summary>Forwards everything to a probe (keeping the sender), fails on "fail".</summary>
internal sealed class ForwardingActor : ReceiveActor
{
    public ForwardingActor(IActorRef target)
    {
        Receive<string>(s => s == "fail", _ => throw new InvalidOperationException("boom"));
        ReceiveAny(m => target.Forward(m));
    }
}

/// <summary>A counter whose state shows restarts (reset) and resumes (kept); reports its lifecycle to a probe.</summary>
internal sealed class CounterActor : ReceiveActor
{
    private int _count;

    public CounterActor(IActorRef probe)
    {
        Receive<string>(s => s == "inc", _ => _count++);
        Receive<string>(s => s == "get", _ => Sender.Tell(_count, Self));
        Receive<string>(s => s == "fail", _ => throw new InvalidOperationException("counter failed"));
        Receive<string>(s => s == "fail-arg", _ => throw new ArgumentException("counter failed with argument"));
        Probe = probe;
    }

    private IActorRef Probe { get; }

    protected override void PreStart() => Probe.Tell($"started {Self.Path.Name}");

    protected override void PostRestart(Exception reason)
    {
        Probe.Tell($"restarted {Self.Path.Name}");
        base.PostRestart(reason);
    }

    protected override void PostStop() => Probe.Tell($"stopped {Self.Path.Name}");
}

/// <summary>Creates children from the given props on request and forwards to them: ("create", name) and (name, message).</summary>
internal sealed class ParentActor : ReceiveActor
{
    public ParentActor(Props childProps, IActorRef? probe = null)
    {
        Receive<CreateChild>(c => Sender.Tell(Context.ActorOf(childProps, c.Name), Self));
        Receive<ToChild>(t => Context.Child(t.Name).Forward(t.Message));
        Receive<string>(s => s == "fail", _ => throw new InvalidOperationException("parent failed"));
        if (probe is not null)
        {
            Probe = probe;
        }
    }

    private IActorRef Probe { get; } = ActorRefs.Nobody;

    protected override void PreStart() => Probe.Tell("parent started");

    protected override void PostRestart(Exception reason)
    {
        Probe.Tell("parent restarted");
        base.PostRestart(reason);
    }
}

internal sealed record CreateChild(string Name);

internal sealed record ToChild(string Name, object Message);

/// <summary>A decider that reports the exception (type name and message) to a probe before deciding.</summary>
internal static class Deciders
{
    public static Func<Exception, Directive> Reporting(IActorRef probe, Directive directive) => e =>
    {
        probe.Tell(new SupervisorSaw(e.GetType().Name, e.Message));
        return directive;
    };
}

internal sealed record SupervisorSaw(string ExceptionType, string Message);
