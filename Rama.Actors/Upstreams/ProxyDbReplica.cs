using Akka.Actor;
using Akka.DistributedData;
using Akka.Event;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Upstreams;

/// <summary>
/// This node's read replica of the fleet's proxy database: <see cref="Database"/> is what the node's upstream routing
/// selects from (a <see cref="ReloadableProxyDatabase"/>, so selection never waits on the network and keeps working while
/// a shard moves or its node is gone). The <see cref="ProxyDbReplicaActor"/> swaps in a new indexed snapshot whenever a
/// partition's DistributedData key changes.
/// </summary>
public sealed class FleetProxyDatabase
{
    private long _updates;
    private long _updatedAtTicks;
    private Tuple<IProxyDatabase, IReadOnlyList<UpstreamProxy>> _snapshot = Tuple.Create(ProxyDatabase.Empty, (IReadOnlyList<UpstreamProxy>)[]);

    /// <summary>The replica: empty until the first partition arrives.</summary>
    public ReloadableProxyDatabase Database { get; } = new(ProxyDatabase.Empty);

    /// <summary>How many snapshots were swapped in since start.</summary>
    public long Updates => Interlocked.Read(ref _updates);

    /// <summary>When the last snapshot was swapped in (UTC), null before the first.</summary>
    public DateTimeOffset? UpdatedAt => Interlocked.Read(ref _updatedAtTicks) is var t and > 0 ? new DateTimeOffset(t, TimeSpan.Zero) : null;

    /// <summary>Partitions this replica has received (a value for their key, even an empty one).</summary>
    public int PartitionsSeen { get; private set; }

    /// <summary>The current snapshot with its records (for listing), read together.</summary>
    public (IProxyDatabase Database, IReadOnlyList<UpstreamProxy> Records) Snapshot
    {
        get
        {
            var snapshot = Volatile.Read(ref _snapshot);
            return (snapshot.Item1, snapshot.Item2);
        }
    }

    internal void Replace(IProxyDatabase snapshot, IReadOnlyList<UpstreamProxy> records, int partitionsSeen, DateTimeOffset now)
    {
        Volatile.Write(ref _snapshot, Tuple.Create(snapshot, records));
        Database.Replace(snapshot);
        PartitionsSeen = partitionsSeen;
        Interlocked.Exchange(ref _updatedAtTicks, now.UtcTicks);
        Interlocked.Increment(ref _updates);
    }
}

/// <summary>
/// Subscribes to every partition's key (<see cref="ProxyDbPartitions.Key"/>) and rebuilds the replica's snapshot from
/// all partitions when one changes; only the changed partition's lines are parsed again. DistributedData notifies
/// subscribers at most every <c>notify-subscribers-interval</c>, so bursts of writes cost one rebuild per interval.
/// </summary>
internal sealed class ProxyDbReplicaActor : ReceiveActor, IWithTimers
{
    private readonly FleetProxyDatabase _replica;
    private readonly IActorRef _replicator;
    private readonly TimeProvider _time;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<int, (IReadOnlyDictionary<string, string> Lines, List<UpstreamProxy> Records)> _partitions = [];
    private bool _rebuildPending;

    public ITimerScheduler Timers { get; set; } = null!;
    private TimeSpan _lastRebuild;
    private DateTimeOffset _lastRebuildAt;

    public ProxyDbReplicaActor(FleetProxyDatabase replica, IActorRef replicator, TimeProvider time)
    {
        _replica = replica;
        _replicator = replicator;
        _time = time;
        Receive<Changed>(changed =>
        {
            if (changed.Key is not LWWRegisterKey<string> key
                || !int.TryParse(key.Id.AsSpan(ProxyDbPartitions.KeyPrefix.Length), System.Globalization.CultureInfo.InvariantCulture, out var partition))
            {
                return;
            }

            var lines = ProxyDbPartitions.Records(changed.Get(key));
            var records = ProxyRecordCsv.ParseMany(lines.Values, (line, ex) => _log.Warning("proxydb partition {0}: skipping a record that does not parse ({1}): {2}", partition, ex.Message, line));
            _partitions[partition] = (lines, records);
            // Coalesced: the changes of many partitions arrive together (a load touches all of them); the rebuild message
            // queues behind them, so they cost one rebuild of the snapshot instead of one each.
            // Bounded: the next rebuild waits at least as long as the last one took, so a long burst of writes (a big load
            // arriving over seconds) spends at most half a core on rebuilds and selection keeps the previous snapshot meanwhile.
            if (!_rebuildPending)
            {
                _rebuildPending = true;
                var wait = _lastRebuild - (_time.GetUtcNow() - _lastRebuildAt);
                if (wait > TimeSpan.Zero)
                {
                    Timers.StartSingleTimer("rebuild", RebuildSnapshot.Instance, wait);
                }
                else
                {
                    Self.Tell(RebuildSnapshot.Instance);
                }
            }
        });
        Receive<RebuildSnapshot>(_ =>
        {
            _rebuildPending = false;
            var started = _time.GetTimestamp();
            Rebuild();
            _lastRebuild = _time.GetElapsedTime(started);
            _lastRebuildAt = _time.GetUtcNow();
        });
        Receive<GetProxyDbReplicaStats>(_ =>
        {
            var snapshot = _replica.Database.Current;
            Sender.Tell(new ProxyDbReplicaStats(Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString(), snapshot.Version, snapshot.Count,
                _replica.PartitionsSeen, _replica.Updates, _replica.UpdatedAt?.ToString("O", System.Globalization.CultureInfo.InvariantCulture) ?? "(never)",
                _replica.Database.Selections));
        });
    }

    public static Props Props(FleetProxyDatabase replica, IActorRef replicator, TimeProvider? time = null) =>
        Akka.Actor.Props.Create(() => new ProxyDbReplicaActor(replica, replicator, time ?? TimeProvider.System));

    protected override void PreStart()
    {
        for (var p = 0; p < ProxyDbPartitions.Count; p++)
        {
            _replicator.Tell(Dsl.Subscribe(ProxyDbPartitions.Key(p), Self));
        }
    }

    private sealed class RebuildSnapshot
    {
        public static readonly RebuildSnapshot Instance = new();
    }

    private void Rebuild()
    {
        IProxyDatabase snapshot;
        var records = _partitions.Values.SelectMany(p => p.Records).ToList();
        try
        {
            snapshot = ProxyDatabase.Create(records);
        }
        catch (ArgumentException ex)
        {
            // Two partitions holding the same id cannot happen (the partition is a function of the id); say so if it does.
            _log.Error(ex, "proxydb replica: the partitions do not form a database; keeping the previous snapshot");
            return;
        }

        _replica.Replace(snapshot, records, _partitions.Count, _time.GetUtcNow());
    }
}
