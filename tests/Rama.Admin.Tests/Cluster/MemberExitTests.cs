using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Rama.Admin.Cluster;
using Rama.Admin.Cluster.Transport;
using Rama.Admin.Options;

namespace Rama.Admin.Tests.Cluster;

/// <summary>
/// A member the fleet refuses while Akka.Hosting is still starting its actors: the host's start fails ("cannot create
/// child while terminating"), and the node must still exit 2 with the fleet's reason, not 1 as for a broken start.
/// </summary>
public sealed class MemberExitTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task A_start_that_fails_because_the_fleet_refused_the_member_is_reported_as_the_fleets_refusal()
    {
        using var system = ActorSystem.Create("rama");
        await using var services = new ServiceCollection().AddSingleton(system).BuildServiceProvider();
        Assert.Null(MemberExit.StoppingWhileStarting(services));

        _ = CoordinatedShutdown.Get(system).Run(new FleetTrustFailureReason("could not prove fleet membership to akka.ssl.tcp://rama@127.0.0.1:1: test"));
        var stopping = MemberExit.StoppingWhileStarting(services);
        Assert.Same(system, stopping);

        // Starting an actor now fails the way Akka.Hosting's start did in CI.
        await system.WhenTerminated.WaitAsync(Wait);
        Assert.Throws<InvalidOperationException>(() => system.ActorOf(Props.Empty, "late"));

        var (code, message) = await MemberExit.AfterTerminationAsync(stopping!, Wait);
        Assert.Equal(ExitCodes.BadOptions, code);
        Assert.Contains("could not prove fleet membership", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_start_that_failed_on_its_own_keeps_its_own_exit_code_even_though_the_system_stops()
    {
        // A listener that cannot bind fails the start and Akka.Hosting runs the coordinated shutdown: not the fleet's doing.
        using var system = ActorSystem.Create("rama");
        await using var services = new ServiceCollection().AddSingleton(system).BuildServiceProvider();
        _ = CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.UnknownReason.Instance);
        await system.WhenTerminated.WaitAsync(Wait);
        Assert.Null(MemberExit.StoppingWhileStarting(services));
    }

    [Fact]
    public void A_start_that_fails_before_the_actor_system_exists_is_not_taken_for_a_stop()
    {
        using var services = new ServiceCollection().BuildServiceProvider();
        Assert.Null(MemberExit.StoppingWhileStarting(services));
        using var throwing = new ServiceCollection().AddSingleton<ActorSystem>(_ => throw new InvalidOperationException("not started")).BuildServiceProvider();
        Assert.Null(MemberExit.StoppingWhileStarting(throwing));
    }
}
