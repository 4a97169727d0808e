using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.Configuration.CommandLine;
using Microsoft.Extensions.Configuration.Memory;
using Rama.Actors.Admin;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Hosting;
using Rama.Admin.Options;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Stacks;
using Rama.Samples.FleetWebApp;

// An ASP.NET Core app that is also a member of a Rama fleet: beside its own endpoints (GET /cluster reads the fleet
// from an actor of the app's own), one Akka.NET actor system holds a Rama forward-proxy listener (HTTP + SOCKS5), the
// admin endpoint pbm talks to, and Akka.Cluster joined to the fleet's lighthouse. Ctrl+C or SIGTERM stops the web
// server, then coordinated shutdown unbinds and drains the proxy and leaves the fleet gracefully; the exit code says
// how the member ended (0 left or stopped, 3 downed by the fleet; 2 bad options).
const string Tool = "rama-fleet-webapp";
var proxyOption = new RamaOption
{
    Key = "FleetWebApp:Proxy", Name = "--proxy", Value = OptionValue.Endpoint, Default = "127.0.0.1:0",
    Description = "Where the embedded forward proxy (HTTP + SOCKS5) listens, ip:port (port 0 picks one)",
};
IReadOnlyList<RamaOption> declared = [CommonOptions.SystemName, .. ClusterOptionDeclarations.All, .. AdminOptions.Declarations, proxyOption];

// Configuration: ASP.NET Core's own (appsettings.json, environment, command line: --Rama:Cluster:Seeds:0=host:port,
// Rama__Cluster__Secret=...), plus Lighthouse's container variables (CLUSTER_SEEDS, CLUSTER_SECRET, CLUSTER_IP,
// CLUSTER_PORT) just below the command line, and the short names every Rama executable takes (--seeds, --cluster,
// --cluster-secret, --admin, ...).
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
var sources = builder.Configuration.Sources;
var commandLine = sources.OfType<CommandLineConfigurationSource>().FirstOrDefault();
sources.Insert(commandLine is null ? sources.Count : sources.IndexOf(commandLine),
    new MemoryConfigurationSource { InitialData = RamaConfiguration.FromEnvironment(Environment.GetEnvironmentVariables()) });
builder.Configuration.AddCommandLine(args, declared.Where(o => o is { Name: not null, Key: not null }).ToDictionary(o => o.Name!, o => o.Key!, StringComparer.OrdinalIgnoreCase));

// Rama's options records, read and validated the way rama-node reads them: every problem is reported, exit 2.
var reader = new OptionsReader(builder.Configuration, declared);
var system = SystemOptions.Read(reader);
var cluster = ClusterOptions.Read(reader, ClusterMemberKind.Node);
var admin = AdminOptions.Read(reader);
var proxy = reader.Text(proxyOption) is { } text && OptionValue.TryParseEndpoint(text, out var parsed) ? parsed : new IPEndPoint(IPAddress.Loopback, 0);
if (!cluster.Enabled && reader.Problems.Count == 0) // (a refused seed is reported as such)
{
    reader.AddProblem($"this app is a fleet member: give {ClusterOptionDeclarations.Seeds.Describe()} (or CLUSTER_SEEDS) to join a fleet, or {ClusterOptionDeclarations.Bind.Describe()} to seed one");
}

if (reader.Problems.Count > 0)
{
    foreach (var problem in reader.Problems)
    {
        await Console.Error.WriteLineAsync($"{Tool}: {problem}");
    }

    return ExitCodes.BadOptions;
}

FleetCertificates? certificates;
try
{
    certificates = ClusterHostingExtensions.CreateCertificates(cluster);
}
catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
{
    await Console.Error.WriteLineAsync($"{Tool}: cluster certificates: {ex.Message}");
    return ExitCodes.BadOptions;
}

