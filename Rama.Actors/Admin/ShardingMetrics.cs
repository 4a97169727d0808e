using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Akka.Actor;
using Akka.Cluster.Sharding;

namespace Rama.Actors.Admin;

/// <summary>
/// The <c>Rama.Fleet</c> sharding gauges of a proxy node: shards and entities this node hosts per shard type
/// (<c>rama.sharding.shards</c>, <c>rama.sharding.entities</c>, tag <c>rama.shard.type</c>). The regions answer
/// <see cref="GetShardRegionState"/> asynchronously and a gauge is read synchronously, so a timer asks every
/// <see cref="RefreshInterval"/> and the gauges report the last answers.
/// </summary>
internal sealed class ShardingMetrics : IDisposable
{
    internal static readonly TimeSpan RefreshInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(3);
    private readonly Meter _meter = new("Rama.Fleet");
    private readonly ClusterSharding _sharding;
    private readonly ConcurrentDictionary<string, (int Shards, int Entities)> _last = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _refresh;

    public ShardingMetrics(ActorSystem system)
    {
        _sharding = ClusterSharding.Get(system);
        _meter.CreateObservableGauge("rama.sharding.shards", () => Read(s => s.Shards), "{shard}", "Shards this node hosts, per shard type.");
        _meter.CreateObservableGauge("rama.sharding.entities", () => Read(s => s.Entities), "{entity}", "Entities this node hosts, per shard type.");
        _refresh = RefreshLoopAsync();
    }

    private IEnumerable<Measurement<int>> Read(Func<(int Shards, int Entities), int> pick)
    {
        foreach (var (type, state) in _last)
        {
            yield return new Measurement<int>(pick(state), new KeyValuePair<string, object?>("rama.shard.type", type));
        }
    }

    private async Task RefreshLoopAsync()
    {
        using var timer = new PeriodicTimer(RefreshInterval);
        do
        {
            foreach (var type in _sharding.ShardTypeNames)
            {
                try
                {
                    var state = await _sharding.ShardRegion(type).Ask<CurrentShardRegionState>(GetShardRegionState.Instance, AskTimeout, _stop.Token).ConfigureAwait(false);
                    _last[type] = (state.Shards.Count, state.Shards.Sum(s => s.EntityIds.Count));
                }
                catch (Exception ex) when (ex is AskTimeoutException or OperationCanceledException or ArgumentException or InvalidOperationException)
                {
                    // A region that is starting or stopping answers next time; the gauge keeps its last value.
                }
            }
        }
        while (await NextAsync(timer).ConfigureAwait(false));
    }

    private async Task<bool> NextAsync(PeriodicTimer timer)
    {
        try
        {
            return await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _meter.Dispose();
        _ = _refresh.ContinueWith(_ => _stop.Dispose(), TaskScheduler.Default);
    }
}
