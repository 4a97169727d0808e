using System.Collections.Concurrent;

namespace Rama.Proxy.Core;

/// <summary>
/// Reusable timeout sources for per-request deadlines: <see cref="Rent"/> arms one, <see cref="Return"/> disarms it
/// with <see cref="CancellationTokenSource.TryReset"/> and keeps it, timer included, for the next request. A new
/// source per request costs a timer, its queue entry and a registration node each time (about 400 bytes and a lock
/// on the timer queue, measured in benchmarks/Rama.Benchmarks). A source that fired is disposed, never reused.
/// </summary>
internal sealed class TimeoutSources(TimeProvider time, int capacity = 1024)
{
    private readonly ConcurrentQueue<CancellationTokenSource> _free = new();
    private int _freeCount;

    /// <summary>A source that cancels after <paramref name="timeout"/>; give it back with <see cref="Return"/>.</summary>
    public CancellationTokenSource Rent(TimeSpan timeout)
    {
        if (_free.TryDequeue(out var source))
        {
            Interlocked.Decrement(ref _freeCount);
        }
        else
        {
            source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        }

        source.CancelAfter(timeout);
        return source;
    }

    /// <summary>Disarms <paramref name="source"/>; it is kept for reuse unless it fired or the pool is full. Registrations on it must be gone.</summary>
    public void Return(CancellationTokenSource source)
    {
        if (source.TryReset() && Interlocked.Increment(ref _freeCount) <= capacity)
        {
            _free.Enqueue(source);
            return;
        }

        if (!source.IsCancellationRequested)
        {
            Interlocked.Decrement(ref _freeCount);
        }

        source.Dispose();
    }
}
