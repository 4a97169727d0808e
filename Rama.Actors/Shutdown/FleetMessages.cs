using Akka.Actor;

namespace Rama.Actors.Shutdown;

// The fleet's shutdown protocol: small immutable records of strings and numbers, so they cross the wire between the
// coordinator (a cluster singleton on role proxy) and each node's member actor (/user/rama-fleet-member). Lists are
// built as arrays: Akka's JSON serializer writes the runtime type, which must exist on the receiving node.

/// <summary>What a proxy node is doing, as <c>pbm fleet status</c> shows it.</summary>
public static class FleetPhase
{
    /// <summary>Joining, or its listeners are not all bound yet.</summary>
    public const string Starting = "starting";

    /// <summary>Up, every listener bound and accepting.</summary>
    public const string Serving = "serving";

    /// <summary>Coordinated shutdown has begun: the listeners unbind and wait for the connections in flight.</summary>
    public const string Draining = "draining";

    /// <summary>Leaving the fleet (Leaving, Exiting): drained, or asked to leave by Akka (<c>pbm cluster leave</c>) first.</summary>
    public const string Leaving = "leaving";

    /// <summary>Marked unreachable by the failure detector: not asked.</summary>
    public const string Unreachable = "unreachable";

    /// <summary>Reachable, but its member actor did not answer in time (stopping, or not a Rama proxy node).</summary>
    public const string NoAnswer = "no answer";
}

/// <summary>Ask a node's member actor what it is doing. Answer: <see cref="MemberPhase"/>.</summary>
public sealed record GetMemberPhase
{
    public static readonly GetMemberPhase Instance = new();
}

/// <summary>One proxy node: its <see cref="FleetPhase"/>, its membership status and its listeners' counts.</summary>
public sealed record MemberPhase(string Address, string Phase, string MemberStatus, int Listeners, int Bound, int OpenConnections, long AcceptedConnections);

/// <summary>Drain this node and leave the fleet, as SIGTERM does (coordinated shutdown from its first phase). Answer: <see cref="MemberDrainStarted"/>.</summary>
public sealed record DrainMember(string Why);

/// <summary>The node began its coordinated shutdown (<see cref="AlreadyStopping"/>: it had begun before this ask).</summary>
public sealed record MemberDrainStarted(string Address, bool AlreadyStopping);

/// <summary>The reason of a coordinated shutdown that <c>pbm fleet drain</c> or <c>roll</c> asked for: the node exits 0.</summary>
public sealed class FleetDrainReason : CoordinatedShutdown.Reason
{
    public static readonly FleetDrainReason Instance = new();

    private FleetDrainReason()
    {
    }

    /// <summary>0: a drained node exits as one that left the fleet.</summary>
    public override int ExitCode => 0;

    public override string ToString() => "FleetDrainReason";
}

// The coordinator's protocol (asked through the singleton proxy).

/// <summary>Every member's phase, collected by the coordinator. Answer: <see cref="FleetStatus"/>.</summary>
public sealed record GetFleetStatus
{
    public static readonly GetFleetStatus Instance = new();
}

/// <summary>One member of the fleet in <see cref="FleetStatus"/> (lighthouses too: their phase is their membership status).</summary>
public sealed record FleetMemberStatus(string Address, string Roles, string MemberStatus, string Phase, int? OpenConnections, int? Listeners, int? Bound);

/// <summary>The fleet as the coordinator sees it: its members, where the coordinator runs, and the last roll (null: none since the fleet formed).</summary>
public sealed record FleetStatus(IReadOnlyList<FleetMemberStatus> Members, string Coordinator, RollProgress? Roll);

/// <summary>Drain every proxy node (lighthouses stay). Answer: <see cref="FleetDrainStarted"/>.</summary>
public sealed record DrainFleet
{
    public static readonly DrainFleet Instance = new();
}

/// <summary>The proxy nodes told to drain (each logs its answer on the coordinator's node; <c>pbm fleet status</c> shows their phases).</summary>
public sealed record FleetDrainStarted(IReadOnlyList<string> Draining);

/// <summary>Roll the proxy nodes one at a time. Answer: <see cref="RollProgress"/> (the new roll, the one already running, or <c>refused</c>).</summary>
public sealed record StartRoll
{
    public static readonly StartRoll Instance = new();
}

/// <summary>
/// Stop the running roll: no further node is asked to drain (one already draining finishes its drain, leaves and is
/// started again by its supervisor). Answer: <see cref="RollProgress"/> (<c>cancelled</c>, or <c>refused</c> when no roll runs).
/// </summary>
public sealed record CancelRoll
{
    public static readonly CancelRoll Instance = new();
}

/// <summary>
/// A roll as the coordinator reports it. <see cref="State"/> is <c>rolling</c>, <c>done</c>, <c>cancelled</c> or <c>refused</c>;
/// <see cref="Current"/> the node leaving now, if any; <see cref="ElapsedSeconds"/> since the roll started (its duration once done).
/// </summary>
public sealed record RollProgress(string Id, string State, int Nodes, int Rolled, string? Current, double ElapsedSeconds, string Detail);
