using System.Net;
using System.Net.Sockets;
using Akka;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Testing;

namespace Rama.Actors.Tests.Hosting;

/// <summary>Embedding Rama's actors in a host app: Akka.Hosting's AddAkka with AddRama on its builder.</summary>
public sealed class HostingTests
{
    private sealed class Echo : ReceiveActor
    {
        public Echo() => ReceiveAny(m => Sender.Tell(m));
    }

    private sealed class EchoKey;

    private sealed class Consumer(IRequiredActor<EchoKey> echo)
    {
        public Task<string> PingAsync() => echo.ActorRef.Ask<string>("ping", TimeSpan.FromSeconds(5));
    }

    private static RamaSettings Listening(IPEndPoint endpoint, IService<ConnectionContext, Unit> stack, TimeSpan drain) => new()
    {
        DrainTimeout = drain,
        Listeners = _ => [new ListenerSpec("edge", endpoint, stack)],
    };

    [Fact]
    public async Task Your_own_actors_and_rama_listeners_share_one_system_and_host_stop_runs_coordinated_shutdown_in_phase_order()
    {
        var phases = new List<string>();
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddSingleton<Consumer>();
        builder.Services.AddAkka("embedded", akka => akka
            .AddRama(Listening(new IPEndPoint(IPAddress.Loopback, 0), Service.FromFunc<ConnectionContext, Unit>((_, _) => ValueTask.FromResult(Unit.Value)), TimeSpan.FromSeconds(1)))
            .WithActors((system, registry) =>
            {
                registry.Register<EchoKey>(system.ActorOf(Props.Create<Echo>(), "echo"));
                var shutdown = CoordinatedShutdown.Get(system);
                foreach (var phase in new[] { CoordinatedShutdown.PhaseServiceUnbind, CoordinatedShutdown.PhaseServiceRequestsDone, CoordinatedShutdown.PhaseBeforeActorSystemTerminate })
                {
                    shutdown.AddTask(phase, "record-" + phase, () =>
                    {
                        lock (phases)
                        {
                            phases.Add(phase);
                        }

                        return Task.FromResult(Done.Instance);
                    });
                }
            }));
        using var host = builder.Build();
        await host.StartAsync();

        Assert.Equal("ping", await host.Services.GetRequiredService<Consumer>().PingAsync());
        var listeners = await host.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().GetAsync();
        Assert.Equal("edge", (await listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5))).Listeners.Single().Name);
        var system = host.Services.GetRequiredService<ActorSystem>();

        await host.StopAsync(TimeSpan.FromSeconds(30).ToToken());
        await system.WhenTerminated.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([CoordinatedShutdown.PhaseServiceUnbind, CoordinatedShutdown.PhaseServiceRequestsDone, CoordinatedShutdown.PhaseBeforeActorSystemTerminate], phases);
    }

    [Fact]
    public async Task An_actor_system_that_terminates_on_its_own_stops_the_host()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddAkka("self-terminating", _ => { });
        using var host = builder.Build();
        await host.StartAsync();
        var lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        _ = host.Services.GetRequiredService<ActorSystem>().Terminate();
        await Task.Delay(Timeout.Infinite, lifetime.ApplicationStopping).ContinueWith(_ => { }).WaitAsync(TimeSpan.FromSeconds(15));
        await host.StopAsync(TimeSpan.FromSeconds(10).ToToken());
    }

    [Fact]
    public async Task Proxy_listeners_bind_at_start_and_unbind_then_drain_in_shutdown()
    {
        var gate = new TaskCompletionSource();
        var stack = Service.FromFunc<ConnectionContext, Unit>(async (c, ct) =>
        {
            await gate.Task.WaitAsync(ct);
            await c.Transport.Output.WriteAsync("served"u8.ToArray(), ct);
            return Unit.Value;
        });
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddAkka("proxy", akka => akka.AddRama(Listening(new IPEndPoint(IPAddress.Loopback, 0), stack, TimeSpan.FromSeconds(10))));
        using var host = builder.Build();
        await host.StartAsync();
        var listeners = await host.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().GetAsync();
        var endpoint = IPEndPoint.Parse((await listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5))).Listeners.Single().Endpoint);

        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endpoint);
        await Eventually.TrueAsync(async () => (await listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5))).Listeners.Single().OpenConnections == 1,
            TimeSpan.FromSeconds(10), "the connection was never counted");
        var stopping = host.StopAsync(TimeSpan.FromSeconds(30).ToToken());

        // Unbound during shutdown: new connections are refused while the one in flight waits.
        await WaitUntilRefusedAsync(endpoint);
        Assert.False(stopping.IsCompleted);
        gate.SetResult();
        var buffer = new byte[16];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var n = await client.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
        Assert.Equal("served", System.Text.Encoding.ASCII.GetString(buffer, 0, n));
        await stopping.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task A_port_in_use_fails_host_start_with_the_address()
    {
        using var occupied = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        occupied.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        occupied.Listen();
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddAkka("busy", akka => akka.AddRama(Listening((IPEndPoint)occupied.LocalEndPoint!, Service.FromFunc<ConnectionContext, Unit>((_, _) => ValueTask.FromResult(Unit.Value)), TimeSpan.FromSeconds(1))));
        using var host = builder.Build();
        var error = await Assert.ThrowsAsync<ListenerBindException>(() => host.StartAsync());
        Assert.Contains($"cannot listen on {occupied.LocalEndPoint}", error.Message, StringComparison.Ordinal);
        await host.StopAsync(TimeSpan.FromSeconds(10).ToToken());
    }

    private static async Task WaitUntilRefusedAsync(IPEndPoint endpoint)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(endpoint);
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
            {
                return;
            }

            await Task.Delay(20);
        }

        Assert.Fail("the listener kept accepting during shutdown");
    }
}

internal static class TimeSpanTokens
{
    public static CancellationToken ToToken(this TimeSpan span) => new CancellationTokenSource(span).Token;
}
