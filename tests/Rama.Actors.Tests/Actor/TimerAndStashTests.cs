using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class TimerAndStashTests : TestKit.TestKit
{
    private sealed class TimedActor : ReceiveActor, IWithTimers
    {
        public TimedActor(IActorRef probe)
        {
            Receive<string>(s => s == "single", _ => Timers.StartSingleTimer("key", "tick", TimeSpan.FromMilliseconds(50)));
            Receive<string>(s => s == "slow-single", _ => Timers.StartSingleTimer("key", "tick", TimeSpan.FromSeconds(1)));
            Receive<string>(s => s == "slower-single", _ => Timers.StartSingleTimer("key", "tick", TimeSpan.FromSeconds(2)));
            Receive<string>(s => s == "periodic", _ => Timers.StartPeriodicTimer("key", "tick", TimeSpan.FromMilliseconds(30)));
            Receive<string>(s => s == "cancel", _ =>
            {
                Timers.Cancel("key");
                probe.Tell($"cancelled, active: {Timers.IsTimerActive("key")}");
            });
            Receive<string>(s => s == "active?", _ => probe.Tell($"active: {Timers.IsTimerActive("key")}"));
            Receive<string>(s => s == "fail", _ => throw new InvalidOperationException("fail"));
            Receive<string>(s => probe.Tell(s));
        }

        public ITimerScheduler Timers { get; set; } = null!;

        protected override void PostRestart(Exception reason) => Self.Tell("restarted");
    }

    [Fact]
    public void A_single_timer_fires_once()
    {
        var actor = Sys.ActorOf(Props.Create(() => new TimedActor(TestActor)));

        actor.Tell("single");

        ExpectMsg("tick");
        actor.Tell("active?");
        ExpectMsg("active: False");
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void A_periodic_timer_fires_until_cancelled()
    {
        var actor = Sys.ActorOf(Props.Create(() => new TimedActor(TestActor)));

        actor.Tell("periodic");
        ExpectMsg("tick");
        ExpectMsg("tick");
        ExpectMsg("tick");
        actor.Tell("cancel");

        FishForMessage<string>(s => s.StartsWith("cancelled", StringComparison.Ordinal));
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void Timers_are_cancelled_on_restart()
    {
        var actor = Sys.ActorOf(Props.Create(() => new TimedActor(TestActor)));

        actor.Tell("slow-single");
        actor.Tell("fail");

        ExpectMsg("restarted");
        actor.Tell("active?");
        ExpectMsg("active: False");
        ExpectNoMsg(TimeSpan.FromMilliseconds(1200));
    }

    [Fact]
    public void Timers_are_cancelled_on_stop()
    {
        var actor = Sys.ActorOf(Props.Create(() => new TimedActor(TestActor)));
        Sys.EventStream.Subscribe<DeadLetter>(TestActor);
        Watch(actor);

        // 2 s, so that the stop below lands long before the timer is due even on a loaded machine (with 1 s, a slow
        // "active?" round trip once let the timer fire first and its dead letter beat Terminated).
        actor.Tell("slower-single");
        actor.Tell("active?");
        ExpectMsg("active: True");
        Sys.Stop(actor);

        // A timer left running would send to the dead actor: a dead letter within 2 s.
        ExpectTerminated(actor);
        ExpectNoMsg(TimeSpan.FromMilliseconds(2300));
    }

    private sealed class Door : ReceiveActor, IWithUnboundedStash
    {
        public Door(IActorRef probe)
        {
            Receive<string>(s => s == "open", _ =>
            {
                Become(() =>
                {
                    Receive<string>(s => s == "close", _ => Become(Closed));
                    Receive<string>(s => probe.Tell($"in {s}"));
                });
                Stash.UnstashAll();
            });
            Receive<string>(_ => Stash.Stash());
            void Closed() => Receive<string>(_ => Stash.Stash());
        }

        public IStash Stash { get; set; } = null!;
    }

    [Fact]
    public void Stashed_messages_come_back_in_order_before_later_ones()
    {
        var actor = Sys.ActorOf(Props.Create(() => new Door(TestActor)));

        actor.Tell("a");
        actor.Tell("b");
        actor.Tell("c");
        actor.Tell("open");
        actor.Tell("d");

        ExpectMsg("in a");
        ExpectMsg("in b");
        ExpectMsg("in c");
        ExpectMsg("in d");
    }

    [Fact]
    public void Stashed_messages_of_a_stopped_actor_become_dead_letters()
    {
        var actor = Sys.ActorOf(Props.Create(() => new Door(TestActor)));
        Sys.EventStream.Subscribe<DeadLetter>(TestActor);
        Watch(actor);

        actor.Tell("a");
        actor.Tell(PoisonPill.Instance);

        Assert.Equal("a", ExpectMsg<DeadLetter>().Message);
        ExpectTerminated(actor);
    }

    [Fact]
    public async Task The_scheduler_sends_once_repeatedly_and_not_after_cancel()
    {
        var once = Sys.Scheduler.ScheduleTellOnce(TimeSpan.FromMilliseconds(20), TestActor, "once", ActorRefs.Nobody);
        await ExpectMsgAsync("once");
        Assert.False(once.IsCancellationRequested);

        var repeated = Sys.Scheduler.ScheduleTellRepeatedly(TimeSpan.Zero, TimeSpan.FromMilliseconds(20), TestActor, "again", ActorRefs.Nobody);
        await ExpectMsgAsync("again");
        await ExpectMsgAsync("again");
        repeated.Cancel();
        var cancelled = Sys.Scheduler.ScheduleTellOnce(TimeSpan.FromMilliseconds(50), TestActor, "never", ActorRefs.Nobody);
        cancelled.Cancel();

        // Ticks already on their way may still come; then it must go quiet for good.
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (await ReceiveOneAsync(TimeSpan.FromMilliseconds(100)) is { } late)
        {
            Assert.Equal("again", late.Message);
            Assert.True(DateTime.UtcNow < deadline, "the repeated timer kept firing after Cancel");
        }

        await ExpectNoMsgAsync(TimeSpan.FromMilliseconds(200));
    }
}
