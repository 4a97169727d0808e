using Akka.Actor;
using Rama.Admin.Options;

namespace Rama.Admin.Cluster;

/// <summary>Why the actor system of a member stopped, as an exit code and one line for the operator.</summary>
public static class MemberExit
{
    public static (int Code, string Message) Of(ActorSystem system)
    {
        ArgumentNullException.ThrowIfNull(system);
        return CoordinatedShutdown.Get(system).ShutdownReason switch
        {
            CoordinatedShutdown.ClusterLeavingReason => (ExitCodes.Ok, "left the fleet"),
            CoordinatedShutdown.ClusterDowningReason => (ExitCodes.Downed, "was downed by the fleet (unreachable from the majority, or downed by an operator); restart it to rejoin"),
            CoordinatedShutdown.ClusterJoinUnsuccessfulReason => (ExitCodes.Failed, "could not join the fleet through its seeds"),
            // Rama's fleet transport, when this member could not prove it belongs (or the peer could not) before it was a member.
            Transport.FleetTrustFailureReason =>
                (ExitCodes.BadOptions, "could not prove fleet membership to a peer (TLS handshake failed: another --cluster-secret or CA?)"),
            _ => (ExitCodes.Ok, "stopped"),
        };
    }
}
