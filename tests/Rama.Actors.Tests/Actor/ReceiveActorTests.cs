using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class ReceiveActorTests : TestKit.TestKit
{
    private sealed class Matcher : ReceiveActor
    {
        public Matcher()
        {
            Receive<int>(i => i < 0, i => Sender.Tell($"negative {i}"));
            Receive<int>(i => Sender.Tell($"int {i}"));
            Receive<string>(s => Sender.Tell($"string {s}"));
        }
    }

    [Fact]
    public void The_first_handler_whose_type_and_predicate_match_handles_the_message()
    {
        var actor = Sys.ActorOf(Props.Create<Matcher>());

        actor.Tell(-1, TestActor);
        actor.Tell(1, TestActor);
        actor.Tell("s", TestActor);

        ExpectMsg("negative -1");
        ExpectMsg("int 1");
        ExpectMsg("string s");
    }

    [Fact]
    public void An_unhandled_message_is_published_as_UnhandledMessage()
    {
        var actor = Sys.ActorOf(Props.Create<Matcher>());
        Sys.EventStream.Subscribe<UnhandledMessage>(TestActor);

        actor.Tell(2.5, TestActor);

        var unhandled = ExpectMsg<UnhandledMessage>();
        Assert.Equal(2.5, unhandled.Message);
        Assert.Equal(actor, unhandled.Recipient);
        Assert.Equal(TestActor, unhandled.Sender);
    }

    private sealed class AsyncWorker : ReceiveActor
    {
        public AsyncWorker(IActorRef probe)
        {
            ReceiveAsync<int>(async i =>
            {
                probe.Tell($"start {i}");
                await Task.Delay(i % 3 == 0 ? 5 : 1);
                await Task.Yield();
                probe.Tell($"end {i}");
                Sender.Tell($"reply {i}", Self);
            });
            ReceiveAsync<string>(s => s == "fail", async _ =>
            {
                await Task.Yield();
                throw new InvalidOperationException("async failure");
            });
            Receive<string>(s => probe.Tell(s));
        }
    }

    [Fact]
    public void ReceiveAsync_processes_nothing_else_until_its_task_completes()
    {
        var probe = CreateTestProbe();
        var actor = Sys.ActorOf(Props.Create(() => new AsyncWorker(probe.Ref)));

        for (var i = 0; i < 10; i++)
        {
            actor.Tell(i, TestActor);
        }

        actor.Tell("sync after", TestActor);

        for (var i = 0; i < 10; i++)
        {
            probe.ExpectMsg($"start {i}");
            probe.ExpectMsg($"end {i}");
        }

        probe.ExpectMsg("sync after");
    }

    [Fact]
    public void Sender_and_Self_stay_valid_after_await()
    {
        var actor = Sys.ActorOf(Props.Create(() => new AsyncWorker(ActorRefs.Nobody)));

        actor.Tell(7, TestActor);

        ExpectMsg("reply 7");
        Assert.Equal(actor, LastSender);
    }

    [Fact]
    public void A_faulted_ReceiveAsync_task_fails_the_actor_and_the_supervisor_restarts_it()
    {
        var actor = Sys.ActorOf(Props.Create(() => new AsyncWorker(ActorRefs.Nobody)));
        actor.Tell(1, TestActor);
        ExpectMsg("reply 1");

        actor.Tell("fail", TestActor);
        actor.Tell(2, TestActor);

        ExpectMsg("reply 2");
    }

    private sealed class Switcher : ReceiveActor
    {
        public Switcher()
        {
            Normal();
        }

        private void Normal()
        {
            Receive<string>(s => s == "angry", _ => Become(Angry));
            Receive<string>(s => s == "push-happy", _ => BecomeStacked(Happy));
            Receive<string>(s => Sender.Tell($"normal {s}"));
        }

        private void Angry()
        {
            Receive<string>(s => s == "calm", _ => Become(Normal));
            Receive<string>(s => Sender.Tell($"angry {s}"));
        }

        private void Happy()
        {
            Receive<string>(s => s == "pop", _ => UnbecomeStacked());
            Receive<string>(s => Sender.Tell($"happy {s}"));
        }
    }

    [Fact]
    public void Become_replaces_the_behavior_and_BecomeStacked_UnbecomeStacked_push_and_pop()
    {
        var actor = Sys.ActorOf(Props.Create<Switcher>());

        actor.Tell("a", TestActor);
        actor.Tell("angry", TestActor);
        actor.Tell("b", TestActor);
        actor.Tell("calm", TestActor);
        actor.Tell("c", TestActor);
        actor.Tell("push-happy", TestActor);
        actor.Tell("d", TestActor);
        actor.Tell("pop", TestActor);
        actor.Tell("e", TestActor);

        ExpectMsg("normal a");
        ExpectMsg("angry b");
        ExpectMsg("normal c");
        ExpectMsg("happy d");
        ExpectMsg("normal e");
    }

    private sealed class UntypedCounter : UntypedActor
    {
        private int _count;

        protected override void OnReceive(object message)
        {
            switch (message)
            {
                case "inc":
                    _count++;
                    break;
                case "double":
                    Become(m =>
                    {
                        if (m is "inc")
                        {
                            _count += 2;
                        }
                        else
                        {
                            OnReceive(m);
                        }
                    });
                    break;
                case "get":
                    Sender.Tell(_count);
                    break;
                default:
                    Unhandled(message);
                    break;
            }
        }
    }

    [Fact]
    public void UntypedActor_handles_messages_in_OnReceive_and_can_become()
    {
        var actor = Sys.ActorOf(Props.Create<UntypedCounter>());

        actor.Tell("inc", TestActor);
        actor.Tell("double", TestActor);
        actor.Tell("inc", TestActor);
        actor.Tell("get", TestActor);

        ExpectMsg(3);
    }

    [Fact]
    public void Creating_an_actor_with_new_is_rejected()
    {
        Assert.Throws<ActorInitializationException>(() => new UntypedCounter());
    }

    private sealed class Identified : ReceiveActor
    {
        public Identified() => ReceiveAny(_ => { });
    }

    [Fact]
    public void Identify_is_answered_with_the_actor_reference()
    {
        var actor = Sys.ActorOf(Props.Create<Identified>());

        actor.Tell(new Identify("id-1"), TestActor);

        Assert.Equal(new ActorIdentity("id-1", actor), ExpectMsg<ActorIdentity>());
    }

    private sealed class Idle : ReceiveActor
    {
        public Idle(IActorRef probe)
        {
            Receive<ReceiveTimeout>(_ =>
            {
                probe.Tell("idle");
                Context.SetReceiveTimeout(null);
            });
            ReceiveAny(_ => { });
        }

        protected override void PreStart() => Context.SetReceiveTimeout(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void ReceiveTimeout_arrives_after_the_idle_time_and_can_be_turned_off()
    {
        Sys.ActorOf(Props.Create(() => new Idle(TestActor)));

        ExpectMsg("idle");
        ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }
}
