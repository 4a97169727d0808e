using Microsoft.Extensions.Time.Testing;
using Rama.Proxy.Core;

namespace Rama.Proxy.Tests.Core;

/// <summary>
/// The shutdown's rule for a connection's first request, shared by the HTTP+SOCKS5 port's peek and the HTTP/1.1 server: the
/// shutdown shortens the deadline to <see cref="GracefulShutdown.FirstRequestGrace"/>, never lengthens it, and a deadline armed
/// after the grace began (the header timeout once a first byte came) ends with the grace too.
/// </summary>
public sealed class FirstRequestDeadlineTests
{
    private static readonly TimeSpan Grace = GracefulShutdown.FirstRequestGrace;
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(1);

    private readonly FakeTimeProvider _time = new();
    private readonly CancellationTokenSource _shutdown = new();

    [Fact]
    public void The_shutdown_shortens_a_long_deadline_to_the_grace()
    {
        using var source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        using var deadline = new FirstRequestDeadline(source, _shutdown.Token, _time);
        deadline.Arm(TimeSpan.FromSeconds(30));

        _time.Advance(TimeSpan.FromSeconds(5));
        _shutdown.Cancel();
        AssertCancelledAfter(source, Grace);
    }

    [Fact]
    public void The_shutdown_never_lengthens_a_deadline_shorter_than_the_grace()
    {
        using var source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        using var deadline = new FirstRequestDeadline(source, _shutdown.Token, _time);
        deadline.Arm(Grace / 4);

        _shutdown.Cancel();
        _time.Advance(Grace / 4);
        Assert.True(source.IsCancellationRequested);
    }

    [Fact]
    public void A_deadline_armed_after_the_grace_began_ends_with_the_grace()
    {
        using var source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        using var deadline = new FirstRequestDeadline(source, _shutdown.Token, _time);
        deadline.Arm(TimeSpan.FromSeconds(30));
        _shutdown.Cancel();

        _time.Advance(Grace / 2);
        deadline.Arm(TimeSpan.FromSeconds(30)); // the first byte came: the header timeout starts
        AssertCancelledAfter(source, Grace / 2);
    }

    [Fact]
    public void A_shutdown_that_began_before_the_connection_was_served_gives_the_grace_from_then()
    {
        _shutdown.Cancel();
        using var source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        using var deadline = new FirstRequestDeadline(source, _shutdown.Token, _time);
        deadline.Arm(TimeSpan.FromSeconds(30));

        AssertCancelledAfter(source, Grace);
    }

    [Fact]
    public void Once_released_the_shutdown_leaves_the_source_alone()
    {
        using var source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        var deadline = new FirstRequestDeadline(source, _shutdown.Token, _time);
        deadline.Arm(TimeSpan.FromSeconds(30));

        deadline.Release(); // the head is complete: the request is being served
        source.CancelAfter(Timeout.InfiniteTimeSpan);
        _shutdown.Cancel();
        _time.Advance(TimeSpan.FromMinutes(5));
        Assert.False(source.IsCancellationRequested);
    }

    [Fact]
    public void Without_a_shutdown_the_armed_deadline_holds_and_rearming_replaces_it()
    {
        using var source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time);
        using var deadline = new FirstRequestDeadline(source, _shutdown.Token, _time);
        deadline.Arm(TimeSpan.FromSeconds(1));
        _time.Advance(TimeSpan.FromMilliseconds(900));
        deadline.Arm(TimeSpan.FromSeconds(10));

        AssertCancelledAfter(source, TimeSpan.FromSeconds(10));
    }

    /// <summary>Not cancelled a tick before <paramref name="after"/> from now, cancelled at it.</summary>
    private void AssertCancelledAfter(CancellationTokenSource source, TimeSpan after)
    {
        _time.Advance(after - Tick);
        Assert.False(source.IsCancellationRequested);
        _time.Advance(Tick);
        Assert.True(source.IsCancellationRequested);
    }
}
