using System.Globalization;
using Akka.Actor;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Upstreams;

/// <summary>The outcome of a load: whether every record was applied, and a line per partition that said otherwise.</summary>
public sealed record ProxyDbLoadResult(bool Ok, int Records, int Partitions, IReadOnlyList<string> Problems);

/// <summary>
/// Writes to the fleet's proxy database through the shard region (any node: the region routes to each partition's
/// owner). A load is two-phase: every affected partition validates and holds its records (prepare); only when all of
/// them agreed are they told to apply (commit, carrying the lines, resent while a partition does not answer, so a
/// partition whose owner died in between still applies them on its new owner); otherwise every prepared one is told to
/// drop them (abort), so a load applies every record or none.
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

        // Every partition agreed: the decision is to commit. A commit carries its lines, so a partition whose owner died
        // since the prepare applies them on its new owner; one that does not answer is asked again (a shard moving takes
        // the failure detector's time), and only one still failing after that is reported.
        var committed = await Task.WhenAll(byPartition.Select(p => CommitAsync(new CommitProxyLoad(p.Key, loadId, p.Value), cancellationToken))).ConfigureAwait(false);
        var failed = committed.Where(r => !r.Ok).Select(Describe).ToList();
        var partial = committed.Where(r => r.Ok && r.Replicated == "local").Select(r => $"partition {r.Partition.ToString(CultureInfo.InvariantCulture)}: {r.Message}");
        return new ProxyDbLoadResult(failed.Count == 0, records.Count, byPartition.Count, [.. failed, .. partial]);
    }

    /// <summary>How many times a commit is sent before its partition is reported as not applied.</summary>
    public int CommitAttempts { get; init; } = 4;

    private async Task<ProxyDbWriteResult> CommitAsync(CommitProxyLoad commit, CancellationToken cancellationToken)
    {
        var result = await AskAsync(commit, cancellationToken).ConfigureAwait(false);
        for (var attempt = 1; !result.Ok && attempt < CommitAttempts && !cancellationToken.IsCancellationRequested; attempt++)
        {
            // Applying the same lines twice writes the same values: a commit that was applied but not answered is harmless to resend.
            result = await AskAsync(commit, cancellationToken).ConfigureAwait(false);
        }

        return result;
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
