using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// The Lighthouse seed node. The cluster join protocol arrives with the fleet issues; until then it
// starts, says what it is, and stops cleanly on SIGTERM / Ctrl+C.
var builder = Host.CreateApplicationBuilder(args);
using var host = builder.Build();
var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Rama.Lighthouse");
logger.LogInformation("Rama lighthouse started (cluster seed role not implemented yet: no cluster endpoint is bound)");
await host.RunAsync().ConfigureAwait(false);
return 0;
