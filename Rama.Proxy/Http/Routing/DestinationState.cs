namespace Rama.Proxy.Http.Routing;

/// <summary>
/// One destination of a cluster: its address, requests in flight (for least-requests) and health. Active health
/// (probes) and passive health (forwarding failures) are tracked apart; the destination takes traffic only when
/// both allow it. Thread-safe; shared across reloads while the cluster, id and address stay the same.
/// </summary>
internal sealed class DestinationState
{
    private readonly Lock _lock = new();
    private readonly Queue<long> _failures = new();
    private int _inFlight;
    private volatile bool _activeHealthy = true; // read without the lock on every pick; written under it
    private int _consecutiveFailures;
    private int _consecutiveSuccesses;
    private long _ejectedUntil = long.MinValue;

    public DestinationState(string id, DestinationAddress address, DestinationAddress probe)
    {
        Id = id;
        Address = address;
        Probe = probe;
    }

    public string Id { get; }

    public DestinationAddress Address { get; }

    /// <summary>Where active probes go (the destination's Health address, or its Address).</summary>
    public DestinationAddress Probe { get; }

    public int InFlight => Volatile.Read(ref _inFlight);

    public bool ActiveHealthy => _activeHealthy;

    public void RequestStarted() => Interlocked.Increment(ref _inFlight);

    public void RequestEnded() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Whether the destination takes traffic at <paramref name="now"/> (timestamps of the cluster's TimeProvider).</summary>
    public bool IsAvailable(long now) => _activeHealthy && now >= Volatile.Read(ref _ejectedUntil);

    /// <summary>
    /// One probe's result; returns the change of the active state, if any. <paramref name="unhealthyThreshold"/> consecutive
    /// failures take the destination out, <paramref name="healthyThreshold"/> consecutive successes bring it back.
    /// </summary>
    public bool? ReportProbe(bool success, int unhealthyThreshold, int healthyThreshold)
    {
        lock (_lock)
        {
            if (success)
            {
                _consecutiveFailures = 0;
                _consecutiveSuccesses++;
                if (!_activeHealthy && _consecutiveSuccesses >= healthyThreshold)
                {
                    _activeHealthy = true;
                    return true;
                }
            }
            else
            {
                _consecutiveSuccesses = 0;
                _consecutiveFailures++;
                if (_activeHealthy && _consecutiveFailures >= unhealthyThreshold)
                {
                    _activeHealthy = false;
                    return false;
                }
            }

            return null;
        }
    }

    /// <summary>
    /// A forwarding failure at <paramref name="now"/>: with <paramref name="maxFailures"/> of them within <paramref name="window"/>
    /// the destination is ejected until now + <paramref name="reactivation"/>. Returns true when this failure ejected it.
    /// </summary>
    public bool ReportFailure(long now, long window, int maxFailures, long reactivation)
    {
        lock (_lock)
        {
            while (_failures.Count > 0 && now - _failures.Peek() > window)
            {
                _failures.Dequeue();
            }

            _failures.Enqueue(now);
            if (_failures.Count < maxFailures || now < Volatile.Read(ref _ejectedUntil))
            {
                return false;
            }

            _failures.Clear();
            Volatile.Write(ref _ejectedUntil, now + reactivation);
            return true;
        }
    }
}
