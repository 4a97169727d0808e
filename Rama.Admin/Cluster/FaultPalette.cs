using System.Globalization;
using Akka.Actor;
using Akka.Remote;
using Akka.Remote.Transport;
using Rama.Admin.Admin;

namespace Rama.Admin.Cluster;

/// <summary>
/// Tests only (<c>Rama:Cluster:FaultInjection</c>): cuts and heals the link between this member and a peer with Akka.Remote's
/// throttler, as Akka's MultiNode TestConductor does. A blackhole drops everything both ways on this member's side,
/// so one member alone can be partitioned from the rest.
/// </summary>
internal sealed class FaultPalette(ActorSystem system, ClusterOptions options) : IAdminPalette
{
    public string Name => "fault";

    public string Description => "Tests only: cut (blackhole) or heal the link to a peer (Akka.Remote's throttler)";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("blackhole", "<host:port>...", "Drop every message to and from these peers"),
        new("heal", "<host:port>...", "Pass messages to and from these peers again"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(response);
        var peers = request.Args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        if (peers.Count == 0)
        {
            return await response.FailAsync($"fault {request.Command} needs at least one peer (host:port)", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        ThrottleMode mode = request.Command == "blackhole" ? Blackhole.Instance : Unthrottled.Instance;
        var transport = ((RemoteActorRefProvider)((ExtendedActorSystem)system).Provider).Transport;
        var protocol = options.Scheme;
        foreach (var peer in peers)
        {
            var colon = peer.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(peer.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            {
                return await response.FailAsync($"'{peer}' is not host:port", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
            }

            var address = new Address(protocol, system.Name, peer[..colon], port);
            await transport.ManagementCommand(new SetThrottle(address, ThrottleTransportAdapter.Direction.Both, mode), cancellationToken).ConfigureAwait(false);
            await response.TextAsync($"{request.Command}: {address}", cancellationToken).ConfigureAwait(false);
        }

        return AdminExitCodes.Ok;
    }
}
