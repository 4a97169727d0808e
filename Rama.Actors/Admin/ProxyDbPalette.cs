using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using Rama.Actors.Hosting;
using Rama.Actors.Upstreams;
using Rama.Admin.Admin;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Admin;

/// <summary>
/// <c>pbm proxydb ...</c> on a fleet node: writes go through the <c>proxydb</c> shard region to the entity owning the
/// record's partition (any node can take them); reads (<c>list</c>, <c>stats</c>, <c>select</c>) answer from this node's
/// replica, the same one its upstream routing selects from.
/// </summary>
internal sealed class ProxyDbPalette(FleetProxyDatabase replica, IRequiredActor<ProxyDbRegion> region, ActorSystem system) : IAdminPalette
{
    /// <summary>Rows <c>list</c> prints at most (the count says how many matched).</summary>
    internal const int MaxListed = 1000;

    public string Name => "proxydb";

    public string Description => "The fleet's proxy database: add, remove, list, stats, load, select";

    public IReadOnlyList<AdminCommandInfo> Commands { get; } =
    [
        new("add", "<record>", "Adds a record: a CSV line in rama's column order (quote it for the shell), or a JSON object; refused when its id exists"),
        new("remove", "<id>", "Removes the record with this id from the fleet"),
        new("list", "[labels]", "Records in this node's replica, all or those matching labels as in a username (country-us-residential)"),
        new("stats", "", "Records and version here; every proxy node's replica (version, records, updates, selections); the proxydb shards per node"),
        new("load", "<file>", "Adds or replaces every record of a CSV or JSON file (read by the node), validated whole: all records or none"),
        new("select", "<username>...", "The record id this node's replica picks for each username with labels (john-country-us-session-42), from one snapshot"),
    ];

