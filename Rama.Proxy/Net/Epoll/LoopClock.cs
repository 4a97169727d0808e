namespace Rama.Proxy.Net.Epoll;

/// <summary>
/// Milliseconds on a stack's <see cref="TimeProvider"/> for what runs on the event loops (deadlines, idle pools, idle tunnels), so
/// that they keep the same time as the rest of the stack and a test's fake clock drives them too. The system clock is read as
/// <see cref="Environment.TickCount64"/> (no division on a per-request path); the loops tick on real time and ask this clock at
/// each tick, so a moved fake clock is seen at the next tick (<see cref="EpollLoop.TickInterval"/>).
/// </summary>
internal sealed class LoopClock
{
    private readonly TimeProvider _time;
    private readonly bool _system;
    private readonly long _origin;

    private LoopClock(TimeProvider time)
    {
        _time = time;
        _system = ReferenceEquals(time, TimeProvider.System);
        _origin = time.GetTimestamp();
    }

    /// <summary>The system clock's.</summary>
    public static LoopClock System { get; } = new(TimeProvider.System);

    /// <summary>The clock of <paramref name="time"/> (null: the system's).</summary>
    public static LoopClock For(TimeProvider? time) => time is null || ReferenceEquals(time, TimeProvider.System) ? System : new LoopClock(time);

    /// <summary>Milliseconds of a monotonic clock (only differences mean anything).</summary>
    public long NowMs => _system ? Environment.TickCount64 : (long)_time.GetElapsedTime(_origin).TotalMilliseconds;
}
