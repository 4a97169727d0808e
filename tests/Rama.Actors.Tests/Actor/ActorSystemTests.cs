using Rama.Actors.Actor;

namespace Rama.Actors.Tests.Actor;

public sealed class ActorSystemTests : TestKit.TestKit
{
    public ActorSystemTests()
        : base(systemName: "paths")
    {
    }

    [Fact]
    public void Top_level_actors_live_under_user_with_a_local_address()
    {
        var actor = Sys.ActorOf(Props.Create<EchoActor>(), "echo");

        Assert.Equal("rama://paths/user/echo", actor.Path.ToString());
        Assert.Equal("/user/echo", actor.Path.ToStringWithoutAddress());
        Assert.Equal(Address.Local("paths"), actor.Path.Address);
        Assert.NotEqual(ActorPath.UndefinedUid, actor.Path.Uid);
        Assert.Equal("rama://paths/deadLetters", Sys.DeadLetters.Path.ToString());
        Assert.Equal(["system"], TestActor.Path.Elements.Take(1));
    }

    [Fact]
    public void Children_live_under_their_parent()
    {
        var parent = Sys.ActorOf(Props.Create(() => new ParentActor(Props.Create<EchoActor>(), null)), "parent");

        parent.Tell(new CreateChild("kid"), TestActor);

        var child = ExpectMsg<IActorRef>();
        Assert.Equal("rama://paths/user/parent/kid", child.Path.ToString());
        Assert.Equal(parent.Path, child.Path.Parent);
    }

    [Fact]
    public void Names_must_be_unique_among_siblings()
    {
        Sys.ActorOf(Props.Create<EchoActor>(), "same");

        Assert.Throws<InvalidActorNameException>(() => Sys.ActorOf(Props.Create<EchoActor>(), "same"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("$reserved")]
    [InlineData("a/b")]
    [InlineData("with space")]
    [InlineData("caf\u00e9")]
    public void Invalid_names_are_rejected(string name)
    {
        Assert.Throws<InvalidActorNameException>(() => Sys.ActorOf(Props.Create<EchoActor>(), name));
    }

    [Fact]
    public void Unnamed_actors_get_Akka_style_names()
    {
        var names = Enumerable.Range(0, 3).Select(_ => Sys.ActorOf(Props.Create<EchoActor>()).Path.Name).ToArray();

        Assert.Equal(["$a", "$b", "$c"], names);
    }

    [Fact]
    public async Task References_are_equal_by_path_and_uid()
    {
        var first = Sys.ActorOf(Props.Create<EchoActor>(), "reused");
        Watch(first);
        Sys.Stop(first);
        await ExpectTerminatedAsync(first);

        // The name is free again once the parent has seen the child stop.
        IActorRef? second = null;
        await AwaitAssertAsync(() =>
        {
            second = Sys.ActorOf(Props.Create<EchoActor>(), "reused");
            return Task.CompletedTask;
        });

        Assert.Equal(first.Path, second!.Path);
        Assert.NotEqual(first, second);
        Assert.Equal(first, first.Path.Uid == second.Path.Uid ? second : first);
    }

    [Fact]
    public void Paths_parse_back_with_remote_addresses_and_uids()
    {
        var path = ActorPath.Parse("rama://fleet@10.0.0.1:4054/user/listener/conn#42");

        Assert.Equal(new Address("rama", "fleet", "10.0.0.1", 4054), path.Address);
        Assert.Equal(["user", "listener", "conn"], path.Elements);
        Assert.Equal(42, path.Uid);
        Assert.Equal("rama://fleet@10.0.0.1:4054/user/listener/conn#42", path.ToSerializationFormat());
        Assert.Equal(ActorPath.Parse("rama://fleet@10.0.0.1:4054/user/listener/conn"), path);
        Assert.False(ActorPath.TryParse("not a path", out _));
    }

    [Fact]
    public void System_names_are_validated()
    {
        Assert.Throws<ArgumentException>(() => ActorSystem.Create("bad name"));
        Assert.Throws<ArgumentException>(() => ActorSystem.Create("-leading"));
    }

    [Fact]
    public async Task Actors_cannot_be_created_after_termination()
    {
        await Sys.Terminate();

        Assert.True(Sys.WhenTerminated.IsCompleted);
        Assert.Throws<InvalidOperationException>(() => Sys.ActorOf(Props.Create<EchoActor>()));
    }
}

public sealed class GuardianEscalationTests
{
    private sealed class Failing : ReceiveActor
    {
        public Failing() => ReceiveAny(_ => throw new InvalidOperationException("top-level failure"));
    }

    [Fact]
    public async Task A_failure_escalated_past_user_stops_the_guardian_and_terminates_the_system()
    {
        await using var system = ActorSystem.Create("escalating", new ActorSystemSettings
        {
            GuardianSupervisorStrategy = new OneForOneStrategy(_ => Directive.Escalate),
        });
        var actor = system.ActorOf(Props.Create<Failing>());

        actor.Tell("fail");

        await system.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
