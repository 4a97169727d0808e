using System.Collections.Concurrent;

namespace Rama.Actors.Actor;

/// <summary>Something scheduled that can be cancelled.</summary>
public interface ICancelable
{
    bool IsCancellationRequested { get; }

    void Cancel();
}

/// <summary>
/// Sends messages later or repeatedly, driven by the system's <see cref="TimeProvider"/>
/// (Akka's <c>IScheduler</c>). Everything still scheduled is cancelled when the system terminates.
/// </summary>
public interface IScheduler
{
    TimeProvider TimeProvider { get; }

    ICancelable ScheduleTellOnce(TimeSpan delay, IActorRef receiver, object message, IActorRef? sender);

    ICancelable ScheduleTellRepeatedly(TimeSpan initialDelay, TimeSpan interval, IActorRef receiver, object message, IActorRef? sender);

    /// <summary>Runs an action on the thread pool after a delay; keep it short and non-blocking.</summary>
    ICancelable ScheduleOnce(TimeSpan delay, Action action);

    ICancelable ScheduleRepeatedly(TimeSpan initialDelay, TimeSpan interval, Action action);
}

internal sealed class TimeProviderScheduler(TimeProvider timeProvider) : IScheduler
{
    private readonly ConcurrentDictionary<ScheduledItem, byte> _scheduled = new();
    private volatile bool _shutdown;

    public TimeProvider TimeProvider => timeProvider;

    public ICancelable ScheduleTellOnce(TimeSpan delay, IActorRef receiver, object message, IActorRef? sender) =>
        Schedule(delay, Timeout.InfiniteTimeSpan, () => receiver.Tell(message, sender ?? ActorRefs.Nobody));

    public ICancelable ScheduleTellRepeatedly(TimeSpan initialDelay, TimeSpan interval, IActorRef receiver, object message, IActorRef? sender) =>
        Schedule(initialDelay, CheckInterval(interval), () => receiver.Tell(message, sender ?? ActorRefs.Nobody));

    public ICancelable ScheduleOnce(TimeSpan delay, Action action) => Schedule(delay, Timeout.InfiniteTimeSpan, action);

    public ICancelable ScheduleRepeatedly(TimeSpan initialDelay, TimeSpan interval, Action action) =>
        Schedule(initialDelay, CheckInterval(interval), action);

    public void Shutdown()
    {
        _shutdown = true;
        foreach (var item in _scheduled.Keys)
        {
            item.Cancel();
        }
    }

    private static TimeSpan CheckInterval(TimeSpan interval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        return interval;
    }

    private ScheduledItem Schedule(TimeSpan delay, TimeSpan period, Action action)
    {
        var item = new ScheduledItem(this, action, repeating: period != Timeout.InfiniteTimeSpan);
        if (_shutdown)
        {
            item.Cancel();
            return item;
        }

        _scheduled.TryAdd(item, 0);

        // The item holds its timer, and the timer holds the item: both stay alive while scheduled.
        item.Start(timeProvider, delay < TimeSpan.Zero ? TimeSpan.Zero : delay, period);
        return item;
    }

    private sealed class ScheduledItem(TimeProviderScheduler owner, Action action, bool repeating) : ICancelable
    {
        private ITimer? _timer;
        private int _cancelled;

        public bool IsCancellationRequested => Volatile.Read(ref _cancelled) != 0;

        public void Start(TimeProvider timeProvider, TimeSpan delay, TimeSpan period)
        {
            var timer = timeProvider.CreateTimer(static state => ((ScheduledItem)state!).Fire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            Interlocked.Exchange(ref _timer, timer);
            if (IsCancellationRequested)
            {
                timer.Dispose();
                return;
            }

            timer.Change(delay, period);
        }

        public void Cancel()
        {
            if (Interlocked.Exchange(ref _cancelled, 1) == 0)
            {
                Release();
            }
        }

        private void Release()
        {
            Volatile.Read(ref _timer)?.Dispose();
            owner._scheduled.TryRemove(this, out _);
        }

        private void Fire()
        {
            if (IsCancellationRequested)
            {
                return;
            }

            if (!repeating)
            {
                Release();
            }

            action();
        }
    }
}
