namespace Rama.Actors.Actor;

/// <summary>
/// The system's publish/subscribe bus, by event type (a subscription to a type receives its
/// subtypes too). The runtime publishes <see cref="DeadLetter"/> and <see cref="UnhandledMessage"/>
/// here. Stopped actors are unsubscribed automatically.
/// </summary>
public sealed class EventStream
{
    private readonly Lock _lock = new();
    private volatile (IActorRef Subscriber, Type Channel)[] _subscriptions = [];

    internal EventStream()
    {
    }

    /// <summary>Subscribes; false when already subscribed to that channel.</summary>
    public bool Subscribe(IActorRef subscriber, Type channel)
    {
        ArgumentNullException.ThrowIfNull(subscriber);
        ArgumentNullException.ThrowIfNull(channel);
        lock (_lock)
        {
            if (_subscriptions.Contains((subscriber, channel)))
            {
                return false;
            }

            _subscriptions = [.. _subscriptions, (subscriber, channel)];
            return true;
        }
    }

    public bool Subscribe<T>(IActorRef subscriber) => Subscribe(subscriber, typeof(T));

    public bool Unsubscribe(IActorRef subscriber, Type channel)
    {
        lock (_lock)
        {
            var before = _subscriptions.Length;
            _subscriptions = _subscriptions.Where(s => !(s.Subscriber.Equals(subscriber) && s.Channel == channel)).ToArray();
            return _subscriptions.Length != before;
        }
    }

    /// <summary>Removes every subscription of the subscriber.</summary>
    public bool Unsubscribe(IActorRef subscriber)
    {
        lock (_lock)
        {
            var before = _subscriptions.Length;
            _subscriptions = _subscriptions.Where(s => !s.Subscriber.Equals(subscriber)).ToArray();
            return _subscriptions.Length != before;
        }
    }

    public void Publish(object @event)
    {
        ArgumentNullException.ThrowIfNull(@event);
        foreach (var (subscriber, channel) in _subscriptions)
        {
            if (channel.IsInstanceOfType(@event))
            {
                subscriber.Tell(@event, ActorRefs.Nobody);
            }
        }
    }
}
