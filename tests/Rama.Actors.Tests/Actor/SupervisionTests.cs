using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class SupervisionTests : TestKit.TestKit
{
    private IActorRef Parent(SupervisorStrategy strategy, IActorRef? probe = null) =>
        Sys.ActorOf(Props.Create(() => new ParentActor(Props.Create(() => new CounterActor(TestActor)), probe))
            .WithSupervisorStrategy(strategy));

    private IActorRef CreateChild(IActorRef parent, string name) => CreateChild(this, parent, name);

    /// <summary>The child's "started" report and the parent's reply come from two actors, in either order.</summary>
    private static IActorRef CreateChild(TestKit.TestKitBase kit, IActorRef parent, string name)
    {
        parent.Tell(new CreateChild(name), kit.TestActor);
        var received = kit.ReceiveN(2);
        Assert.Contains($"started {name}", received);
        return received.OfType<IActorRef>().Single();
    }

    /// <summary>What a restarting <see cref="CounterActor"/> reports: PostStop (default PreRestart), PostRestart, PreStart.</summary>
    private static void ExpectRestart(TestKit.TestKitBase kit, string name)
    {
        kit.ExpectMsg($"stopped {name}");
        kit.ExpectMsg($"restarted {name}");
        kit.ExpectMsg($"started {name}");
    }

    private int Count(IActorRef counter)
    {
        counter.Tell("get", TestActor);
        return ExpectMsg<int>();
    }

    [Fact]
    public void Restart_replaces_the_instance_and_resets_its_state()
    {
        var counter = Sys.ActorOf(Props.Create(() => new CounterActor(TestActor)), "counter");
        ExpectMsg("started counter");
        counter.Tell("inc");
        counter.Tell("inc");
        Assert.Equal(2, Count(counter));

        counter.Tell("fail");

        ExpectRestart(this, "counter");
        Assert.Equal(0, Count(counter));
    }

    [Fact]
    public void Resume_keeps_the_instance_and_its_state()
    {
        var parent = Parent(new OneForOneStrategy(_ => Directive.Resume));
        var child = CreateChild(parent, "c");
        child.Tell("inc");

        child.Tell("fail");
        child.Tell("inc");

        Assert.Equal(2, Count(child));
        ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void Stop_stops_the_failed_child()
    {
        var parent = Parent(new OneForOneStrategy(_ => Directive.Stop));
        var child = CreateChild(parent, "c");
        Watch(child);

        child.Tell("fail");

        ExpectMsg("stopped c");
        ExpectTerminated(child);
    }

    [Fact]
    public void The_decider_chooses_by_exception_type()
    {
        var parent = Parent(new OneForOneStrategy(e => e is ArgumentException ? Directive.Resume : Directive.Restart));
        var child = CreateChild(parent, "c");
        child.Tell("inc");

        child.Tell("fail-arg");
        Assert.Equal(1, Count(child));

        child.Tell("fail");
        ExpectRestart(this, "c");
        Assert.Equal(0, Count(child));
    }

    [Fact]
    public void Escalate_fails_the_parent_with_the_same_exception_for_its_own_supervisor()
    {
        var supervisorProbe = CreateTestProbe();
        var grandparentStrategy = new OneForOneStrategy(Deciders.Reporting(supervisorProbe.Ref, Directive.Stop));
        var grandparent = Sys.ActorOf(
            Props.Create(() => new ParentActor(
                Props.Create(() => new ParentActor(Props.Create(() => new CounterActor(TestActor)), null))
                    .WithSupervisorStrategy(new OneForOneStrategy(_ => Directive.Escalate)),
                null)).WithSupervisorStrategy(grandparentStrategy));
        grandparent.Tell(new CreateChild("parent"), TestActor);
        var parent = ExpectMsg<IActorRef>();
        var child = CreateChild(parent, "c");
        Watch(parent);

        child.Tell("fail");

        Assert.Equal(new SupervisorSaw(nameof(InvalidOperationException), "counter failed"), supervisorProbe.ExpectMsg<SupervisorSaw>());
        ExpectMsg("stopped c");
        ExpectTerminated(parent);
    }

    [Fact]
    public void AllForOne_restarts_the_siblings_too()
    {
        var parent = Parent(new AllForOneStrategy(_ => Directive.Restart));
        var first = CreateChild(parent, "first");
        var second = CreateChild(parent, "second");
        second.Tell("inc");
        Assert.Equal(1, Count(second)); // the increment is processed before the failure (else the new instance could count it)

        first.Tell("fail");

        var events = ReceiveN(6).Cast<string>().Order().ToArray();
        Assert.Equal(
            ["restarted first", "restarted second", "started first", "started second", "stopped first", "stopped second"],
            events);
        Assert.Equal(0, Count(second));
    }

    [Fact]
    public void AllForOne_stop_stops_all_children()
    {
        var parent = Parent(new AllForOneStrategy(_ => Directive.Stop));
        var first = CreateChild(parent, "first");
        var second = CreateChild(parent, "second");
        Watch(first);
        Watch(second);

        first.Tell("fail");

        var stopped = ReceiveN(4).Select(m => m is Terminated t ? $"terminated {t.ActorRef.Path.Name}" : (string)m).Order();
        Assert.Equal(["stopped first", "stopped second", "terminated first", "terminated second"], stopped);
    }

    [Fact]
    public void Exceeding_maxNrOfRetries_within_the_window_stops_the_child()
    {
        var parent = Parent(new OneForOneStrategy(2, TimeSpan.FromSeconds(30), _ => Directive.Restart));
        var child = CreateChild(parent, "c");
        Watch(child);

        for (var restart = 0; restart < 2; restart++)
        {
            child.Tell("fail");
            ExpectRestart(this, "c");
        }

        child.Tell("fail");

        ExpectMsg("stopped c");
        ExpectTerminated(child);
    }

    [Fact]
    public void A_new_window_allows_restarts_again()
    {
        var time = new ManualTime();
        using var kit = new TestKit.TestKit(settings: new ActorSystemSettings { TimeProvider = time }, systemName: "window");
        var parent = kit.Sys.ActorOf(Props.Create(() => new ParentActor(Props.Create(() => new CounterActor(kit.TestActor)), null))
            .WithSupervisorStrategy(new OneForOneStrategy(1, TimeSpan.FromSeconds(10), _ => Directive.Restart)));
        var child = CreateChild(kit, parent, "c");

        child.Tell("fail");
        ExpectRestart(kit, "c");

        time.Advance(TimeSpan.FromSeconds(11));
        child.Tell("fail");
        ExpectRestart(kit, "c");
    }

    private sealed class FailingConstructor : ReceiveActor
    {
        public FailingConstructor() => throw new InvalidOperationException("cannot start");
    }

    [Fact]
    public void A_failing_constructor_stops_the_actor_with_ActorInitializationException()
    {
        var supervisorProbe = CreateTestProbe();
        var parent = Sys.ActorOf(Props.Create(() => new ParentActor(Props.Create<FailingConstructor>(), null))
            .WithSupervisorStrategy(new OneForOneStrategy(e =>
            {
                supervisorProbe.Ref.Tell(e);
                return SupervisorStrategy.DefaultDecider(e);
            })));

        parent.Tell(new CreateChild("broken"), TestActor);
        var child = ExpectMsg<IActorRef>();
        Watch(child);

        var exception = supervisorProbe.ExpectMsg<ActorInitializationException>();
        Assert.Equal("cannot start", exception.InnerException?.Message);
        ExpectTerminated(child);
    }

    [Fact]
    public void Kill_makes_the_actor_fail_with_ActorKilledException_and_stop()
    {
        var counter = Sys.ActorOf(Props.Create(() => new CounterActor(TestActor)), "killed");
        ExpectMsg("started killed");
        Watch(counter);

        counter.Tell(Kill.Instance);

        ExpectMsg("stopped killed");
        ExpectTerminated(counter);
    }

    [Fact]
    public void A_restarted_parent_stops_its_children_by_default()
    {
        var parent = Parent(SupervisorStrategy.DefaultStrategy, TestActor);
        ExpectMsg("parent started");
        var child = CreateChild(parent, "c");
        Watch(child);

        parent.Tell("fail");

        var events = ReceiveN(4).Select(m => m is Terminated ? "terminated" : (string)m).Order();
        Assert.Equal(["parent restarted", "parent started", "stopped c", "terminated"], events);
    }
}

/// <summary>A clock the test moves by hand; timers are not supported (not needed where used).</summary>
internal sealed class ManualTime : TimeProvider
{
    private long _ticks = 1;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _ticks);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}
