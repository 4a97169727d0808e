using Microsoft.Extensions.Logging;
using Rama.Actors.Actor;

namespace Rama.Actors.Shutdown;

/// <summary>
/// Stops a node in ordered phases (Akka's <c>CoordinatedShutdown</c>): tasks of one phase run
/// concurrently; a phase ends when all its tasks have finished or its timeout has elapsed; the
/// next phase starts only then. The last phase terminates the actor system. <see cref="Run"/> runs
/// once; later calls return the same task. Process signals are hooked by the host, not here.
/// </summary>
public sealed partial class CoordinatedShutdown
{
    public const string PhaseBeforeServiceUnbind = "before-service-unbind";
    public const string PhaseServiceUnbind = "service-unbind";
    public const string PhaseServiceRequestsDone = "service-requests-done";
    public const string PhaseServiceStop = "service-stop";
    public const string PhaseBeforeClusterShutdown = "before-cluster-shutdown";
    public const string PhaseClusterShardingShutdownRegion = "cluster-sharding-shutdown-region";
    public const string PhaseClusterLeave = "cluster-leave";
    public const string PhaseClusterExiting = "cluster-exiting";
    public const string PhaseClusterExitingDone = "cluster-exiting-done";
    public const string PhaseClusterShutdown = "cluster-shutdown";
    public const string PhaseBeforeActorSystemTerminate = "before-actor-system-terminate";
    public const string PhaseActorSystemTerminate = "actor-system-terminate";

    /// <summary>Akka's default phases, in dependency order (each depends on the one before).</summary>
    public static readonly IReadOnlyList<string> DefaultPhases =
    [
        PhaseBeforeServiceUnbind,
        PhaseServiceUnbind,
        PhaseServiceRequestsDone,
        PhaseServiceStop,
        PhaseBeforeClusterShutdown,
        PhaseClusterShardingShutdownRegion,
        PhaseClusterLeave,
        PhaseClusterExiting,
        PhaseClusterExitingDone,
        PhaseClusterShutdown,
        PhaseBeforeActorSystemTerminate,
        PhaseActorSystemTerminate,
    ];

    private static readonly TimeSpan LongPhaseTimeout = TimeSpan.FromSeconds(10);

    private readonly ActorSystemImpl _system;
    private readonly CoordinatedShutdownSettings _settings;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly List<(string Name, Func<CancellationToken, Task> Run)>[] _tasks;
    private TaskCompletionSource<Done>? _run;
    private Reason? _reason;
    private int _phasesStarted;

    private CoordinatedShutdown(ActorSystemImpl system)
    {
        _system = system;
        _settings = system.Settings.CoordinatedShutdown;
        _logger = system.LoggerFactory.CreateLogger("Rama.Actors.CoordinatedShutdown");
        _tasks = DefaultPhases.Select(_ => new List<(string, Func<CancellationToken, Task>)>()).ToArray();
        if (_settings.TerminateActorSystem)
        {
            AddTask(PhaseActorSystemTerminate, "terminate-system", async _ =>
            {
                system.FinalTerminate();
                await system.WhenTerminated.ConfigureAwait(false);
            });
        }
    }

    public ActorSystem System => _system;

    /// <summary>The reason given to the first <see cref="Run"/>; null while not run.</summary>
    public Reason? ShutdownReason
    {
        get
        {
            lock (_lock)
            {
                return _reason;
            }
        }
    }

    public IReadOnlyList<string> OrderedPhases => DefaultPhases;

    public static CoordinatedShutdown Get(ActorSystem system)
    {
        ArgumentNullException.ThrowIfNull(system);
        return ((ActorSystemImpl)system).GetOrAddExtension(static s => new CoordinatedShutdown(s));
    }

    /// <summary>The timeout of a phase: the override from settings, else Akka's default.</summary>
    public TimeSpan Timeout(string phase)
    {
        CheckPhase(phase);
        if (_settings.PhaseTimeouts.TryGetValue(phase, out var timeout))
        {
            return timeout;
        }

        return phase is PhaseClusterShardingShutdownRegion or PhaseClusterExiting or PhaseActorSystemTerminate
            ? LongPhaseTimeout
            : _settings.DefaultPhaseTimeout;
    }

    public bool Recover(string phase)
    {
        CheckPhase(phase);
        return !_settings.PhaseRecover.TryGetValue(phase, out var recover) || recover;
    }

    /// <summary>The sum of all phase timeouts: the longest a run can take.</summary>
    public TimeSpan TotalTimeout() => DefaultPhases.Aggregate(TimeSpan.Zero, (sum, phase) => sum + Timeout(phase));

    /// <summary>Adds a task to a phase; a task added after its phase has started does not run (logged).</summary>
    public void AddTask(string phase, string taskName, Func<Task<Done>> task)
    {
        ArgumentNullException.ThrowIfNull(task);
        AddTask(phase, taskName, _ => task());
    }

    /// <summary>
    /// Adds a task to a phase. Its token is cancelled when the phase times out; the phase does not
    /// wait longer than its timeout either way.
    /// </summary>
    public void AddTask(string phase, string taskName, Func<CancellationToken, Task> task)
    {
        ArgumentException.ThrowIfNullOrEmpty(taskName);
        ArgumentNullException.ThrowIfNull(task);
        var index = IndexOf(phase);
        lock (_lock)
        {
            if (_run is not null && index < _phasesStarted)
            {
                Log.TaskAddedTooLate(_logger, taskName, phase);
                return;
            }

            _tasks[index].Add((taskName, task));
        }
    }

