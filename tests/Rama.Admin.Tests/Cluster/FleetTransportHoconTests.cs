using System.Net;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Hosting.Logging;
using Rama.Admin.Cluster;
using Rama.Admin.Cluster.Transport;

namespace Rama.Admin.Tests.Cluster;

/// <summary>What WithRamaCluster writes for the transport, run as an actor system: Rama's transport under Akka's throttler.</summary>
public sealed class FleetTransportHoconTests
{
    [Fact]
    public async Task The_fleet_HOCON_runs_Rama_transport_with_the_fleet_scheme_and_the_throttler_when_fault_injection_is_on()
    {
        var options = new ClusterOptions
        {
            Enabled = true,
            Bind = new IPEndPoint(IPAddress.Loopback, 0),
            Secret = "hocon-test-secret-0123456789",
            FaultInjection = true,
        };
        var hocon = ClusterHostingExtensions.Hocon(options);
        Assert.Contains($"akka.remote.enabled-transports = [\"{FleetTransportSettings.Path}\"]", hocon, StringComparison.Ordinal);
        Assert.Contains($"{FleetTransportSettings.Path}.maximum-frame-size = 2000000b", hocon, StringComparison.Ordinal);
        Assert.Contains($"{FleetTransportSettings.Path}.applied-adapters = [trttl]", hocon, StringComparison.Ordinal);

        using var a = FleetCertificates.FromSecret(options.Secret, "a");
        using var b = FleetCertificates.FromSecret(options.Secret, "b");
        var log = new CapturedLog();
        var first = Start(hocon, a, log);
        var second = Start(hocon, b, log);
        try
        {
            var address = TransportSystems.AddressOf(second);
            Assert.Equal("akka.trttl.ssl.tcp", address.Protocol);
            Assert.StartsWith(options.Scheme + "://rama@127.0.0.1:", address.ToString(), StringComparison.Ordinal);
            second.ActorOf(Props.Create(() => new EchoActor()), "echo");
            var echo = await first.ActorSelection($"{address}/user/echo").ResolveOne(TimeSpan.FromSeconds(20));
            Assert.Equal("through the throttler", await echo.Ask<string>("through the throttler", TimeSpan.FromSeconds(20)));
        }
        finally
        {
            await Task.WhenAll(first.Terminate(), second.Terminate());
        }
    }

    private static ActorSystem Start(string hocon, FleetCertificates certificates, CapturedLog log)
    {
        var config = ConfigurationFactory.ParseString(hocon + "\nakka.actor.provider = remote\nakka.loglevel = WARNING\nakka.coordinated-shutdown.run-by-clr-shutdown-hook = off");
        return ActorSystem.Create("rama", ActorSystemSetup.Create(BootstrapSetup.Create().WithConfig(config), new FleetTransportSetup(certificates), new LoggerFactorySetup(log)));
    }
}
