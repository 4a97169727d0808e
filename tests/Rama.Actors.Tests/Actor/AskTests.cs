using System.Diagnostics;
using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class AskTests : TestKit.TestKit
{
    public AskTests()
        : base(settings: new ActorSystemSettings { AskTimeout = TimeSpan.FromMilliseconds(300) })
    {
    }

    private sealed class SilentActor : ReceiveActor
    {
        public SilentActor() => ReceiveAny(_ => { });
    }

    private sealed class FailingReplier : ReceiveActor
    {
        public static readonly InvalidOperationException Failure = new("no such record");

        public FailingReplier() => ReceiveAny(_ => Sender.Tell(new Status.Failure(Failure), Self));
    }

    [Fact]
    public void Tell_delivers_with_the_given_sender()
    {
        var echo = Sys.ActorOf(Props.Create<EchoActor>());

        echo.Tell("hello", TestActor);

        ExpectMsg("hello");
        Assert.Equal(echo, LastSender);
    }

    [Fact]
    public async Task Ask_completes_with_the_reply_sent_by_a_temporary_actor()
    {
        var echo = Sys.ActorOf(Props.Create<EchoActor>());

        Assert.Equal(42, await echo.Ask<int>(42, TimeSpan.FromSeconds(3)));
    }

    [Fact]
    public async Task The_ask_sender_is_a_temporary_actor_under_temp()
    {
        var forwarder = Sys.ActorOf(Props.Create(() => new ForwardingActor(TestActor)));

        var reply = forwarder.Ask<string>("question", TimeSpan.FromSeconds(3));
        ExpectMsg("question");
        Assert.Equal(["temp"], LastSender.Path.Elements.Take(1));
        Reply("answer");

        Assert.Equal("answer", await reply);
    }

    [Fact]
    public async Task Ask_fails_with_AskTimeoutException_after_the_given_timeout()
    {
        var silent = Sys.ActorOf(Props.Create<SilentActor>());
        var watch = Stopwatch.StartNew();

        await Assert.ThrowsAsync<AskTimeoutException>(() => silent.Ask<string>("anyone?", TimeSpan.FromMilliseconds(200)));

        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(150), TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task Ask_uses_the_settings_timeout_by_default()
    {
        var silent = Sys.ActorOf(Props.Create<SilentActor>());
        var watch = Stopwatch.StartNew();

        await Assert.ThrowsAsync<AskTimeoutException>(() => silent.Ask("anyone?"));

        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task A_status_failure_reply_faults_the_ask_with_its_exception()
    {
        var replier = Sys.ActorOf(Props.Create<FailingReplier>());

        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(() => replier.Ask<string>("get", TimeSpan.FromSeconds(3)));

        Assert.Same(FailingReplier.Failure, thrown);
    }

    [Fact]
    public async Task A_reply_of_another_type_faults_with_InvalidCastException()
    {
        var echo = Sys.ActorOf(Props.Create<EchoActor>());

        await Assert.ThrowsAsync<InvalidCastException>(() => echo.Ask<int>("not a number", TimeSpan.FromSeconds(3)));
    }

    [Fact]
    public async Task Cancelling_the_token_cancels_the_ask()
    {
        var silent = Sys.ActorOf(Props.Create<SilentActor>());
        using var cts = new CancellationTokenSource();

        var ask = silent.Ask<string>("anyone?", TimeSpan.FromSeconds(30), cts.Token);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ask);
    }

    [Fact]
    public async Task Asking_a_stopped_actor_fails_at_once()
    {
        var echo = Sys.ActorOf(Props.Create<EchoActor>());
        Watch(echo);
        Sys.Stop(echo);
        await ExpectTerminatedAsync(echo);

        await Assert.ThrowsAsync<AskTimeoutException>(() => echo.Ask<string>("hello", TimeSpan.FromSeconds(30)));
        await Assert.ThrowsAsync<AskTimeoutException>(() => ActorRefs.Nobody.Ask<string>("hello"));
    }

    [Fact]
    public void Forward_keeps_the_original_sender()
    {
        var forwarder = Sys.ActorOf(Props.Create(() => new ForwardingActor(TestActor)));
        var probe = CreateTestProbe();

        forwarder.Tell("via", probe.Ref);

        ExpectMsg("via");
        Assert.Equal(probe.Ref, LastSender);
    }

    [Fact]
    public void Tell_from_inside_an_actor_uses_the_actor_as_implicit_sender()
    {
        var probe = CreateTestProbe();
        var echo = Sys.ActorOf(Props.Create<EchoActor>());
        var relay = Sys.ActorOf(Props.Create(() => new ImplicitSender(echo, probe.Ref)));

        relay.Tell("ping");

        probe.ExpectMsg("ping");
        Assert.Equal(echo, probe.LastSender);
    }

    private sealed class ImplicitSender : ReceiveActor
    {
        public ImplicitSender(IActorRef echo, IActorRef probe)
        {
            Receive<string>(s => Sender.Equals(echo), s => probe.Tell(s, Sender));
            Receive<string>(s => echo.Tell(s));
        }
    }
}
