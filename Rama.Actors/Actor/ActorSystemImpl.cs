using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Actors.Shutdown;

namespace Rama.Actors.Actor;

internal sealed partial class ActorSystemImpl : ActorSystem
{
    private readonly TaskCompletionSource _terminated = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<Type, Lazy<object>> _extensions = new();
    private readonly TimeProviderScheduler _scheduler;
    private readonly ILogger _logger;
    private LocalActorRef? _rootGuardian;
    private LocalActorRef? _userGuardian;
    private int _finalTerminateStarted;

    public ActorSystemImpl(string name, ActorSystemSettings settings)
    {
        ValidateName(name);
        settings.Validate();
        Name = name;
        Settings = settings;
        Address = Address.Local(name);
        LoggerFactory = settings.LoggerFactory ?? NullLoggerFactory.Instance;
        _logger = LoggerFactory.CreateLogger("Rama.Actors.ActorSystem");
        _scheduler = new TimeProviderScheduler(settings.TimeProvider);
        EventStream = new EventStream();
        RootPath = ActorPath.Root(Address);
        DeadLetters = new DeadLetterActorRef(this, RootPath / "deadLetters");
        Temp = new TempContainer(this, RootPath / "temp");
    }

    public override string Name { get; }

    public override Address Address { get; }

    public override ActorSystemSettings Settings { get; }

    public override EventStream EventStream { get; }

    public override IScheduler Scheduler => _scheduler;

    public override IActorRef DeadLetters { get; }

    public override ILoggerFactory LoggerFactory { get; }

    public override Task WhenTerminated => _terminated.Task;

    public ActorPath RootPath { get; }

    public TempContainer Temp { get; }

    public IActorRef RootGuardian => _rootGuardian!;

    public IActorRef UserGuardian => _userGuardian!;

    public IActorRef SystemGuardian { get; private set; } = null!;

    public void Start()
    {
        var rootParent = new RootParentActorRef(this, RootPath / "bubble-walker");
        var rootProps = Props.Create(static () => new RootGuardian()).WithSupervisorStrategy(SupervisorStrategy.StoppingStrategy);
        _rootGuardian = new LocalActorRef(this, rootProps, rootParent, RootPath);
        var guardianProps = Props.Create(static () => new GuardianActor());
        _userGuardian = _rootGuardian.Cell.MakeChild(guardianProps.WithSupervisorStrategy(Settings.GuardianSupervisorStrategy), "user");
        SystemGuardian = _rootGuardian.Cell.MakeChild(guardianProps, "system");
        _rootGuardian.Start();

        // Akka creates the extension eagerly so that AddTask works from the start and Terminate finds it.
        _ = CoordinatedShutdown.Get(this);
    }

    public override IActorRef ActorOf(Props props, string? name = null) => _userGuardian!.Cell.MakeChild(props, name);

    /// <summary>Creates an actor under <c>/system</c> (runtime services, test probes).</summary>
    public IActorRef SystemActorOf(Props props, string? name = null) => ((LocalActorRef)SystemGuardian).Cell.MakeChild(props, name);

    public override void Stop(IActorRef actor)
    {
        if (actor is IInternalActorRef target)
        {
            target.Stop();
        }
    }

    public override Task Terminate()
    {
        if (Settings.CoordinatedShutdown.RunByActorSystemTerminate)
        {
            CoordinatedShutdown.Get(this).Run(CoordinatedShutdown.ActorSystemTerminateReason.Instance)
                .ContinueWith(
                    static (_, state) => ((ActorSystemImpl)state!).FinalTerminate(),
                    this,
                    CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously,
                    TaskScheduler.Default);
        }
        else
        {
            FinalTerminate();
        }

        return WhenTerminated;
    }

    /// <summary>Stops <c>/user</c>, then <c>/system</c>, then the root (see <see cref="RootGuardian"/>); idempotent.</summary>
    public void FinalTerminate()
    {
        if (Interlocked.Exchange(ref _finalTerminateStarted, 1) == 0)
        {
            _userGuardian!.Stop();
        }
    }

    public void OnRootTerminated()
    {
        _scheduler.Shutdown();
        _terminated.TrySetResult();
    }

    public T GetOrAddExtension<T>(Func<ActorSystemImpl, T> factory)
        where T : class =>
        (T)_extensions.GetOrAdd(typeof(T), _ => new Lazy<object>(() => factory(this))).Value;

    private static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!char.IsAsciiLetterOrDigit(name[0]) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new ArgumentException(
                $"Invalid actor system name [{name}]: use ASCII letters, digits, '-' and '_', starting with a letter or digit.",
                nameof(name));
        }
    }

    internal void LogDeadLetter(DeadLetter deadLetter) =>
        Log.DeadLetter(_logger, deadLetter.Message.GetType().Name, deadLetter.Sender, deadLetter.Recipient);

    internal void LogActorFailure(IActorRef child, Exception cause, Directive directive)
    {
        if (directive == Directive.Resume)
        {
            Log.ActorFailureResumed(_logger, child, cause);
        }
        else
        {
            Log.ActorFailure(_logger, child, directive, cause);
        }
    }

    internal void LogIgnoredFailure(IActorRef actor, Exception cause) => Log.IgnoredFailure(_logger, actor, cause);

    internal void LogLifecycleHookFailed(IActorRef actor, string hook, Exception cause) =>
        Log.LifecycleHookFailed(_logger, actor, hook, cause);

    internal void LogGuardianFailed(Exception cause) => Log.GuardianFailed(_logger, cause);

    private static partial class Log
    {
        [LoggerMessage(1000, LogLevel.Debug, "Message [{MessageType}] from {Sender} to {Recipient} was not delivered (dead letter).")]
        public static partial void DeadLetter(ILogger logger, string messageType, IActorRef sender, IActorRef recipient);

        [LoggerMessage(1001, LogLevel.Error, "Actor {Actor} failed; supervisor directive: {Directive}.")]
        public static partial void ActorFailure(ILogger logger, IActorRef actor, Directive directive, Exception cause);

        [LoggerMessage(1002, LogLevel.Warning, "Actor {Actor} failed and was resumed.")]
        public static partial void ActorFailureResumed(ILogger logger, IActorRef actor, Exception cause);

        [LoggerMessage(1003, LogLevel.Error, "Actor {Actor} failed again before its supervisor decided, or while stopping; ignored.")]
        public static partial void IgnoredFailure(ILogger logger, IActorRef actor, Exception cause);

        [LoggerMessage(1004, LogLevel.Error, "Actor {Actor}: {Hook} threw.")]
        public static partial void LifecycleHookFailed(ILogger logger, IActorRef actor, string hook, Exception cause);

        [LoggerMessage(1005, LogLevel.Error, "A guardian failed; stopping it (the actor system terminates).")]
        public static partial void GuardianFailed(ILogger logger, Exception cause);
    }
}