using var fleetCertificates = certificates;
var drainTimeout = TimeSpan.FromSeconds(10);
builder.Logging.ClearProviders().AddSimpleConsole(o =>
{
    o.SingleLine = true;
    o.TimestampFormat = "HH:mm:ss.fff ";
});
// Coordinated shutdown (drain, leave, terminate) runs inside the host's stop: give it the time its phases may take.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = drainTimeout + TimeSpan.FromSeconds(30));
builder.Services.AddRamaClusterOptions(cluster);
builder.Services.AddRamaAdmin(admin);
builder.Services.AddRamaNodeAdmin();
builder.Services.AddAkka(system.Name, akka => akka
    .WithRamaLogging()
    .WithRamaCluster(system.Name, cluster, certificates)
    .AddRamaAdmin()
    .AddRama(new RamaSettings
    {
        DrainTimeout = drainTimeout,
        Listeners = services =>
        [
            new ListenerSpec("edge", proxy,
                ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None, services.GetRequiredService<ILoggerFactory>())),
        ],
    })
    .WithActors((actorSystem, registry) => registry.Register<FleetWatcher>(actorSystem.ActorOf(FleetWatcher.Props(), "fleet-watcher"))));

var app = builder.Build();
var askTimeout = TimeSpan.FromSeconds(5);

// The app's own endpoints. Rama's actors and the app's are found the same way: Akka.Hosting's registry.
app.MapGet("/", async (IRequiredActor<ProxyListeners> listeners, AdminEndpoint adminEndpoint, CancellationToken aborted) =>
{
    var status = await (await listeners.GetAsync(aborted)).Ask<ListenersStatus>(GetListenerStatus.Instance, askTimeout, aborted);
    return Results.Text(
        "Rama fleet web app: an ASP.NET Core app embedding a Rama fleet node\n" +
        "GET /cluster: the fleet as this member sees it (JSON)\n" +
        string.Concat(status.Listeners.Select(l => $"proxy {l.Name}: {l.Endpoint} (HTTP + SOCKS5), {l.OpenConnections} open connections\n")) +
        $"admin endpoint (pbm): {adminEndpoint.BoundEndpoint}\n");
});
app.MapGet("/cluster", async (IRequiredActor<FleetWatcher> watcher, CancellationToken aborted) =>
{
    try
    {
        return Results.Json(await (await watcher.GetAsync(aborted)).Ask<FleetView>(GetFleetView.Instance, askTimeout, aborted));
    }
    catch (AskTimeoutException)
    {
        return Results.Problem("the fleet watcher did not answer in time", statusCode: StatusCodes.Status503ServiceUnavailable);
    }
});

var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Samples.FleetWebApp");
var stopping = app.Lifetime.ApplicationStopping;
try
{
    await app.StartAsync();
}
catch (Exception) when (stopping.IsCancellationRequested)
{
    // Ctrl+C while starting: what the start threw follows from the stop the operator asked for.
    await app.WaitForShutdownAsync();
    return ExitCodes.Ok;
}
catch (Exception ex) when (ex is ListenerBindException or AdminBindException or IOException or Akka.Remote.RemoteTransportException
                               || ex.GetBaseException() is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse or SocketError.AddressNotAvailable })
{
    // An address that cannot be bound: the proxy's, the admin endpoint's, Kestrel's (IOException) or the cluster's.
    await Console.Error.WriteLineAsync($"{Tool}: could not start: {ex.GetBaseException().Message}");
    return ExitCodes.BadOptions;
}

ListenersStatus listeners;
try
{
    listeners = await app.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().ActorRef
        .Ask<ListenersStatus>(GetListenerStatus.Instance, askTimeout).WaitAsync(stopping);
}
catch (Exception) when (stopping.IsCancellationRequested)
{
    await app.WaitForShutdownAsync();
    return ExitCodes.Ok;
}

Console.WriteLine($"Rama fleet web app: web {string.Join(", ", app.Urls)} (GET /, GET /cluster)");
foreach (var listener in listeners.Listeners)
{
    Console.WriteLine($"Rama fleet web app: proxy {listener.Name} listening on {listener.Endpoint} (HTTP + SOCKS5)");
}

Console.WriteLine($"Rama fleet web app: admin endpoint {app.Services.GetRequiredService<AdminEndpoint>().BoundEndpoint} (pbm)");
Console.WriteLine($"Rama fleet web app: fleet member {cluster.AddressOf(system.Name, cluster.Advertised)} (roles {string.Join(",", cluster.Roles)}); " +
    $"seeds {string.Join(", ", cluster.Seeds.Count > 0 ? cluster.Seeds : [cluster.Advertised])}");
Console.WriteLine("Rama fleet web app ready; Ctrl+C or SIGTERM leaves the fleet and stops it");
await app.WaitForShutdownAsync();
var (code, message) = MemberExit.Of(app.Services.GetRequiredService<ActorSystem>());
logger.LogInformation("Rama fleet web app {Message}", message);
return code;
