using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.PublishSubscribe;
using Rama.Actors.Limits;
using Rama.Proxy.Limits;

namespace Rama.Actors.Tests.Limits;

/// <summary>
/// The limits entity on a one-node cluster: the fleet-wide count and token bucket, leases that renewals bring back to a
/// restarted entity and that expire when not renewed, upstream health published to every node; and the node's limiter
/// against it, including the decision alone when the entity does not answer.
/// </summary>
public sealed class LimitEntityTests : Akka.TestKit.Xunit2.TestKit
{
    private const string Config = """
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.hostname = 127.0.0.1
        akka.remote.dot-netty.tcp.port = 0
        akka.cluster.roles = [proxy]
        akka.loglevel = WARNING
        """;

    private readonly SettableTime _time = new();
    private readonly FleetLimitSettings _settings;

    public LimitEntityTests()
        : base(Config)
    {
        var cluster = Cluster.Get(Sys);
        cluster.Join(cluster.SelfAddress);
        AwaitCondition(() => cluster.SelfMember.Status == MemberStatus.Up, TimeSpan.FromSeconds(10));
        _settings = new FleetLimitSettings { RenewInterval = TimeSpan.FromMilliseconds(100), LeaseTtl = TimeSpan.FromSeconds(10), Time = _time, AskTimeout = TimeSpan.FromMilliseconds(300) };
    }

    private IActorRef Entity(string key) => Sys.ActorOf(LimitEntity.Props(key, _settings, DistributedPubSub.Get(Sys).Mediator));

    private static AcquireLimit Acquire(string key, string lease, string holder = "node-a", int? max = 2, int? rateCount = null, long? ratePerMs = null) =>
        new(key, lease, holder, max, rateCount, ratePerMs);

    private int Held(IActorRef entity, string key)
    {
        entity.Tell(new GetLimitState(key));
        return ExpectMsg<LimitStateReply>().Held;
    }

    [Fact]
    public void The_count_holds_at_the_limit_names_it_when_refusing_and_frees_a_slot_on_release()
    {
        var key = LimitKeys.Of(LimitScope.Upstream, "Squid");
        var entity = Entity(key);
        entity.Tell(Acquire(key, "1"));
        ExpectMsg<LimitGranted>();
        entity.Tell(Acquire(key, "2", holder: "node-b"));
        ExpectMsg<LimitGranted>();
        entity.Tell(Acquire(key, "3"));
        var refused = ExpectMsg<LimitRefused>();
        Assert.Equal("upstream squid is at its limit of 2 connections (fleet-wide)", refused.Reason);

        entity.Tell(new ReleaseLimit(key, "1"));
        entity.Tell(Acquire(key, "3"));
        Assert.Equal(2, ExpectMsg<LimitGranted>().Held);
        entity.Tell(new GetLimitState(key));
        var state = ExpectMsg<LimitStateReply>();
        Assert.Equal(new Dictionary<string, int> { ["node-a"] = 1, ["node-b"] = 1 }, state.HeldByNode);
        Assert.Equal((3, 1), (state.Granted, state.Refused));
    }

    [Fact]
    public void The_rate_refuses_past_its_tokens_with_the_wait_and_refills_with_time()
    {
        var key = LimitKeys.Of(LimitScope.Upstream, "tiny");
        var entity = Entity(key);
        for (var i = 0; i < 3; i++)
        {
            entity.Tell(Acquire(key, $"l{i}", max: null, rateCount: 3, ratePerMs: 1000));
            ExpectMsg<LimitGranted>();
        }

        entity.Tell(Acquire(key, "l3", max: null, rateCount: 3, ratePerMs: 1000));
        var refused = ExpectMsg<LimitRefused>();
        Assert.Contains("over its rate of 3/s new connections (fleet-wide)", refused.Reason, StringComparison.Ordinal);
        Assert.InRange(refused.RetryAfterMs, 1, 334);

        _time.Advance(TimeSpan.FromMilliseconds(400));
        entity.Tell(Acquire(key, "l3", max: null, rateCount: 3, ratePerMs: 1000));
        ExpectMsg<LimitGranted>();
    }

    [Fact]
    public void A_users_request_rate_holds_fleet_wide_across_holders_and_names_requests()
    {
        // Two nodes take john's tokens from one bucket: 2/s in all, not per node.
        var key = LimitKeys.Of(LimitScope.User, "john");
        var entity = Entity(key);
        entity.Tell(Acquire(key, "a1", max: null, rateCount: 2, ratePerMs: 1000, holder: "node-a"));
        ExpectMsg<LimitGranted>();
        entity.Tell(Acquire(key, "b1", max: null, rateCount: 2, ratePerMs: 1000, holder: "node-b"));
        ExpectMsg<LimitGranted>();
        entity.Tell(Acquire(key, "b2", max: null, rateCount: 2, ratePerMs: 1000, holder: "node-b"));
        var refused = ExpectMsg<LimitRefused>();
        Assert.Equal("user john is over its rate of 2/s new requests (fleet-wide)", refused.Reason);
        Assert.InRange(refused.RetryAfterMs, 1, 500);

        _time.Advance(TimeSpan.FromMilliseconds(500));
        entity.Tell(Acquire(key, "b2", max: null, rateCount: 2, ratePerMs: 1000, holder: "node-b"));
        ExpectMsg<LimitGranted>();
    }

