using Akka.Actor;
using Akka.Cluster;

namespace Rama.Admin.Admin;

/// <summary>
/// The readiness every node and lighthouse has: its actor system runs and is not shutting down (coordinated shutdown
/// has not started: a drain, SIGTERM, <c>pbm fleet drain</c>), and, in a fleet, this member is Up. Coordinated shutdown
/// records its reason before its first phase, so <c>/readyz</c> turns 503 before the listeners unbind.
/// </summary>
internal sealed class SystemReadiness(ActorSystem system) : IReadinessCheck
{
    public ValueTask<string?> NotReadyReasonAsync(CancellationToken cancellationToken) => ValueTask.FromResult(Reason());

    private string? Reason()
    {
        if (CoordinatedShutdown.Get(system).ShutdownReason is { } reason)
        {
            return $"draining: the node is shutting down ({reason.GetType().Name})";
        }

        if (system.WhenTerminated.IsCompleted)
        {
            return "the actor system has terminated";
        }

        if (((ExtendedActorSystem)system).Provider is ClusterActorRefProvider)
        {
            var status = Akka.Cluster.Cluster.Get(system).SelfMember.Status;
            if (status != MemberStatus.Up)
            {
                return $"cluster member is {status}, not Up";
            }
        }

        return null;
    }
}
