using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Admin.Hosting;
using Rama.Admin.Options;

// The Lighthouse seed node: an Akka.NET actor system with no proxy code. It joins nothing yet: the cluster
// (Akka.Remote, Akka.Cluster, the seed role) comes with the fleet issue. Its options are the common ones
// (Rama.Admin.Options.CommonOptions): --config, --system-name (Rama:System:Name), --version, config show.
var commandLine = new RamaCommandLine("rama-lighthouse", "Rama lighthouse: the seed node of a Rama fleet (no proxy code)", CommonOptions.All);
var startup = await RamaStartup.RunAsync(commandLine, args, Assembly.GetExecutingAssembly(), Console.Out, Console.Error).ConfigureAwait(false);
if (startup.ExitCode is { } done)
{
    return done;
}

var reader = new OptionsReader(startup.Configuration!, CommonOptions.All);
var system = SystemOptions.Read(reader);
if (await startup.FinishReadingAsync(reader, Console.Out, Console.Error).ConfigureAwait(false) is { } finished)
{
    return finished;
}

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ContentRootPath = AppContext.BaseDirectory, Args = [] });
builder.Configuration.Sources.Clear();
builder.Configuration.AddConfiguration(startup.Configuration!);
builder.Services.AddRamaActorSystem(system);
using var host = builder.Build();
var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Lighthouse");
// Started (SIGTERM/Ctrl+C handlers installed) before saying so: a supervisor that stops us on that line must not kill us early.
await host.StartAsync().ConfigureAwait(false);
logger.LogInformation("Rama lighthouse started (actor system {System} up; the cluster seed role comes with the fleet: no cluster endpoint is bound)", system.Name);
await host.WaitForShutdownAsync().ConfigureAwait(false);
return ExitCodes.Ok;
