using System.Collections.Concurrent;

namespace Rama.Proxy.Upstream;

/// <summary>
/// Node-local health of upstreams: a transport failure (refused, timed out, handshake failed) backs an
/// upstream off for <c>initial * 2^(failures-1)</c>, capped; while backed off it is tried only after
/// every healthy candidate. When the back-off ends, the next request that wants it probes it: success
/// clears the record, another failure doubles the back-off. This only reorders the candidates that
/// selection (a pure function) produced; it never changes which upstreams match.
/// </summary>
public sealed class UpstreamFailureCache(TimeSpan initial, TimeSpan max, TimeProvider? time = null)
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    private sealed record Entry(int Failures, long Until);

    /// <summary>Upstreams currently backed off.</summary>
    public int BackedOffCount
    {
        get
        {
            var now = _time.GetTimestamp();
            return _entries.Values.Count(e => e.Until > now);
        }
    }

    public bool IsBackedOff(string id) => _entries.TryGetValue(id, out var entry) && entry.Until > _time.GetTimestamp();

    /// <summary>Time left in the back-off of <paramref name="id"/> (zero when usable).</summary>
    public TimeSpan Remaining(string id)
    {
        if (!_entries.TryGetValue(id, out var entry))
        {
            return TimeSpan.Zero;
        }

        var left = entry.Until - _time.GetTimestamp();
        return left <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(left / (double)_time.TimestampFrequency);
    }

    /// <summary>Records a transport failure; returns the back-off now in force.</summary>
    public TimeSpan Failed(string id)
    {
        var now = _time.GetTimestamp();
        var entry = _entries.AddOrUpdate(id,
            _ => new Entry(1, now + Ticks(initial)),
            (_, old) => new Entry(old.Failures + 1, now + Ticks(BackoffFor(old.Failures + 1))));
        return BackoffFor(entry.Failures);
    }

    /// <summary>Records a success: the upstream is healthy again.</summary>
    public void Succeeded(string id) => _entries.TryRemove(id, out _);

    private TimeSpan BackoffFor(int failures)
    {
        var factor = Math.Pow(2, Math.Min(failures - 1, 30));
        var ticks = Math.Min(initial.Ticks * factor, max.Ticks);
        return TimeSpan.FromTicks((long)ticks);
    }

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    /// <summary>The candidates in the order to try: healthy ones in their selection order, then backed-off ones.</summary>
    public IEnumerable<UpstreamProxy> Order(IReadOnlyList<UpstreamProxy> candidates)
    {
        var backedOff = new List<UpstreamProxy>();
        foreach (var candidate in candidates)
        {
            if (IsBackedOff(candidate.Id))
            {
                backedOff.Add(candidate);
            }
            else
            {
                yield return candidate;
            }
        }

        foreach (var candidate in backedOff)
        {
            yield return candidate;
        }
    }
}
