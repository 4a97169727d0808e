using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.DistributedData;
using Akka.TestKit;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Shutdown;

namespace Rama.Actors.Tests.Shutdown;

/// <summary>The roll's decisions: one node at a time, the coordinator's own node last, the next only once N serve again.</summary>
public sealed class RollStepTests
{
    private const string A = "akka.tcp://rama@127.0.0.1:1#1";
    private const string B = "akka.tcp://rama@127.0.0.1:2#2";
    private const string C = "akka.tcp://rama@127.0.0.1:3#3";
    private const string BAgain = "akka.tcp://rama@127.0.0.1:2#22";

    private static RollPlan Plan(string? current = null) => new("r", DateTimeOffset.UnixEpoch, [A, B, C], 3, current, null);

    private static HashSet<string> Set(params string[] nodes) => [.. nodes];

    [Fact]
    public void The_first_step_drains_another_node_than_the_coordinators_own()
    {
        var next = RollStep.Next(Plan(), Set(A, B, C), Set(A, B, C), self: A);
        Assert.Equal(("drain", B), (next.Kind, next.Node));
    }

    [Fact]
    public void A_current_node_still_serving_is_asked_again_and_one_that_drains_is_waited_for()
    {
        Assert.Equal(("drain", B), (RollStep.Next(Plan(B), Set(A, B, C), Set(A, B, C), A).Kind, RollStep.Next(Plan(B), Set(A, B, C), Set(A, B, C), A).Node));
        Assert.Equal("wait", RollStep.Next(Plan(B), Set(A, B, C), Set(A, C), A).Kind);
    }

    [Fact]
    public void A_gone_node_is_rolled_only_when_it_or_a_replacement_serves_again()
    {
        Assert.Equal("wait", RollStep.Next(Plan(B), Set(A, C), Set(A, C), A).Kind);
        Assert.Equal("wait", RollStep.Next(Plan(B), Set(A, BAgain, C), Set(A, C), A).Kind);
        Assert.Equal("step-done", RollStep.Next(Plan(B), Set(A, BAgain, C), Set(A, BAgain, C), A).Kind);
    }

    [Fact]
    public void The_next_waits_for_N_serving_so_never_fewer_than_N_minus_1_serve()
    {
        Assert.Equal("wait", RollStep.Next(Plan(), Set(A, BAgain, C), Set(A, C), A).Kind);
        var next = RollStep.Next(Plan(), Set(A, BAgain, C), Set(A, BAgain, C), A);
        Assert.Equal(("drain", C), (next.Kind, next.Node));
    }

    [Fact]
    public void The_coordinators_own_node_goes_last_and_the_roll_is_done_when_every_original_is_gone_and_N_serve()
    {
        const string CAgain = "akka.tcp://rama@127.0.0.1:3#33";
        var last = RollStep.Next(Plan(), Set(A, BAgain, CAgain), Set(A, BAgain, CAgain), A);
        Assert.Equal(("drain", A), (last.Kind, last.Node));
        const string AAgain = "akka.tcp://rama@127.0.0.1:1#11";
        Assert.Equal("wait", RollStep.Next(Plan(), Set(BAgain, CAgain), Set(BAgain, CAgain), BAgain).Kind);
        Assert.Equal("done", RollStep.Next(Plan(), Set(AAgain, BAgain, CAgain), Set(AAgain, BAgain, CAgain), BAgain).Kind);
    }

    [Fact]
    public void The_plan_round_trips_as_json()
    {
        var plan = Plan(B) with { Finished = DateTimeOffset.UnixEpoch.AddSeconds(42) };
        Assert.Equal(plan with { Originals = [] }, RollPlan.FromJson(plan.ToJson())! with { Originals = [] });
        Assert.Equal(plan.Originals, RollPlan.FromJson(plan.ToJson())!.Originals);
        Assert.Equal("akka.tcp://rama@127.0.0.1:2", RollPlan.AddressOf(B));
    }
}

