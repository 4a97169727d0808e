using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Logging;
using Rama.Admin.Cluster;

namespace Rama.Actors.Shutdown;

/// <summary>
/// The fleet's shutdown coordinator: a cluster singleton on role <c>proxy</c> (Akka.Cluster.Tools, started through
/// Akka.Cluster.Hosting's <c>WithSingleton</c>; asked through its proxy). It owns no node state of its own: every
/// answer is collected from the members' <see cref="FleetMemberActor"/>s at <c>/user/rama-fleet-member</c> and from
/// the membership, so a coordinator that moves to another node answers the same; a roll's plan is kept in
/// Akka.DistributedData (<see cref="RollPlan"/>).
/// </summary>
internal sealed partial class FleetCoordinator : ReceiveActor, IWithTimers
{
    /// <summary>Its name: the singleton manager's under <c>/user</c>.</summary>
    public const string Name = "rama-fleet-coordinator";

    /// <summary>How long a member's actor may take to answer (its supervisor answers at once, even while draining).</summary>
    internal static readonly TimeSpan MemberTimeout = TimeSpan.FromSeconds(3);

    private readonly ActorSystem _system = Context.System;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly ILogger _logger;

    public FleetCoordinator(ILogger logger)
    {
        _logger = logger;
        Receive<GetFleetStatus>(_ =>
        {
            var roll = _plan is null ? null : Progress(_plan);
            CollectAsync().PipeTo(Sender, success: status => status with { Roll = roll });
        });
        Receive<DrainFleet>(_ => Drain());
        Receive<MemberDrainStarted>(started => LogMemberDraining(_logger, started.Address, started.AlreadyStopping));
        ReceiveRoll();
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart() => LoadPlan();

    public static Props Props(ILogger logger) => Akka.Actor.Props.Create(() => new FleetCoordinator(logger));

    /// <summary>The member actor of <paramref name="address"/> (through the system: safe off the actor's thread).</summary>
    private ActorSelection MemberActor(Address address) =>
        _system.ActorSelection(new RootActorPath(address) / "user" / FleetMemberActor.Name);

    private static bool IsProxy(Member member) => member.HasRole(ClusterOptions.ProxyRole);

    /// <summary>Every member, as the membership lists them, in address order.</summary>
    private List<Member> Members()
    {
        var state = _cluster.State;
        return [.. state.Members.Union(state.Unreachable).OrderBy(m => m.Address.ToString(), StringComparer.Ordinal)];
    }

    /// <summary>Asks every reachable proxy member its phase (at once, each within <see cref="MemberTimeout"/>); lighthouses and unreachable members come from the membership.</summary>
    private async Task<FleetStatus> CollectAsync()
    {
        var self = _cluster.SelfAddress.ToString();
        var unreachable = _cluster.State.Unreachable;
        var rows = await Task.WhenAll(Members().Select(async member =>
        {
            var roles = string.Join(",", member.Roles.Order(StringComparer.Ordinal));
            if (!IsProxy(member))
            {
                return new FleetMemberStatus(member.Address.ToString(), roles, member.Status.ToString(), member.Status.ToString().ToLowerInvariant(), null, null, null);
            }

            if (unreachable.Contains(member))
            {
                return new FleetMemberStatus(member.Address.ToString(), roles, member.Status.ToString(), FleetPhase.Unreachable, null, null, null);
            }

            try
            {
                var phase = await MemberActor(member.Address).Ask<MemberPhase>(GetMemberPhase.Instance, MemberTimeout).ConfigureAwait(false);
                return new FleetMemberStatus(member.Address.ToString(), roles, phase.MemberStatus, phase.Phase, phase.OpenConnections, phase.Listeners, phase.Bound);
            }
            catch (Exception ex) when (ex is AskTimeoutException or ActorNotFoundException or TaskCanceledException)
            {
                return new FleetMemberStatus(member.Address.ToString(), roles, member.Status.ToString(), FleetPhase.NoAnswer, null, null, null);
            }
        })).ConfigureAwait(false);
        return new FleetStatus(rows, self, null);
    }

    /// <summary>
    /// Answers with the proxy members that are Up (or still joining), then tells each of them to drain and leave. The
    /// answer goes first: the node whose admin endpoint asked drains too, and its endpoint closes once it has left.
    /// </summary>
    private void Drain()
    {
        var targets = Members().Where(m => IsProxy(m) && m.Status is MemberStatus.Up or MemberStatus.Joining or MemberStatus.WeaklyUp).ToList();
        LogFleetDrain(_logger, targets.Count);
        // An array: a collection expression typed IReadOnlyList makes a compiler-generated type the JSON serializer cannot name on the other node.
        Sender.Tell(new FleetDrainStarted(targets.Select(m => m.Address.ToString()).ToArray()));
        foreach (var member in targets)
        {
            MemberActor(member.Address).Tell(new DrainMember("pbm fleet drain"), Self);
        }
    }

    [LoggerMessage(EventId = 5410, Level = LogLevel.Information, Message = "Fleet drain: asking {Count} proxy nodes to drain and leave")]
    private static partial void LogFleetDrain(ILogger logger, int count);

    [LoggerMessage(EventId = 5411, Level = LogLevel.Information, Message = "Fleet drain: {Address} drains (it was stopping already: {AlreadyStopping})")]
    private static partial void LogMemberDraining(ILogger logger, string address, bool alreadyStopping);
}
