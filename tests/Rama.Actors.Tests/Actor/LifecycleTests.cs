using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class LifecycleTests : TestKit.TestKit
{
    private sealed class HookRecorder : ReceiveActor
    {
        private readonly IActorRef _probe;

        public HookRecorder(IActorRef probe)
        {
            _probe = probe;
            probe.Tell("constructor");
            Receive<string>(s => s == "fail", _ => throw new InvalidOperationException("fail"));
            Receive<string>(s => s == "child", _ => Context.ActorOf(Props.Create(() => new ChildRecorder(probe)), "child"));
        }

        protected override void PreStart() => _probe.Tell("PreStart");

        protected override void PostStop() => _probe.Tell("PostStop");

        protected override void PreRestart(Exception reason, object? message)
        {
            _probe.Tell($"PreRestart {reason.Message} {message}");
            base.PreRestart(reason, message);
        }

        protected override void PostRestart(Exception reason)
        {
            _probe.Tell($"PostRestart {reason.Message}");
            base.PostRestart(reason);
        }
    }

    private sealed class ChildRecorder : ReceiveActor
    {
        private readonly IActorRef _probe;

        public ChildRecorder(IActorRef probe)
        {
            _probe = probe;
            ReceiveAny(_ => { });
        }

        protected override void PreStart() => _probe.Tell("child PreStart");

        protected override void PostStop() => _probe.Tell("child PostStop");
    }

    [Fact]
    public void Hooks_run_in_Akka_order_on_start_restart_and_stop()
    {
        var actor = Sys.ActorOf(Props.Create(() => new HookRecorder(TestActor)));
        ExpectMsg("constructor");
        ExpectMsg("PreStart");

        actor.Tell("fail");
        ExpectMsg("PreRestart fail fail");
        ExpectMsg("PostStop");
        ExpectMsg("constructor");
        ExpectMsg("PostRestart fail");
        ExpectMsg("PreStart");

        Sys.Stop(actor);
        ExpectMsg("PostStop");
        ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void The_default_PreRestart_stops_the_children_before_the_new_instance_starts()
    {
        var actor = Sys.ActorOf(Props.Create(() => new HookRecorder(TestActor)));
        ExpectMsg("constructor");
        ExpectMsg("PreStart");
        actor.Tell("child");
        ExpectMsg("child PreStart");

        actor.Tell("fail");

        ExpectMsg("PreRestart fail fail");

        // The child stops on its own thread while the parent's PostStop runs: either may come first.
        Assert.Equal(["PostStop", "child PostStop"], ReceiveN(2).Cast<string>().Order());
        ExpectMsg("constructor");
        ExpectMsg("PostRestart fail");
        ExpectMsg("PreStart");
    }

    [Fact]
    public void Stopping_a_parent_stops_its_children_first()
    {
        var actor = Sys.ActorOf(Props.Create(() => new HookRecorder(TestActor)));
        ExpectMsg("constructor");
        ExpectMsg("PreStart");
        actor.Tell("child");
        ExpectMsg("child PreStart");

        Sys.Stop(actor);

        ExpectMsg("child PostStop");
        ExpectMsg("PostStop");
    }

    [Fact]
    public async Task Terminating_the_system_stops_every_actor()
    {
        // The actors live in a system of their own: the test actor (in Sys) must outlive the system being
        // terminated, or the last PostStop could reach it after it was stopped (system messages go first).
        await using var system = ActorSystem.Create("terminated");
        var actor = system.ActorOf(Props.Create(() => new HookRecorder(TestActor)));
        ExpectMsg("constructor");
        ExpectMsg("PreStart");
        actor.Tell("child");
        ExpectMsg("child PreStart");

        await system.Terminate().WaitAsync(TimeSpan.FromSeconds(10));

        ExpectMsg("child PostStop");
        ExpectMsg("PostStop");
        Assert.True(system.WhenTerminated.IsCompletedSuccessfully);
        actor.Tell("after termination"); // goes to dead letters, no exception
    }
}
