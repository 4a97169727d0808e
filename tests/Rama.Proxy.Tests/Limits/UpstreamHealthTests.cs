using Rama.Proxy.Tests.Upstream;
using Rama.Proxy.Upstream;

namespace Rama.Proxy.Tests.Limits;

/// <summary>The failure cache as a fleet node shares it: local failures and recoveries go to the listener, the fleet's view comes in by Apply.</summary>
public sealed class UpstreamHealthTests
{
    private readonly ManualTime _time = new();
    private readonly RecordingListener _listener = new();
    private readonly UpstreamFailureCache _cache;

    public UpstreamHealthTests()
    {
        _cache = new UpstreamFailureCache(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), _time) { Listener = _listener };
    }

    [Fact]
    public void The_listener_hears_each_local_failure_with_its_count_and_back_off_and_one_recovery()
    {
        _cache.Failed("a");
        _cache.Failed("a");
        _cache.Failed("a");
        Assert.Equal(["failed a 1 5", "failed a 2 10", "failed a 3 20"], _listener.Heard);
        Assert.Equal(3, _cache.FailuresOf("a"));

        _cache.Succeeded("a");
        _cache.Succeeded("a");
        _cache.Succeeded("never-failed");
        Assert.Equal(["failed a 1 5", "failed a 2 10", "failed a 3 20", "recovered a"], _listener.Heard);
        Assert.Equal(0, _cache.FailuresOf("a"));
    }

    [Fact]
    public void Apply_backs_an_upstream_off_for_the_given_time_without_telling_the_listener()
    {
        _cache.Apply("b", 4, TimeSpan.FromSeconds(12));
        Assert.True(_cache.IsBackedOff("b"));
        Assert.Equal(4, _cache.FailuresOf("b"));
        Assert.Equal(TimeSpan.FromSeconds(12), _cache.Remaining("b"));
        Assert.Equal(1, _cache.BackedOffCount);

        _time.Advance(TimeSpan.FromSeconds(11.9));
        Assert.True(_cache.IsBackedOff("b"));
        _time.Advance(TimeSpan.FromSeconds(0.2));
        Assert.False(_cache.IsBackedOff("b"));
        Assert.Empty(_listener.Heard);
    }

    [Fact]
    public void Apply_with_a_zero_back_off_makes_an_upstream_healthy_again_without_telling_the_listener()
    {
        _cache.Failed("c");
        _cache.Failed("c");
        Assert.True(_cache.IsBackedOff("c"));

        _cache.Apply("c", 0, TimeSpan.Zero);
        Assert.False(_cache.IsBackedOff("c"));
        Assert.Equal(0, _cache.FailuresOf("c"));
        Assert.Equal(["failed c 1 5", "failed c 2 10"], _listener.Heard);

        _cache.Apply("remote", 2, TimeSpan.FromSeconds(10));
        _cache.Apply("remote", 0, TimeSpan.Zero);
        Assert.False(_cache.IsBackedOff("remote"));
        Assert.Equal(["failed c 1 5", "failed c 2 10"], _listener.Heard);
    }

    [Fact]
    public void A_longer_local_back_off_is_kept_and_a_longer_applied_one_extends_it()
    {
        _cache.Failed("d");
        _cache.Failed("d");
        _cache.Failed("d");
        Assert.Equal(TimeSpan.FromSeconds(20), _cache.Remaining("d"));

        _cache.Apply("d", 1, TimeSpan.FromSeconds(5));
        Assert.Equal(TimeSpan.FromSeconds(20), _cache.Remaining("d"));
        Assert.Equal(3, _cache.FailuresOf("d"));

        _cache.Apply("d", 2, TimeSpan.FromSeconds(25));
        Assert.Equal(TimeSpan.FromSeconds(25), _cache.Remaining("d"));
        Assert.Equal(3, _cache.FailuresOf("d"));

        _cache.Apply("d", 6, TimeSpan.FromSeconds(30));
        Assert.Equal(6, _cache.FailuresOf("d"));
    }

    [Fact]
    public void A_local_failure_after_an_applied_one_counts_on_from_the_fleets_count()
    {
        _cache.Apply("e", 2, TimeSpan.FromSeconds(10));
        _time.Advance(TimeSpan.FromSeconds(10.1));
        Assert.Equal(TimeSpan.FromSeconds(20), _cache.Failed("e"));
        Assert.Equal(["failed e 3 20"], _listener.Heard);
    }

    private sealed class RecordingListener : IUpstreamHealthListener
    {
        private readonly List<string> _heard = [];

        public IReadOnlyList<string> Heard
        {
            get
            {
                lock (_heard)
                {
                    return [.. _heard];
                }
            }
        }

        public void Failed(string id, int failures, TimeSpan backoff)
        {
            lock (_heard)
            {
                _heard.Add($"failed {id} {failures} {backoff.TotalSeconds}");
            }
        }

        public void Recovered(string id)
        {
            lock (_heard)
            {
                _heard.Add($"recovered {id}");
            }
        }
    }
}
