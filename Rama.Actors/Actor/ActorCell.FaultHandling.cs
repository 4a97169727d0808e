namespace Rama.Actors.Actor;

/// <summary>Failure, restart and termination (Akka's FaultHandling, in the same order of steps).</summary>
internal sealed partial class ActorCell
{
    private bool _failed;
    private object? _failedMessage;
    private bool _isTerminating;

    /// <summary>
    /// The actor threw: stop processing user messages, suspend the children and ask the parent.
    /// A second failure before the parent's answer, or any failure while stopping, is only logged.
    /// </summary>
    private void HandleInvokeFailure(Exception cause, IActorRef? failedChild = null)
    {
        if (_failed || _isTerminating)
        {
            _system.LogIgnoredFailure(_self, cause);
            return;
        }

        _failed = true;
        _failedMessage = failedChild is null ? _currentEnvelope.Message : null;
        ClearAsync();
        _mailbox.Suspend();
        SuspendChildren(except: failedChild);
        _parent.SendSystemMessage(new Failed(_self, cause, _self.Path.Uid));
    }

    private void HandleFailed(Failed failed)
    {
        var stats = _children.GetStats(failed.Child);
        if (stats is null || stats.Child.Path.Uid != failed.Uid || _isTerminating)
        {
            return; // a former incarnation, or we are stopping all children anyway
        }

        if (!SupervisorStrategy.HandleFailure(this, failed.Child, failed.Cause, stats, _children.Stats))
        {
            // Escalate: this actor fails with the same exception, and its own supervisor decides.
            HandleInvokeFailure(failed.Cause, failed.Child);
        }
    }

    private void FaultSuspend()
    {
        _mailbox.Suspend();
        SuspendChildren();
    }

    private void FaultResume(Exception? causedByFailure)
    {
        if (_actor is null)
        {
            // Failed during creation: resuming means creating again (Akka does the same).
            FaultCreate();
            return;
        }

        if (_isTerminating)
        {
            return;
        }

        _mailbox.Resume();
        if (causedByFailure is not null)
        {
            _failed = false;
            _failedMessage = null;
        }

        ResumeChildren(causedByFailure);
    }

    private void FaultCreate()
    {
        StopAllChildren();
        if (!_children.SetTerminationReason(new ChildrenTerminationReason.Creation()))
        {
            FinishCreate();
        }
    }

    private void FinishCreate()
    {
        _mailbox.Resume();
        _failed = false;
        _failedMessage = null;
        CreateActor();
    }

    private void FaultRecreate(Exception cause)
    {
        if (_actor is null)
        {
            FaultCreate();
            return;
        }

        if (_isTerminating)
        {
            return;
        }

        var failedActor = _actor;
        _timers?.CancelAll();
        try
        {
            failedActor.AroundPreRestart(cause, _failedMessage);
        }
        catch (Exception e)
        {
            _system.LogLifecycleHookFailed(_self, nameof(ActorBase.AroundPreRestart), e);
        }
        finally
        {
            ClearActor();
        }

        if (!_children.SetTerminationReason(new ChildrenTerminationReason.Recreation(cause)))
        {
            FinishRecreate(cause);
        }
    }

    private void FinishRecreate(Exception cause)
    {
        var survivors = _children.Children;
        _mailbox.Resume();
        _failed = false;
        _failedMessage = null;
        try
        {
            NewActor();
            _actor!.AroundPostRestart(cause);
        }
        catch (Exception e)
        {
            ClearActor();
            HandleInvokeFailure(new ActorInitializationException(_self, $"Exception post restart of {_self}", Props.Unwrap(e)));
            return;
        }

        foreach (var child in survivors)
        {
            RestartChild(child, cause, suspendFirst: false);
        }
    }

    /// <summary>Stop: children first, then PostStop, then tell the parent and the watchers.</summary>
    private void TerminateActor()
    {
        if (_mailbox.IsClosed)
        {
            return;
        }

        CancelReceiveTimeout();
        UnwatchWatchedActors();
        _children.Close();
        StopAllChildren();

        var wasTerminating = _isTerminating;
        _isTerminating = true;
        if (_children.SetTerminationReason(new ChildrenTerminationReason.Termination()))
        {
            if (!wasTerminating)
            {
                _mailbox.Suspend(); // no user messages while waiting for the children
            }
        }
        else
        {
            FinishTerminate();
        }
    }

    private void HandleChildTerminated(IActorRef child)
    {
        switch (_children.Remove(child))
        {
            case ChildrenTerminationReason.Recreation recreation:
                FinishRecreate(recreation.Cause);
                break;
            case ChildrenTerminationReason.Creation:
                FinishCreate();
                break;
            case ChildrenTerminationReason.Termination:
                FinishTerminate();
                break;
        }
    }

    private void FinishTerminate()
    {
        var actor = _actor;
        try
        {
            actor?.AroundPostStop();
        }
        catch (Exception e)
        {
            _system.LogLifecycleHookFailed(_self, nameof(ActorBase.AroundPostStop), e);
        }
        finally
        {
            _timers?.CancelAll();
            CancelReceiveTimeout();
            ClearActor();
            _system.EventStream.Unsubscribe(_self);
            _mailbox.Close();
            while (TryDequeueUnstashed(out var envelope))
            {
                DeliverToDeadLetters(envelope);
            }

            _parent.SendSystemMessage(new DeathWatchNotification(_self, existenceConfirmed: true, addressTerminated: false));
            TellWatchersWeDied();
            UnwatchWatchedActors();
        }
    }
}
