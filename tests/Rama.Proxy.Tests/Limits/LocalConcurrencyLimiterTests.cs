using Rama.Proxy.Limits;
using Rama.Proxy.Tests.Upstream;

namespace Rama.Proxy.Tests.Limits;

public sealed class LocalConcurrencyLimiterTests
{
    private static readonly LimitPolicy AtMostTwo = new(2, null);

    private static LimitLease Acquire(LocalConcurrencyLimiter limiter, LimitPolicy policy, string key = "u1", LimitScope scope = LimitScope.Upstream) =>
        limiter.AcquireAsync(scope, key, policy, CancellationToken.None).AsTask().GetAwaiter().GetResult();

    [Fact]
    public void The_lease_past_the_limit_is_refused_naming_the_key_and_the_limit_until_one_is_released()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        var first = Acquire(limiter, AtMostTwo);
        var second = Acquire(limiter, AtMostTwo);
        Assert.True(first.IsGranted && second.IsGranted);

        var third = Acquire(limiter, AtMostTwo);
        Assert.False(third.IsGranted);
        Assert.Contains("upstream u1", third.Reason, StringComparison.Ordinal);
        Assert.Contains("limit of 2 connections", third.Reason, StringComparison.Ordinal);
        Assert.True(third.RetryAfter > TimeSpan.Zero);
        Assert.Equal(2, limiter.Held(LimitScope.Upstream, "u1"));

        first.Dispose();
        Assert.Equal(1, limiter.Held(LimitScope.Upstream, "u1"));
        Assert.True(Acquire(limiter, AtMostTwo).IsGranted);
        Assert.False(Acquire(limiter, AtMostTwo).IsGranted);
    }

    [Fact]
    public void A_user_refusal_names_the_user()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        using var held = Acquire(limiter, new LimitPolicy(1, null), "john", LimitScope.User);
        var refused = Acquire(limiter, new LimitPolicy(1, null), "john", LimitScope.User);
        Assert.False(refused.IsGranted);
        Assert.Contains("user john", refused.Reason, StringComparison.Ordinal);
        Assert.Contains("limit of 1 connections", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Keys_and_scopes_are_counted_apart()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        var one = new LimitPolicy(1, null);
        using var upstream = Acquire(limiter, one, "x", LimitScope.Upstream);
        using var user = Acquire(limiter, one, "x", LimitScope.User);
        using var other = Acquire(limiter, one, "y", LimitScope.Upstream);
        Assert.True(upstream.IsGranted && user.IsGranted && other.IsGranted);
        Assert.False(Acquire(limiter, one, "x", LimitScope.Upstream).IsGranted);
        Assert.False(Acquire(limiter, one, "x", LimitScope.User).IsGranted);
    }

    [Fact]
    public void Disposing_a_lease_twice_releases_one_slot()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        var first = Acquire(limiter, AtMostTwo);
        using var second = Acquire(limiter, AtMostTwo);
        first.Dispose();
        first.Dispose();
        Assert.Equal(1, limiter.Held(LimitScope.Upstream, "u1"));
        using var third = Acquire(limiter, AtMostTwo);
        Assert.True(third.IsGranted);
        Assert.False(Acquire(limiter, AtMostTwo).IsGranted);
    }

    [Fact]
    public void A_rate_grants_its_count_then_refuses_with_a_retry_after_until_the_period_has_passed()
    {
        var time = new ManualTime();
        var limiter = new LocalConcurrencyLimiter(time);
        var threePerSecond = new LimitPolicy(null, LimitRate.Parse("3/s"));
        for (var i = 0; i < 3; i++)
        {
            var lease = Acquire(limiter, threePerSecond);
            Assert.True(lease.IsGranted, $"lease {i + 1}: {lease.Reason}");
            lease.Dispose();
        }

        var refused = Acquire(limiter, threePerSecond);
        Assert.False(refused.IsGranted);
        Assert.Contains("upstream u1 is over its rate of 3/s", refused.Reason, StringComparison.Ordinal);
        Assert.InRange(refused.RetryAfter!.Value, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(1));

        time.Advance(TimeSpan.FromSeconds(1));
        for (var i = 0; i < 3; i++)
        {
            Assert.True(Acquire(limiter, threePerSecond).IsGranted, $"after the period, lease {i + 1}");
        }

        Assert.False(Acquire(limiter, threePerSecond).IsGranted);
    }

    [Fact]
    public void A_rate_refills_evenly_and_the_retry_after_says_when_the_next_token_comes()
    {
        var time = new ManualTime();
        var limiter = new LocalConcurrencyLimiter(time);
        var sixtyPerMinute = new LimitPolicy(null, LimitRate.Parse("60/m"));
        for (var i = 0; i < 60; i++)
        {
            Assert.True(Acquire(limiter, sixtyPerMinute).IsGranted);
        }

        var refused = Acquire(limiter, sixtyPerMinute);
        Assert.False(refused.IsGranted);
        Assert.Equal(1.0, refused.RetryAfter!.Value.TotalSeconds, 3);

        time.Advance(refused.RetryAfter.Value);
        Assert.True(Acquire(limiter, sixtyPerMinute).IsGranted);
        Assert.False(Acquire(limiter, sixtyPerMinute).IsGranted);
    }

    [Fact]
    public void A_keys_state_goes_away_once_its_last_lease_is_released()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        var a = Acquire(limiter, AtMostTwo, "a");
        var b = Acquire(limiter, AtMostTwo, "a");
        var c = Acquire(limiter, AtMostTwo, "c");
        Assert.Equal(2, limiter.Keys);
        a.Dispose();
        Assert.Equal(2, limiter.Keys);
        b.Dispose();
        c.Dispose();
        Assert.Equal(0, limiter.Keys);
        Assert.Equal(0, limiter.Held(LimitScope.Upstream, "a"));

        using var again = Acquire(limiter, AtMostTwo, "a");
        Assert.True(again.IsGranted);
        Assert.Equal(1, limiter.Held(LimitScope.Upstream, "a"));
    }

    [Fact]
    public void An_unlimited_policy_takes_no_state()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        var lease = Acquire(limiter, LimitPolicy.Unlimited);
        Assert.Same(LimitLease.Unlimited, lease);
        Assert.Equal(0, limiter.Keys);
    }

    [Fact]
    public async Task Concurrent_acquires_never_hold_more_than_the_limit()
    {
        var limiter = new LocalConcurrencyLimiter(new ManualTime());
        var policy = new LimitPolicy(3, null);
        var inside = 0;
        var most = 0;
        var granted = 0;
        var workers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < 2000; i++)
            {
                var lease = await limiter.AcquireAsync(LimitScope.User, "shared", policy, CancellationToken.None);
                if (!lease.IsGranted)
                {
                    continue;
                }

                Interlocked.Increment(ref granted);
                var now = Interlocked.Increment(ref inside);
                InterlockedMax(ref most, now);
                Interlocked.Decrement(ref inside);
                lease.Dispose();
            }
        }));
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.InRange(most, 1, 3);
        Assert.True(granted > 0);
        Assert.Equal(0, limiter.Held(LimitScope.User, "shared"));
        Assert.Equal(0, limiter.Keys);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var seen = Volatile.Read(ref target);
        while (value > seen)
        {
            var was = Interlocked.CompareExchange(ref target, value, seen);
            if (was == seen)
            {
                return;
            }

            seen = was;
        }
    }
}
