using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.TestKit;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Listeners;
using Rama.Actors.Shutdown;

namespace Rama.Actors.Tests.Shutdown;

/// <summary>The phase a node reports, from its membership status, its listeners and whether coordinated shutdown runs.</summary>
public sealed class FleetPhaseTests
{
    private static ListenersStatus Listeners(bool draining, params (bool Bound, bool Draining, int Open)[] listeners) =>
        new([.. listeners.Select((l, i) => new ListenerStatus($"l{i}", "127.0.0.1:1", l.Bound, l.Draining, l.Open, 10))], draining);

    [Theory]
    [InlineData(MemberStatus.Up, false, false, true, FleetPhase.Serving)]
    [InlineData(MemberStatus.Joining, false, false, true, FleetPhase.Starting)]
    [InlineData(MemberStatus.WeaklyUp, false, false, true, FleetPhase.Starting)]
    [InlineData(MemberStatus.Up, false, false, false, FleetPhase.Starting)]
    [InlineData(MemberStatus.Up, true, false, true, FleetPhase.Draining)]
    [InlineData(MemberStatus.Up, false, true, false, FleetPhase.Draining)]
    [InlineData(MemberStatus.Leaving, true, true, false, FleetPhase.Leaving)]
    [InlineData(MemberStatus.Exiting, false, false, true, FleetPhase.Leaving)]
    public void Phase_follows_membership_then_draining_then_bound_listeners(MemberStatus member, bool stopping, bool draining, bool secondBound, string expected)
    {
        var status = Listeners(draining, (true, draining, 2), (secondBound, draining, 3));
        var phase = FleetMemberActor.Phase("akka.tcp://rama@127.0.0.1:1", member, stopping, status);
        Assert.Equal(expected, phase.Phase);
        Assert.Equal(member.ToString(), phase.MemberStatus);
        Assert.Equal((2, secondBound ? 2 : 1, 5, 20L), (phase.Listeners, phase.Bound, phase.OpenConnections, phase.AcceptedConnections));
    }
}

