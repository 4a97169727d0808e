using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Remote.Transport.DotNetty;
using Rama.Admin.Cluster;
using Rama.Admin.Cluster.Transport;

// The cost of TLS on Akka.Remote messaging, as a fleet member runs it: two actor systems over loopback TCP, first on
// Akka's DotNetty transport without TLS and with mutual TLS, then on Rama's fleet transport (what WithRamaCluster runs)
// without and with mutual TLS; the fleet's certificates are derived from a secret and checked by the fleet's validator
// on every connection. Measures round trips one at a time (latency) and with a window of messages in flight
// (throughput). Usage: rama-remoteping [seconds per measurement, default 5] [payload bytes, default 100]
var seconds = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 5;
var payload = new byte[args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 100];
Console.WriteLine($"remote messaging over loopback, {payload.Length}-byte payload, {seconds} s per measurement");
Console.WriteLine("| transport | round trip p50 | p99 | round trips/s (1 in flight) | messages/s (window 1,000) |");
Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
foreach (var (transport, tls) in new[] { (RemoteTransport.DotNetty, false), (RemoteTransport.DotNetty, true), (RemoteTransport.Rama, false), (RemoteTransport.Rama, true) })
{
    await MeasureAsync(transport, tls);
}

async Task MeasureAsync(RemoteTransport transport, bool tls)
{
    using var certsA = tls ? FleetCertificates.FromSecret("benchmark-secret-0123456789", "a") : null;
    using var certsB = tls ? FleetCertificates.FromSecret("benchmark-secret-0123456789", "b") : null;
    var a = Create(transport, tls, certsA);
    var b = Create(transport, tls, certsB);
    try
    {
        var scheme = tls ? "akka.ssl.tcp" : "akka.tcp";
        var bAddress = ((ExtendedActorSystem)b).Provider.DefaultAddress;
        b.ActorOf(Props.Create(() => new Echo()), "echo");
        var echo = await a.ActorSelection($"{bAddress}/user/echo").ResolveOne(TimeSpan.FromSeconds(10));
        var driver = a.ActorOf(Props.Create(() => new Driver(echo, payload)));

        // Latency: one message in flight.
        await driver.Ask<Result>(new Run(1, TimeSpan.FromSeconds(1), false), TimeSpan.FromSeconds(30)); // warm-up
        var latency = await driver.Ask<Result>(new Run(1, TimeSpan.FromSeconds(seconds), true), TimeSpan.FromSeconds(seconds + 30));
        await driver.Ask<Result>(new Run(1000, TimeSpan.FromSeconds(1), false), TimeSpan.FromSeconds(30));
        var throughput = await driver.Ask<Result>(new Run(1000, TimeSpan.FromSeconds(seconds), false), TimeSpan.FromSeconds(seconds + 30));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {(transport == RemoteTransport.Rama ? "Rama fleet transport, " : "DotNetty, ")}{(tls ? "mutual TLS (fleet CA from a secret)" : "plain TCP")} ({scheme}) | {latency.P50Us:F0} us | {latency.P99Us:F0} us | {latency.PerSecond:N0} | {throughput.PerSecond:N0} |"));
    }
    finally
    {
        await Task.WhenAll(a.Terminate(), b.Terminate());
    }
}

static ActorSystem Create(RemoteTransport transport, bool tls, FleetCertificates? certificates)
{
    var remote = transport == RemoteTransport.DotNetty
        ? $"akka.remote.dot-netty.tcp {{ hostname = 127.0.0.1, port = 0, enable-ssl = {(tls ? "on" : "off")} }}"
        // Rama's transport as ClusterHostingExtensions.WithRamaCluster configures it.
        : $$"""
            akka.remote.enabled-transports = ["akka.remote.rama-fleet"]
            akka.remote.rama-fleet {
              transport-class = "Rama.Admin.Cluster.Transport.FleetTransport, Rama.Admin"
              hostname = 127.0.0.1, port = 0, enable-ssl = {{(tls ? "on" : "off")}}, maximum-frame-size = 2000000b
            }
            """;
    var config = ConfigurationFactory.ParseString($"akka.loglevel = WARNING\nakka.actor.provider = remote\n{remote}");
    var setup = BootstrapSetup.Create().WithConfig(config);
    ActorSystemSetup all = transport == RemoteTransport.Rama
        ? ActorSystemSetup.Create(setup, new FleetTransportSetup(certificates))
        : certificates is null
            ? ActorSystemSetup.Create(setup)
            : ActorSystemSetup.Create(setup, new DotNettySslSetup(certificates.Member, false, true, false, certificates.Validator()));
    return ActorSystem.Create("ping", all);
}

internal enum RemoteTransport
{
    DotNetty,
    Rama,
}

internal sealed record Run(int Window, TimeSpan Duration, bool Latencies);

internal sealed record Result(double PerSecond, double P50Us, double P99Us);

internal sealed record Ping(long SentTicks, byte[] Payload);

internal sealed class Echo : ReceiveActor
{
    public Echo() => Receive<Ping>(p => Sender.Tell(p));
}

/// <summary>Keeps <see cref="Run.Window"/> pings in flight until the duration is over, then answers how many came back.</summary>
internal sealed class Driver : ReceiveActor
{
    public Driver(IActorRef echo, byte[] payload)
    {
        IActorRef? asker = null;
        var received = 0L;
        var inFlight = 0;
        var stopAt = 0L;
        var started = 0L;
        var record = false;
        var samples = new List<double>();
        Receive<Run>(run =>
        {
            asker = Sender;
            received = 0;
            samples.Clear();
            record = run.Latencies;
            started = Stopwatch.GetTimestamp();
            stopAt = started + (long)(run.Duration.TotalSeconds * Stopwatch.Frequency);
            inFlight = run.Window;
            for (var i = 0; i < run.Window; i++)
            {
                echo.Tell(new Ping(Stopwatch.GetTimestamp(), payload));
            }
        });
        Receive<Ping>(p =>
        {
            var now = Stopwatch.GetTimestamp();
            received++;
            if (record)
            {
                samples.Add((now - p.SentTicks) * 1_000_000.0 / Stopwatch.Frequency);
            }

            if (now < stopAt)
            {
                echo.Tell(new Ping(now, payload));
                return;
            }

            if (--inFlight == 0)
            {
                var elapsed = (now - started) / (double)Stopwatch.Frequency;
                samples.Sort();
                double Percentile(double q) => samples.Count == 0 ? 0 : samples[Math.Min(samples.Count - 1, (int)(q * samples.Count))];
                asker!.Tell(new Result(received / elapsed, Percentile(0.5), Percentile(0.99)));
            }
        });
    }
}
