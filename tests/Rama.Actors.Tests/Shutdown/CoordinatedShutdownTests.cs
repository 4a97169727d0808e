using System.Collections.Concurrent;
using System.Diagnostics;
using Rama.Actors.Actor;
using Rama.Actors.Shutdown;

namespace Rama.Actors.Tests.Shutdown;

public sealed class CoordinatedShutdownTests : TestKit.TestKit
{
    private static readonly ActorSystemSettings ShortTimeouts = new()
    {
        CoordinatedShutdown = new CoordinatedShutdownSettings
        {
            PhaseTimeouts = new Dictionary<string, TimeSpan> { [CoordinatedShutdown.PhaseServiceUnbind] = TimeSpan.FromMilliseconds(300) },
            PhaseRecover = new Dictionary<string, bool> { [CoordinatedShutdown.PhaseServiceStop] = false },
        },
    };

    public CoordinatedShutdownTests()
        : base(settings: ShortTimeouts, systemName: "shutdown")
    {
    }

    private CoordinatedShutdown Coordinated => CoordinatedShutdown.Get(Sys);

    [Fact]
    public void The_default_phases_and_timeouts_are_Akkas()
    {
        Assert.Equal(
            [
                "before-service-unbind", "service-unbind", "service-requests-done", "service-stop",
                "before-cluster-shutdown", "cluster-sharding-shutdown-region", "cluster-leave", "cluster-exiting",
                "cluster-exiting-done", "cluster-shutdown", "before-actor-system-terminate", "actor-system-terminate",
            ],
            Coordinated.OrderedPhases);
        Assert.Equal(TimeSpan.FromSeconds(5), Coordinated.Timeout(CoordinatedShutdown.PhaseBeforeServiceUnbind));
        Assert.Equal(TimeSpan.FromSeconds(10), Coordinated.Timeout(CoordinatedShutdown.PhaseClusterShardingShutdownRegion));
        Assert.Equal(TimeSpan.FromSeconds(10), Coordinated.Timeout(CoordinatedShutdown.PhaseClusterExiting));
        Assert.Equal(TimeSpan.FromSeconds(10), Coordinated.Timeout(CoordinatedShutdown.PhaseActorSystemTerminate));
        Assert.Equal(TimeSpan.FromMilliseconds(300), Coordinated.Timeout(CoordinatedShutdown.PhaseServiceUnbind));
        Assert.True(Coordinated.Recover(CoordinatedShutdown.PhaseServiceUnbind));
        Assert.False(Coordinated.Recover(CoordinatedShutdown.PhaseServiceStop));
        Assert.Throws<ArgumentException>(() => Coordinated.AddTask("no-such-phase", "t", () => Task.FromResult(Done.Instance)));
    }

    [Fact]
    public async Task Phases_run_in_order_and_the_last_one_terminates_the_system()
    {
        var ran = new ConcurrentQueue<string>();
        foreach (var phase in Coordinated.OrderedPhases.Reverse())
        {
            Coordinated.AddTask(phase, $"record-{phase}", () =>
            {
                ran.Enqueue(phase);
                return Task.FromResult(Done.Instance);
            });
        }

        await Coordinated.Run(CoordinatedShutdown.UnknownReason.Instance).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(Coordinated.OrderedPhases, ran);
        Assert.True(Sys.WhenTerminated.IsCompletedSuccessfully);
        Assert.Same(CoordinatedShutdown.UnknownReason.Instance, Coordinated.ShutdownReason);
    }

