using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Upstreams;

/// <summary>
/// The sharded entity that owns one partition of the fleet's proxy database: the only writer of its records. It reads
/// the partition's DistributedData key (majority, falling back to this node's replica) before it serves anything,
/// validates every write (each record parsed as a file row would be; unique ids; the record in this partition), and
/// writes with <see cref="WriteAll"/> so every proxy node's replica has it at once, falling back to
/// <see cref="WriteMajority"/> when a node does not answer (gossip brings it the change later). Writes are one at a time:
/// messages arriving during one are stashed.
/// </summary>
internal sealed class ProxyDbPartitionActor : ReceiveActor, IWithStash
{
    /// <summary>How long a prepared load waits for its commit before it is dropped.</summary>
    internal static readonly TimeSpan PreparedLoadTimeout = TimeSpan.FromSeconds(30);

    private readonly int _partition;
    private readonly LWWRegisterKey<string> _key;
    private readonly IActorRef _replicator;
    private readonly TimeSpan _writeTimeout;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<string, (string[] Lines, ICancelable Expiry)> _prepared = new(StringComparer.Ordinal);
    private Dictionary<string, string> _records = new(StringComparer.Ordinal);
    // The last 100 loads aborted here: a commit for one of them is refused.
    private readonly HashSet<string> _aborted = new(StringComparer.Ordinal);
    private readonly Queue<string> _abortedOrder = new();

    public ProxyDbPartitionActor(int partition, IActorRef replicator, TimeSpan writeTimeout)
    {
        _partition = partition;
        _key = ProxyDbPartitions.Key(partition);
        _replicator = replicator;
        _writeTimeout = writeTimeout;
        Loading(triedMajority: false);
    }

    public IStash Stash { get; set; } = null!;

    public static Props Props(int partition, IActorRef replicator, TimeSpan writeTimeout) =>
        Akka.Actor.Props.Create(() => new ProxyDbPartitionActor(partition, replicator, writeTimeout));

    protected override void PreStart() => _replicator.Tell(Dsl.Get(_key, new ReadMajority(_writeTimeout)));

    private void Loading(bool triedMajority)
    {
        Receive<GetSuccess>(g => g.Key.Equals(_key), g =>
        {
            _records = ProxyDbPartitions.Records(g.Get(_key));
            BecomeReady();
        });
        Receive<NotFound>(n => n.Key.Equals(_key), _ => BecomeReady());
        Receive<GetFailure>(f => f.Key.Equals(_key), _ =>
        {
            // No majority answered (a fleet of one proxy node answers itself): this node's replica is the best there is.
            _log.Warning("proxydb partition {0}: no majority answered the read; using this node's replica", _partition);
            Become(() => Loading(triedMajority: true));
            _replicator.Tell(Dsl.Get(_key, ReadLocal.Instance));
        });
        ReceiveAny(_ => Stash.Stash());
    }

    private void BecomeReady()
    {
        Become(Ready);
        Stash.UnstashAll();
    }

