namespace Rama.Actors.Actor;

/// <summary>
/// The runtime side of one actor: its instance, behavior stack, children, watchers and mailbox.
/// All state is touched only from the mailbox's run (one thread at a time), except the children
/// container, which <see cref="ActorSystem.ActorOf"/> reaches from any thread and so is locked.
/// Split by concern: <c>.Children</c>, <c>.DeathWatch</c>, <c>.FaultHandling</c>, <c>.Async</c>.
/// </summary>
internal sealed partial class ActorCell : IActorContext
{
    [ThreadStatic]
    private static ActorCell? t_current;

    [ThreadStatic]
    private static ActorCell? t_constructing;

    private readonly ActorSystemImpl _system;
    private readonly LocalActorRef _self;
    private readonly IInternalActorRef _parent;
    private readonly Mailbox _mailbox;
    private readonly Props _props;
    private readonly List<Receive> _behaviors = [];
    private ActorBase? _actor;
    private Envelope _currentEnvelope;
    private SupervisorStrategy? _supervisorStrategy;
    private TimerScheduler? _timers;
    private LinkedList<Envelope>? _unstashed;
    private TimeSpan? _receiveTimeout;
    private ICancelable? _receiveTimeoutTask;

    public ActorCell(ActorSystemImpl system, LocalActorRef self, Props props, IInternalActorRef parent, Mailbox mailbox)
    {
        _system = system;
        _self = self;
        _props = props;
        _parent = parent;
        _mailbox = mailbox;
    }

    /// <summary>The cell whose message is being processed on this thread, if any.</summary>
    internal static ActorCell? Current => t_current;

    public IActorRef Self => _self;

    public IActorRef Sender => _currentEnvelope.Sender ?? _system.DeadLetters;

    public IActorRef Parent => _parent;

    public ActorSystem System => _system;

    public Props Props => _props;

    public TimeSpan? ReceiveTimeout => _receiveTimeout;

    internal ActorSystemImpl SystemImpl => _system;

    internal LocalActorRef SelfRef => _self;

    internal bool IsTerminated => _mailbox.IsClosed;

    internal long MailboxRuns => _mailbox.Runs;

    internal bool HasUnstashed => _unstashed is { Count: > 0 };

    internal SupervisorStrategy SupervisorStrategy =>
        _supervisorStrategy ?? _props.SupervisorStrategy ?? SupervisorStrategy.DefaultStrategy;

    internal TimerScheduler Timers => _timers ??= new TimerScheduler(this);

    /// <summary>Hands the cell under construction to the <see cref="ActorBase"/> constructor, once.</summary>
    internal static ActorCell? TakeConstructing()
    {
        var cell = t_constructing;
        t_constructing = null;
        return cell;
    }

    public void Post(in Envelope envelope) => _mailbox.Post(envelope);

    public void SendSystemMessage(SystemMessage message) => _mailbox.PostSystem(message);

    public void Become(Receive receive)
    {
        if (_behaviors.Count > 0)
        {
            _behaviors.RemoveAt(_behaviors.Count - 1);
        }

        _behaviors.Add(receive);
    }

    public void BecomeStacked(Receive receive) => _behaviors.Add(receive);

    public void UnbecomeStacked()
    {
        if (_behaviors.Count > 1)
        {
            _behaviors.RemoveAt(_behaviors.Count - 1);
        }
        else if (_actor is not null)
        {
            _behaviors.Clear();
            _behaviors.Add(_actor.InitialBehavior);
        }
    }

    public void SetReceiveTimeout(TimeSpan? timeout)
    {
        _receiveTimeout = timeout is { } t && t > TimeSpan.Zero && t != Timeout.InfiniteTimeSpan ? t : null;
        RescheduleReceiveTimeout();
    }

    /// <summary>Processes one user message (called by the mailbox).</summary>
    public void Invoke(Envelope envelope)
    {
        var previous = t_current;
        t_current = this;
        _currentEnvelope = envelope;
        try
        {
            var message = envelope.Message;
            switch (message)
            {
                case IAutoReceivedMessage:
                    AutoReceive(message);
                    break;
                case TimerScheduler.TimerMessage timerMessage:
                    if (_timers is not null && _timers.TryTake(timerMessage, out var scheduled))
                    {
                        ReceiveMessage(scheduled);
                    }

                    break;
                default:
                    ReceiveMessage(message);
                    break;
            }

            if (message is not INotInfluenceReceiveTimeout)
            {
                RescheduleReceiveTimeout();
            }
        }
        catch (Exception e)
        {
            HandleInvokeFailure(e);
        }
        finally
        {
            t_current = previous;
            _currentEnvelope = default;
        }
    }

