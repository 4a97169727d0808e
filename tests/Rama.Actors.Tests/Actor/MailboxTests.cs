using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Rama.Actors.Actor;
using Rama.Actors.TestKit;

namespace Rama.Actors.Tests.Actor;

public sealed class MailboxTests : TestKit.TestKit
{
    private sealed record Numbered(int Sender, int Sequence);

    private sealed record OrderReport(int Received, int Violations);

    /// <summary>Checks that each sender's sequence arrives in order.</summary>
    private sealed class SequenceChecker : ReceiveActor
    {
        private readonly Dictionary<int, int> _last = [];
        private int _received;
        private int _violations;

        public SequenceChecker()
        {
            Receive<Numbered>(n =>
            {
                _received++;
                var last = _last.GetValueOrDefault(n.Sender, -1);
                if (n.Sequence != last + 1)
                {
                    _violations++;
                }

                _last[n.Sender] = n.Sequence;
            });
            Receive<string>(_ => Sender.Tell(new OrderReport(_received, _violations), Self));
        }
    }

    [Fact]
    public async Task Each_senders_order_is_kept_when_many_threads_send_at_once()
    {
        const int senders = 6;
        const int perSender = 5_000;
        var checker = Sys.ActorOf(Props.Create<SequenceChecker>());
        using var start = new Barrier(senders);
        var threads = Enumerable.Range(0, senders).Select(id => Task.Factory.StartNew(
            () =>
            {
                start.SignalAndWait();
                for (var i = 0; i < perSender; i++)
                {
                    checker.Tell(new Numbered(id, i), ActorRefs.Nobody);
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default)).ToArray();
        await Task.WhenAll(threads);

        var report = await checker.Ask<OrderReport>("report");

        Assert.Equal(new OrderReport(senders * perSender, 0), report);
    }

    /// <summary>Waits for a gate in ReceiveAsync, then reports every other message to the probe.</summary>
    private sealed class GatedActor : ReceiveActor
    {
        public GatedActor(Task gate, IActorRef probe)
        {
            ReceiveAsync<string>(s => s == "wait", async _ =>
            {
                probe.Tell("waiting");
                await gate;
            });
            ReceiveAny(m => probe.Tell(m));
        }
    }

    [Fact]
    public void Stop_overtakes_queued_user_messages()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var probe = CreateTestProbe();
        var deadLetters = CreateTestProbe();
        Sys.EventStream.Subscribe<DeadLetter>(deadLetters.Ref);
        var actor = Sys.ActorOf(Props.Create(() => new GatedActor(gate.Task, probe.Ref)));
        Watch(actor);

        actor.Tell("wait");
        probe.ExpectMsg("waiting");
        for (var i = 0; i < 5; i++)
        {
            actor.Tell(i);
        }

        Sys.Stop(actor);

        // The Terminate system message is processed while the five user messages still wait.
        ExpectTerminated(actor);
        gate.SetResult();
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        var dropped = Enumerable.Range(0, 5).Select(_ => deadLetters.ExpectMsg<DeadLetter>().Message).ToArray();
        Assert.Equal([0, 1, 2, 3, 4], dropped.Cast<int>());
    }

    private sealed class SelfStopper : ReceiveActor
    {
        public SelfStopper(IActorRef probe)
        {
            Receive<string>(s => s == "start", _ =>
            {
                Self.Tell("queued-1");
                Self.Tell("queued-2");
                Context.Stop(Self);
                probe.Tell("stop requested");
            });
            ReceiveAny(m => probe.Tell(m));
        }
    }

    [Fact]
    public void Stopping_itself_takes_effect_after_the_current_message_before_later_user_messages()
    {
        var deadLetters = CreateTestProbe();
        Sys.EventStream.Subscribe<DeadLetter>(deadLetters.Ref);
        var actor = Sys.ActorOf(Props.Create(() => new SelfStopper(TestActor)));
        Watch(actor);

        actor.Tell("start");

        ExpectMsg("stop requested");
        ExpectTerminated(actor);
        Assert.Equal(["queued-1", "queued-2"], [deadLetters.ExpectMsg<DeadLetter>().Message, deadLetters.ExpectMsg<DeadLetter>().Message]);
    }

    [Fact]
    public void Watch_is_processed_before_queued_user_messages()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var probe = CreateTestProbe();
        var target = Sys.ActorOf(Props.Create<EchoActor>());
        var watcher = Sys.ActorOf(Props.Create(() => new GatedActor(gate.Task, probe.Ref)));
        watcher.Tell("wait");
        probe.ExpectMsg("waiting");
        watcher.Tell("user message queued before the stop");

        // Watch is sent by the probe's actor, Terminated reaches the probe whatever the watcher does.
        probe.Watch(target);
        Sys.Stop(target);

        probe.ExpectTerminated(target);
        gate.SetResult();
        probe.ExpectMsg("user message queued before the stop");
    }

    /// <summary>Records the mailbox run in which each message is processed.</summary>
    private sealed class RunRecorder : ReceiveActor
    {
        public RunRecorder(Task gate, ConcurrentQueue<long> runs, IActorRef probe)
        {
            ReceiveAsync<string>(s => s == "wait", async _ =>
            {
                probe.Tell("waiting");
                await gate;
            });
            Receive<int>(i =>
            {
                runs.Enqueue(((LocalActorRef)Self).Cell.MailboxRuns);
                if (i == 99)
                {
                    probe.Tell("done");
                }
            });
        }
    }

    [Fact]
    public void A_run_processes_at_most_the_throughput_budget_then_yields()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var runs = new ConcurrentQueue<long>();
        var actor = Sys.ActorOf(Props.Create(() => new RunRecorder(gate.Task, runs, TestActor)));
        actor.Tell("wait");
        ExpectMsg("waiting");
        for (var i = 0; i < 100; i++)
        {
            actor.Tell(i);
        }

        gate.SetResult();
        ExpectMsg("done");

        var perRun = runs.GroupBy(r => r).Select(g => g.Count()).ToArray();
        Assert.All(perRun, count => Assert.True(count <= Sys.Settings.Throughput, $"{count} messages in one run"));
        Assert.True(perRun.Length >= 4, $"100 messages in {perRun.Length} runs");
    }

    private sealed class BusyActor : ReceiveActor
    {
        public BusyActor(StrongBox<long> progress)
        {
            Receive<string>(_ =>
            {
                Interlocked.Increment(ref progress.Value);
                Self.Tell("again");
            });
        }
    }

    [Fact]
    public async Task Busy_actors_share_the_threads_and_all_make_progress()
    {
        // More endlessly busy actors than cores: only the per-run budget lets the others in.
        var progress = Enumerable.Range(0, Environment.ProcessorCount * 2).Select(_ => new StrongBox<long>()).ToArray();
        var busy = progress.Select(p => Sys.ActorOf(Props.Create(() => new BusyActor(p)))).ToArray();
        foreach (var actor in busy)
        {
            actor.Tell("go");
        }

        var echo = Sys.ActorOf(Props.Create<EchoActor>());
        Assert.Equal("ping", await echo.Ask<string>("ping", TimeSpan.FromSeconds(2)));

        var before = progress.Select(p => Interlocked.Read(ref p.Value)).ToArray();
        await AwaitConditionAsync(
            () => progress.Select((p, i) => Interlocked.Read(ref p.Value) > before[i] + 100).All(moved => moved),
            TimeSpan.FromSeconds(5));
        foreach (var actor in busy)
        {
            Sys.Stop(actor);
        }
    }
}
