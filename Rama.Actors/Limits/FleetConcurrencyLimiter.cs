using System.Collections.Concurrent;
using System.Globalization;
using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Limits;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Limits;

/// <summary>Timings of the fleet's limits.</summary>
public sealed record FleetLimitSettings
{
    /// <summary>How long an acquire waits for its entity before this node decides alone (see <see cref="FleetConcurrencyLimiter"/>). Default 1 s.</summary>
    public TimeSpan AskTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How often a node renews the leases it holds. Default 2 s.</summary>
    public TimeSpan RenewInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A lease not renewed for this long expires (its holder is gone or cut off). Default 10 s.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The clock of lease ages and token buckets.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}

/// <summary>
/// This node's side of the fleet's limits: every lease is asked of the key's sharded entity (<see cref="LimitEntity"/>),
/// so a limit holds across the fleet; the leases held here are renewed with their entities every
/// <see cref="FleetLimitSettings.RenewInterval"/>. When the entity does not answer within
/// <see cref="FleetLimitSettings.AskTimeout"/> (its shard is moving after its node died, or this node is cut off), the
/// node decides alone with the same policy counted here (a <see cref="LocalConcurrencyLimiter"/>): requests keep flowing,
/// each node holding to the limit on its own until the entity answers again, and a lease granted that way is renewed
/// with the entity like any other, so the fleet's count includes it within one renewal. Decision: availability over
/// strictness for those seconds (the first use of a key while its shard is allocated, a shard moving after its node
/// died), with a warning in the log.
/// </summary>
public sealed partial class FleetConcurrencyLimiter : IConcurrencyLimiter, IDisposable
{
    private readonly FleetLimitSettings _settings;
    private ILogger _logger;
    private readonly LocalConcurrencyLimiter _fallback;
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _held = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _quiet = new(StringComparer.Ordinal);
    private readonly Timer _renew;
    private IActorRef? _region;
    private string _holder = "";
    private long _next;
    private long _fallbacks;
    private long _lastFallbackWarning;

    public FleetConcurrencyLimiter(FleetLimitSettings? settings = null, ILogger? logger = null)
    {
        _settings = settings ?? new FleetLimitSettings();
        _logger = logger ?? NullLogger.Instance;
        _fallback = new LocalConcurrencyLimiter(_settings.Time);
        _renew = new Timer(_ => Renew(), null, _settings.RenewInterval, _settings.RenewInterval);
    }

    /// <summary>Leases this node holds now (all keys).</summary>
    public int Held => _held.Values.Sum(h => h.Count);

    /// <summary>Acquires decided by this node alone because the entity did not answer in time.</summary>
    public long Fallbacks => Interlocked.Read(ref _fallbacks);

    /// <summary>A member's holder name: its address and incarnation (a restarted node at the same address is another holder).</summary>
    public static string HolderOf(UniqueAddress member) => member.Address + "#" + member.Uid.ToString(CultureInfo.InvariantCulture);

    /// <summary>Connects this limiter to the <c>limits</c> shard region; until then it counts locally.</summary>
    public void Attach(IActorRef region, UniqueAddress self, ILogger? logger = null)
    {
        _logger = logger ?? _logger;
        _holder = HolderOf(self);
        Volatile.Write(ref _region, region);
    }

    public async ValueTask<LimitLease> AcquireAsync(LimitScope scope, string key, LimitPolicy policy, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.IsUnlimited)
        {
            return LimitLease.Unlimited;
        }

        var region = Volatile.Read(ref _region);
        if (region is null)
        {
            return await _fallback.AcquireAsync(scope, key, policy, cancellationToken).ConfigureAwait(false);
        }