    [Fact]
    public void A_restarted_entity_learns_the_leases_from_the_holders_renewals_and_counts_them_against_the_limit()
    {
        var key = LimitKeys.Of(LimitScope.User, "john");
        var entity = Entity(key);
        entity.Tell(new RenewLimitLeases(key, "node-a", ["a1", "a2"]));
        Assert.Equal(2, Held(entity, key));
        entity.Tell(Acquire(key, "b1", holder: "node-b"));
        Assert.Equal("user john is at its limit of 2 connections (fleet-wide)", ExpectMsg<LimitRefused>().Reason);
    }

    [Fact]
    public void A_holder_that_no_longer_lists_a_lease_loses_it_and_a_lease_not_renewed_expires_after_the_ttl()
    {
        var key = LimitKeys.Of(LimitScope.User, "mary");
        var entity = Entity(key);
        entity.Tell(Acquire(key, "a1", max: 10));
        entity.Tell(Acquire(key, "a2", max: 10));
        entity.Tell(Acquire(key, "b1", holder: "node-b", max: 10));
        ExpectMsg<LimitGranted>();
        ExpectMsg<LimitGranted>();
        ExpectMsg<LimitGranted>();

        // node-a's release of a2 was lost: its next renewal lists only a1 (a2 is older than one renewal interval).
        _time.Advance(TimeSpan.FromSeconds(1));
        entity.Tell(new RenewLimitLeases(key, "node-a", ["a1"]));
        Assert.Equal(2, Held(entity, key));

        // node-b went silent (cut off, not yet removed): its lease expires once the TTL has passed since it was renewed.
        _time.Advance(TimeSpan.FromSeconds(9.5));
        entity.Tell(new RenewLimitLeases(key, "node-a", ["a1"]));
        AwaitAssert(() => Assert.Equal(1, Held(entity, key)), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void Health_reports_are_published_to_every_node_with_the_fleets_doubling_back_off_and_the_recovery()
    {
        var probe = CreateTestProbe();
        var mediator = DistributedPubSub.Get(Sys).Mediator;
        mediator.Tell(new Subscribe(LimitKeys.HealthTopic, probe.Ref), probe.Ref);
        probe.ExpectMsg<SubscribeAck>();
        var key = LimitKeys.Of(LimitScope.Upstream, "Dead-1");
        var entity = Entity(key);

        entity.Tell(new ReportUpstreamHealth(key, "Dead-1", "node-a", Failed: true, BackoffInitialMs: 5000, BackoffMaxMs: 300_000));
        var first = probe.ExpectMsg<UpstreamHealthChanged>();
        Assert.Equal(("Dead-1", 1, 5000L, "node-a"), (first.UpstreamId, first.Failures, first.BackoffMs, first.ReportedBy));

        entity.Tell(new ReportUpstreamHealth(key, "Dead-1", "node-b", Failed: true, BackoffInitialMs: 5000, BackoffMaxMs: 300_000));
        var second = probe.ExpectMsg<UpstreamHealthChanged>();
        Assert.Equal((2, 10_000L), (second.Failures, second.BackoffMs));

        entity.Tell(new ReportUpstreamHealth(key, "Dead-1", "node-c", Failed: false, BackoffInitialMs: 5000, BackoffMaxMs: 300_000));
        var healthy = probe.ExpectMsg<UpstreamHealthChanged>();
        Assert.Equal((0, 0L), (healthy.Failures, healthy.BackoffMs));

        // A success of a healthy upstream publishes nothing (every connection reports none).
        entity.Tell(new ReportUpstreamHealth(key, "Dead-1", "node-c", Failed: false, BackoffInitialMs: 5000, BackoffMaxMs: 300_000));
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task The_nodes_limiter_holds_a_lease_until_it_is_disposed_and_decides_alone_when_the_entity_is_silent()
    {
        var key = LimitKeys.Of(LimitScope.Upstream, "ms");
        var entity = Entity(key);
        using var limiter = new FleetConcurrencyLimiter(_settings);
        limiter.Attach(entity, Cluster.Get(Sys).SelfUniqueAddress);
        var policy = new LimitPolicy(1, null);

        var lease = await limiter.AcquireAsync(LimitScope.Upstream, "ms", policy, default);
        Assert.True(lease.IsGranted);
        var refused = await limiter.AcquireAsync(LimitScope.Upstream, "ms", policy, default);
        Assert.False(refused.IsGranted);
        Assert.Contains("fleet-wide", refused.Reason, StringComparison.Ordinal);
        lease.Dispose();
        AwaitAssert(() => Assert.Equal(0, Held(entity, key)), TimeSpan.FromSeconds(3));

        // A silent entity (its shard is moving): the node grants alone, and its renewals carry the lease to the entity.
        var silent = CreateTestProbe();
        using var alone = new FleetConcurrencyLimiter(_settings);
        alone.Attach(silent.Ref, Cluster.Get(Sys).SelfUniqueAddress);
        var granted = await alone.AcquireAsync(LimitScope.Upstream, "ms", policy, default);
        Assert.True(granted.IsGranted);
        Assert.Equal(1, alone.Fallbacks);
        var asked = silent.ExpectMsg<AcquireLimit>();
        var renewal = silent.FishForMessage<RenewLimitLeases>(r => r.LeaseIds.Length == 1, TimeSpan.FromSeconds(3));
        Assert.Equal(asked.LeaseId, renewal.LeaseIds[0]);
        Assert.False((await alone.AcquireAsync(LimitScope.Upstream, "ms", policy, default)).IsGranted); // the local count holds meanwhile
        granted.Dispose();
        silent.FishForMessage<ReleaseLimit>(r => r.LeaseId == asked.LeaseId, TimeSpan.FromSeconds(3));
    }

    private sealed class SettableTime : TimeProvider
    {
        private DateTimeOffset _now = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }
}
