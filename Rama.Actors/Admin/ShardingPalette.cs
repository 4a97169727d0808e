using System.Globalization;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Rama.Admin.Admin;

namespace Rama.Actors.Admin;

/// <summary>
/// <c>pbm sharding ...</c>: Akka.Cluster.Sharding's own statistics (<see cref="GetClusterShardingStats"/> for every region
/// of the fleet, <see cref="GetShardRegionState"/> for this node's shards and entities).
/// </summary>
internal sealed class ShardingPalette(ActorSystem system) : IAdminPalette
{
    /// <summary>How long the regions have to answer (Akka's ask timeout).</summary>
    internal static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);

    public string Name => "sharding";

    public string Description => "Cluster sharding: the regions (shards and entities per node) and one type's shards on this node";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("regions", "", "Every shard type, and per node its shards and entities (GetClusterShardingStats)"),
        new("shard-stats", "<type>", "This node's shards of a type and their entities (GetShardRegionState), and the shards per node"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(response);
        var sharding = ClusterSharding.Get(system);
        var args = request.Args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        try
        {
            switch (request.Command)
            {
                case "regions":
                    var rows = new List<IReadOnlyList<string>>();
                    foreach (var type in sharding.ShardTypeNames.Order(StringComparer.Ordinal))
                    {
                        rows.AddRange(await RegionRowsAsync(sharding, type, cancellationToken).ConfigureAwait(false));
                    }

                    await response.TableAsync("regions", ["type", "node", "shards", "entities"], rows, cancellationToken).ConfigureAwait(false);
                    return AdminExitCodes.Ok;
                case "shard-stats":
                    if (args.Count != 1)
                    {
                        return await response.FailAsync("usage: sharding shard-stats <type> (sharding regions lists them)", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
                    }

                    if (!sharding.ShardTypeNames.Contains(args[0]))
                    {
                        return await response.FailAsync($"no shard type '{args[0]}' here; types: {string.Join(", ", sharding.ShardTypeNames)}", cancellationToken: cancellationToken).ConfigureAwait(false);
                    }

                    var state = await sharding.ShardRegion(args[0]).Ask<CurrentShardRegionState>(GetShardRegionState.Instance, AskTimeout, cancellationToken).ConfigureAwait(false);
                    var shards = state.Shards.OrderBy(s => s.ShardId, StringComparer.Ordinal)
                        .Select(s => (IReadOnlyList<string>)[s.ShardId, s.EntityIds.Count.ToString(CultureInfo.InvariantCulture), string.Join(",", s.EntityIds.Order(StringComparer.Ordinal))])
                        .ToList();
                    await response.TableAsync("shards on this node", ["shard", "entities", "entity ids"], shards, cancellationToken).ConfigureAwait(false);
                    await response.TableAsync("regions", ["type", "node", "shards", "entities"], await RegionRowsAsync(sharding, args[0], cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
                    return AdminExitCodes.Ok;
                default:
                    return await response.FailAsync($"sharding has no command '{request.Command}'", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (AskTimeoutException)
        {
            return await response.FailAsync($"the shard region did not answer within {AskTimeout.TotalSeconds:0} s", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task<List<IReadOnlyList<string>>> RegionRowsAsync(ClusterSharding sharding, string type, CancellationToken cancellationToken)
    {
        var stats = await sharding.ShardRegion(type).Ask<ClusterShardingStats>(new GetClusterShardingStats(AskTimeout), AskTimeout + TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
        return stats.Regions.OrderBy(r => r.Key.ToString(), StringComparer.Ordinal)
            .Select(r => (IReadOnlyList<string>)
            [
                type,
                r.Key.ToString(),
                r.Value.Stats.Count.ToString(CultureInfo.InvariantCulture),
                r.Value.Stats.Values.Sum().ToString(CultureInfo.InvariantCulture),
            ])
            .ToList();
    }
}
