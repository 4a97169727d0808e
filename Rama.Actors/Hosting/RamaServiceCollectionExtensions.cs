using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Actors.Actor;
using Rama.Actors.Shutdown;

namespace Rama.Actors.Hosting;

/// <summary>Embeds a Rama actor system in a Generic Host.</summary>
public static class RamaServiceCollectionExtensions
{
    /// <summary>
    /// Adds an actor system named <paramref name="systemName"/> that starts with the host and stops
    /// with it: the host's stop (SIGTERM, Ctrl+C, StopApplication) runs coordinated shutdown, and an
    /// actor system that terminates on its own stops the host.
    /// </summary>
    public static IServiceCollection AddRama(this IServiceCollection services, string systemName, Action<RamaBuilder> configure)
    {
        var builder = new RamaBuilder(services, systemName);
        configure(builder);
        services.TryAddSingleton<IActorRegistry, ActorRegistry>();
        services.TryAddSingleton(typeof(IRequiredActor<>), typeof(RequiredActor<>));
        services.AddSingleton(builder);
        services.AddSingleton(sp =>
        {
            var settings = new ActorSystemSettings
            {
                LoggerFactory = sp.GetService<ILoggerFactory>(),
                CoordinatedShutdown = new CoordinatedShutdownSettings { PhaseTimeouts = new Dictionary<string, TimeSpan>(builder.PhaseTimeouts) },
            };
            return ActorSystem.Create(systemName, settings);
        });
        services.AddHostedService<RamaHostedService>();
        return services;
    }
}

internal sealed partial class RamaHostedService(
    ActorSystem system,
    RamaBuilder builder,
    IActorRegistry registry,
    IServiceProvider services,
    IHostApplicationLifetime lifetime,
    ILogger<RamaHostedService> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _ = system.WhenTerminated.ContinueWith(_ => lifetime.StopApplication(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        foreach (var starter in builder.Starters)
        {
            await starter(system, registry, services, cancellationToken).ConfigureAwait(false);
        }

        LogStarted(logger, system.Name);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        LogStopping(logger, system.Name);
        await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance).WaitAsync(cancellationToken).ConfigureAwait(false);
        await system.WhenTerminated.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 6000, Level = LogLevel.Information, Message = "Actor system {System} started")]
    private static partial void LogStarted(ILogger logger, string system);

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Actor system {System}: running coordinated shutdown")]
    private static partial void LogStopping(ILogger logger, string system);
}
