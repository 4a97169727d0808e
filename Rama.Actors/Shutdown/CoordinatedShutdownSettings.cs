namespace Rama.Actors.Shutdown;

/// <summary>
/// Overrides of Akka's <c>akka.coordinated-shutdown</c> defaults. Phase timeouts default to
/// <see cref="DefaultPhaseTimeout"/> (5 s), except cluster-sharding-shutdown-region, cluster-exiting
/// and actor-system-terminate (10 s); every phase recovers by default (a timeout or failed task is
/// logged and the next phase runs).
/// </summary>
public sealed record CoordinatedShutdownSettings
{
    /// <summary>Akka: <c>default-phase-timeout = 5 s</c>.</summary>
    public TimeSpan DefaultPhaseTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Per-phase timeouts, by phase name; they win over the defaults.</summary>
    public IReadOnlyDictionary<string, TimeSpan> PhaseTimeouts { get; init; } = new Dictionary<string, TimeSpan>();

    /// <summary>Per-phase <c>recover</c> flags; false makes a timeout or failed task abort the run (later phases do not run).</summary>
    public IReadOnlyDictionary<string, bool> PhaseRecover { get; init; } = new Dictionary<string, bool>();

    /// <summary>Akka: <c>run-by-actor-system-terminate = on</c>: <c>ActorSystem.Terminate()</c> runs the phases first.</summary>
    public bool RunByActorSystemTerminate { get; init; } = true;

    /// <summary>Akka: <c>terminate-actor-system = on</c>: the last phase terminates the actor system.</summary>
    public bool TerminateActorSystem { get; init; } = true;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(DefaultPhaseTimeout, TimeSpan.Zero, nameof(DefaultPhaseTimeout));
        foreach (var (phase, timeout) in PhaseTimeouts)
        {
            CoordinatedShutdown.CheckPhase(phase);
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero, nameof(PhaseTimeouts));
        }

        foreach (var phase in PhaseRecover.Keys)
        {
            CoordinatedShutdown.CheckPhase(phase);
        }
    }
}
