using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Hosting.Logging;
using Microsoft.Extensions.Logging;
using Rama.Admin.Cluster;
using Rama.Admin.Cluster.Transport;

namespace Rama.Admin.Tests.Cluster;

/// <summary>Collects log lines in memory so the transport tests can assert what was logged.</summary>
internal sealed class CapturedLog : ILoggerProvider, ILoggerFactory
{
    public ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

    public bool Has(LogLevel level, string text) => Entries.Any(e => e.Level == level && e.Message.Contains(text, StringComparison.Ordinal));

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedLog owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Entries.Enqueue((logLevel, formatter(state, exception)));
    }
}

/// <summary>Actor systems on loopback port 0 over Rama's fleet transport (or, to compare, Akka's DotNetty).</summary>
internal static class TransportSystems
{
    public static ActorSystem Fleet(string name, FleetCertificates? certificates, CapturedLog log, bool member = false, string extra = "")
    {
        var ssl = certificates is not null;
        var config = ConfigurationFactory.ParseString($$"""
            akka.loglevel = WARNING
            akka.actor.provider = remote
            akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
            akka.coordinated-shutdown.exit-clr = off
            akka.remote.enabled-transports = ["{{FleetTransportSettings.Path}}"]
            {{FleetTransportSettings.Path}} {
              transport-class = "{{typeof(FleetTransport).FullName}}, Rama.Admin"
              hostname = 127.0.0.1
              port = 0
              enable-ssl = {{(ssl ? "on" : "off")}}
              maximum-frame-size = 2000000b
              handshake-timeout = 5s
              {{extra}}
            }
            """);
        var setup = ActorSystemSetup.Create(
            BootstrapSetup.Create().WithConfig(config),
            new FleetTransportSetup(certificates) { IsFleetMember = _ => member },
            new LoggerFactorySetup(log));
        return ActorSystem.Create(name, setup);
    }

    public static Address AddressOf(ActorSystem system) => ((ExtendedActorSystem)system).Provider.DefaultAddress;
}

/// <summary>Answers what it receives.</summary>
internal sealed class EchoActor : ReceiveActor
{
    public EchoActor() => ReceiveAny(m => Sender.Tell(m));
}

/// <summary>Counts the numbered messages it receives and whether they came in order; answers the count on "count?".</summary>
internal sealed class SequenceActor : ReceiveActor
{
    public SequenceActor()
    {
        var next = 0;
        var inOrder = true;
        Receive<int>(i =>
        {
            inOrder &= i == next;
            next++;
        });
        Receive<string>(s => s == "count?", _ => Sender.Tell(new SequenceCount(next, inOrder)));
    }
}

internal sealed record SequenceCount(int Received, bool InOrder);