    private void Ready()
    {
        Receive<AddProxyRecord>(add =>
        {
            if (!TryParse(add.Line, out var record, out var error))
            {
                Sender.Tell(Refused(error));
                return;
            }

            if (_records.ContainsKey(ProxyDbPartitions.EntryKey(record.Id)))
            {
                Sender.Tell(Refused($"record '{record.Id}' exists: remove it first, or load a file to replace it"));
                return;
            }

            Write([(record, add.Line)], [], Sender, $"added {record.Id}");
        });
        Receive<RemoveProxyRecord>(remove =>
        {
            var key = ProxyDbPartitions.EntryKey(remove.Id.Trim());
            if (!_records.ContainsKey(key))
            {
                Sender.Tell(Refused($"no record '{remove.Id}'"));
                return;
            }

            Write([], [key], Sender, $"removed {remove.Id}");
        });
        Receive<PrepareProxyLoad>(prepare =>
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var line in prepare.Lines)
            {
                if (!TryParse(line, out var record, out var error))
                {
                    Sender.Tell(Refused(error));
                    return;
                }

                if (!seen.Add(ProxyDbPartitions.EntryKey(record.Id)))
                {
                    Sender.Tell(Refused($"record '{record.Id}' given twice"));
                    return;
                }
            }

            if (_prepared.Remove(prepare.LoadId, out var previous))
            {
                previous.Expiry.Cancel();
            }

            var expiry = Context.System.Scheduler.ScheduleTellOnceCancelable(PreparedLoadTimeout, Self, new AbortProxyLoad(_partition, prepare.LoadId), Self);
            _prepared[prepare.LoadId] = (prepare.Lines, expiry);
            Sender.Tell(new ProxyDbWriteResult(_partition, true, $"prepared {prepare.Lines.Length} records"));
        });
        Receive<CommitProxyLoad>(commit =>
        {
            if (_aborted.Contains(commit.LoadId))
            {
                Sender.Tell(Refused($"load {commit.LoadId} was aborted here"));
                return;
            }

            string[] lines;
            if (_prepared.Remove(commit.LoadId, out var load))
            {
                load.Expiry.Cancel();
                lines = load.Lines;
            }
            else
            {
                // Not prepared here (this entity started after the prepare, or the prepare expired): the commit's own lines,
                // validated as a prepare would have.
                lines = commit.Lines;
                foreach (var line in lines)
                {
                    if (!TryParse(line, out _, out var error))
                    {
                        Sender.Tell(Refused(error));
                        return;
                    }
                }
            }

            var records = lines.Select(l => (ProxyRecordCsv.ParseOne(l), l)).ToList();
            Write(records, [], Sender, $"loaded {records.Count} records");
        });
        Receive<AbortProxyLoad>(abort =>
        {
            if (_prepared.Remove(abort.LoadId, out var load))
            {
                load.Expiry.Cancel();
            }

            _aborted.Add(abort.LoadId);
            _abortedOrder.Enqueue(abort.LoadId);
            if (_abortedOrder.Count > 100)
            {
                _aborted.Remove(_abortedOrder.Dequeue());
            }
        });
    }

    private bool TryParse(string line, out UpstreamProxy record, out string error)
    {
        try
        {
            record = ProxyRecordCsv.ParseOne(line);
        }
        catch (ProxyDatabaseException ex)
        {
            record = null!;
            error = string.Join("; ", ex.Errors.Select(e => e.Field.Length == 0 ? e.Message : $"field '{e.Field}': {e.Message}"));
            return false;
        }

        if (ProxyDbPartitions.Of(record.Id) != _partition)
        {
            error = $"record '{record.Id}' belongs to partition {ProxyDbPartitions.Of(record.Id)}, not {_partition}";
            return false;
        }

        error = "";
        return true;
    }

    private ProxyDbWriteResult Refused(string message) => new(_partition, false, message);

    /// <summary>Puts and removes in one DistributedData update, then answers <paramref name="replyTo"/> when it is replicated.</summary>
    private void Write(IReadOnlyList<(UpstreamProxy Record, string Line)> puts, IReadOnlyList<string> removes, IActorRef replyTo, string done)
    {
        var self = Cluster.Get(Context.System).SelfUniqueAddress;
        // The local replica applies the update whatever the replication's outcome: so does the entity's view.
        foreach (var key in removes)
        {
            _records.Remove(key);
        }

        foreach (var (record, _) in puts)
        {
            _records[ProxyDbPartitions.EntryKey(record.Id)] = ProxyRecordCsv.Format(record);
        }

        var value = ProxyDbPartitions.Encode(_records);
        LWWRegister<string> Modify(LWWRegister<string> register) => register.WithValue(self, value);

        _replicator.Tell(Dsl.Update(_key, new LWWRegister<string>(self, ""), new WriteAll(_writeTimeout), Modify));
        Become(() => Writing(Modify, replyTo, done, fallenBack: false));
    }

    private void Writing(Func<LWWRegister<string>, LWWRegister<string>> modify, IActorRef replyTo, string done, bool fallenBack)
    {
        Receive<UpdateSuccess>(s => s.Key.Equals(_key), _ => Finish(replyTo, new ProxyDbWriteResult(_partition, true, done, fallenBack ? "majority" : "all")));
        Receive<UpdateTimeout>(t => t.Key.Equals(_key), _ =>
        {
            if (fallenBack)
            {
                Finish(replyTo, new ProxyDbWriteResult(_partition, true, done + " (no majority acknowledged in time: written on the owner, gossip replicates it)", "local"));
                return;
            }

            _log.Info("proxydb partition {0}: not every proxy node acknowledged within {1}; writing to a majority", _partition, _writeTimeout);
            // Idempotent: the same puts and removes again, acknowledged by a majority this time.
            _replicator.Tell(Dsl.Update(_key, new LWWRegister<string>(Cluster.Get(Context.System).SelfUniqueAddress, ""), new WriteMajority(_writeTimeout), modify));
            Become(() => Writing(modify, replyTo, done, fallenBack: true));
        });
        Receive<IUpdateFailure>(f => f.Key.Equals(_key), f =>
        {
            _log.Error("proxydb partition {0}: write failed: {1}", _partition, f);
            replyTo.Tell(Refused($"write failed: {f}"));
            // The entity's view assumed the write: read the replica again.
            Become(() => Loading(triedMajority: true));
            _replicator.Tell(Dsl.Get(_key, ReadLocal.Instance));
        });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Finish(IActorRef replyTo, ProxyDbWriteResult result)
    {
        replyTo.Tell(result);
        BecomeReady();
    }
}