        var entity = LimitKeys.Of(scope, key);
        var leaseId = _holder + "/" + Interlocked.Increment(ref _next).ToString(CultureInfo.InvariantCulture);
        var held = _held.GetOrAdd(entity, static _ => new ConcurrentDictionary<string, byte>(StringComparer.Ordinal));
        // Listed once granted, never before: a renewal listing a lease still being asked for would make the entity count
        // one it refuses. A renewal racing the grant cannot drop it: the entity drops only leases older than one interval.
        object answer;
        try
        {
            answer = await region.Ask<object>(
                new AcquireLimit(entity, leaseId, _holder, policy.MaxConcurrent, policy.Rate?.Count, policy.Rate is { } r ? (long)r.Per.TotalMilliseconds : null),
                _settings.AskTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (AskTimeoutException)
        {
            Interlocked.Increment(ref _fallbacks);
            var now = Environment.TickCount64;
            var last = Interlocked.Read(ref _lastFallbackWarning);
            if (now - last > 10_000 && Interlocked.CompareExchange(ref _lastFallbackWarning, now, last) == last)
            {
                LogFallback(_logger, entity, _settings.AskTimeout.TotalMilliseconds);
            }

            var local = await _fallback.AcquireAsync(scope, key, policy, cancellationToken).ConfigureAwait(false);
            if (!local.IsGranted)
            {
                region.Tell(new ReleaseLimit(entity, leaseId)); // in case the entity granted it after all
                return local;
            }

            held[leaseId] = 0;

            // Granted here: the lease stays listed, so the next renewal that reaches the entity counts it there too (an
            // entity that was starting or moving learns of what was granted without it, and refuses accordingly).
            return LimitLease.Granted(() =>
            {
                local.Dispose();
                held.TryRemove(leaseId, out _);
                region.Tell(new ReleaseLimit(entity, leaseId));
            });
        }
        catch
        {
            region.Tell(new ReleaseLimit(entity, leaseId)); // cancelled: in case the entity granted it
            throw;
        }

        switch (answer)
        {
            case LimitGranted:
                held[leaseId] = 0;
                return LimitLease.Granted(() =>
                {
                    held.TryRemove(leaseId, out _);
                    region.Tell(new ReleaseLimit(entity, leaseId));
                });
            case LimitRefused refused:
                return LimitLease.Refused(refused.Reason, TimeSpan.FromMilliseconds(refused.RetryAfterMs));
            default:
                throw new InvalidOperationException($"limits entity {entity} answered {answer.GetType().Name}");
        }
    }

    private void Renew()
    {
        if (Volatile.Read(ref _region) is not { } region)
        {
            return;
        }

        foreach (var (entity, held) in _held)
        {
            // A key stays listed once used (keys are upstream ids and users: bounded by the database and the users). With
            // nothing held, the entity hears once more with none listed, so it drops any of ours whose release got lost.
            var ids = held.Keys.ToArray();
            var quiet = _quiet.GetOrAdd(entity, false);
            if (ids.Length == 0 && quiet)
            {
                continue;
            }

            _quiet[entity] = ids.Length == 0;
            region.Tell(new RenewLimitLeases(entity, _holder, ids));
        }
    }

    public void Dispose() => _renew.Dispose();

    [LoggerMessage(EventId = 1320, Level = LogLevel.Warning,
        Message = "Fleet limits: {Entity} did not answer within {TimeoutMs} ms; this node decides alone (same policy, counted here) until it answers")]
    private static partial void LogFallback(ILogger logger, string entity, double timeoutMs);
}

/// <summary>
/// Shares upstream health across the fleet: every failure and recovery this node records goes to the upstream's entity,
/// which works out the fleet's back-off and publishes it; <see cref="UpstreamHealthSubscriber"/> applies what is published
/// to this node's <see cref="UpstreamFailureCache"/>.
/// </summary>
public sealed class FleetUpstreamHealth(UpstreamRoutingOptions routing) : IUpstreamHealthListener
{
    private IActorRef? _region;
    private string _holder = "";

    /// <summary>The cache the node's stacks share; its failures are reported to the fleet.</summary>
    public UpstreamFailureCache Cache { get; } = CreateCache(routing);

    /// <summary>Reports sent to the fleet.</summary>
    public long Reports => Interlocked.Read(ref _reports);

    private long _reports;

    private static UpstreamFailureCache CreateCache(UpstreamRoutingOptions routing) => new(routing.BackoffInitial, routing.BackoffMax);

    public void Attach(IActorRef region, UniqueAddress self)
    {
        _holder = FleetConcurrencyLimiter.HolderOf(self);
        Volatile.Write(ref _region, region);
        Cache.Listener = this;
    }

    public void Failed(string id, int failures, TimeSpan backoff) => Report(id, failed: true);

    public void Recovered(string id) => Report(id, failed: false);

    private void Report(string id, bool failed)
    {
        if (Volatile.Read(ref _region) is { } region)
        {
            Interlocked.Increment(ref _reports);
            region.Tell(new ReportUpstreamHealth(LimitKeys.Of(LimitScope.Upstream, id), id, _holder, failed,
                (long)routing.BackoffInitial.TotalMilliseconds, (long)routing.BackoffMax.TotalMilliseconds));
        }
    }
}

/// <summary>Applies the fleet's upstream health (<see cref="LimitKeys.HealthTopic"/>) to this node's cache.</summary>
internal sealed class UpstreamHealthSubscriber : ReceiveActor
{
    public UpstreamHealthSubscriber(UpstreamFailureCache cache, IActorRef mediator)
    {
        mediator.Tell(new Akka.Cluster.Tools.PublishSubscribe.Subscribe(LimitKeys.HealthTopic, Self));
        Receive<Akka.Cluster.Tools.PublishSubscribe.SubscribeAck>(_ => { });
        Receive<UpstreamHealthChanged>(changed =>
            cache.Apply(changed.UpstreamId, changed.Failures, TimeSpan.FromMilliseconds(changed.BackoffMs)));
    }

    public static Props Props(UpstreamFailureCache cache, IActorRef mediator) =>
        Akka.Actor.Props.Create(() => new UpstreamHealthSubscriber(cache, mediator));
}