/// <summary>
/// The member actor and the coordinator in a cluster of one (this test system, role proxy, joined to itself): the
/// coordinator finds the member actor at its well-known path, reports its phase, and drains it through coordinated shutdown.
/// </summary>
public sealed class FleetCoordinatorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly Config ClusterOfOne = ConfigurationFactory.ParseString("""
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.hostname = 127.0.0.1
        akka.remote.dot-netty.tcp.port = 0
        akka.cluster.roles = [proxy]
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        akka.coordinated-shutdown.terminate-actor-system = on
        """);

    public FleetCoordinatorTests() : base(ClusterOfOne)
    {
        var cluster = Cluster.Get(Sys);
        cluster.Join(cluster.SelfAddress);
        AwaitCondition(() => cluster.SelfMember.Status == MemberStatus.Up, TimeSpan.FromSeconds(10));
    }

    /// <summary>A listener supervisor that answers status with <paramref name="status"/>.</summary>
    private TestProbe Supervisor(ListenersStatus status)
    {
        var probe = CreateTestProbe();
        probe.SetAutoPilot(new DelegateAutoPilot((sender, message) =>
        {
            if (message is GetListenerStatus)
            {
                sender.Tell(status);
            }

            return AutoPilot.KeepRunning;
        }));
        return probe;
    }

    private static readonly ListenersStatus TwoOpen = new([new ListenerStatus("edge", "127.0.0.1:8080", true, false, 2, 7)], false);

    [Fact]
    public async Task Status_lists_the_member_with_its_phase_and_open_connections_asked_at_its_well_known_path()
    {
        Sys.ActorOf(FleetMemberActor.Props(Supervisor(TwoOpen), NullLogger.Instance), FleetMemberActor.Name);
        var coordinator = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));

        var status = await coordinator.Ask<FleetStatus>(GetFleetStatus.Instance, TimeSpan.FromSeconds(10));
        var self = Cluster.Get(Sys).SelfAddress.ToString();
        Assert.Equal(self, status.Coordinator);
        var member = Assert.Single(status.Members);
        Assert.Equal((self, "proxy", "Up", FleetPhase.Serving), (member.Address, member.Roles, member.MemberStatus, member.Phase));
        Assert.Equal((2, 1, 1), (member.OpenConnections, member.Listeners, member.Bound));
    }

    [Fact]
    public async Task The_messages_that_cross_the_wire_round_trip_through_the_systems_serializer()
    {
        var coordinator = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));
        Sys.ActorOf(FleetMemberActor.Props(Supervisor(TwoOpen), NullLogger.Instance), FleetMemberActor.Name);
        var status = await coordinator.Ask<FleetStatus>(GetFleetStatus.Instance, TimeSpan.FromSeconds(10));
        var phase = await Sys.ActorSelection("/user/" + FleetMemberActor.Name).Ask<MemberPhase>(GetMemberPhase.Instance, TimeSpan.FromSeconds(5));
        object[] messages = [status, phase, GetFleetStatus.Instance, GetMemberPhase.Instance, new DrainMember("test"), new MemberDrainStarted("a", false), DrainFleet.Instance];
        foreach (var message in messages)
        {
            var serializer = Sys.Serialization.FindSerializerFor(message);
            var back = Sys.Serialization.Deserialize(serializer.ToBinary(message), serializer.Identifier, message.GetType());
            Assert.Equal(message.GetType(), back.GetType());
        }

        var roundTrip = (FleetStatus)Sys.Serialization.Deserialize(Sys.Serialization.FindSerializerFor(status).ToBinary(status), Sys.Serialization.FindSerializerFor(status).Identifier, typeof(FleetStatus));
        Assert.Equal(status.Members.Single(), roundTrip.Members.Single());
    }

    [Fact]
    public async Task Drain_answers_with_the_proxy_members_in_a_form_the_serializer_can_carry_to_another_node()
    {
        var coordinator = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));
        var drain = await coordinator.Ask<FleetDrainStarted>(DrainFleet.Instance, TimeSpan.FromSeconds(10));
        var serializer = Sys.Serialization.FindSerializerFor(drain);
        // Without the type's manifest, as Akka.Remote's JSON serializer sends it: the payload names its own types.
        var back = (FleetDrainStarted)serializer.FromBinary(serializer.ToBinary(drain), null!);
        Assert.Equal(drain.Draining, back.Draining);
    }

    [Fact]
    public async Task A_proxy_member_without_a_member_actor_is_listed_as_no_answer()
    {
        var coordinator = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));

        var status = await coordinator.Ask<FleetStatus>(GetFleetStatus.Instance, TimeSpan.FromSeconds(10));
        var member = Assert.Single(status.Members);
        Assert.Equal(FleetPhase.NoAnswer, member.Phase);
        Assert.Null(member.OpenConnections);
    }

    [Fact]
    public async Task Drain_runs_the_nodes_coordinated_shutdown_from_its_first_phase_with_the_fleet_drain_reason()
    {
        var unbinding = CreateTestProbe();
        var shutdown = CoordinatedShutdown.Get(Sys);
        shutdown.AddTask(CoordinatedShutdown.PhaseServiceUnbind, "test-unbind", () =>
        {
            unbinding.Ref.Tell("service-unbind");
            return Task.FromResult(Akka.Done.Instance);
        });
        Sys.ActorOf(FleetMemberActor.Props(Supervisor(TwoOpen), NullLogger.Instance), FleetMemberActor.Name);
        var coordinator = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));

        var drain = await coordinator.Ask<FleetDrainStarted>(DrainFleet.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal([Cluster.Get(Sys).SelfAddress.ToString()], drain.Draining);
        unbinding.ExpectMsg("service-unbind", TimeSpan.FromSeconds(10));
        Assert.Same(FleetDrainReason.Instance, shutdown.ShutdownReason);
        Assert.Equal(0, FleetDrainReason.Instance.ExitCode);
        // The node leaves the fleet and its actor system terminates, as after SIGTERM.
        await Sys.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void A_second_drain_while_stopping_answers_already_stopping()
    {
        var member = Sys.ActorOf(FleetMemberActor.Props(Supervisor(TwoOpen), NullLogger.Instance), FleetMemberActor.Name);
        // Both at once: the node's actor system terminates soon after the first (a cluster of one leaves at once).
        member.Tell(new DrainMember("test"));
        member.Tell(new DrainMember("test again"));
        Assert.False(ExpectMsg<MemberDrainStarted>().AlreadyStopping);
        Assert.True(ExpectMsg<MemberDrainStarted>().AlreadyStopping);
    }
}
