namespace Rama.Actors.Upstreams;

/// <summary>A command for the entity that owns one partition of the fleet's proxy database.</summary>
public interface IProxyDbPartitionCommand
{
    /// <summary>The partition (<see cref="ProxyDbPartitions.Of"/> of the record's id).</summary>
    int Partition { get; }
}

/// <summary>Adds one record (a CSV line in rama's order); refused when its id exists. Answer: <see cref="ProxyDbWriteResult"/>.</summary>
public sealed record AddProxyRecord(int Partition, string Line) : IProxyDbPartitionCommand;

/// <summary>Removes the record with this id (case-insensitive). Answer: <see cref="ProxyDbWriteResult"/>.</summary>
public sealed record RemoveProxyRecord(int Partition, string Id) : IProxyDbPartitionCommand;

/// <summary>
/// First phase of a load: the entity validates <paramref name="Lines"/> (added, or replacing the records with the same
/// ids) and holds them under <paramref name="LoadId"/> without applying them. Answer: <see cref="ProxyDbWriteResult"/>.
/// </summary>
public sealed record PrepareProxyLoad(int Partition, string LoadId, string[] Lines) : IProxyDbPartitionCommand;

/// <summary>
/// Second phase: applies the load in one write. It carries the lines again, so an entity that started anew after the
/// prepare (its node died, the shard moved; or the prepare expired) applies them all the same once they validate: every
/// partition agreed, the decision is to commit. Refused only for a load this entity aborted. Answer: <see cref="ProxyDbWriteResult"/>.
/// </summary>
public sealed record CommitProxyLoad(int Partition, string LoadId, string[] Lines) : IProxyDbPartitionCommand;

/// <summary>Drops a prepared load (another partition refused it). No answer.</summary>
public sealed record AbortProxyLoad(int Partition, string LoadId) : IProxyDbPartitionCommand;

/// <summary>
/// The outcome of a write: <paramref name="Ok"/>, a message for the operator, and how it was replicated
/// (<c>all</c>: every proxy node acknowledged; <c>majority</c>; <c>local</c>: written on the owner, gossip carries it).
/// </summary>
public sealed record ProxyDbWriteResult(int Partition, bool Ok, string Message, string Replicated = "");

/// <summary>Asks a node's replica actor for its state (<c>pbm proxydb stats</c> asks every proxy node). Answer: <see cref="ProxyDbReplicaStats"/>.</summary>
public sealed record GetProxyDbReplicaStats;

/// <summary>One node's replica: its version and record count, snapshots swapped in, when the last was, selections routed from it.</summary>
public sealed record ProxyDbReplicaStats(string Node, string Version, int Records, int PartitionsSeen, long Updates, string UpdatedAt, long Selections);
