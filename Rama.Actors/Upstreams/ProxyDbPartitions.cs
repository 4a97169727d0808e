using System.Globalization;
using System.Text;
using Akka.Cluster.Sharding;
using Akka.DistributedData;

namespace Rama.Actors.Upstreams;

/// <summary>
/// How the fleet's proxy database is cut: a fixed number of partitions, a record in partition
/// <c>FNV-1a64(lower-case id) % Count</c> (stable across processes, never <see cref="string.GetHashCode()"/>), one sharded
/// entity per partition (the only writer of its records) and one Akka.DistributedData key per partition
/// (<c>proxydb-&lt;n&gt;</c>, an <see cref="LWWRegister{T}"/> holding lower-case id to the record's CSV line: <see cref="Encode"/>).
/// </summary>
public static class ProxyDbPartitions
{
    /// <summary>
    /// Partitions (and shards: one entity per shard). Fixed for the life of a fleet's data: changing it moves records between
    /// keys. 256 keeps one partition's DistributedData value (gossiped whole when replicas differ) near 50 KB at 100,000
    /// records and under Akka.Remote's frame (raised to 2 MB by the fleet's configuration) up to about 4 million: at 32,
    /// a 100,000-record load sent 340 KB messages that Akka.Remote's default 128 KB frame dropped (benchmarks/fleet_proxydb.py).
    /// </summary>
    public const int Count = 256;

    /// <summary>The shard region's type name (<c>pbm sharding shard-stats proxydb</c>).</summary>
    public const string TypeName = "proxydb";

    /// <summary>The cluster role that hosts the entities and keeps a replica.</summary>
    public const string Role = "proxy";

    /// <summary>The prefix of the DistributedData keys (durable keys match <c>proxydb-*</c>).</summary>
    public const string KeyPrefix = "proxydb-";

    /// <summary>The partition of a record id (ids are case-insensitive, so is this).</summary>
    public static int Of(string id)
    {
        ArgumentNullException.ThrowIfNull(id);
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(id.ToLowerInvariant()))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return (int)(hash % Count);
    }

    /// <summary>The DistributedData key of partition <paramref name="partition"/>: its records as one value (<see cref="Encode"/>).</summary>
    public static LWWRegisterKey<string> Key(int partition) => new(KeyPrefix + partition.ToString(CultureInfo.InvariantCulture));

    /// <summary>
    /// A partition's records (lower-case id to the record's CSV line) as the register's value: a JSON object, ids in
    /// ordinal order. One register per partition and not a map of records: the partition's entity is its only writer,
    /// so last-writer-wins loses nothing, and a register replicates as one small value, where Akka.NET 1.5.75's
    /// LWWDictionary (an ORDictionary with a version vector per entry) always propagates deltas, which it batches across
    /// keys into messages of megabytes at 100,000 records and cannot be switched off (it reads no delta-crdt.enabled).
    /// </summary>
    public static string Encode(IReadOnlyDictionary<string, string> records) =>
        System.Text.Json.JsonSerializer.Serialize(new SortedDictionary<string, string>(records.ToDictionary(), StringComparer.Ordinal));

    /// <summary>The records of a register's value (<see cref="Encode"/>); an empty or missing value is no records.</summary>
    public static Dictionary<string, string> Decode(string? value) =>
        string.IsNullOrEmpty(value)
            ? new Dictionary<string, string>(StringComparer.Ordinal)
            : new Dictionary<string, string>(System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(value) ?? [], StringComparer.Ordinal);

    /// <summary>The records of a partition's register as read from DistributedData.</summary>
    public static Dictionary<string, string> Records(LWWRegister<string>? register) => Decode(register?.Value);

    /// <summary>The key in a partition's map: the lower-case id.</summary>
    internal static string EntryKey(string id) => id.ToLowerInvariant();
}

/// <summary>Routes <see cref="IProxyDbPartitionCommand"/>s: entity id and shard id are both the partition number.</summary>
internal sealed class ProxyDbMessageExtractor : IMessageExtractor
{
    public static readonly ProxyDbMessageExtractor Instance = new();

    public string? EntityId(object message) =>
        message is IProxyDbPartitionCommand c ? c.Partition.ToString(CultureInfo.InvariantCulture) : null;

    public object? EntityMessage(object message) => message;

    public string? ShardId(object message) => EntityId(message);

    public string ShardId(string entityId, object? messageHint = null) => entityId;
}
