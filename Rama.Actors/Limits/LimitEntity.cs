using System.Globalization;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Rama.Proxy.Limits;

namespace Rama.Actors.Limits;

/// <summary>
/// The sharded entity of one key (an upstream, or a user): the fleet's count of leases held on it, its token bucket, and
/// for an upstream its health. Leases are per holder (a member's unique address): a holder removed from the cluster
/// loses them at once, and a lease its holder stops renewing expires after <see cref="FleetLimitSettings.LeaseTtl"/>.
/// The state lives in memory: when this entity's node dies, the entity starts again elsewhere and every live holder's
/// next renewal (within <see cref="FleetLimitSettings.RenewInterval"/>) brings its leases back.
/// </summary>
internal sealed class LimitEntity : ReceiveActor, IWithTimers
{
    private readonly string _key;
    private readonly FleetLimitSettings _settings;
    private readonly IActorRef _mediator;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly Dictionary<string, (string Holder, DateTime Renewed, DateTime Granted)> _leases = new(StringComparer.Ordinal);
    private LimitPolicy _policy = LimitPolicy.Unlimited;
    private double _tokens = double.NaN;
    private DateTime _tokensAt;
    private int _failures;
    private DateTime _backedOffUntil;
    private long _granted;
    private long _refused;

    public LimitEntity(string key, FleetLimitSettings settings, IActorRef mediator)
    {
        _key = key;
        _settings = settings;
        _mediator = mediator;
        Receive<AcquireLimit>(Acquire);
        Receive<ReleaseLimit>(r => _leases.Remove(r.LeaseId));
        Receive<RenewLimitLeases>(Renew);
        Receive<ReportUpstreamHealth>(Health);
        Receive<GetLimitState>(_ => Sender.Tell(State()));
        Receive<ClusterEvent.MemberRemoved>(m => DropHolder(m.Member.UniqueAddress));
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<Expire>(_ => ExpireStale());
    }

