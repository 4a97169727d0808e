using System.Net;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Stacks;

// A host app that embeds a Rama node: one forward-proxy listener (HTTP + SOCKS5) on 127.0.0.1:8080 (or the
// endpoint given as the first argument) beside an actor of its own, in one Akka.NET actor system. Ctrl+C or SIGTERM
// runs coordinated shutdown: the listener unbinds, drains, and the process exits.
var endpoint = IPEndPoint.Parse(args.Length > 0 ? args[0] : "127.0.0.1:8080");
var builder = Host.CreateApplicationBuilder();
builder.Services.AddAkka("rama", akka => akka
    .ConfigureLoggers(loggers =>
    {
        loggers.ClearLoggers();
        loggers.AddLoggerFactory();
    })
    .AddRama(new RamaSettings
    {
        DrainTimeout = TimeSpan.FromSeconds(20),
        Listeners = services =>
        [
            new ListenerSpec("edge", endpoint,
                ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None, services.GetRequiredService<ILoggerFactory>())),
        ],
    })
    .WithActors((system, registry) => registry.Register<Greeter>(system.ActorOf(Props.Create<Greeter>(), "greeter"))));

using var host = builder.Build();
await host.StartAsync();

// Rama's actors and yours are found the same way: Akka.Hosting's registry.
var listeners = await host.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().GetAsync();
var status = await listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5));
var greeter = await host.Services.GetRequiredService<IRequiredActor<Greeter>>().GetAsync();
var greeting = await greeter.Ask<string>(status.Listeners.Single().Endpoint, TimeSpan.FromSeconds(5));
Console.WriteLine(greeting);
await host.WaitForShutdownAsync();

/// <summary>The host app's own actor.</summary>
internal sealed class Greeter : ReceiveActor
{
    public Greeter() => Receive<string>(endpoint => Sender.Tell($"embedded Rama node: proxy listening on {endpoint}"));
}
