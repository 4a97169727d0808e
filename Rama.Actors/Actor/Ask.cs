namespace Rama.Actors.Actor;

public static class AskExtensions
{
    /// <summary>
    /// Sends <paramref name="message"/> with a temporary actor (under <c>/temp</c>) as sender and
    /// completes with its first reply: faults with <see cref="AskTimeoutException"/> after the
    /// timeout (default: <see cref="ActorSystemSettings.AskTimeout"/>), with the cause of a
    /// <see cref="Status.Failure"/> reply, and is cancelled with <paramref name="cancellationToken"/>.
    /// </summary>
    public static Task<object> Ask(this IActorRef recipient, object message, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        AskCore(recipient, message, timeout, cancellationToken);

    /// <inheritdoc cref="Ask(IActorRef, object, TimeSpan?, CancellationToken)"/>
    /// <remarks>A reply that is not a <typeparamref name="T"/> faults the task with <see cref="InvalidCastException"/>.</remarks>
    public static async Task<T> Ask<T>(this IActorRef recipient, object message, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var reply = await AskCore(recipient, message, timeout, cancellationToken).ConfigureAwait(false);
        return reply is T typed
            ? typed
            : throw new InvalidCastException($"Ask expected a reply of type {typeof(T).Name} but got {reply.GetType().Name}.");
    }

    private static Task<object> AskCore(IActorRef recipient, object message, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(recipient);
        ArgumentNullException.ThrowIfNull(message);
        if (recipient is not IInternalActorRef { System: { } system } target || target.IsTerminated)
        {
            return Task.FromException<object>(new AskTimeoutException($"Recipient {recipient} had already been terminated."));
        }

        var duration = timeout ?? system.Settings.AskTimeout;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(duration, TimeSpan.Zero, nameof(timeout));
        var promise = new PromiseActorRef(system, system.Temp.NewTempPath());
        promise.Start(duration, $"Ask timed out on {recipient} after {duration.TotalMilliseconds} ms (message {message.GetType().Name}).", cancellationToken);
        target.Tell(message, promise);
        return promise.Task;
    }
}

/// <summary>The temporary actor of one Ask: completes a task with the first message it gets.</summary>
internal sealed class PromiseActorRef(ActorSystemImpl system, ActorPath path) : MinimalActorRef, IDisposable
{
    private readonly TaskCompletionSource<object> _promise = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _lock = new();
    private List<IInternalActorRef>? _watchers;
    private CancellationTokenSource? _timeout;
    private CancellationTokenRegistration _timeoutRegistration;
    private CancellationTokenRegistration _userRegistration;
    private string _timeoutMessage = "Ask timed out.";

    public override ActorPath Path { get; } = path;

    public override ActorSystemImpl System { get; } = system;

    public override bool IsTerminated => _promise.Task.IsCompleted;

    public Task<object> Task => _promise.Task;

    public void Start(TimeSpan timeout, string timeoutMessage, CancellationToken cancellationToken)
    {
        _timeoutMessage = timeoutMessage;
        System.Temp.Add(this);
        _timeout = new CancellationTokenSource(timeout, System.Settings.TimeProvider);
        _timeoutRegistration = _timeout.Token.Register(static state => ((PromiseActorRef)state!).OnTimeout(), this);
        if (cancellationToken.CanBeCanceled)
        {
            _userRegistration = cancellationToken.Register(
                static (state, token) => ((PromiseActorRef)state!).Complete(p => p.TrySetCanceled(token)),
                this);
        }
    }

    public override void Tell(object message, IActorRef? sender = null)
    {
        switch (message)
        {
            case Status.Failure failure:
                Complete(p => p.TrySetException(failure.Cause));
                break;
            default:
                if (!Complete(p => p.TrySetResult(message)))
                {
                    // A late reply (after timeout or a second one) is a dead letter, as in Akka.
                    System.DeadLetters.Tell(new DeadLetter(message, sender ?? System.DeadLetters, this));
                }

                break;
        }
    }

    public override void SendSystemMessage(SystemMessage message)
    {
        switch (message)
        {
            case Watch watch when watch.Watchee.Equals(this):
                lock (_lock)
                {
                    if (!IsTerminated)
                    {
                        (_watchers ??= []).Add(watch.Watcher);
                        return;
                    }
                }

                base.SendSystemMessage(message);
                break;
            case Unwatch unwatch:
                lock (_lock)
                {
                    _watchers?.Remove(unwatch.Watcher);
                }

                break;
        }
    }

    /// <summary>Gives up waiting: the task is cancelled (and the timer released) unless already complete.</summary>
    public void Dispose() => Complete(p => p.TrySetCanceled());

    private void OnTimeout() => Complete(p => p.TrySetException(new AskTimeoutException(_timeoutMessage)));

    private bool Complete(Func<TaskCompletionSource<object>, bool> complete)
    {
        if (!complete(_promise))
        {
            return false;
        }

        System.Temp.Remove(this);
        _timeoutRegistration.Dispose();
        _userRegistration.Dispose();
        _timeout?.Dispose();
        List<IInternalActorRef>? watchers;
        lock (_lock)
        {
            watchers = _watchers;
            _watchers = null;
        }

        foreach (var watcher in watchers ?? [])
        {
            watcher.SendSystemMessage(new DeathWatchNotification(this, existenceConfirmed: true, addressTerminated: false));
        }

        return true;
    }
}
