using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Listeners;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Tests.Listeners;

public sealed class ListenerActorTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Echoes what it reads until the client closes, or waits for <paramref name="gate"/> first when given.</summary>
    private static IService<ConnectionContext, Unit> EchoStack(Task? gate = null) => Service.FromFunc<ConnectionContext, Unit>(async (c, ct) =>
    {
        if (gate is not null)
        {
            await gate.WaitAsync(ct);
        }

        await Relay.CopyAsync(c.Transport.Input, c.Transport.Output, ct);
        return Unit.Value;
    });

    private IActorRef Listener(IService<ConnectionContext, Unit> stack, IPEndPoint? endpoint = null) =>
        Sys.ActorOf(ListenerActor.Props("test", endpoint ?? new IPEndPoint(IPAddress.Loopback, 0), stack, null, NullLogger.Instance));

    private static async Task<string> EchoAsync(IPEndPoint endpoint, string text)
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endpoint);
        await client.SendAsync(System.Text.Encoding.ASCII.GetBytes(text));
        client.Shutdown(SocketShutdown.Send);
        var buffer = new byte[256];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var n = await client.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        return System.Text.Encoding.ASCII.GetString(buffer, 0, n);
    }

    private static Task<ListenerStatus> StatusAsync(IActorRef listener) => listener.Ask<ListenerStatus>(GetListenerStatus.Instance, AskTimeout);

    [Fact]
    public async Task Bind_answers_the_real_endpoint_and_connections_are_served_and_counted()
    {
        var listener = Listener(EchoStack());
        var bound = await listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout);
        var endpoint = IPEndPoint.Parse(bound.Endpoint);
        Assert.NotEqual(0, endpoint.Port);
        Assert.Equal("test", bound.Name);

        Assert.Equal("ping", await EchoAsync(endpoint, "ping"));
        await AwaitAssertAsync(async () => Assert.Equal(0, (await StatusAsync(listener)).OpenConnections));
        var status = await StatusAsync(listener);
        Assert.True(status.Bound);
        Assert.False(status.Draining);
        Assert.Equal(1, status.AcceptedConnections);
    }

    [Fact]
    public async Task Bind_failure_is_answered_with_the_address_and_the_listener_stops()
    {
        using var occupied = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        occupied.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        occupied.Listen();
        var listener = Listener(EchoStack(), (IPEndPoint)occupied.LocalEndPoint!);
        Watch(listener);
        var failure = await Assert.ThrowsAsync<ListenerBindException>(() => listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout));
        Assert.Contains($"cannot listen on {occupied.LocalEndPoint}: address already in use", failure.Message, StringComparison.Ordinal);
        ExpectTerminated(listener);
    }

    [Fact]
    public async Task Unbind_refuses_new_connections_while_the_one_in_flight_finishes()
    {
        var gate = new TaskCompletionSource();
        var listener = Listener(EchoStack(gate.Task));
        var endpoint = IPEndPoint.Parse((await listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout)).Endpoint);
        var inFlight = EchoAsync(endpoint, "in flight");
        await AwaitAssertAsync(async () => Assert.Equal(1, (await StatusAsync(listener)).OpenConnections));

        var unbound = await listener.Ask<ListenerUnbound>(UnbindListener.Instance, AskTimeout);
        Assert.Equal(1, unbound.InFlight);
        using (var late = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            var refused = await Assert.ThrowsAsync<SocketException>(() => late.ConnectAsync(endpoint));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }

        gate.SetResult();
        Assert.Equal("in flight", await inFlight);
        var drained = await listener.Ask<ListenerDrained>(new DrainListener(TimeSpan.FromSeconds(5)), AskTimeout + TimeSpan.FromSeconds(5));
        Assert.Equal(0, drained.ClosedAfterTimeout);
        Assert.Equal(0, drained.OpenConnections);
    }

    [Fact]
    public async Task Drain_closes_what_outlives_the_timeout_and_reports_it()
    {
        var never = new TaskCompletionSource();
        var listener = Listener(EchoStack(never.Task));
        var endpoint = IPEndPoint.Parse((await listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout)).Endpoint);
        using var stuck = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await stuck.ConnectAsync(endpoint);
        await AwaitAssertAsync(async () => Assert.Equal(1, (await StatusAsync(listener)).OpenConnections));

        var drained = await listener.Ask<ListenerDrained>(new DrainListener(TimeSpan.FromMilliseconds(300)), AskTimeout);
        Assert.Equal(1, drained.ClosedAfterTimeout);
        Assert.Equal(0, drained.OpenConnections);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        int read;
        try
        {
            read = await stuck.ReceiveAsync(new byte[8], SocketFlags.None, cts.Token);
        }
        catch (SocketException)
        {
            read = 0;
        }

        Assert.Equal(0, read);
    }

    [Fact]
    public async Task The_supervisor_answers_status_at_once_while_a_drain_waits_for_a_connection()
    {
        var gate = new TaskCompletionSource();
        var supervisor = Sys.ActorOf(ListenerSupervisor.Props([new ListenerSpec("edge", new IPEndPoint(IPAddress.Loopback, 0), EchoStack(gate.Task))], NullLogger.Instance));
        var bound = await supervisor.Ask<AllListenersBound>(BindAllListeners.Instance, AskTimeout);
        var endpoint = IPEndPoint.Parse(bound.Listeners.Single().Endpoint);
        var inFlight = EchoAsync(endpoint, "slow");
        await AwaitAssertAsync(async () => Assert.Equal(1, (await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, AskTimeout)).Listeners.Single().OpenConnections));

        var probe = CreateTestProbe();
        supervisor.Tell(new DrainAllListeners(TimeSpan.FromSeconds(20)), probe.Ref);

        // The drain waits for the connection (up to 20 s); status comes back at once and says so.
        var status = await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(1));
        Assert.True(status.Draining);
        var edge = status.Listeners.Single();
        Assert.Equal("edge", edge.Name);
        Assert.False(edge.Bound);
        Assert.True(edge.Draining);
        Assert.Equal(1, edge.OpenConnections);
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        gate.SetResult();
        Assert.Equal("slow", await inFlight);
        var drained = probe.ExpectMsg<AllListenersDrained>(TimeSpan.FromSeconds(10));
        Assert.Equal(0, drained.ClosedAfterTimeout);
        Assert.Equal(0, drained.OpenConnections);
    }

    [Fact]
    public async Task A_supervised_listener_that_fails_is_restarted_and_rebinds_its_port()
    {
        var supervisor = Sys.ActorOf(ListenerSupervisor.Props([new ListenerSpec("edge", new IPEndPoint(IPAddress.Loopback, 0), EchoStack())], NullLogger.Instance), "rama-listeners");
        var bound = await supervisor.Ask<AllListenersBound>(BindAllListeners.Instance, AskTimeout);
        var endpoint = IPEndPoint.Parse(bound.Listeners.Single().Endpoint);
        Assert.Equal("before", await EchoAsync(endpoint, "before"));

        // A fault in the listener (Kill raises ActorKilledException): the supervisor restarts it.
        var listener = await Sys.ActorSelection(supervisor.Path / ListenerSupervisor.ChildName("edge")).ResolveOne(AskTimeout);
        listener.Tell(Kill.Instance);

        // The restarted instance has a fresh server (nothing accepted yet), bound again on the same port.
        await AwaitAssertAsync(async () =>
        {
            var status = (await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, AskTimeout)).Listeners.Single();
            Assert.True(status.Bound);
            Assert.Equal(0, status.AcceptedConnections);
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(20));
        Assert.Equal("after", await EchoAsync(endpoint, "after"));
        var statuses = await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, AskTimeout);
        Assert.Equal(endpoint.ToString(), statuses.Listeners.Single().Endpoint);
    }

    [Fact]
    public async Task A_listener_that_stops_for_good_leaves_the_others_answering()
    {
        using var occupied = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        occupied.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        occupied.Listen();
        var supervisor = Sys.ActorOf(ListenerSupervisor.Props(
            [new ListenerSpec("busy", (IPEndPoint)occupied.LocalEndPoint!, EchoStack()), new ListenerSpec("free", new IPEndPoint(IPAddress.Loopback, 0), EchoStack())],
            NullLogger.Instance));
        var failure = await Assert.ThrowsAsync<ListenerBindException>(() => supervisor.Ask<AllListenersBound>(BindAllListeners.Instance, AskTimeout));
        Assert.Equal(occupied.LocalEndPoint!.ToString(), failure.Endpoint);

        // The failed listener stopped; status (and so shutdown's unbind and drain) covers the one left, without waiting on the dead one.
        await AwaitAssertAsync(async () => Assert.Equal("free", (await supervisor.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(1))).Listeners.Single().Name));
    }
}
