using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Rama.Admin.Options;

namespace Rama.Admin.Hosting;

/// <summary>The Akka.Hosting set-up every Rama executable shares.</summary>
public static class RamaAkkaHostingExtensions
{
    /// <summary>Akka's own log goes to Microsoft.Extensions.Logging, like everything else of the process (no Akka console logger).</summary>
    public static AkkaConfigurationBuilder WithRamaLogging(this AkkaConfigurationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.ConfigureLoggers(loggers =>
        {
            loggers.ClearLoggers();
            loggers.AddLoggerFactory();
        });
    }

    /// <summary>
    /// Adds the actor system named by <paramref name="system"/> (<c>Rama:System:Name</c>) with Rama's logging, then
    /// <paramref name="configure"/>.
    /// </summary>
    public static IServiceCollection AddRamaActorSystem(this IServiceCollection services, SystemOptions system, Action<AkkaConfigurationBuilder, IServiceProvider>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(system);
        return services.AddAkka(system.Name, (akka, provider) =>
        {
            akka.WithRamaLogging();
            configure?.Invoke(akka, provider);
        });
    }
}