    public async ValueTask<int> ExecuteAsync(AdminRequest request, IAdminResponse response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(response);
        var args = request.Args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).ToList();
        return request.Command switch
        {
            "add" => await AddAsync(args, response, cancellationToken).ConfigureAwait(false),
            "remove" => await RemoveAsync(args, response, cancellationToken).ConfigureAwait(false),
            "list" => await ListAsync(args, response, cancellationToken).ConfigureAwait(false),
            "stats" => await StatsAsync(response, cancellationToken).ConfigureAwait(false),
            "load" => await LoadAsync(args, response, cancellationToken).ConfigureAwait(false),
            "select" => await SelectAsync(args, response, cancellationToken).ConfigureAwait(false),
            _ => await response.FailAsync($"proxydb has no command '{request.Command}'", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false),
        };
    }

    private async Task<ProxyDbWriter> WriterAsync(CancellationToken cancellationToken) =>
        new(await region.GetAsync(cancellationToken).ConfigureAwait(false));

    private async Task<int> AddAsync(List<string> args, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (args.Count == 0)
        {
            return await response.FailAsync("usage: proxydb add <record> (a CSV line in rama's column order, or a JSON object)", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        UpstreamProxy record;
        try
        {
            record = ProxyRecordCsv.ParseOne(string.Join(' ', args));
        }
        catch (ProxyDatabaseException ex)
        {
            return await response.FailAsync(ex.Message, cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        var result = await (await WriterAsync(cancellationToken).ConfigureAwait(false)).AddAsync(record, cancellationToken).ConfigureAwait(false);
        return await AnswerAsync(result, response, cancellationToken).ConfigureAwait(false);
    }

    private async Task<int> RemoveAsync(List<string> args, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (args.Count != 1 || string.IsNullOrWhiteSpace(args[0]))
        {
            return await response.FailAsync("usage: proxydb remove <id>", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        var result = await (await WriterAsync(cancellationToken).ConfigureAwait(false)).RemoveAsync(args[0], cancellationToken).ConfigureAwait(false);
        return await AnswerAsync(result, response, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<int> AnswerAsync(ProxyDbWriteResult result, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (!result.Ok)
        {
            return await response.FailAsync(result.Message, cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["result"] = result.Message,
            ["partition"] = result.Partition.ToString(CultureInfo.InvariantCulture),
            ["replicated"] = result.Replicated,
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private async Task<int> ListAsync(List<string> args, IAdminResponse response, CancellationToken cancellationToken)
    {
        var filter = ProxyFilter.Empty;
        if (args.Count > 0)
        {
            if (!ProxyUsername.TryParse("list-" + string.Join('-', args), out var parsed, out var error))
            {
                return await response.FailAsync($"labels: {error}", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
            }

            filter = parsed.Filter;
        }

        var (snapshot, records) = replica.Snapshot;
        var matching = records.Where(filter.Matches).OrderBy(r => r.Id, StringComparer.Ordinal).ToList();
        var rows = matching.Take(MaxListed).Select(r => (IReadOnlyList<string>)
        [
            r.Id,
            r.Address.ToString(),
            string.Join(",", new[] { ("tcp", r.Tcp), ("udp", r.Udp), ("http", r.Http), ("https", r.Https), ("socks5", r.Socks5), ("socks5h", r.Socks5h) }.Where(f => f.Item2).Select(f => f.Item1)),
            string.Join(",", new[] { ("datacenter", r.Datacenter), ("residential", r.Residential), ("mobile", r.Mobile) }.Where(f => f.Item2).Select(f => f.Item1)),
            r.Pool ?? "", r.Country ?? "", r.City ?? "", r.Asn ?? "",
            ProxyDbPartitions.Of(r.Id).ToString(CultureInfo.InvariantCulture),
        ]).ToList();
        await response.TableAsync("records", ["id", "address", "protocols", "kind", "pool", "country", "city", "asn", "partition"], rows, cancellationToken).ConfigureAwait(false);
        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["matching"] = matching.Count.ToString(CultureInfo.InvariantCulture),
            ["listed"] = rows.Count.ToString(CultureInfo.InvariantCulture),
            ["version"] = snapshot.Version,
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private async Task<int> StatsAsync(IAdminResponse response, CancellationToken cancellationToken)
    {
        // Every Up proxy node's replica, asked in parallel; one that does not answer in time says so in its row.
        var members = Akka.Cluster.Cluster.Get(system).State.Members
            .Where(m => m.Status == Akka.Cluster.MemberStatus.Up && m.HasRole(ProxyDbPartitions.Role))
            .OrderBy(m => m.Address.ToString(), StringComparer.Ordinal).ToList();
        var answers = await Task.WhenAll(members.Select(async m =>
        {
            try
            {
                return await system.ActorSelection(m.Address + "/user/" + FleetProxyDbHostingExtensions.ReplicaActorName)
                    .Ask<ProxyDbReplicaStats>(new GetProxyDbReplicaStats(), TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
            }
            catch (AskTimeoutException)
            {
                return new ProxyDbReplicaStats(m.Address.ToString(), "(no answer within 2 s)", 0, 0, 0, "", 0);
            }
        })).ConfigureAwait(false);
        var replicas = answers.Select(a => (IReadOnlyList<string>)
        [
            a.Node, a.Version, a.Records.ToString(CultureInfo.InvariantCulture), a.Updates.ToString(CultureInfo.InvariantCulture), a.UpdatedAt,
            a.Selections.ToString(CultureInfo.InvariantCulture),
        ]).ToList();
        await response.TableAsync("replicas", ["node", "version", "records", "updates", "updated", "selections"], replicas, cancellationToken).ConfigureAwait(false);
        try
        {
            var stats = await (await region.GetAsync(cancellationToken).ConfigureAwait(false))
                .Ask<Akka.Cluster.Sharding.ClusterShardingStats>(new Akka.Cluster.Sharding.GetClusterShardingStats(TimeSpan.FromSeconds(2)), TimeSpan.FromSeconds(3), cancellationToken).ConfigureAwait(false);
            var shards = stats.Regions.OrderBy(r => r.Key.ToString(), StringComparer.Ordinal)
                .Select(r => (IReadOnlyList<string>)[r.Key.ToString(), r.Value.Stats.Count.ToString(CultureInfo.InvariantCulture), string.Join(",", r.Value.Stats.Keys.Order(StringComparer.Ordinal))])
                .ToList();
            await response.TableAsync("shards", ["node", "shards", "partitions"], shards, cancellationToken).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            await response.TextAsync("shards: the shard region did not answer within 3 s", cancellationToken).ConfigureAwait(false);
        }

        var snapshot = replica.Database.Current;
        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["records"] = snapshot.Count.ToString(CultureInfo.InvariantCulture),
            ["version"] = snapshot.Version,
            ["partitions"] = ProxyDbPartitions.Count.ToString(CultureInfo.InvariantCulture),
            ["partitionsReceived"] = replica.PartitionsSeen.ToString(CultureInfo.InvariantCulture),
            ["replicaUpdates"] = replica.Updates.ToString(CultureInfo.InvariantCulture),
            ["replicaUpdatedAt"] = replica.UpdatedAt?.ToString("O", CultureInfo.InvariantCulture) ?? "(never)",
            ["selections"] = replica.Database.Selections.ToString(CultureInfo.InvariantCulture),
            ["replicasAgree"] = answers.Length > 0 && answers.All(a => a.Version == snapshot.Version) ? "yes" : "no",
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private async Task<int> LoadAsync(List<string> args, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (args.Count != 1)
        {
            return await response.FailAsync("usage: proxydb load <file> (CSV in rama's column order or JSON; the path is read by this node)", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        IReadOnlyList<UpstreamProxy> records;
        try
        {
            records = ProxyDatabaseLoader.LoadFile(args[0]);
        }
        catch (ProxyDatabaseException ex)
        {
            var rows = ex.Errors.Select(e => (IReadOnlyList<string>)[e.Line.ToString(CultureInfo.InvariantCulture), e.Field, e.Message]).ToList();
            await response.TableAsync("errors", ["line", "field", "message"], rows, cancellationToken).ConfigureAwait(false);
            return await response.FailAsync($"{args[0]}: {ex.Errors.Count} error(s), nothing loaded; first: {ex.Errors[0]}", cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return await response.FailAsync($"{args[0]}: {ex.Message}", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        if (records.Count == 0)
        {
            return await response.FailAsync($"{args[0]}: no records", cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        var result = await (await WriterAsync(cancellationToken).ConfigureAwait(false)).LoadAsync(records, cancellationToken).ConfigureAwait(false);
        if (!result.Ok)
        {
            return await response.FailAsync(string.Join("; ", result.Problems), cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await response.ValuesAsync(new Dictionary<string, string>
        {
            ["loaded"] = result.Records.ToString(CultureInfo.InvariantCulture),
            ["partitions"] = result.Partitions.ToString(CultureInfo.InvariantCulture),
            ["notes"] = string.Join("; ", result.Problems),
        }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }

    private async Task<int> SelectAsync(List<string> args, IAdminResponse response, CancellationToken cancellationToken)
    {
        if (args.Count == 0)
        {
            return await response.FailAsync("usage: proxydb select <username with labels>... (john-country-us-session-42)", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
        }

        // One snapshot for every username of the request, so a batch is answered from one version.
        var snapshot = replica.Database.Current;
        var rows = new List<IReadOnlyList<string>>(args.Count);
        foreach (var text in args)
        {
            if (!ProxyUsername.TryParse(text, out var username, out var error))
            {
                return await response.FailAsync($"'{text}': {error}", AdminExitCodes.Usage, cancellationToken).ConfigureAwait(false);
            }

            var chosen = snapshot.Select(username.Filter, username.Session, 1);
            rows.Add([text, chosen.Count == 0 ? "" : chosen[0].Id, snapshot.CountMatches(username.Filter).ToString(CultureInfo.InvariantCulture)]);
        }

        await response.TableAsync("selected", ["username", "id", "matches"], rows, cancellationToken).ConfigureAwait(false);
        await response.ValuesAsync(new Dictionary<string, string> { ["version"] = snapshot.Version }, cancellationToken).ConfigureAwait(false);
        return AdminExitCodes.Ok;
    }
}
