using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>
/// Idle HTTP/1.1 origin connections per target (host:port): at most a few each, each kept at most
/// the idle timeout (a timer sweeps expired ones). The newest is reused first (LIFO: the warmest,
/// and the one least likely to have been closed by the origin). A connection the origin closed
/// or that holds unexpected bytes is detected when taken and discarded.
/// </summary>
internal sealed class Http1ConnectionPool : IAsyncDisposable
{
    // One partition per target (IdleConnections: the rules the epoll reverse proxy's per-loop partitions follow too), under this lock.
    private readonly Dictionary<HostPort, IdleConnections<IOriginConnection>> _idle = [];
    private readonly int _maxPerTarget;
    private readonly TimeSpan _idleTimeout;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;
    private bool _disposed;

    public Http1ConnectionPool(int maxPerTarget, TimeSpan idleTimeout, TimeProvider time)
    {
        _maxPerTarget = maxPerTarget;
        _idleTimeout = idleTimeout;
        _time = time;
        var period = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(1).Ticks, idleTimeout.Ticks / 2));
        _sweeper = time.CreateTimer(static state => ((Http1ConnectionPool)state!).Sweep(), this, period, period);
    }

    /// <summary>Idle connections held (for tests and metrics).</summary>
    public int IdleCount
    {
        get
        {
            lock (_idle)
            {
                return _idle.Values.Sum(partition => partition.Count);
            }
        }
    }

    public static HostPort Key(HostPort target) => target with { Host = target.Host.ToLowerInvariant() };

    /// <summary>The key of <paramref name="target"/> within a partition (connections through one upstream); '|' never occurs in a host.</summary>
    public static HostPort Key(HostPort target, ConnectionPoolPartition? partition) =>
        partition is null ? Key(target) : target with { Host = partition.Name + "|" + target.Host.ToLowerInvariant() };

    /// <summary>A live idle connection to <paramref name="target"/>, or null.</summary>
    public IOriginConnection? TryTake(HostPort target)
    {
        while (true)
        {
            IOriginConnection connection;
            long since;
            lock (_idle)
            {
                if (!_idle.TryGetValue(target, out var partition) || !partition.TryTakeNewest(out connection, out since))
                {
                    return null;
                }
            }

            if (_time.GetElapsedTime(since) < _idleTimeout && IsQuiet(connection))
            {
                return connection;
            }

            Discard(connection);
        }
    }

    /// <summary>Keeps a connection whose last response ended cleanly; closes it when the pool is full or disposed.</summary>
    public void Return(HostPort target, IOriginConnection connection)
    {
        lock (_idle)
        {
            if (!_disposed && IsQuiet(connection))
            {
                if (!_idle.TryGetValue(target, out var partition))
                {
                    _idle[target] = partition = new IdleConnections<IOriginConnection>(_maxPerTarget);
                }

                if (partition.TryAdd(connection, _time.GetTimestamp()))
                {
                    return;
                }
            }
        }

        Discard(connection);
    }

    // An idle connection must have nothing to read: no FIN (the origin closed it) and no stray bytes.
    private static bool IsQuiet(IOriginConnection connection)
    {
        if (connection.ConnectionClosed.IsCancellationRequested)
        {
            return false;
        }

        if (!connection.Input.TryRead(out var result))
        {
            return true;
        }

        connection.Input.AdvanceTo(result.Buffer.Start);
        return false;
    }

    private void Sweep()
    {
        var expired = new List<IOriginConnection>();
        lock (_idle)
        {
            foreach (var partition in _idle.Values)
            {
                partition.RemoveWhere(this, static (pool, connection, since) =>
                    pool._disposed || pool._time.GetElapsedTime(since) >= pool._idleTimeout || !IsQuiet(connection), expired);
            }
        }

        foreach (var connection in expired)
        {
            Discard(connection);
        }
    }

    internal static void Discard(IOriginConnection connection) => _ = connection.DisposeAsync().AsTask();

    public async ValueTask DisposeAsync()
    {
        lock (_idle)
        {
            _disposed = true;
        }

        await _sweeper.DisposeAsync().ConfigureAwait(false);
        Sweep();
    }
}
