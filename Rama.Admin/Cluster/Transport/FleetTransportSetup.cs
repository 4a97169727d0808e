using Akka.Actor;
using Akka.Actor.Setup;

namespace Rama.Admin.Cluster.Transport;

/// <summary>
/// What Rama's fleet transport (<c>akka.remote.rama-fleet</c>) takes from the host rather than from HOCON: the member's
/// certificates (mutual TLS; none when the fleet runs in plain TCP on loopback). <see cref="ClusterHostingExtensions.WithRamaCluster"/>
/// adds it; an actor system built by hand adds it to its <see cref="ActorSystemSetup"/>.
/// </summary>
public sealed class FleetTransportSetup(FleetCertificates? certificates) : Setup
{
    /// <summary>This member's certificate and the fleet CA; required when the transport's <c>enable-ssl</c> is on.</summary>
    public FleetCertificates? Certificates { get; } = certificates;

    /// <summary>
    /// Tests only: whether this member is already a fleet member (decides what a trust failure does). By default: the
    /// cluster's view of this member (Up, WeaklyUp, Leaving or Exiting), and never for an actor system without the cluster.
    /// </summary>
    internal Func<ActorSystem, bool>? IsFleetMember { get; init; }
}