    public static Props Props(string key, FleetLimitSettings settings, IActorRef mediator) =>
        Akka.Actor.Props.Create(() => new LimitEntity(key, settings, mediator));

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberRemoved));
        Timers.StartPeriodicTimer("expire", Expire.Instance, _settings.RenewInterval);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    public ITimerScheduler Timers { get; set; } = null!;

    private DateTime Now => _settings.Time.GetUtcNow().UtcDateTime;

    private void Acquire(AcquireLimit ask)
    {
        _policy = new LimitPolicy(ask.MaxConcurrent, ask.RateCount is { } count && ask.RatePerMs is { } per ? new LimitRate(count, TimeSpan.FromMilliseconds(per)) : null);
        if (_leases.ContainsKey(ask.LeaseId))
        {
            Sender.Tell(new LimitGranted(_key, ask.LeaseId, _leases.Count)); // a retried ask: already held
            return;
        }

        var name = _key[(_key.IndexOf(':', StringComparison.Ordinal) + 1)..];
        var scope = _key.StartsWith("user:", StringComparison.Ordinal) ? LimitScope.User : LimitScope.Upstream;
        if (_policy.MaxConcurrent is { } max && _leases.Count >= max)
        {
            _refused++;
            Sender.Tell(new LimitRefused(_key, ask.LeaseId,
                LocalConcurrencyLimiter.Describe(scope, name, $"at its limit of {max.ToString(CultureInfo.InvariantCulture)} connections (fleet-wide)"), 1000));
            return;
        }

        if (_policy.Rate is { } rate)
        {
            var now = Now;
            if (double.IsNaN(_tokens))
            {
                (_tokens, _tokensAt) = (rate.Count, now);
            }

            _tokens = Math.Min(rate.Count, _tokens + ((now - _tokensAt).TotalSeconds * rate.PerSecond));
            _tokensAt = now;
            if (_tokens < 1)
            {
                _refused++;
                var wait = (long)Math.Ceiling(Math.Max((1 - _tokens) / rate.PerSecond, 0.001) * 1000);
                Sender.Tell(new LimitRefused(_key, ask.LeaseId, LocalConcurrencyLimiter.Describe(scope, name, $"over its rate of {rate} new {LocalConcurrencyLimiter.RateUnit(scope)} (fleet-wide)"), wait));
                return;
            }

            _tokens -= 1;
        }

        var at = Now;
        _leases[ask.LeaseId] = (ask.Holder, at, at);
        _granted++;
        Sender.Tell(new LimitGranted(_key, ask.LeaseId, _leases.Count));
    }

    private void Renew(RenewLimitLeases renew)
    {
        var now = Now;
        var listed = new HashSet<string>(renew.LeaseIds, StringComparer.Ordinal);
        foreach (var id in listed)
        {
            // Known: renewed. Unknown: this entity started again after its node died; the holder still holds it.
            _leases[id] = _leases.TryGetValue(id, out var lease) ? lease with { Renewed = now } : (renew.Holder, now, now);
        }

        // The holder's leases it no longer lists: released (the release got lost), unless granted after it took the list.
        var cutoff = now - _settings.RenewInterval;
        foreach (var (id, lease) in _leases.Where(l => l.Value.Holder == renew.Holder && !listed.Contains(l.Key) && l.Value.Granted < cutoff).ToList())
        {
            _leases.Remove(id);
        }
    }

    private void ExpireStale()
    {
        var cutoff = Now - _settings.LeaseTtl;
        var stale = _leases.Where(l => l.Value.Renewed < cutoff).Select(l => l.Key).ToList();
        foreach (var id in stale)
        {
            _leases.Remove(id);
        }

        if (stale.Count > 0)
        {
            _log.Info("limits {0}: {1} leases expired (not renewed for {2:0.#} s)", _key, stale.Count, _settings.LeaseTtl.TotalSeconds);
        }
    }

    private void DropHolder(UniqueAddress member)
    {
        var holder = FleetConcurrencyLimiter.HolderOf(member);
        var dropped = _leases.Where(l => l.Value.Holder == holder).Select(l => l.Key).ToList();
        foreach (var id in dropped)
        {
            _leases.Remove(id);
        }

        if (dropped.Count > 0)
        {
            _log.Info("limits {0}: {1} leases of {2} released (the member left the cluster)", _key, dropped.Count, holder);
        }
    }

    private void Health(ReportUpstreamHealth report)
    {
        var now = Now;
        if (report.Failed)
        {
            _failures++;
            var backoff = Math.Min(report.BackoffInitialMs * Math.Pow(2, Math.Min(_failures - 1, 30)), report.BackoffMaxMs);
            var until = now + TimeSpan.FromMilliseconds(backoff);
            _backedOffUntil = until > _backedOffUntil ? until : _backedOffUntil;
        }
        else
        {
            if (_failures == 0)
            {
                return;
            }

            (_failures, _backedOffUntil) = (0, default);
        }

        var left = _backedOffUntil > now ? (long)(_backedOffUntil - now).TotalMilliseconds : 0;
        _mediator.Tell(new Publish(LimitKeys.HealthTopic, new UpstreamHealthChanged(report.UpstreamId, _failures, left, report.Holder)));
    }

    private LimitStateReply State()
    {
        var now = Now;
        double? tokens = null;
        if (_policy.Rate is { } rate && !double.IsNaN(_tokens))
        {
            tokens = Math.Min(rate.Count, _tokens + ((now - _tokensAt).TotalSeconds * rate.PerSecond));
        }

        var byNode = _leases.Values.GroupBy(l => l.Holder).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        return new LimitStateReply(_key, _policy.ToString(), _leases.Count, byNode, tokens, _failures,
            _backedOffUntil > now ? (long)(_backedOffUntil - now).TotalMilliseconds : 0, _granted, _refused, _cluster.SelfAddress.ToString());
    }

    private sealed class Expire
    {
        public static readonly Expire Instance = new();
    }
}
