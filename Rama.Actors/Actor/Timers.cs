namespace Rama.Actors.Actor;

/// <summary>An actor with keyed timers (Akka's <c>IWithTimers</c>).</summary>
public interface IWithTimers
{
    /// <summary>Set by the runtime before PreStart.</summary>
    ITimerScheduler Timers { get; set; }
}

/// <summary>
/// Keyed timers that send messages to the actor itself. Starting a timer with a key in use replaces
/// it; a replaced or cancelled timer's message is never delivered, even if already queued.
/// All timers are cancelled when the actor restarts or stops.
/// </summary>
public interface ITimerScheduler
{
    void StartSingleTimer(object key, object message, TimeSpan timeout);

    void StartPeriodicTimer(object key, object message, TimeSpan interval);

    void StartPeriodicTimer(object key, object message, TimeSpan initialDelay, TimeSpan interval);

    bool IsTimerActive(object key);

    void Cancel(object key);

    void CancelAll();
}

internal sealed class TimerScheduler(ActorCell cell) : ITimerScheduler
{
    private readonly Dictionary<object, ActiveTimer> _timers = [];
    private int _generation;

    public void StartSingleTimer(object key, object message, TimeSpan timeout) =>
        Start(key, message, timeout, period: null);

    public void StartPeriodicTimer(object key, object message, TimeSpan interval) =>
        Start(key, message, interval, interval);

    public void StartPeriodicTimer(object key, object message, TimeSpan initialDelay, TimeSpan interval) =>
        Start(key, message, initialDelay, interval);

    public bool IsTimerActive(object key) => _timers.ContainsKey(key);

    public void Cancel(object key)
    {
        if (_timers.Remove(key, out var timer))
        {
            timer.Task.Cancel();
        }
    }

    public void CancelAll()
    {
        foreach (var timer in _timers.Values)
        {
            timer.Task.Cancel();
        }

        _timers.Clear();
    }

    /// <summary>Returns the user message of a timer message that is still current.</summary>
    internal bool TryTake(TimerMessage timerMessage, out object message)
    {
        if (ReferenceEquals(timerMessage.Owner, this)
            && _timers.TryGetValue(timerMessage.Key, out var timer)
            && timer.Generation == timerMessage.Generation)
        {
            if (!timer.Repeating)
            {
                _timers.Remove(timerMessage.Key);
            }

            message = timer.Message;
            return true;
        }

        message = null!;
        return false;
    }

    private void Start(object key, object message, TimeSpan delay, TimeSpan? period)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(message);
        Cancel(key);
        var generation = ++_generation;
        var timerMessage = new TimerMessage(key, generation, this);
        var scheduler = cell.SystemImpl.Scheduler;
        var task = period is { } interval
            ? scheduler.ScheduleTellRepeatedly(delay, interval, cell.Self, timerMessage, ActorRefs.Nobody)
            : scheduler.ScheduleTellOnce(delay, cell.Self, timerMessage, ActorRefs.Nobody);
        _timers[key] = new ActiveTimer(message, generation, period is not null, task);
    }

    private sealed record ActiveTimer(object Message, int Generation, bool Repeating, ICancelable Task);

    /// <summary>What the scheduler actually sends; unwrapped (or dropped when stale) by the cell.</summary>
    internal sealed record TimerMessage(object Key, int Generation, TimerScheduler Owner);
}
