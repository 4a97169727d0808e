namespace Rama.Proxy.Core;

/// <summary>
/// The deadline a connection's first bytes (or first request head) must meet, on a <see cref="CancellationTokenSource"/>, with
/// the shutdown's rule in one place: a connection accepted before the shutdown began may still be sending its first request
/// (its client saw no sign of the shutdown), so the shutdown does not close it at once; it shortens the deadline to
/// <see cref="GracefulShutdown.FirstRequestGrace"/> from then, and never lengthens it. A deadline armed later (the header
/// timeout once the first byte came) is held to the same grace end. <see cref="Release"/> ends the rule (the request head is
/// complete; what follows has timeouts of its own).
/// </summary>
/// <remarks>
/// The epoll transport keeps its deadlines in loop milliseconds, not in a token source, and applies the same rule there
/// (<c>EpollReverseProxy.ClientConnection.OnShutdown</c>).
/// </remarks>
public sealed class FirstRequestDeadline : IDisposable
{
    private static readonly TimeSpan None = TimeSpan.MaxValue;

    private readonly CancellationTokenSource _source;
    private readonly TimeProvider _time;
    private readonly long _origin; // the clock's timestamp the deadlines below are measured from
    private readonly object _gate = new();
    private readonly CancellationTokenRegistration _shutdown;
    private TimeSpan _deadline = None;
    private TimeSpan _graceEnds = None;
    private bool _released;

    /// <param name="source">The token source whose cancellation ends the wait; the caller owns it (it may outlive this rule).</param>
    /// <param name="shutdownRequested">The shutdown's token: its cancellation starts the grace.</param>
    /// <param name="time">The clock <paramref name="source"/> was created with.</param>
    public FirstRequestDeadline(CancellationTokenSource source, CancellationToken shutdownRequested, TimeProvider time)
    {
        _source = source;
        _time = time;
        _origin = time.GetTimestamp();
        _shutdown = shutdownRequested.UnsafeRegister(static s => ((FirstRequestDeadline)s!).BeginGrace(), this);
    }

    /// <summary>Arms the deadline <paramref name="after"/> from now (infinite: none), held to the grace's end once the shutdown began.</summary>
    public void Arm(TimeSpan after)
    {
        lock (_gate)
        {
            _deadline = after == Timeout.InfiniteTimeSpan ? None : Now + after;
            ApplyLocked();
        }
    }

    /// <summary>Ends the rule: the grace no longer applies, and the source is left as the caller arms it next.</summary>
    public void Release()
    {
        lock (_gate)
        {
            _released = true;
        }

        _shutdown.Dispose();
    }

    public void Dispose() => Release();

    private void BeginGrace()
    {
        lock (_gate)
        {
            if (_released)
            {
                return;
            }

            _graceEnds = Now + GracefulShutdown.FirstRequestGrace;
            ApplyLocked();
        }
    }

    private void ApplyLocked()
    {
        if (_released)
        {
            return;
        }

        var end = _deadline < _graceEnds ? _deadline : _graceEnds;
        try
        {
            _source.CancelAfter(end == None ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Max(0, (end - Now).Ticks)));
        }
        catch (ObjectDisposedException)
        {
            // the connection ended as the shutdown began
        }
    }

    private TimeSpan Now => _time.GetElapsedTime(_origin);
}
