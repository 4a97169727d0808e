using System.Collections.Concurrent;

namespace Rama.Actors.Actor;

/// <summary>A user message and its sender.</summary>
internal readonly record struct Envelope(object Message, IActorRef? Sender);

/// <summary>
/// The queue of one actor and the work item that drains it on the thread pool.
/// <list type="bullet">
/// <item>At most one run is scheduled at a time (the <c>_scheduled</c> flag), so the actor sees one message at a time.</item>
/// <item>System messages go first, and are processed again after every user message.</item>
/// <item>A run processes at most <c>throughput</c> user messages, then yields the thread.</item>
/// <item>User messages wait while the actor is suspended (failure, restart, a ReceiveAsync task in flight).</item>
/// <item>Both queues are lock-free MPSC queues; one queue per kind keeps each sender's order.</item>
/// </list>
/// </summary>
internal sealed class Mailbox : IThreadPoolWorkItem
{
    private readonly ConcurrentQueue<Envelope> _userQueue = new();
    private readonly ConcurrentQueue<SystemMessage> _systemQueue = new();
    private readonly int _throughput;
    private ActorCell _cell = null!;
    private int _scheduled;
    private long _runs;
    private int _closed;

    // Written only on the mailbox's own run; read by producers deciding whether to schedule.
    private volatile int _suspendCount;
    private volatile bool _awaitingTask;

    public Mailbox(int throughput)
    {
        _throughput = throughput;
    }

    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    public bool IsSuspended => _suspendCount > 0;

    /// <summary>How many runs have started (diagnostics and tests).</summary>
    public long Runs => Volatile.Read(ref _runs);

    private bool CanProcessUserMessages => _suspendCount == 0 && !_awaitingTask;

    public void SetCell(ActorCell cell) => _cell = cell;

    public void Post(in Envelope envelope)
    {
        if (IsClosed)
        {
            _cell.DeliverToDeadLetters(envelope);
            return;
        }

        _userQueue.Enqueue(envelope);

        // Enqueue is a full fence (interlocked tail update); Close sets the flag and then drains, so
        // either we see the flag here or the closing side sees our message.
        if (IsClosed)
        {
            DrainUserMessages();
            return;
        }

        TrySchedule();
    }

    public void PostSystem(SystemMessage message)
    {
        if (IsClosed)
        {
            _cell.SystemMessageToDeadActor(message);
            return;
        }

        _systemQueue.Enqueue(message);
        if (IsClosed)
        {
            DrainSystemMessages();
            return;
        }

        TrySchedule();
    }

    /// <summary>Only called from the mailbox's own run (system message processing).</summary>
    public void Suspend() => _suspendCount++;

    /// <summary>Only called from the mailbox's own run; never goes below zero (Akka's resume is clamped too).</summary>
    public void Resume()
    {
        if (_suspendCount > 0)
        {
            _suspendCount--;
        }
    }

    public void SetAwaitingTask(bool awaiting) => _awaitingTask = awaiting;

    /// <summary>Closes the mailbox: everything queued and everything that arrives later goes to dead letters.</summary>
    public void Close()
    {
        Interlocked.Exchange(ref _closed, 1);
        DrainUserMessages();
        DrainSystemMessages();
    }

    public void Execute()
    {
        Volatile.Write(ref _runs, _runs + 1);
        try
        {
            ProcessSystemMessages();
            ProcessUserMessages();
        }
        finally
        {
            Interlocked.Exchange(ref _scheduled, 0);
            if (HasWork())
            {
                TrySchedule();
            }
        }
    }

    private void ProcessUserMessages()
    {
        var budget = _throughput;
        while (budget > 0 && !IsClosed && CanProcessUserMessages && TryDequeueUser(out var envelope))
        {
            budget--;
            _cell.Invoke(envelope);
            ProcessSystemMessages();
        }
    }

    private void ProcessSystemMessages()
    {
        while (!IsClosed && _systemQueue.TryDequeue(out var message))
        {
            _cell.SystemInvoke(message);
        }
    }

    private bool TryDequeueUser(out Envelope envelope) =>
        _cell.TryDequeueUnstashed(out envelope) || _userQueue.TryDequeue(out envelope);

    private bool HasWork() =>
        !IsClosed && (!_systemQueue.IsEmpty
            || (CanProcessUserMessages && (!_userQueue.IsEmpty || _cell.HasUnstashed)));

    private void TrySchedule()
    {
        if (Interlocked.CompareExchange(ref _scheduled, 1, 0) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    private void DrainUserMessages()
    {
        while (_userQueue.TryDequeue(out var envelope))
        {
            _cell.DeliverToDeadLetters(envelope);
        }
    }

    private void DrainSystemMessages()
    {
        while (_systemQueue.TryDequeue(out var message))
        {
            _cell.SystemMessageToDeadActor(message);
        }
    }
}