    /// <summary>
    /// Runs the phases from <paramref name="fromPhase"/> (default: the first). Runs once: later calls
    /// return the same task and do not change <see cref="ShutdownReason"/>.
    /// </summary>
    public Task<Done> Run(Reason reason, string? fromPhase = null)
    {
        ArgumentNullException.ThrowIfNull(reason);
        var start = fromPhase is null ? 0 : IndexOf(fromPhase);
        TaskCompletionSource<Done> run;
        lock (_lock)
        {
            if (_run is not null)
            {
                return _run.Task;
            }

            run = _run = new TaskCompletionSource<Done>(TaskCreationOptions.RunContinuationsAsynchronously);
            _reason = reason;
            _phasesStarted = start;
        }

        Log.RunStarted(_logger, reason);
        _ = Task.Run(() => RunPhasesAsync(start, run));
        return run.Task;
    }

    internal static void CheckPhase(string phase) => IndexOf(phase);

    private static int IndexOf(string phase)
    {
        ArgumentNullException.ThrowIfNull(phase);
        for (var i = 0; i < DefaultPhases.Count; i++)
        {
            if (string.Equals(DefaultPhases[i], phase, StringComparison.Ordinal))
            {
                return i;
            }
        }

        throw new ArgumentException($"Unknown coordinated shutdown phase [{phase}].", nameof(phase));
    }

    private async Task RunPhasesAsync(int start, TaskCompletionSource<Done> run)
    {
        try
        {
            for (var i = start; i < DefaultPhases.Count; i++)
            {
                await RunPhaseAsync(i).ConfigureAwait(false);
            }

            run.TrySetResult(Done.Instance);
        }
        catch (Exception e)
        {
            run.TrySetException(e);
        }
    }

    private async Task RunPhaseAsync(int index)
    {
        var phase = DefaultPhases[index];
        (string Name, Func<CancellationToken, Task> Run)[] tasks;
        lock (_lock)
        {
            _phasesStarted = index + 1;
            tasks = [.. _tasks[index]];
        }

        if (tasks.Length == 0)
        {
            return;
        }

        Log.PhaseStarted(_logger, phase, tasks.Length);
        var timeout = Timeout(phase);
        var recover = Recover(phase);
        var cancellation = new CancellationTokenSource();
        var all = Task.WhenAll(tasks.Select(t => RunTaskAsync(phase, t.Name, t.Run, recover, cancellation.Token)));
        try
        {
            await all.WaitAsync(timeout, _system.Settings.TimeProvider).ConfigureAwait(false);
            cancellation.Dispose();
        }
        catch (TimeoutException)
        {
            // Left undisposed: tasks still running may hold the token.
            await cancellation.CancelAsync().ConfigureAwait(false);
            Log.PhaseTimedOut(_logger, phase, timeout);
            if (!recover)
            {
                throw new TimeoutException($"Coordinated shutdown phase [{phase}] timed out after {timeout}.");
            }
        }
    }

    private async Task RunTaskAsync(string phase, string name, Func<CancellationToken, Task> task, bool recover, CancellationToken token)
    {
        try
        {
            await task(token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.TaskFailed(_logger, name, phase, e);
            if (!recover)
            {
                throw;
            }
        }
    }

    /// <summary>Why the shutdown runs. Subclass for custom reasons.</summary>
    public class Reason
    {
        public Reason(string? description = null)
        {
            Description = description ?? GetType().Name;
        }

        public string Description { get; }

        public override string ToString() => Description;
    }

    /// <summary>The process is exiting (SIGTERM, Ctrl+C), as reported by the host.</summary>
    public sealed class ClrExitReason : Reason
    {
        public static readonly Reason Instance = new ClrExitReason();

        private ClrExitReason()
        {
        }
    }

    /// <summary><c>ActorSystem.Terminate()</c> was called.</summary>
    public sealed class ActorSystemTerminateReason : Reason
    {
        public static readonly Reason Instance = new ActorSystemTerminateReason();

        private ActorSystemTerminateReason()
        {
        }
    }

    public sealed class UnknownReason : Reason
    {
        public static readonly Reason Instance = new UnknownReason();

        private UnknownReason()
        {
        }
    }

    /// <summary>This node was downed by the cluster.</summary>
    public sealed class ClusterDowningReason : Reason
    {
        public static readonly Reason Instance = new ClusterDowningReason();

        private ClusterDowningReason()
        {
        }
    }

    /// <summary>This node left the cluster.</summary>
    public sealed class ClusterLeavingReason : Reason
    {
        public static readonly Reason Instance = new ClusterLeavingReason();

        private ClusterLeavingReason()
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1100, LogLevel.Information, "Running coordinated shutdown; reason: {Reason}.")]
        public static partial void RunStarted(ILogger logger, Reason reason);

        [LoggerMessage(1101, LogLevel.Debug, "Coordinated shutdown phase [{Phase}]: {Count} task(s).")]
        public static partial void PhaseStarted(ILogger logger, string phase, int count);

        [LoggerMessage(1102, LogLevel.Warning, "Coordinated shutdown phase [{Phase}] timed out after {Timeout}.")]
        public static partial void PhaseTimedOut(ILogger logger, string phase, TimeSpan timeout);

        [LoggerMessage(1103, LogLevel.Warning, "Coordinated shutdown task [{Task}] in phase [{Phase}] failed.")]
        public static partial void TaskFailed(ILogger logger, string task, string phase, Exception exception);

        [LoggerMessage(1104, LogLevel.Warning, "Task [{Task}] added to coordinated shutdown phase [{Phase}] after it started; it will not run.")]
        public static partial void TaskAddedTooLate(ILogger logger, string task, string phase);
    }
}
