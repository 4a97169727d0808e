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

    /// <summary>
    /// Told of every failure and recovery recorded here (not of those <see cref="Apply"/> brings in): a fleet node shares
    /// them, so an upstream failing on one node is backed off on all. Called on the connecting thread: must not block.
    /// </summary>
    public IUpstreamHealthListener? Listener { get; set; }

    /// <summary>Records a transport failure; returns the back-off now in force.</summary>
    public TimeSpan Failed(string id)
    {
        var now = _time.GetTimestamp();
        var entry = _entries.AddOrUpdate(id,
            _ => new Entry(1, now + Ticks(initial)),
            (_, old) => new Entry(old.Failures + 1, now + Ticks(BackoffFor(old.Failures + 1))));
        var backoff = BackoffFor(entry.Failures);
        Listener?.Failed(id, entry.Failures, backoff);
        return backoff;
    }

    /// <summary>Records a success: the upstream is healthy again.</summary>
    public void Succeeded(string id)
    {
        if (_entries.TryRemove(id, out _))
        {
            Listener?.Recovered(id);
        }
    }

    /// <summary>
    /// Takes in what another node (or the fleet's view) says of <paramref name="id"/>: backed off for
    /// <paramref name="backoff"/> after <paramref name="failures"/> failures, or healthy when <paramref name="backoff"/> is
    /// zero. A longer back-off already in force here is kept. Not passed on to <see cref="Listener"/>.
    /// </summary>
    public void Apply(string id, int failures, TimeSpan backoff)
    {
        if (backoff <= TimeSpan.Zero)
        {
            _entries.TryRemove(id, out _);
            return;
        }

        var until = _time.GetTimestamp() + Ticks(backoff);
        _entries.AddOrUpdate(id,
            _ => new Entry(failures, until),
            (_, old) => old.Until >= until ? old : new Entry(Math.Max(failures, old.Failures), until));
    }

    /// <summary>Failures recorded for <paramref name="id"/> since it was last healthy (0 when healthy).</summary>
    public int FailuresOf(string id) => _entries.TryGetValue(id, out var entry) ? entry.Failures : 0;

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

/// <summary>Hears of an upstream's health as this node records it (<see cref="UpstreamFailureCache.Listener"/>).</summary>
public interface IUpstreamHealthListener
{
    /// <summary><paramref name="id"/> failed at the transport level for the <paramref name="failures"/>th time in a row: backed off for <paramref name="backoff"/>.</summary>
    void Failed(string id, int failures, TimeSpan backoff);

    /// <summary><paramref name="id"/>, backed off before, worked again.</summary>
    void Recovered(string id);
}
