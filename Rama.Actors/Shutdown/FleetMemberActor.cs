using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Logging;
using Rama.Actors.Listeners;

namespace Rama.Actors.Shutdown;

/// <summary>
/// A proxy node's side of the fleet's shutdown coordination, at the well-known path <c>/user/rama-fleet-member</c>:
/// answers its <see cref="MemberPhase"/> (from the listener supervisor, which answers at once also while draining,
/// the node's membership status and whether coordinated shutdown runs), and drains the node on
/// <see cref="DrainMember"/> by running coordinated shutdown as SIGTERM does: unbind, drain, leave, exit 0.
/// </summary>
internal sealed partial class FleetMemberActor : ReceiveActor
{
    /// <summary>Its name under <c>/user</c>; the coordinator finds it at <c>&lt;member address&gt;/user/rama-fleet-member</c>.</summary>
    public const string Name = "rama-fleet-member";

    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(3);

    public FleetMemberActor(IActorRef listeners, ILogger logger)
    {
        var system = Context.System;
        var cluster = Cluster.Get(system);
        var shutdown = CoordinatedShutdown.Get(system);
        var address = cluster.SelfAddress.ToString();

        Receive<GetMemberPhase>(_ =>
        {
            // Read when the question comes; the answer is built when the supervisor answers (PipeTo, never blocking).
            var stopping = shutdown.ShutdownReason is not null;
            listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, AskTimeout).PipeTo(Sender,
                success: status => Phase(address, cluster.SelfMember.Status, stopping || shutdown.ShutdownReason is not null, status),
                failure: _ => Phase(address, cluster.SelfMember.Status, stopping: true, new ListenersStatus([], Draining: true)));
        });
        Receive<DrainMember>(drain =>
        {
            var already = shutdown.ShutdownReason is not null;
            if (!already)
            {
                LogDraining(logger, drain.Why);
                _ = shutdown.Run(FleetDrainReason.Instance);
            }

            Sender.Tell(new MemberDrainStarted(address, already));
        });
    }

    public static Props Props(IActorRef listeners, ILogger logger) =>
        Akka.Actor.Props.Create(() => new FleetMemberActor(listeners, logger));

    /// <summary>The phase from what the node knows of itself: leaving wins over draining, draining over serving.</summary>
    internal static MemberPhase Phase(string address, MemberStatus member, bool stopping, ListenersStatus listeners)
    {
        var bound = listeners.Listeners.Count(l => l.Bound);
        var phase = member switch
        {
            MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down or MemberStatus.Removed => FleetPhase.Leaving,
            _ when stopping || listeners.Draining || listeners.Listeners.Any(l => l.Draining) => FleetPhase.Draining,
            MemberStatus.Up when bound == listeners.Listeners.Count => FleetPhase.Serving,
            _ => FleetPhase.Starting,
        };
        return new MemberPhase(address, phase, member.ToString(), listeners.Listeners.Count, bound,
            listeners.Listeners.Sum(l => l.OpenConnections), listeners.Listeners.Sum(l => l.AcceptedConnections));
    }

    [LoggerMessage(EventId = 5400, Level = LogLevel.Information, Message = "Fleet: draining this node and leaving ({Why})")]
    private static partial void LogDraining(ILogger logger, string why);
}
