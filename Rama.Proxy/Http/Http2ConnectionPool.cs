using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http;

/// <summary>
/// HTTP/2 origin connections per target (the same keys as <see cref="Http1ConnectionPool"/>): one connection carries many
/// requests at once, so a request takes any usable connection with a free stream (<see cref="Http2ClientConnection.AvailableStreams"/>)
/// and a new one is dialled only when every connection is saturated or going away. Concurrent requests to a target with no
/// connection share one dial. A connection without open streams for the idle timeout is closed (GOAWAY), as is every
/// connection when the pool is disposed. Thread-safe.
/// </summary>
internal sealed class Http2ConnectionPool : IAsyncDisposable
{
    /// <summary>Connections kept per target at most; a request beyond all of their streams waits on the least loaded one.</summary>
    public const int MaxConnectionsPerTarget = 8;

    private readonly Dictionary<HostPort, Partition> _partitions = [];
    private readonly HashSet<HostPort> _choseHttp2 = [];
    private readonly TimeSpan _idleTimeout;
    private readonly TimeProvider _time;
    private readonly ITimer _sweeper;
    private bool _disposed;

    public Http2ConnectionPool(TimeSpan idleTimeout, TimeProvider time)
    {
        _idleTimeout = idleTimeout;
        _time = time;
        var period = TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(1).Ticks, idleTimeout.Ticks / 2));
        _sweeper = time.CreateTimer(static state => ((Http2ConnectionPool)state!).Sweep(), this, period, period);
    }

    /// <summary>Connections held (for tests and metrics).</summary>
    public int Count
    {
        get
        {
            lock (_partitions)
            {
                return _partitions.Values.Sum(p => p.Connections.Count);
            }
        }
    }

    /// <summary>
    /// A usable connection to <paramref name="key"/> with a free stream, or null (then dial one and <see cref="Add"/> it). When
    /// the target already has <see cref="MaxConnectionsPerTarget"/> usable connections, the least loaded one even when full
    /// (its request waits for a stream).
    /// </summary>
    public Http2ClientConnection? TryTake(HostPort key)
    {
        lock (_partitions)
        {
            if (!_partitions.TryGetValue(key, out var partition))
            {
                return null;
            }

            Http2ClientConnection? best = null;
            var usable = 0;
            for (var i = partition.Connections.Count - 1; i >= 0; i--)
            {
                var entry = partition.Connections[i];
                if (!entry.Connection.IsUsable)
                {
                    continue; // draining: its streams finish, the sweep closes it
                }

                usable++;
                if (entry.Connection.AvailableStreams > 0)
                {
                    entry.IdleSince = 0;
                    return entry.Connection;
                }

                best = best is null || entry.Connection.ActiveStreams < best.ActiveStreams ? entry.Connection : best;
            }

            return usable >= MaxConnectionsPerTarget ? best : null;
        }
    }

    /// <summary>
    /// A connection to <paramref name="key"/>: a pooled one, or the one <paramref name="dial"/> makes (shared by the requests that
    /// asked meanwhile). The dial runs without the caller's token (others may wait on it); it is bounded by the connector's timeout.
    /// </summary>
    public async ValueTask<(Http2ClientConnection? Connection, ForwardError Error, string Detail)> GetAsync(HostPort key,
        Func<Task<(Http2ClientConnection? Connection, ForwardError Error, string Detail)>> dial, CancellationToken cancellationToken)
    {
        if (TryTake(key) is { } pooled)
        {
            return (pooled, ForwardError.None, "");
        }

        Task<(Http2ClientConnection?, ForwardError, string)> pending;
        lock (_partitions)
        {
            if (_disposed)
            {
                return (null, ForwardError.UpstreamClosed, "the HTTP/2 pool is closed");
            }

            var partition = PartitionOf(key);
            if (partition.Dialing is null || partition.Dialing.IsCompleted)
            {
                partition.Dialing = DialAndAddAsync(key, dial);
            }

            pending = partition.Dialing;
        }

        return await pending.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<(Http2ClientConnection?, ForwardError, string)> DialAndAddAsync(HostPort key,
        Func<Task<(Http2ClientConnection? Connection, ForwardError Error, string Detail)>> dial)
    {
        await Task.Yield(); // out of the lock
        var result = await dial().ConfigureAwait(false);
        if (result.Connection is { } connection)
        {
            Add(key, connection);
        }

        return result;
    }

    /// <summary>Remembers that the https origin <paramref name="key"/> chose h2 by ALPN: its next requests share HTTP/2 dials (<see cref="GetAsync"/>).</summary>
    public void RememberHttp2(HostPort key)
    {
        lock (_partitions)
        {
            _choseHttp2.Add(key);
        }
    }

    /// <summary>Whether the https origin <paramref name="key"/> chose h2 before.</summary>
    public bool ChoseHttp2(HostPort key)
    {
        lock (_partitions)
        {
            return _choseHttp2.Contains(key);
        }
    }

    /// <summary>Keeps <paramref name="connection"/> (a new one) for further requests to <paramref name="key"/>; it leaves the pool when it ends.</summary>
    public void Add(HostPort key, Http2ClientConnection connection)
    {
        lock (_partitions)
        {
            if (!_disposed)
            {
                PartitionOf(key).Connections.Add(new Entry(connection));
                _ = connection.Completion.ContinueWith(
                    static (_, state) => { var (pool, k, c) = ((Http2ConnectionPool, HostPort, Http2ClientConnection))state!; pool.Remove(k, c); },
                    (this, key, connection), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                return;
            }
        }

        _ = connection.DisposeAsync().AsTask();
    }

    private Partition PartitionOf(HostPort key)
    {
        if (!_partitions.TryGetValue(key, out var partition))
        {
            _partitions[key] = partition = new Partition();
        }

        return partition;
    }

    private void Remove(HostPort key, Http2ClientConnection connection)
    {
        lock (_partitions)
        {
            if (_partitions.TryGetValue(key, out var partition))
            {
                partition.Connections.RemoveAll(e => ReferenceEquals(e.Connection, connection));
            }
        }
    }

    // Closes connections with no open stream for the idle timeout, and drained ones (GOAWAY received) with none left.
    private void Sweep() => _ = SweepAsync();

    // The closes of the sweep: each sends GOAWAY (its write bounded in time) and closes the socket, whatever the origin does.
    private Task SweepAsync()
    {
        var closing = new List<Http2ClientConnection>();
        lock (_partitions)
        {
            var now = _time.GetTimestamp();
            foreach (var partition in _partitions.Values)
            {
                for (var i = partition.Connections.Count - 1; i >= 0; i--)
                {
                    var entry = partition.Connections[i];
                    var connection = entry.Connection;
                    if (connection.ActiveStreams > 0 && !_disposed)
                    {
                        entry.IdleSince = 0;
                        continue;
                    }

                    if (entry.IdleSince == 0 && !_disposed && connection.IsUsable)
                    {
                        entry.IdleSince = now;
                        continue;
                    }

                    if (_disposed || !connection.IsUsable || _time.GetElapsedTime(entry.IdleSince) >= _idleTimeout)
                    {
                        partition.Connections.RemoveAt(i);
                        closing.Add(connection);
                    }
                }
            }
        }

        return closing.Count == 0 ? Task.CompletedTask : Task.WhenAll(closing.Select(c => c.DisposeAsync().AsTask()));
    }

    /// <summary>
    /// Closes every connection, busy or not (GOAWAY(NO_ERROR), then the socket), and completes when all are closed: an origin
    /// that keeps its connections open does not hold the pool (RFC 9113 §6.8: the GOAWAY write is bounded, then the close).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        lock (_partitions)
        {
            _disposed = true;
        }

        await _sweeper.DisposeAsync().ConfigureAwait(false);
        await SweepAsync().ConfigureAwait(false);
    }

    private sealed class Partition
    {
        public List<Entry> Connections { get; } = [];

        public Task<(Http2ClientConnection?, ForwardError, string)>? Dialing { get; set; }
    }

    private sealed class Entry(Http2ClientConnection connection)
    {
        public Http2ClientConnection Connection { get; } = connection;

        /// <summary>When the sweep first saw it without streams (0: busy since).</summary>
        public long IdleSince { get; set; }
    }
}
