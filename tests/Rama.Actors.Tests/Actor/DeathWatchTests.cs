using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class DeathWatchTests : TestKit.TestKit
{
    [Fact]
    public void Terminated_arrives_exactly_once_even_when_watched_twice()
    {
        var actor = Sys.ActorOf(Props.Create<EchoActor>());
        Watch(actor);
        Watch(actor);

        Sys.Stop(actor);

        var terminated = ExpectTerminated(actor);
        Assert.True(terminated.ExistenceConfirmed);
        Assert.False(terminated.AddressTerminated);
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void Watching_an_actor_that_is_already_dead_yields_Terminated()
    {
        var actor = Sys.ActorOf(Props.Create<EchoActor>());
        Watch(actor);
        Sys.Stop(actor);
        ExpectTerminated(actor);

        var late = CreateTestProbe();
        late.Watch(actor);

        late.ExpectTerminated(actor);
        late.Watch(ActorRefs.Nobody);
        late.ExpectTerminated(ActorRefs.Nobody);
    }

    [Fact]
    public void Unwatch_means_no_Terminated()
    {
        var actor = Sys.ActorOf(Props.Create<EchoActor>());
        Watch(actor);
        Unwatch(actor);

        Sys.Stop(actor);

        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    private sealed class CarelessWatcher : ReceiveActor
    {
        public CarelessWatcher()
        {
            var child = Context.Watch(Context.ActorOf(Props.Create<EchoActor>(), "child"));
            Receive<string>(s => s == "stop child", _ => Context.Stop(child));
        }
    }

    [Fact]
    public void Not_handling_Terminated_of_a_watched_actor_fails_with_DeathPactException()
    {
        var supervisorProbe = CreateTestProbe();
        var parent = Sys.ActorOf(Props.Create(() => new ParentActor(Props.Create<CarelessWatcher>(), null))
            .WithSupervisorStrategy(new OneForOneStrategy(Deciders.Reporting(supervisorProbe.Ref, Directive.Stop))));
        parent.Tell(new CreateChild("watcher"), TestActor);
        var watcher = ExpectMsg<IActorRef>();
        Watch(watcher);

        watcher.Tell("stop child");

        Assert.Equal(nameof(DeathPactException), supervisorProbe.ExpectMsg<SupervisorSaw>().ExceptionType);
        ExpectTerminated(watcher);
    }

    [Fact]
    public void PoisonPill_stops_the_actor_after_the_messages_sent_before_it()
    {
        var deadLetters = CreateTestProbe();
        Sys.EventStream.Subscribe<DeadLetter>(deadLetters.Ref);
        var actor = Sys.ActorOf(Props.Create<EchoActor>());
        Watch(actor);

        actor.Tell("a", TestActor);
        actor.Tell("b", TestActor);
        actor.Tell(PoisonPill.Instance, TestActor);
        actor.Tell("c", TestActor);

        ExpectMsg("a");
        ExpectMsg("b");
        ExpectTerminated(actor);
        Assert.Equal("c", deadLetters.ExpectMsg<DeadLetter>().Message);
    }

    [Fact]
    public void Messages_to_a_stopped_actor_are_published_as_dead_letters()
    {
        var actor = Sys.ActorOf(Props.Create<EchoActor>());
        Watch(actor);
        Sys.Stop(actor);
        ExpectTerminated(actor);
        Sys.EventStream.Subscribe<DeadLetter>(TestActor);

        actor.Tell("too late", TestActor);

        var deadLetter = ExpectMsg<DeadLetter>();
        Assert.Equal(new DeadLetter("too late", TestActor, actor), deadLetter);
    }

    [Fact]
    public void Unsubscribed_actors_get_no_more_events()
    {
        Sys.EventStream.Subscribe<DeadLetter>(TestActor);
        Sys.EventStream.Unsubscribe(TestActor, typeof(DeadLetter));

        Sys.DeadLetters.Tell("nobody wants this");

        ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }
}
