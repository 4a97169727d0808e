using Rama.Proxy.Limits;

namespace Rama.Proxy.Tests.Limits;

public sealed class LimitLeaseTests
{
    [Fact]
    public void A_granted_lease_releases_once_however_often_it_is_disposed()
    {
        var released = 0;
        var lease = LimitLease.Granted(() => released++);
        Assert.True(lease.IsGranted);
        lease.Dispose();
        lease.Dispose();
        Assert.Equal(1, released);
    }

    [Fact]
    public void A_refusal_carries_its_reason_and_when_to_retry()
    {
        var refused = LimitLease.Refused("user john is at its limit", TimeSpan.FromSeconds(2));
        Assert.False(refused.IsGranted);
        Assert.Equal("user john is at its limit", refused.Reason);
        Assert.Equal(TimeSpan.FromSeconds(2), refused.RetryAfter);
        refused.Dispose();
        Assert.True(LimitLease.Unlimited.IsGranted);
        LimitLease.Unlimited.Dispose();
        Assert.True(LimitLease.Unlimited.IsGranted);
    }
}
