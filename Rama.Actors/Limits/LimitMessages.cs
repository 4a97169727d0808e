using System.Globalization;
using System.Text;
using Akka.Cluster.Sharding;
using Rama.Proxy.Limits;

namespace Rama.Actors.Limits;

/// <summary>A message for the sharded entity that holds one key's limits and health (<see cref="LimitKeys"/>).</summary>
public interface ILimitCommand
{
    /// <summary>The entity: <c>upstream:&lt;id&gt;</c> or <c>user:&lt;name&gt;</c> (<see cref="LimitKeys.Of"/>).</summary>
    string Key { get; }
}

/// <summary>
/// Asks for one lease under a policy (the asking node's, from the record or its defaults): answered
/// <see cref="LimitGranted"/> or <see cref="LimitRefused"/>. <paramref name="Holder"/> is the asking member's unique
/// address: its leases go when it leaves the cluster (removed, downed) or stops renewing them.
/// </summary>
public sealed record AcquireLimit(string Key, string LeaseId, string Holder, int? MaxConcurrent, int? RateCount, long? RatePerMs) : ILimitCommand;

/// <summary>The lease is held.</summary>
public sealed record LimitGranted(string Key, string LeaseId, int Held);

/// <summary>Refused: <paramref name="Reason"/> names the limit, <paramref name="RetryAfterMs"/> says when to try again.</summary>
public sealed record LimitRefused(string Key, string LeaseId, string Reason, long RetryAfterMs);

/// <summary>Gives a lease back (no answer).</summary>
public sealed record ReleaseLimit(string Key, string LeaseId) : ILimitCommand;

/// <summary>
/// A holder's leases on a key, sent every <see cref="FleetLimitSettings.RenewInterval"/> while it holds any: the entity
/// keeps them alive, takes in those it does not know (it was restarted elsewhere after its node died), and drops the
/// holder's leases not listed that are older than one interval (released, the release lost). No answer.
/// </summary>
public sealed record RenewLimitLeases(string Key, string Holder, string[] LeaseIds) : ILimitCommand;

/// <summary>
/// What a node saw of an upstream: a transport failure (<paramref name="Failed"/>) or a recovery. The entity counts the
/// fleet's failures, works out the back-off (<paramref name="BackoffInitialMs"/> doubling up to <paramref name="BackoffMaxMs"/>)
/// and publishes <see cref="UpstreamHealthChanged"/> to every proxy node. No answer.
/// </summary>
public sealed record ReportUpstreamHealth(string Key, string UpstreamId, string Holder, bool Failed, long BackoffInitialMs, long BackoffMaxMs) : ILimitCommand;

/// <summary>Published on <see cref="LimitKeys.HealthTopic"/>: <paramref name="UpstreamId"/> backed off for <paramref name="BackoffMs"/> after <paramref name="Failures"/> failures (0 and 0: healthy again).</summary>
public sealed record UpstreamHealthChanged(string UpstreamId, int Failures, long BackoffMs, string ReportedBy);

/// <summary>Asks the entity what it holds (<c>pbm limits show</c>): answered <see cref="LimitStateReply"/>.</summary>
public sealed record GetLimitState(string Key) : ILimitCommand;

/// <summary>A key's state: its policy (as last asked with), leases held in total and per holder, tokens left, health.</summary>
public sealed record LimitStateReply(
    string Key, string Policy, int Held, IReadOnlyDictionary<string, int> HeldByNode, double? Tokens, int Failures, long BackedOffMsLeft,
    long Granted, long Refused, string Owner);

/// <summary>Keys, shards and the pub-sub topic of the fleet's limits.</summary>
public static class LimitKeys
{
    /// <summary>The shard region's type name (<c>pbm sharding shard-stats limits</c>).</summary>
    public const string TypeName = "limits";

    /// <summary>Shards of the region: keys spread over them by a stable hash.</summary>
    public const int Shards = 64;

    /// <summary>The DistributedPubSub topic of upstream health.</summary>
    public const string HealthTopic = "rama-upstream-health";

    /// <summary>The entity key of a scope and name (upstream ids are case-insensitive, user names are not).</summary>
    public static string Of(LimitScope scope, string name) =>
        scope == LimitScope.Upstream ? "upstream:" + name.ToLowerInvariant() : "user:" + name;

    /// <summary>The shard of an entity key: FNV-1a64 of its UTF-8 bytes (stable across processes).</summary>
    public static string ShardOf(string key)
    {
        var hash = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(key))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return (hash % Shards).ToString(CultureInfo.InvariantCulture);
    }
}

/// <summary>Routes <see cref="ILimitCommand"/>s: the entity id is the key, the shard its hash.</summary>
internal sealed class LimitMessageExtractor : IMessageExtractor
{
    public static readonly LimitMessageExtractor Instance = new();

    public string? EntityId(object message) => (message as ILimitCommand)?.Key;

    public object? EntityMessage(object message) => message;

    public string? ShardId(object message) => message is ILimitCommand c ? LimitKeys.ShardOf(c.Key) : null;

    public string ShardId(string entityId, object? messageHint = null) => LimitKeys.ShardOf(entityId);
}
