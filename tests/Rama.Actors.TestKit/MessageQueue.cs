using System.Collections.Concurrent;
using Rama.Actors.Actor;

namespace Rama.Actors.TestKit;

/// <summary>A received message and who sent it.</summary>
public sealed record ReceivedMessage(object Message, IActorRef Sender);

/// <summary>
/// What a test actor received. Waiting blocks on a semaphore with a timeout (sync) or awaits it
/// (async); it never waits on an actor's task, so it cannot starve the actors it waits for.
/// </summary>
internal sealed class MessageQueue : IDisposable
{
    private readonly ConcurrentQueue<ReceivedMessage> _items = new();
    private readonly SemaphoreSlim _available = new(0);

    public void Enqueue(ReceivedMessage item)
    {
        _items.Enqueue(item);
        _available.Release();
    }

    public ReceivedMessage? Take(TimeSpan timeout) =>
        _available.Wait(timeout) && _items.TryDequeue(out var item) ? item : null;

    public async Task<ReceivedMessage?> TakeAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        await _available.WaitAsync(timeout, cancellationToken).ConfigureAwait(false) && _items.TryDequeue(out var item)
            ? item
            : null;

    public void Dispose() => _available.Dispose();
}

/// <summary>The actor behind <see cref="TestKitBase.TestActor"/> and every <see cref="TestProbe"/>: queues all it gets.</summary>
internal sealed class TestActor(MessageQueue queue) : ActorBase
{
    protected override bool Receive(object message)
    {
        switch (message)
        {
            case WatchRequest watch:
                Context.Watch(watch.Subject);
                watch.Done.Set();
                break;
            case UnwatchRequest unwatch:
                Context.Unwatch(unwatch.Subject);
                unwatch.Done.Set();
                break;
            default:
                queue.Enqueue(new ReceivedMessage(message, Sender));
                break;
        }

        return true;
    }

    /// <summary>Set once the Watch system message is on its way, so a later Stop cannot overtake it.</summary>
    internal sealed record WatchRequest(IActorRef Subject, ManualResetEventSlim Done);

    internal sealed record UnwatchRequest(IActorRef Subject, ManualResetEventSlim Done);
}
