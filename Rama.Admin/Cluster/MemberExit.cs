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

    /// <summary>
    /// The actor system of a host whose start just failed, when that system had already begun its coordinated shutdown
    /// (the fleet refused this member while Akka.Hosting was still starting actors, so the start failed with
    /// "cannot create child while terminating"): the failure is a consequence of the stop, and <see cref="Of"/> says why.
    /// Null when the system never started, is not stopping, or stops for another reason than the fleet's.
    /// </summary>
    public static ActorSystem? StoppingWhileStarting(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        try
        {
            var system = services.GetService(typeof(ActorSystem)) as ActorSystem;
            // Only the fleet's reasons: a start that failed on its own (a listener that cannot bind) also runs the
            // coordinated shutdown, and keeps its own exit code.
            return system is not null && CoordinatedShutdown.Get(system).ShutdownReason is
                Transport.FleetTrustFailureReason or CoordinatedShutdown.ClusterDowningReason or CoordinatedShutdown.ClusterJoinUnsuccessfulReason
                ? system : null;
        }
        catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException)
        {
            // Akka.Hosting had not created the system yet.
            return null;
        }
    }

    /// <summary>Waits (bounded) for a system that is shutting down to terminate, then says why it stopped.</summary>
    public static async Task<(int Code, string Message)> AfterTerminationAsync(ActorSystem system, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(system);
        await Task.WhenAny(system.WhenTerminated, Task.Delay(timeout)).ConfigureAwait(false);
        return Of(system);
    }
}
