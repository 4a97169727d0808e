using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Actor;
using Rama.Actors.Proxy;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Actors.Tests.Proxy;

public sealed class ListenerActorTests : Rama.Actors.TestKit.TestKit
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
        Sys.ActorOf(Props.Create(() => new ListenerActor(endpoint ?? new IPEndPoint(IPAddress.Loopback, 0), stack, NullLogger.Instance)));

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

    [Fact]
    public async Task Bind_answers_the_real_endpoint_and_connections_are_served_and_counted()
    {
        var listener = Listener(EchoStack());
        var bound = await listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout);
        var endpoint = IPEndPoint.Parse(bound.Endpoint);
        Assert.NotEqual(0, endpoint.Port);

        Assert.Equal("ping", await EchoAsync(endpoint, "ping"));
        await AwaitAssertAsync(async () => Assert.Equal(0, (await listener.Ask<ListenerStatus>(GetListenerStatus.Instance, AskTimeout)).OpenConnections));
        var status = await listener.Ask<ListenerStatus>(GetListenerStatus.Instance, AskTimeout);
        Assert.True(status.Bound);
        Assert.Equal(1, status.AcceptedConnections);
    }

    [Fact]
    public async Task Bind_failure_is_answered_and_the_listener_stops()
    {
        using var occupied = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        occupied.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        occupied.Listen();
        var listener = Listener(EchoStack(), (IPEndPoint)occupied.LocalEndPoint!);
        Watch(listener);
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout));
        Assert.Contains("cannot listen on", failure.Message, StringComparison.Ordinal);
        ExpectTerminated(listener);
    }

    [Fact]
    public async Task Unbind_refuses_new_connections_while_the_one_in_flight_finishes()
    {
        var gate = new TaskCompletionSource();
        var listener = Listener(EchoStack(gate.Task));
        var endpoint = IPEndPoint.Parse((await listener.Ask<ListenerBound>(BindListener.Instance, AskTimeout)).Endpoint);
        var inFlight = EchoAsync(endpoint, "in flight");
        await AwaitAssertAsync(async () => Assert.Equal(1, (await listener.Ask<ListenerStatus>(GetListenerStatus.Instance, AskTimeout)).OpenConnections));

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
        await AwaitAssertAsync(async () => Assert.Equal(1, (await listener.Ask<ListenerStatus>(GetListenerStatus.Instance, AskTimeout)).OpenConnections));

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
    public async Task A_supervised_listener_that_fails_is_restarted_and_rebinds_its_port()
    {
        var supervisor = Sys.ActorOf(Props.Create(() => new ListenerSupervisor([(new IPEndPoint(IPAddress.Loopback, 0), EchoStack(null))], NullLoggerFactory.Instance)), "proxy-listeners");
        var bound = await supervisor.Ask<AllListenersBound>(BindAllListeners.Instance, AskTimeout);
        var endpoint = IPEndPoint.Parse(bound.Endpoints.Single());
        Assert.Equal("before", await EchoAsync(endpoint, "before"));

        // A fault in the listener (Kill raises ActorKilledException): the supervisor restarts it.
        var listener = ((LocalActorRef)supervisor).Cell.Child("listener-0");
        Assert.False(listener.IsNobody());
        listener.Tell(Kill.Instance);

        // The restarted instance has a fresh server (nothing accepted yet), bound again on the same port.
        await AwaitAssertAsync(async () =>
        {
            var status = (await supervisor.Ask<ListenerStatus[]>(GetListenerStatus.Instance, AskTimeout)).Single();
            Assert.True(status.Bound);
            Assert.Equal(0, status.AcceptedConnections);
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(20));
        Assert.Equal("after", await EchoAsync(endpoint, "after"));
        var statuses = await supervisor.Ask<ListenerStatus[]>(GetListenerStatus.Instance, AskTimeout);
        Assert.Equal(endpoint.ToString(), statuses.Single().Endpoint);
    }
}