    [Fact]
    public async Task Tasks_of_one_phase_run_concurrently()
    {
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var second = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // Each waits for the other: they can only both finish if they run at the same time.
        Coordinated.AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "first", async ct =>
        {
            first.SetResult();
            await second.Task.WaitAsync(ct);
        });
        Coordinated.AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "second", async ct =>
        {
            second.SetResult();
            await first.Task.WaitAsync(ct);
        });
        var watch = Stopwatch.StartNew();

        await Coordinated.Run(CoordinatedShutdown.UnknownReason.Instance).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(first.Task.IsCompleted && second.Task.IsCompleted);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(4), $"took {watch.Elapsed}: the phase timed out");
    }

    [Fact]
    public async Task A_task_that_never_completes_delays_its_phase_by_the_timeout_and_later_phases_still_run()
    {
        var hungTaskCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var later = new TaskCompletionSource<Stopwatch>(TaskCreationOptions.RunContinuationsAsynchronously);
        var watch = Stopwatch.StartNew();
        Coordinated.AddTask(CoordinatedShutdown.PhaseServiceUnbind, "hangs", async ct =>
        {
            using var registration = ct.Register(() => hungTaskCancelled.TrySetResult());
            await new TaskCompletionSource().Task; // never completes
        });
        Coordinated.AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "later", () =>
        {
            later.SetResult(watch);
            return Task.FromResult(Done.Instance);
        });

        await Coordinated.Run(CoordinatedShutdown.UnknownReason.Instance).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(later.Task.IsCompleted);
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        await hungTaskCancelled.Task.WaitAsync(TimeSpan.FromSeconds(1));
        Assert.True(Sys.WhenTerminated.IsCompletedSuccessfully);
    }

    [Fact]
    public async Task A_failing_task_in_a_recovering_phase_is_logged_and_the_run_goes_on()
    {
        var later = false;
        Coordinated.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "throws", () => throw new InvalidOperationException("oops"));
        Coordinated.AddTask(CoordinatedShutdown.PhaseServiceUnbind, "later", () =>
        {
            later = true;
            return Task.FromResult(Done.Instance);
        });

        await Coordinated.Run(CoordinatedShutdown.UnknownReason.Instance).WaitAsync(TimeSpan.FromSeconds(10));

        Assert.True(later);
    }

    [Fact]
    public async Task A_failing_task_in_a_phase_without_recover_aborts_the_run()
    {
        var later = false;
        Coordinated.AddTask(CoordinatedShutdown.PhaseServiceStop, "throws", _ => Task.FromException(new InvalidOperationException("oops")));
        Coordinated.AddTask(CoordinatedShutdown.PhaseClusterLeave, "later", () =>
        {
            later = true;
            return Task.FromResult(Done.Instance);
        });

        await Assert.ThrowsAsync<InvalidOperationException>(() => Coordinated.Run(CoordinatedShutdown.UnknownReason.Instance).WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.False(later);
        Assert.False(Sys.WhenTerminated.IsCompleted);
    }

    [Fact]
    public async Task Run_runs_once_and_returns_the_same_task()
    {
        var runs = 0;
        Coordinated.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "count", () =>
        {
            Interlocked.Increment(ref runs);
            return Task.FromResult(Done.Instance);
        });

        var first = Coordinated.Run(CoordinatedShutdown.ClrExitReason.Instance);
        var second = Coordinated.Run(CoordinatedShutdown.UnknownReason.Instance);
        await first.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Same(first, second);
        Assert.Equal(1, runs);
        Assert.Same(CoordinatedShutdown.ClrExitReason.Instance, Coordinated.ShutdownReason);
    }

    [Fact]
    public async Task Terminating_the_system_runs_the_phases()
    {
        var ran = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        Coordinated.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "unbind", () =>
        {
            ran.SetResult("ran");
            return Task.FromResult(Done.Instance);
        });

        await Sys.Terminate().WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal("ran", await ran.Task);
        Assert.Same(CoordinatedShutdown.ActorSystemTerminateReason.Instance, Coordinated.ShutdownReason);
    }

    [Fact]
    public async Task An_actor_can_terminate_the_system_without_deadlock()
    {
        var actor = Sys.ActorOf(Props.Create<Terminator>());

        actor.Tell("terminate");

        await Sys.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(10));
    }

    private sealed class Terminator : ReceiveActor
    {
        public Terminator() => Receive<string>(_ => Context.System.Terminate());
    }
}