    /// <summary>Processes one system message (called by the mailbox).</summary>
    public void SystemInvoke(SystemMessage message)
    {
        var previous = t_current;
        t_current = this;
        try
        {
            switch (message)
            {
                case Create:
                    CreateActor();
                    break;
                case Recreate recreate:
                    FaultRecreate(recreate.Cause);
                    break;
                case Suspend:
                    FaultSuspend();
                    break;
                case Resume resume:
                    FaultResume(resume.CausedByFailure);
                    break;
                case Terminate:
                    TerminateActor();
                    break;
                case Failed failed:
                    HandleFailed(failed);
                    break;
                case Watch watch:
                    UpdateWatcher(watch.Watchee, watch.Watcher, watch: true);
                    break;
                case Unwatch unwatch:
                    UpdateWatcher(unwatch.Watchee, unwatch.Watcher, watch: false);
                    break;
                case DeathWatchNotification notification:
                    WatchedActorTerminated(notification);
                    break;
                case AsyncContinuation continuation:
                    RunContinuation(continuation);
                    break;
                case AsyncTaskCompleted completed:
                    CompleteAsync(completed.Task);
                    break;
            }
        }
        catch (Exception e)
        {
            HandleInvokeFailure(e);
        }
        finally
        {
            t_current = previous;
            _currentEnvelope = default;
        }
    }

    /// <summary>A user message that cannot be delivered any more.</summary>
    public void DeliverToDeadLetters(in Envelope envelope) =>
        _system.DeadLetters.Tell(new DeadLetter(envelope.Message, envelope.Sender ?? _system.DeadLetters, _self));

    /// <summary>A system message for a stopped actor: a Watch is answered at once with the death notice.</summary>
    public void SystemMessageToDeadActor(SystemMessage message)
    {
        if (message is Watch watch && !ReferenceEquals(watch.Watcher, _self))
        {
            watch.Watcher.SendSystemMessage(new DeathWatchNotification(_self, existenceConfirmed: false, addressTerminated: false));
        }
    }

    internal bool TryDequeueUnstashed(out Envelope envelope)
    {
        if (_unstashed is { Count: > 0 } unstashed)
        {
            envelope = unstashed.First!.Value;
            unstashed.RemoveFirst();
            return true;
        }

        envelope = default;
        return false;
    }

    /// <summary>Puts envelopes back in front of the mailbox, in their order (stash semantics).</summary>
    internal void Prepend(IReadOnlyList<Envelope> envelopes)
    {
        _unstashed ??= new LinkedList<Envelope>();
        for (var i = envelopes.Count - 1; i >= 0; i--)
        {
            _unstashed.AddFirst(envelopes[i]);
        }
    }

    internal Envelope CurrentEnvelope => _currentEnvelope;

    private void ReceiveMessage(object message)
    {
        var actor = _actor;
        if (actor is null)
        {
            DeliverToDeadLetters(_currentEnvelope);
            return;
        }

        if (!_behaviors[^1](message))
        {
            actor.InvokeUnhandled(message);
        }
    }

    private void AutoReceive(object message)
    {
        switch (message)
        {
            case Terminated terminated:
                ReceivedTerminated(terminated);
                break;
            case PoisonPill:
                _self.Stop();
                break;
            case Kill:
                throw new ActorKilledException("Kill");
            case Identify identify:
                Sender.Tell(new ActorIdentity(identify.MessageId, _self), _self);
                break;
            default:
                ReceiveMessage(message);
                break;
        }
    }

    private void CreateActor()
    {
        try
        {
            NewActor();
            _actor!.AroundPreStart();
        }
        catch (Exception e)
        {
            ClearActor();
            throw new ActorInitializationException(_self, $"Exception during creation of {_self}", Props.Unwrap(e));
        }
    }

    private void NewActor()
    {
        _behaviors.Clear();
        t_constructing = this;
        ActorBase actor;
        try
        {
            actor = _props.NewActor();
        }
        finally
        {
            t_constructing = null;
        }

        _actor = actor;
        _behaviors.Insert(0, actor.InitialBehavior);
        actor.AfterConstruction();
        if (actor is IWithTimers withTimers)
        {
            withTimers.Timers = Timers;
        }

        if (actor is IWithUnboundedStash withStash)
        {
            withStash.Stash = new ActorStash(this);
        }

        _supervisorStrategy = _props.SupervisorStrategy ?? actor.InvokeSupervisorStrategy();
    }

    private void ClearActor()
    {
        if (_actor is IWithUnboundedStash { Stash: ActorStash stash })
        {
            stash.ClearInto(this);
        }

        _actor = null;
        _behaviors.Clear();
        ClearAsync();
    }

    private void RescheduleReceiveTimeout()
    {
        _receiveTimeoutTask?.Cancel();
        _receiveTimeoutTask = _receiveTimeout is { } timeout && !_mailbox.IsClosed
            ? _system.Scheduler.ScheduleTellOnce(timeout, _self, Actor.ReceiveTimeout.Instance, ActorRefs.Nobody)
            : null;
    }

    private void CancelReceiveTimeout()
    {
        _receiveTimeoutTask?.Cancel();
        _receiveTimeoutTask = null;
    }
}
