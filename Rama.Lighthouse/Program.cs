using System.Reflection;
using Akka.Actor;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Hosting;
using Rama.Admin.Logging;
using Rama.Admin.Options;

// The Lighthouse seed node: an Akka.NET cluster member with the role "lighthouse" and no proxy code. Configured like
// Petabridge's Lighthouse (CLUSTER_IP, CLUSTER_PORT, CLUSTER_SEEDS, plus CLUSTER_SECRET) or with the options every Rama
// executable shares (--cluster, --seeds, --cluster-secret, --admin, --config, ...). Without seeds it seeds itself.
var declared = CommonOptions.All.Concat(ClusterOptionDeclarations.All).Concat(AdminOptions.Declarations).Concat(TelemetryOptions.Declarations).ToList();
var commandLine = new RamaCommandLine("rama-lighthouse", "Rama lighthouse: the seed node of a Rama fleet (no proxy code)", declared);
var startup = await RamaStartup.RunAsync(commandLine, args, Assembly.GetExecutingAssembly(), Console.Out, Console.Error).ConfigureAwait(false);
if (startup.ExitCode is { } done)
{
    return done;
}

var reader = new OptionsReader(startup.Configuration!, declared);
var system = SystemOptions.Read(reader);
var cluster = ClusterOptions.Read(reader, ClusterMemberKind.Lighthouse);
var admin = AdminOptions.Read(reader);
var telemetry = TelemetryOptions.Read(reader);
if (await startup.FinishReadingAsync(reader, Console.Out, Console.Error).ConfigureAwait(false) is { } finished)
{
    return finished;
}

using var certificates = ClusterHostingExtensions.CreateCertificates(cluster);
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory, Args = [] });
builder.Configuration.Sources.Clear();
builder.Configuration.AddConfiguration(startup.Configuration!);
builder.Logging.AddRamaConsole(); // the simple console format, single line, written in batches (Rama.Admin.Logging)
builder.Services.AddRamaClusterOptions(cluster);
builder.Services.AddRamaAdmin(admin);
// --otlp: the fleet's metrics (no proxy, no spans); without it no OpenTelemetry SDK at all.
builder.Services.AddRamaTelemetry(telemetry, "rama-lighthouse", [], ["Rama.Fleet"]);
builder.Services.AddRamaActorSystem(system, (akka, _) => akka.WithRamaCluster(system.Name, cluster, certificates).AddRamaAdmin());
using var host = builder.Build();
var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Lighthouse");
var stopping = host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
try
{
    // Started (SIGTERM/Ctrl+C handlers installed) before saying so: a supervisor that stops us on that line must not kill us early.
    await host.StartAsync().ConfigureAwait(false);
}
catch (Exception) when (stopping.IsCancellationRequested)
{
    // Stopped while starting: by the operator (exit 0) or by the fleet (a trust failure exits 2), as after a start.
    await host.WaitForShutdownAsync().ConfigureAwait(false);
    var (stoppedCode, stoppedMessage) = MemberExit.Of(host.Services.GetRequiredService<ActorSystem>());
    logger.LogInformation("Rama lighthouse {Message} before it was ready", stoppedMessage);
    return stoppedCode;
}
catch (AdminBindException ex)
{
    await Console.Error.WriteLineAsync("rama-lighthouse: could not start: " + ex.Message).ConfigureAwait(false);
    return ExitCodes.BadOptions;
}
catch (Exception) when (MemberExit.StoppingWhileStarting(host.Services) is { } shuttingDown)
{
    // The fleet stopped this member (a trust failure) while Akka.Hosting was still starting actors.
    var (stoppedCode, stoppedMessage) = await MemberExit.AfterTerminationAsync(shuttingDown, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
    logger.LogInformation("Rama lighthouse {Message} before it was ready", stoppedMessage);
    return stoppedCode;
}
catch (Exception ex) when (ex is System.Net.Sockets.SocketException or AggregateException or InvalidOperationException or Akka.Remote.RemoteTransportException)
{
    await Console.Error.WriteLineAsync("rama-lighthouse: could not start: " + ex.GetBaseException().Message).ConfigureAwait(false);
    return ExitCodes.BadOptions;
}

var actorSystem = host.Services.GetRequiredService<ActorSystem>();
Console.WriteLine($"Rama lighthouse: {cluster.AddressOf(system.Name, cluster.Advertised)} ({Describe(cluster)}); seeds {string.Join(", ", (cluster.Seeds.Count > 0 ? cluster.Seeds : [cluster.Advertised]).Select(s => s.ToString()))}");
Console.WriteLine($"Rama lighthouse: admin endpoint {host.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint} (pbm)");
Console.WriteLine("Rama lighthouse ready; Ctrl+C or SIGTERM leaves the fleet and stops it");
await host.WaitForShutdownAsync().ConfigureAwait(false);
var (code, message) = MemberExit.Of(actorSystem);
logger.LogInformation("Rama lighthouse {Message}", message);
return code;

static string Describe(ClusterOptions cluster) => cluster.Authentication switch
{
    FleetAuthentication.Secret => "mutual TLS, fleet CA from the cluster secret",
    FleetAuthentication.Certificates => "mutual TLS, operator's CA",
    _ => "no TLS: loopback only",
};
