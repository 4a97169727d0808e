using System.Globalization;
using Akka.Actor;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Upstreams;

/// <summary>The outcome of a load: whether every record was applied, and a line per partition that said otherwise.</summary>
public sealed record ProxyDbLoadResult(bool Ok, int Records, int Partitions, IReadOnlyList<string> Problems);

/// <summary>
/// Writes to the fleet's proxy database through the shard region (any node: the region routes to each partition's
/// owner). A load is two-phase: every affected partition validates and holds its records (prepare); only when all of
/// them agreed are they told to apply (commit); otherwise every prepared one is told to drop them (abort), so a load
/// applies every record or none.
/// </summary>
public sealed class ProxyDbWriter(IActorRef region, TimeSpan? timeout = null)
{
    /// <summary>How long one partition may take to answer: its write waits up to 2 x the write timeout (all, then majority).</summary>
    public TimeSpan Timeout { get; } = timeout ?? TimeSpan.FromSeconds(10);

    public async Task<ProxyDbWriteResult> AddAsync(UpstreamProxy record, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        return await AskAsync(new AddProxyRecord(ProxyDbPartitions.Of(record.Id), ProxyRecordCsv.Format(record)), cancellationToken).ConfigureAwait(false);
    }

    public async Task<ProxyDbWriteResult> RemoveAsync(string id, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(id);
        return await AskAsync(new RemoveProxyRecord(ProxyDbPartitions.Of(id.Trim()), id.Trim()), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Adds <paramref name="records"/> (replacing records with the same ids), all or none.</summary>
    public async Task<ProxyDbLoadResult> LoadAsync(IReadOnlyList<UpstreamProxy> records, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(records);
        var loadId = Guid.NewGuid().ToString("N");
        var byPartition = records.GroupBy(r => ProxyDbPartitions.Of(r.Id))
            .ToDictionary(g => g.Key, g => g.Select(ProxyRecordCsv.Format).ToArray());
        var prepared = await Task.WhenAll(byPartition.Select(p => AskAsync(new PrepareProxyLoad(p.Key, loadId, p.Value), cancellationToken))).ConfigureAwait(false);
        var refused = prepared.Where(r => !r.Ok).Select(Describe).ToList();
        if (refused.Count > 0)
        {
            foreach (var partition in byPartition.Keys)
            {
                region.Tell(new AbortProxyLoad(partition, loadId));
            }

            return new ProxyDbLoadResult(false, records.Count, byPartition.Count, ["nothing applied: " + string.Join("; ", refused)]);
        }

        var committed = await Task.WhenAll(byPartition.Keys.Select(p => AskAsync(new CommitProxyLoad(p, loadId), cancellationToken))).ConfigureAwait(false);
        // Every partition had agreed: a commit can fail only when its owner died in between (it is then re-sent by nobody:
        // say which partitions to check).
        var failed = committed.Where(r => !r.Ok).Select(Describe).ToList();
        var partial = committed.Where(r => r.Ok && r.Replicated == "local").Select(r => $"partition {r.Partition.ToString(CultureInfo.InvariantCulture)}: {r.Message}");
        return new ProxyDbLoadResult(failed.Count == 0, records.Count, byPartition.Count, [.. failed, .. partial]);
    }

    private static string Describe(ProxyDbWriteResult result) => $"partition {result.Partition.ToString(CultureInfo.InvariantCulture)}: {result.Message}";

    private async Task<ProxyDbWriteResult> AskAsync(IProxyDbPartitionCommand command, CancellationToken cancellationToken)
    {
        try
        {
            return await region.Ask<ProxyDbWriteResult>(command, Timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            return new ProxyDbWriteResult(command.Partition, false, $"the partition's owner did not answer within {Timeout.TotalSeconds:0} s (is a shard moving?)");
        }
    }
}
