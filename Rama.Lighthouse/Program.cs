using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// The Lighthouse seed node: an Akka.NET actor system with no proxy code. It joins nothing yet: the cluster
// (Akka.Remote, Akka.Cluster, the seed role) comes with the fleet issue.
var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddAkka("rama", akka => akka.ConfigureLoggers(loggers =>
{
    loggers.ClearLoggers();
    loggers.AddLoggerFactory();
}));
using var host = builder.Build();
var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Lighthouse");
// Started (SIGTERM/Ctrl+C handlers installed) before saying so: a supervisor that stops us on that line must not kill us early.
await host.StartAsync().ConfigureAwait(false);
logger.LogInformation("Rama lighthouse started (actor system up; the cluster seed role comes with the fleet: no cluster endpoint is bound)");
await host.WaitForShutdownAsync().ConfigureAwait(false);
return 0;
