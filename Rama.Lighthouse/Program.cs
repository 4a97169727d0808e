using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// The Lighthouse seed node. The cluster join protocol arrives with the fleet issues; until then it
// starts, says what it is, and stops cleanly on SIGTERM / Ctrl+C.
var builder = Host.CreateApplicationBuilder(args);
using var host = builder.Build();
var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Lighthouse");
// Started (SIGTERM/Ctrl+C handlers installed) before saying so: a supervisor that stops us on that line must not kill us early.
await host.StartAsync().ConfigureAwait(false);
logger.LogInformation("Rama lighthouse started (cluster seed role not implemented yet: no cluster endpoint is bound)");
await host.WaitForShutdownAsync().ConfigureAwait(false);
return 0;
