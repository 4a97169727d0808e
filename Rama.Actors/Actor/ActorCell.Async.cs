using System.Runtime.ExceptionServices;

namespace Rama.Actors.Actor;

/// <summary>
/// ReceiveAsync (Akka semantics): while a handler's task is in flight the actor takes no other
/// user message; its continuations run on the actor's mailbox (through a synchronization context),
/// so Self, Sender and the actor's state stay single-threaded across awaits.
/// </summary>
internal sealed partial class ActorCell
{
    private Task? _pendingTask;
    private Envelope _asyncEnvelope;
    private ActorSynchronizationContext? _synchronizationContext;

    internal void RunTask(Func<Task> handler)
    {
        var context = _synchronizationContext ??= new ActorSynchronizationContext(this);
        var previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(context);
        Task task;
        try
        {
            task = handler();
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }

        if (task.IsCompleted)
        {
            ThrowIfFailed(task);
            return;
        }

        _pendingTask = task;
        _asyncEnvelope = _currentEnvelope;
        _mailbox.SetAwaitingTask(true);
        task.ContinueWith(
            static (t, state) => ((ActorCell)state!).SendSystemMessage(new AsyncTaskCompleted(t)),
            this,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    private static void ThrowIfFailed(Task task)
    {
        if (task.IsFaulted)
        {
            var exception = task.Exception!;
            ExceptionDispatchInfo.Throw(exception.InnerExceptions.Count == 1 ? exception.InnerExceptions[0] : exception);
        }

        if (task.IsCanceled)
        {
            throw new TaskCanceledException(task);
        }
    }

    private void RunContinuation(AsyncContinuation continuation)
    {
        var previousEnvelope = _currentEnvelope;
        var previous = SynchronizationContext.Current;
        _currentEnvelope = _asyncEnvelope;
        SynchronizationContext.SetSynchronizationContext(_synchronizationContext);
        try
        {
            continuation.Callback(continuation.State);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
            _currentEnvelope = previousEnvelope;
        }
    }

    private void CompleteAsync(Task task)
    {
        if (!ReferenceEquals(task, _pendingTask))
        {
            return; // from before a restart
        }

        _currentEnvelope = _asyncEnvelope;
        ClearAsync();
        ThrowIfFailed(task); // a faulted handler fails the actor as a throwing Receive would
    }

    private void ClearAsync()
    {
        _pendingTask = null;
        _asyncEnvelope = default;
        _mailbox.SetAwaitingTask(false);
    }

    /// <summary>Posts continuations of ReceiveAsync handlers back to the actor's mailbox.</summary>
    private sealed class ActorSynchronizationContext(ActorCell cell) : SynchronizationContext
    {
        public override void Post(SendOrPostCallback d, object? state) =>
            cell.SendSystemMessage(new AsyncContinuation(d, state));

        public override void Send(SendOrPostCallback d, object? state) =>
            throw new NotSupportedException("Synchronous Send would block the actor's thread.");

        public override SynchronizationContext CreateCopy() => this;
    }
}
