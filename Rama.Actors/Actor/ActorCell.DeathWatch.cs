namespace Rama.Actors.Actor;

internal sealed partial class ActorCell
{
    // Actors this one watches; Terminated messages queued but not yet processed; actors watching this one.
    private readonly HashSet<IActorRef> _watching = [];
    private readonly HashSet<IActorRef> _terminatedQueued = [];
    private readonly HashSet<IInternalActorRef> _watchedBy = [];

    public IActorRef Watch(IActorRef subject)
    {
        if (subject is IInternalActorRef target && !target.Equals(_self) && _watching.Add(target))
        {
            target.SendSystemMessage(new Actor.Watch(target, _self));
        }

        return subject;
    }

    public IActorRef Unwatch(IActorRef subject)
    {
        if (subject is IInternalActorRef target && !target.Equals(_self) && _watching.Remove(target))
        {
            target.SendSystemMessage(new Actor.Unwatch(target, _self));
        }

        // A Terminated already queued for it is dropped when it comes up (see ReceivedTerminated).
        _terminatedQueued.Remove(subject);
        return subject;
    }

    /// <summary>A Watch or Unwatch system message: someone (un)watches this actor, or this actor (un)watches someone.</summary>
    private void UpdateWatcher(IInternalActorRef watchee, IInternalActorRef watcher, bool watch)
    {
        var watcheeIsSelf = watchee.Equals(_self);
        var watcherIsSelf = watcher.Equals(_self);
        if (watcheeIsSelf && !watcherIsSelf)
        {
            _ = watch ? _watchedBy.Add(watcher) : _watchedBy.Remove(watcher);
        }
        else if (!watcheeIsSelf && watcherIsSelf)
        {
            _ = watch ? Watch(watchee) : Unwatch(watchee);
        }
    }

    /// <summary>
    /// A watched actor or a child stopped. A watched one becomes a <see cref="Terminated"/> user
    /// message, once, ordered after the messages already queued (Akka semantics).
    /// </summary>
    private void WatchedActorTerminated(DeathWatchNotification notification)
    {
        var actor = notification.Actor;
        if (_watching.Remove(actor) && !_isTerminating)
        {
            _terminatedQueued.Add(actor);
            _self.Tell(new Terminated(actor, notification.ExistenceConfirmed, notification.AddressTerminated), actor);
        }

        if (_children.GetStats(actor) is not null)
        {
            HandleChildTerminated(actor);
        }
    }

    private void ReceivedTerminated(Terminated terminated)
    {
        // Only Terminated messages this cell queued itself, and not unwatched since, reach the behavior.
        if (_terminatedQueued.Remove(terminated.ActorRef))
        {
            ReceiveMessage(terminated);
        }
    }

    private void TellWatchersWeDied()
    {
        foreach (var watcher in _watchedBy)
        {
            // The parent was told already (it always learns of its children's death).
            if (!watcher.Equals(_parent))
            {
                watcher.SendSystemMessage(new DeathWatchNotification(_self, existenceConfirmed: true, addressTerminated: false));
            }
        }

        _watchedBy.Clear();
    }

    private void UnwatchWatchedActors()
    {
        foreach (var watchee in _watching)
        {
            ((IInternalActorRef)watchee).SendSystemMessage(new Actor.Unwatch((IInternalActorRef)watchee, _self));
        }

        _watching.Clear();
        _terminatedQueued.Clear();
    }
}
