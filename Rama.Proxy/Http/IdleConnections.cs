namespace Rama.Proxy.Http;

/// <summary>
/// One partition of an origin-connection pool: the idle connections of one target on the pipes (<see cref="Http1ConnectionPool"/>,
/// under its lock) or of one event loop on the epoll reverse proxy (its loop thread only). The same rules for both: the newest is
/// reused first (LIFO: the warmest, the least likely to have been closed by the origin), at most <see cref="Max"/> are kept (a
/// connection offered beyond that is the caller's to close), and each is stamped with the time it went idle so that expired ones
/// can be swept. Not thread-safe: its owner serialises every call; no allocation once its list has grown.
/// </summary>
/// <typeparam name="TConnection">The pooled connection: an <c>IOriginConnection</c> on the pipes, a loop's socket on epoll.</typeparam>
internal sealed class IdleConnections<TConnection>(int max)
    where TConnection : class
{
    private readonly List<(TConnection Connection, long Since)> _idle = [];

    /// <summary>The most kept at once.</summary>
    public int Max { get; } = max;

    public int Count => _idle.Count;

    /// <summary>Keeps <paramref name="connection"/>, idle since <paramref name="now"/>; false when the partition is full (then close it).</summary>
    public bool TryAdd(TConnection connection, long now)
    {
        if (_idle.Count >= Max)
        {
            return false;
        }

        _idle.Add((connection, now));
        return true;
    }

    /// <summary>Takes the newest idle connection (and when it went idle); false when there is none.</summary>
    public bool TryTakeNewest(out TConnection connection, out long since)
    {
        if (_idle.Count == 0)
        {
            connection = null!;
            since = 0;
            return false;
        }

        (connection, since) = _idle[^1];
        _idle.RemoveAt(_idle.Count - 1);
        return true;
    }

    /// <summary>Removes <paramref name="connection"/> if it is idle here (it spoke or closed while pooled); true when it was.</summary>
    public bool Remove(TConnection connection)
    {
        for (var i = _idle.Count - 1; i >= 0; i--)
        {
            if (ReferenceEquals(_idle[i].Connection, connection))
            {
                _idle.RemoveAt(i);
                return true;
            }
        }

        return false;
    }

    /// <summary>Moves every connection <paramref name="drop"/> says is done (expired, closed) into <paramref name="removed"/> for the caller to close.</summary>
    public void RemoveWhere<TState>(TState state, Func<TState, TConnection, long, bool> drop, List<TConnection> removed)
    {
        for (var i = _idle.Count - 1; i >= 0; i--)
        {
            var (connection, since) = _idle[i];
            if (drop(state, connection, since))
            {
                _idle.RemoveAt(i);
                removed.Add(connection);
            }
        }
    }

    /// <summary>Empties the partition into <paramref name="removed"/> (shutdown).</summary>
    public void Clear(List<TConnection> removed)
    {
        foreach (var (connection, _) in _idle)
        {
            removed.Add(connection);
        }

        _idle.Clear();
    }
}
