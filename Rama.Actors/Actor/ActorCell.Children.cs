using System.Text;

namespace Rama.Actors.Actor;

internal sealed partial class ActorCell
{
    private readonly ChildrenContainer _children = new();
    private long _nextChildName;

    public IEnumerable<IActorRef> Children => _children.Children;

    internal IReadOnlyList<ChildRestartStats> ChildStats => _children.Stats;

    public IActorRef Child(string name) => _children.GetByName(name) ?? ActorRefs.Nobody;

    public IActorRef ActorOf(Props props, string? name = null) => MakeChild(props, name);

    public void Stop(IActorRef actor)
    {
        if (actor is not IInternalActorRef target)
        {
            return;
        }

        _children.ShallDie(target);
        target.Stop();
    }

    /// <summary>Creates, registers and starts a child. Callable from any thread (system.ActorOf).</summary>
    internal LocalActorRef MakeChild(Props props, string? name)
    {
        ArgumentNullException.ThrowIfNull(props);
        if (name is null)
        {
            name = ActorNames.Auto(Interlocked.Increment(ref _nextChildName) - 1);
        }
        else
        {
            ActorNames.Validate(name);
        }

        _children.Reserve(name);
        LocalActorRef child;
        try
        {
            var path = (_self.Path / name).WithUid(NewUid());
            child = new LocalActorRef(_system, props, _self, path);
        }
        catch
        {
            _children.Unreserve(name);
            throw;
        }

        _children.Add(child);
        child.Start();
        return child;
    }

    internal void RestartChild(IActorRef child, Exception cause, bool suspendFirst)
    {
        var target = (IInternalActorRef)child;
        if (suspendFirst)
        {
            target.SendSystemMessage(Actor.Suspend.Instance);
        }

        target.SendSystemMessage(new Recreate(cause));
    }

    internal static void ResumeChild(IActorRef child, Exception cause) =>
        ((IInternalActorRef)child).SendSystemMessage(new Resume(cause));

    private static int NewUid()
    {
        int uid;
        do
        {
            uid = Random.Shared.Next();
        }
        while (uid == ActorPath.UndefinedUid);

        return uid;
    }

    private void SuspendChildren(IActorRef? except = null)
    {
        foreach (var child in _children.Children)
        {
            if (!child.Equals(except))
            {
                ((IInternalActorRef)child).SendSystemMessage(Actor.Suspend.Instance);
            }
        }
    }

    private void ResumeChildren(Exception? causedByFailure)
    {
        foreach (var child in _children.Children)
        {
            ((IInternalActorRef)child).SendSystemMessage(new Resume(causedByFailure));
        }
    }

    private void StopAllChildren()
    {
        foreach (var child in _children.Children)
        {
            Stop(child);
        }
    }
}

/// <summary>Why a cell waits for its children to stop before going on.</summary>
internal abstract record ChildrenTerminationReason
{
    public sealed record Recreation(Exception Cause) : ChildrenTerminationReason;

    public sealed record Creation : ChildrenTerminationReason;

    public sealed record Termination : ChildrenTerminationReason;
}

/// <summary>
/// The children of a cell, with their restart statistics and the set being stopped.
/// Locked: the user guardian's container is reached by <see cref="ActorSystem.ActorOf"/> from any thread.
/// </summary>
internal sealed class ChildrenContainer
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ChildRestartStats?> _byName = new(StringComparer.Ordinal);
    private readonly HashSet<IActorRef> _toDie = [];
    private ChildrenTerminationReason? _reason;
    private bool _closed;

    public IReadOnlyList<IActorRef> Children
    {
        get
        {
            lock (_lock)
            {
                return _byName.Values.Where(s => s is not null).Select(s => (IActorRef)s!.Child).ToArray();
            }
        }
    }

    public IReadOnlyList<ChildRestartStats> Stats
    {
        get
        {
            lock (_lock)
            {
                return _byName.Values.Where(s => s is not null).Select(s => s!).ToArray();
            }
        }
    }

    public void Reserve(string name)
    {
        lock (_lock)
        {
            if (_closed)
            {
                throw new InvalidOperationException("Cannot create children while terminating or terminated.");
            }

            if (!_byName.TryAdd(name, null))
            {
                throw new InvalidActorNameException($"Actor name [{name}] is not unique!");
            }
        }
    }

    public void Unreserve(string name)
    {
        lock (_lock)
        {
            if (_byName.TryGetValue(name, out var stats) && stats is null)
            {
                _byName.Remove(name);
            }
        }
    }

    public void Add(IInternalActorRef child)
    {
        lock (_lock)
        {
            _byName[child.Path.Name] = new ChildRestartStats(child);
        }
    }

    public IActorRef? GetByName(string name)
    {
        lock (_lock)
        {
            return _byName.GetValueOrDefault(name)?.Child;
        }
    }

    public ChildRestartStats? GetStats(IActorRef child)
    {
        lock (_lock)
        {
            return _byName.TryGetValue(child.Path.Name, out var stats) && stats is not null && stats.Child.Equals(child)
                ? stats
                : null;
        }
    }

    /// <summary>Marks a child as being stopped by this parent.</summary>
    public void ShallDie(IActorRef child)
    {
        lock (_lock)
        {
            if (_byName.TryGetValue(child.Path.Name, out var stats) && stats is not null && stats.Child.Equals(child))
            {
                _toDie.Add(child);
            }
        }
    }

    /// <summary>No more children may be created (the cell is terminating).</summary>
    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
        }
    }

    /// <summary>
    /// Records what to do once the children being stopped are gone; false when none is being stopped
    /// (the caller goes on at once). Termination is never replaced by another reason.
    /// </summary>
    public bool SetTerminationReason(ChildrenTerminationReason reason)
    {
        lock (_lock)
        {
            if (_toDie.Count == 0)
            {
                return false;
            }

            if (_reason is not ChildrenTerminationReason.Termination)
            {
                _reason = reason;
            }

            return true;
        }
    }

    /// <summary>Removes a stopped child; returns the pending reason when it was the last one being waited for.</summary>
    public ChildrenTerminationReason? Remove(IActorRef child)
    {
        lock (_lock)
        {
            if (_byName.TryGetValue(child.Path.Name, out var stats) && stats is not null && stats.Child.Equals(child))
            {
                _byName.Remove(child.Path.Name);
            }

            _toDie.Remove(child);
            if (_toDie.Count == 0 && _reason is { } reason)
            {
                _reason = null;
                return reason;
            }

            return null;
        }
    }
}

/// <summary>Validates actor names and makes Akka-style automatic ones (<c>$a</c>, <c>$b</c>, ...).</summary>
internal static class ActorNames
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+~";
    private const string Punctuation = "-_:@&=+,.!~*'$;%";

    public static string Auto(long sequence)
    {
        var sb = new StringBuilder("$");
        var n = (ulong)sequence;
        do
        {
            sb.Append(Alphabet[(int)(n & 63)]);
            n >>= 6;
        }
        while (n != 0);

        return sb.ToString();
    }

    public static void Validate(string name)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new InvalidActorNameException("Actor name must not be null or empty.");
        }

        if (name[0] == '$')
        {
            throw new InvalidActorNameException($"Illegal actor name [{name}]: names starting with '$' are reserved.");
        }

        foreach (var c in name)
        {
            if (!char.IsAsciiLetterOrDigit(c) && !Punctuation.Contains(c, StringComparison.Ordinal))
            {
                throw new InvalidActorNameException(
                    $"Illegal actor name [{name}]: use ASCII letters, digits and {Punctuation} only.");
            }
        }
    }
}
