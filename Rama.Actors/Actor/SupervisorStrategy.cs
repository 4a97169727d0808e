namespace Rama.Actors.Actor;

/// <summary>What a supervisor does with a failed child.</summary>
public enum Directive
{
    /// <summary>Keep the actor and its state; go on with the next message.</summary>
    Resume,

    /// <summary>Replace the actor instance (state reset); PreRestart/PostRestart run.</summary>
    Restart,

    /// <summary>Stop the child.</summary>
    Stop,

    /// <summary>Fail the supervisor itself with the same exception; its own supervisor decides.</summary>
    Escalate,
}

/// <summary>
/// How an actor supervises its children (Akka's strategies). Retry limits: at most
/// <see cref="MaxNumberOfRetries"/> restarts within <see cref="WithinTimeRange"/> (per child for
/// one-for-one, per group for all-for-one); one more failure stops the child instead. -1 means no
/// limit; 0 means never restart.
/// </summary>
public abstract class SupervisorStrategy
{
    /// <summary>
    /// Akka's default: <see cref="ActorInitializationException"/>, <see cref="ActorKilledException"/>
    /// and <see cref="DeathPactException"/> stop the child, any other exception restarts it, no limit.
    /// </summary>
    public static readonly SupervisorStrategy DefaultStrategy = new OneForOneStrategy(DefaultDecider);

    /// <summary>Stops any failing child.</summary>
    public static readonly SupervisorStrategy StoppingStrategy = new OneForOneStrategy(static _ => Directive.Stop);

    private protected SupervisorStrategy(int maxNrOfRetries, TimeSpan? withinTimeRange, Func<Exception, Directive> decider)
    {
        ArgumentNullException.ThrowIfNull(decider);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxNrOfRetries, -1);
        MaxNumberOfRetries = maxNrOfRetries;
        WithinTimeRange = withinTimeRange is { } w && w > TimeSpan.Zero && w != Timeout.InfiniteTimeSpan ? w : null;
        Decider = decider;
    }

    public int MaxNumberOfRetries { get; }

    public TimeSpan? WithinTimeRange { get; }

    public Func<Exception, Directive> Decider { get; }

    public static Directive DefaultDecider(Exception exception) => exception switch
    {
        ActorInitializationException => Directive.Stop,
        ActorKilledException => Directive.Stop,
        DeathPactException => Directive.Stop,
        _ => Directive.Restart,
    };

    /// <summary>Applies the decision; false means escalate.</summary>
    internal bool HandleFailure(ActorCell cell, IActorRef child, Exception cause, ChildRestartStats stats, IReadOnlyList<ChildRestartStats> children)
    {
        Directive directive;
        try
        {
            directive = Decider(cause);
        }
        catch (Exception e)
        {
            cell.SystemImpl.LogLifecycleHookFailed(cell.Self, "SupervisorStrategy.Decider", e);
            directive = Directive.Escalate;
        }

        if (directive != Directive.Escalate)
        {
            cell.SystemImpl.LogActorFailure(child, cause, directive);
        }

        switch (directive)
        {
            case Directive.Resume:
                ActorCell.ResumeChild(child, cause);
                return true;
            case Directive.Restart:
                ProcessFailure(cell, restart: true, child, cause, stats, children);
                return true;
            case Directive.Stop:
                ProcessFailure(cell, restart: false, child, cause, stats, children);
                return true;
            default:
                return false;
        }
    }

    private protected abstract void ProcessFailure(
        ActorCell cell, bool restart, IActorRef child, Exception cause, ChildRestartStats stats, IReadOnlyList<ChildRestartStats> children);

    private protected bool RequestRestartPermission(ActorCell cell, ChildRestartStats stats) =>
        stats.RequestRestartPermission(MaxNumberOfRetries, WithinTimeRange, cell.SystemImpl.Settings.TimeProvider);
}

/// <summary>Applies the directive to the failed child only.</summary>
public sealed class OneForOneStrategy : SupervisorStrategy
{
    public OneForOneStrategy(int maxNrOfRetries, TimeSpan? withinTimeRange, Func<Exception, Directive> decider)
        : base(maxNrOfRetries, withinTimeRange, decider)
    {
    }

    public OneForOneStrategy(Func<Exception, Directive> decider)
        : this(-1, null, decider)
    {
    }

    private protected override void ProcessFailure(
        ActorCell cell, bool restart, IActorRef child, Exception cause, ChildRestartStats stats, IReadOnlyList<ChildRestartStats> children)
    {
        if (restart && RequestRestartPermission(cell, stats))
        {
            cell.RestartChild(child, cause, suspendFirst: false);
        }
        else
        {
            cell.Stop(child);
        }
    }
}

/// <summary>Applies the directive to all children (except Resume, which resumes the failed one only).</summary>
public sealed class AllForOneStrategy : SupervisorStrategy
{
    public AllForOneStrategy(int maxNrOfRetries, TimeSpan? withinTimeRange, Func<Exception, Directive> decider)
        : base(maxNrOfRetries, withinTimeRange, decider)
    {
    }

    public AllForOneStrategy(Func<Exception, Directive> decider)
        : this(-1, null, decider)
    {
    }

    private protected override void ProcessFailure(
        ActorCell cell, bool restart, IActorRef child, Exception cause, ChildRestartStats stats, IReadOnlyList<ChildRestartStats> children)
    {
        if (restart && children.All(c => RequestRestartPermission(cell, c)))
        {
            foreach (var sibling in children)
            {
                // Siblings are not suspended yet (the failed child suspended itself).
                cell.RestartChild(sibling.Child, cause, suspendFirst: !sibling.Child.Equals(child));
            }
        }
        else
        {
            foreach (var sibling in children)
            {
                cell.Stop(sibling.Child);
            }
        }
    }
}

/// <summary>A child and its restart count within the current window.</summary>
internal sealed class ChildRestartStats(IInternalActorRef child)
{
    private int _restartCount;
    private long _windowStart;

    public IInternalActorRef Child { get; } = child;

    /// <summary>Akka's retry accounting: counts restarts within the window; a new window starts after it elapses.</summary>
    public bool RequestRestartPermission(int maxNrOfRetries, TimeSpan? window, TimeProvider timeProvider)
    {
        if (maxNrOfRetries == 0)
        {
            return false;
        }

        if (window is null)
        {
            if (maxNrOfRetries < 0)
            {
                return true;
            }

            _restartCount++;
            return _restartCount <= maxNrOfRetries;
        }

        var retries = maxNrOfRetries < 0 ? 1 : maxNrOfRetries;
        var now = timeProvider.GetTimestamp();
        if (_windowStart == 0)
        {
            _windowStart = now;
        }

        if (timeProvider.GetElapsedTime(_windowStart, now) <= window.Value)
        {
            _restartCount++;
            return _restartCount <= retries;
        }

        _restartCount = 1;
        _windowStart = now;
        return true;
    }
}
