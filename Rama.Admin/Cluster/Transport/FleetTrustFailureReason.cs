using Akka.Actor;
using Rama.Admin.Options;

namespace Rama.Admin.Cluster.Transport;

/// <summary>
/// Why a member that was not yet in the fleet shut itself down: a peer did not trust it, or it did not trust the peer
/// (another <c>--cluster-secret</c> or CA). <see cref="MemberExit"/> answers exit code 2 and the operator's line for it.
/// </summary>
public sealed class FleetTrustFailureReason(string detail) : CoordinatedShutdown.Reason
{
    /// <summary>The peer and what failed, for the log.</summary>
    public string Detail { get; } = detail;

    public override int ExitCode => ExitCodes.BadOptions;

    public override string ToString() => Detail;
}