/// <summary>
/// The roll in a cluster of one: the plan is written to Akka.DistributedData before the node is told to drain, and a
/// coordinator started afterwards (the singleton moved) reads it and carries on.
/// </summary>
public sealed class RollCoordinatorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly Config ClusterOfOne = ConfigurationFactory.ParseString("""
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.hostname = 127.0.0.1
        akka.remote.dot-netty.tcp.port = 0
        akka.cluster.roles = [proxy]
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """);

    public RollCoordinatorTests() : base(ClusterOfOne)
    {
        var cluster = Cluster.Get(Sys);
        cluster.Join(cluster.SelfAddress);
        AwaitCondition(() => cluster.SelfMember.Status == MemberStatus.Up, TimeSpan.FromSeconds(10));
    }

    /// <summary>Stands at the member actor's path: answers "serving" and hands drain requests to <paramref name="drains"/>.</summary>
    private sealed class ServingMember : ReceiveActor
    {
        public ServingMember(IActorRef drains)
        {
            var address = Cluster.Get(Context.System).SelfAddress.ToString();
            Receive<GetMemberPhase>(_ => Sender.Tell(new MemberPhase(address, FleetPhase.Serving, "Up", 1, 1, 0, 0)));
            Receive<DrainMember>(drain => drains.Forward(drain));
        }
    }

    [Fact]
    public async Task The_plan_is_replicated_before_the_drain_and_a_new_coordinator_resumes_it()
    {
        var drains = CreateTestProbe();
        Sys.ActorOf(Props.Create(() => new ServingMember(drains.Ref)), FleetMemberActor.Name);
        var first = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));
        var self = RollPlan.NodeId(Cluster.Get(Sys).SelfUniqueAddress);

        RollProgress? started = null;
        await AwaitAssertAsync(async () =>
        {
            started = await first.Ask<RollProgress>(StartRoll.Instance, TimeSpan.FromSeconds(10));
            Assert.Equal("rolling", started.State); // "refused" while it still reads the plan
        }, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        Assert.Equal((1, 0), (started!.Nodes, started.Rolled));
        Assert.Equal("pbm fleet roll", drains.ExpectMsg<DrainMember>(TimeSpan.FromSeconds(10)).Why);

        var replicator = DistributedData.Get(Sys).Replicator;
        var read = await replicator.Ask<IGetResponse>(Dsl.Get(new LWWRegisterKey<string>(RollPlan.Key), ReadLocal.Instance), TimeSpan.FromSeconds(5));
        var plan = RollPlan.FromJson(((GetSuccess)read).Get(new LWWRegisterKey<string>(RollPlan.Key)).Value)!;
        Assert.Equal((self, true, 1), (plan.Current, plan.Rolling, plan.Target));

        // The singleton moves: the old one stops, a new one starts, reads the plan, and asks the same node again.
        await first.GracefulStop(TimeSpan.FromSeconds(5));
        drains.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        var second = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));
        Assert.Equal("pbm fleet roll", drains.ExpectMsg<DrainMember>(TimeSpan.FromSeconds(10)).Why);
        var status = await second.Ask<FleetStatus>(GetFleetStatus.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal(("rolling", Cluster.Get(Sys).SelfAddress.ToString()), (status.Roll!.State, status.Roll.Current));
        // A second roll while one runs answers the running one.
        Assert.Equal(started.Id, (await second.Ask<RollProgress>(StartRoll.Instance, TimeSpan.FromSeconds(10))).Id);
    }

    [Fact]
    public async Task A_cancelled_roll_asks_no_further_node_survives_a_new_coordinator_and_a_new_roll_can_start()
    {
        var drains = CreateTestProbe();
        Sys.ActorOf(Props.Create(() => new ServingMember(drains.Ref)), FleetMemberActor.Name);
        var first = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));

        // Nothing to cancel yet: refused, with the reason.
        RollProgress? refused = null;
        await AwaitAssertAsync(async () =>
        {
            refused = await first.Ask<RollProgress>(CancelRoll.Instance, TimeSpan.FromSeconds(10));
            Assert.StartsWith("no roll is running", refused.Detail, StringComparison.Ordinal); // "try again" while it reads the plan
        }, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        Assert.Equal("refused", refused!.State);

        var started = await first.Ask<RollProgress>(StartRoll.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal("rolling", started.State);
        drains.ExpectMsg<DrainMember>(TimeSpan.FromSeconds(10));

        var cancelled = await first.Ask<RollProgress>(CancelRoll.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal((started.Id, "cancelled", 0, 1), (cancelled.Id, cancelled.State, cancelled.Rolled, cancelled.Nodes));
        // The node told to drain cannot be taken back: the answer says so.
        Assert.Equal(Cluster.Get(Sys).SelfAddress.ToString(), cancelled.Current);
        Assert.Contains("was already draining", cancelled.Detail, StringComparison.Ordinal);

        // The replicated plan says cancelled, so a coordinator that starts elsewhere does not resume it.
        var key = new LWWRegisterKey<string>(RollPlan.Key);
        var replicator = DistributedData.Get(Sys).Replicator;
        await AwaitAssertAsync(async () =>
        {
            var read = await replicator.Ask<IGetResponse>(Dsl.Get(key, ReadLocal.Instance), TimeSpan.FromSeconds(5));
            var plan = RollPlan.FromJson(((GetSuccess)read).Get(key).Value)!;
            Assert.Equal((true, false, null), (plan.Cancelled, plan.Rolling, plan.Current));
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(100));

        await first.GracefulStop(TimeSpan.FromSeconds(5));
        drains.ReceiveWhile(TimeSpan.FromMilliseconds(300), m => m);
        var second = Sys.ActorOf(FleetCoordinator.Props(NullLogger.Instance));
        FleetStatus? status = null;
        await AwaitAssertAsync(async () =>
        {
            status = await second.Ask<FleetStatus>(GetFleetStatus.Instance, TimeSpan.FromSeconds(10));
            Assert.Equal("cancelled", status.Roll?.State); // null until it has read the plan
        }, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(200));
        // The roll ticks once a second: three ticks with a cancelled plan ask no node to drain.
        drains.ExpectNoMsg(FleetCoordinator.RollTick * 3);

        // A cancelled roll does not block the next one.
        var again = await second.Ask<RollProgress>(StartRoll.Instance, TimeSpan.FromSeconds(10));
        Assert.Equal("rolling", again.State);
        drains.ExpectMsg<DrainMember>(TimeSpan.FromSeconds(10));
    }
}
