using Akka;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.AccessLog;
using Rama.Proxy.Core;
using Rama.Proxy.Observability;

namespace Rama.Actors.Hosting;

/// <summary>
/// The access log on the host: <c>services.AddRamaAccessLog(options)</c> registers the sink the stacks write to
/// (<see cref="IAccessLog"/>; <see cref="IStreamedAccessLog"/> for its counts), and <c>akka.AddRamaAccessLog()</c> on
/// Akka.Hosting's builder runs its stream with the actor system.
/// </summary>
public static partial class AccessLogHostingExtensions
{
    /// <summary>Name of the coordinated-shutdown task that drains and closes the access log.</summary>
    public const string ShutdownTaskName = "close-rama-access-log";

    /// <summary>
    /// Registers the access log of <paramref name="options"/> as the singleton <see cref="IAccessLog"/>: with
    /// <c>Destination = off</c> that is <see cref="AccessLogs.Off"/> (stacks write nothing, not even logger lines);
    /// otherwise the streamed log (also <see cref="IStreamedAccessLog"/>), which queues entries until
    /// <see cref="AddRamaAccessLog(AkkaConfigurationBuilder)"/> starts its stream. Throws <see cref="ArgumentException"/>
    /// with every problem of <see cref="AccessLogOptions.Validate"/>.
    /// </summary>
    public static IServiceCollection AddRamaAccessLog(this IServiceCollection services, AccessLogOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0)
        {
            throw new ArgumentException(string.Join("; ", problems), nameof(options));
        }

        if (!options.Enabled)
        {
            services.AddSingleton(AccessLogs.Off);
            return services;
        }

        services.AddSingleton(_ => new AccessLogStream(options));
        services.AddSingleton<IStreamedAccessLog>(sp => sp.GetRequiredService<AccessLogStream>());
        services.AddSingleton<IAccessLog>(sp => sp.GetRequiredService<AccessLogStream>());
        return services;
    }

    /// <summary>
    /// Starts the access log's stream (registered by <see cref="AddRamaAccessLog(IServiceCollection, AccessLogOptions)"/>)
    /// once the actor system and its actors have started, and closes it in coordinated shutdown's <c>before-actor-system-terminate</c> phase:
    /// after the listeners drained (<c>service-requests-done</c>), so the drain's last lines are written. Does nothing
    /// when the access log is off or not registered.
    /// </summary>
    public static AkkaConfigurationBuilder AddRamaAccessLog(this AkkaConfigurationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // A startup task, which Akka.Hosting runs after every actor starter: the listeners bind first (materializing the
        // stream's graph costs ~150 ms of first-run JIT), and entries written meanwhile wait in the queue.
        return builder.AddStartup((system, registry) =>
        {
            var services = Akka.DependencyInjection.DependencyResolver.For(system).Resolver.GetService<IServiceProvider>();
            if (services.GetService<AccessLogStream>() is not { } stream)
            {
                return;
            }

            // Ctrl+C or SIGTERM while the host was starting: shutdown already runs (and stops the materializer), so the
            // stream is not started; the node exits without having served.
            if (CoordinatedShutdown.Get(system).ShutdownReason is not null)
            {
                return;
            }

            var logger = services.GetService<ILoggerFactory>()?.CreateLogger("Rama.Actors.AccessLog") ?? NullLogger.Instance;
            // The destination opens here (a file that cannot be opened fails the start); the graph is materialized off
            // the start path: entries written meanwhile wait in the queue, and a Ctrl+C during start-up never waits on it.
            stream.Open(logger);
            AddCloseTask(system, stream);
            _ = Task.Run(() =>
            {
                try
                {
                    if (CoordinatedShutdown.Get(system).ShutdownReason is null)
                    {
                        stream.Run(system);
                    }
                }
                catch (Exception ex) when (CoordinatedShutdown.Get(system).ShutdownReason is not null)
                {
                    // Shutdown began meanwhile (the materializer refuses): the node stops before it served.
                    LogNotStarted(logger, ex.Message);
                }
            });
        });
    }

    /// <summary>Starts <paramref name="stream"/> with <paramref name="system"/> and adds its shutdown task.</summary>
    internal static void Start(ActorSystem system, AccessLogStream stream, ILogger logger)
    {
        stream.Start(system, logger);
        AddCloseTask(system, stream);
    }

    private static void AddCloseTask(ActorSystem system, AccessLogStream stream) =>
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeActorSystemTerminate, ShutdownTaskName, async () =>
        {
            await stream.CloseAsync().ConfigureAwait(false);
            return Done.Instance;
        });

    [LoggerMessage(EventId = 5106, Level = LogLevel.Debug, Message = "Access log not started: shutdown began during start-up ({Detail})")]
    private static partial void LogNotStarted(ILogger logger, string detail);
}
