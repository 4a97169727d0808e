using Microsoft.Extensions.Logging;
using Rama.Actors.Actor;
using Xunit.Abstractions;

namespace Rama.Actors.TestKit;

/// <summary>
/// Base class for actor tests (Akka.TestKit's <c>TestKit</c>): one <see cref="ActorSystem"/> per test
/// class instance (xunit makes one per test), terminated on <see cref="Dispose()"/>.
/// </summary>
public class TestKit : TestKitBase, IDisposable
{
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(10);
    private readonly ILoggerFactory? _loggerFactory;
    private bool _disposed;

    public TestKit(ITestOutputHelper? output = null, ActorSystemSettings? settings = null, string systemName = "test")
        : this(CreateSystem(output, settings, systemName, out var loggerFactory), loggerFactory)
    {
        Output = output;
    }

    private TestKit((ActorSystem System, TimingState Timing) created, ILoggerFactory? loggerFactory)
        : base(created.System, created.Timing, "testActor")
    {
        _loggerFactory = loggerFactory;
    }

    public ITestOutputHelper? Output { get; }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (_disposed || !disposing)
        {
            return;
        }

        _disposed = true;
        Shutdown();
        _loggerFactory?.Dispose();
    }

    /// <summary>
    /// Terminates the system and waits for it, at most 10 s. The wait blocks the test thread on an
    /// event (not on an actor's task); actors run on the thread pool and finish without it.
    /// </summary>
    protected void Shutdown()
    {
        using var terminated = new ManualResetEventSlim();
        Sys.Terminate().ContinueWith(
            static (_, state) => ((ManualResetEventSlim)state!).Set(),
            terminated,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        if (!terminated.Wait(ShutdownTimeout))
        {
            Output?.WriteLine($"Actor system {Sys.Name} did not terminate within {ShutdownTimeout}.");
        }
    }

    private static (ActorSystem, TimingState) CreateSystem(
        ITestOutputHelper? output, ActorSystemSettings? settings, string systemName, out ILoggerFactory? loggerFactory)
    {
        settings ??= new ActorSystemSettings();
        loggerFactory = null;
        if (output is not null && settings.LoggerFactory is null)
        {
            loggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b
                .SetMinimumLevel(LogLevel.Debug)
                .AddProvider(new TestOutputLoggerProvider(output)));
            settings = settings with { LoggerFactory = loggerFactory };
        }

        return (ActorSystem.Create(systemName, settings), new TimingState());
    }
}
