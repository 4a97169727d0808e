namespace Rama.Actors.Actor;

/// <summary>An actor that can put messages aside and take them back later (Akka's <c>IWithUnboundedStash</c>).</summary>
public interface IWithUnboundedStash
{
    /// <summary>Set by the runtime before PreStart.</summary>
    IStash Stash { get; set; }
}

public interface IStash
{
    /// <summary>Puts the message being processed aside.</summary>
    void Stash();

    /// <summary>Puts the oldest stashed message back in front of the mailbox.</summary>
    void Unstash();

    /// <summary>Puts all stashed messages back in front of the mailbox, in their order.</summary>
    void UnstashAll();

    /// <summary>Drops the stashed messages and returns them.</summary>
    IReadOnlyList<object> ClearStash();
}

/// <summary>
/// Stashed envelopes of one actor. On restart they go back in front of the mailbox; on stop, to
/// dead letters (Akka semantics).
/// </summary>
internal sealed class ActorStash(ActorCell cell) : IStash
{
    private readonly List<Envelope> _stashed = [];

    public void Stash()
    {
        var current = cell.CurrentEnvelope;
        if (current.Message is null || ActorCell.Current != cell)
        {
            throw new InvalidOperationException("Stash() is only valid while processing a message.");
        }

        _stashed.Add(current);
    }

    public void Unstash()
    {
        if (_stashed.Count > 0)
        {
            var first = _stashed[0];
            _stashed.RemoveAt(0);
            cell.Prepend([first]);
        }
    }

    public void UnstashAll()
    {
        cell.Prepend(_stashed);
        _stashed.Clear();
    }

    public IReadOnlyList<object> ClearStash()
    {
        var messages = _stashed.Select(e => e.Message).ToArray();
        _stashed.Clear();
        return messages;
    }

    internal void ClearInto(ActorCell target)
    {
        target.Prepend(_stashed);
        _stashed.Clear();
    }
}
