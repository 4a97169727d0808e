using System.Diagnostics;
using Rama.Actors.Actor;
using Rama.Actors.Tests.Actor;
using Xunit.Sdk;

namespace Rama.Actors.Tests.Kit;

public sealed class TestKitTests : Rama.Actors.TestKit.TestKit
{
    [Fact]
    public void ExpectMsg_fails_after_its_timeout_when_nothing_comes()
    {
        var watch = Stopwatch.StartNew();

        Assert.Throws<XunitException>(() => ExpectMsg<string>(TimeSpan.FromMilliseconds(100)));

        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(80), TimeSpan.FromSeconds(2));
    }

    [Fact]
    public void ExpectMsg_fails_on_a_message_of_another_type_or_value()
    {
        TestActor.Tell(1);
        Assert.Throws<XunitException>(() => ExpectMsg<string>());
        TestActor.Tell("a");
        Assert.Throws<XunitException>(() => ExpectMsg("b"));
        TestActor.Tell("c");
        Assert.Throws<XunitException>(() => ExpectMsg<string>(s => s == "d"));
    }

    [Fact]
    public void ExpectNoMsg_fails_when_a_message_comes()
    {
        TestActor.Tell("surprise");

        Assert.Throws<XunitException>(() => ExpectNoMsg(TimeSpan.FromMilliseconds(100)));
    }

    [Fact]
    public void Within_bounds_nested_expectations_by_the_time_left()
    {
        var watch = Stopwatch.StartNew();

        // ExpectMsg alone would wait 3 s; inside Within(200 ms) it gives up when the block's time is up.
        Assert.Throws<XunitException>(() => Within(TimeSpan.FromMilliseconds(200), () => ExpectMsg<string>()));

        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(150), TimeSpan.FromSeconds(2));
    }

    [Fact]
    public void Within_fails_when_the_block_takes_longer()
    {
        // The block must really overrun: an expectation inside Within is clamped to the time left, so
        // ExpectNoMsg(150 ms) would end at the 50 ms deadline itself and pass or fail on timer rounding.
        Assert.Throws<XunitException>(() => Within(TimeSpan.FromMilliseconds(50), () => Thread.Sleep(120)));
        Within(TimeSpan.FromSeconds(2), () => TestActor.Tell("quick"));
        ExpectMsg("quick");
    }

    [Fact]
    public void AwaitCondition_polls_until_true_and_fails_at_the_deadline()
    {
        var watch = Stopwatch.StartNew();
        AwaitCondition(() => watch.ElapsedMilliseconds > 100);

        Assert.Throws<XunitException>(() => AwaitCondition(() => false, TimeSpan.FromMilliseconds(100)));
    }

    [Fact]
    public void AwaitAssert_rethrows_the_last_failure_at_the_deadline()
    {
        var calls = 0;
        AwaitAssert(() => Assert.True(++calls >= 3));

        Assert.Throws<TrueException>(() => AwaitAssert(() => Assert.True(false), TimeSpan.FromMilliseconds(100)));
    }

    [Fact]
    public async Task Probes_reply_to_the_last_sender_and_fish_for_messages()
    {
        var probe = CreateTestProbe();
        var echo = Sys.ActorOf(Props.Create<EchoActor>());

        var answer = probe.Ref.Ask<string>("question", TimeSpan.FromSeconds(3));
        Assert.Equal("question", await probe.ExpectMsgAsync<string>());
        probe.Reply("answer");
        Assert.Equal("answer", await answer);

        probe.Send(echo, 1);
        probe.Send(echo, 2);
        probe.Send(echo, 3);
        Assert.Equal(3, probe.FishForMessage<int>(i => i == 3));
        Assert.Equal(echo, probe.LastSender);
    }
}
