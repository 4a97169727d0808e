namespace Rama.Actors.Actor;

/// <summary>
/// The root (<c>/</c>): supervises <c>/user</c> and <c>/system</c> with the stopping strategy and
/// orders the end of the system: <c>/user</c> stops first, then <c>/system</c>, then the root.
/// </summary>
internal sealed class RootGuardian : ActorBase
{
    protected override void PreStart()
    {
        foreach (var child in Context.Children)
        {
            Context.Watch(child);
        }
    }

    protected override bool Receive(object message)
    {
        if (message is not Terminated)
        {
            return false;
        }

        // Children are removed before their Terminated is processed, so this sees the current set.
        if (Context.Child("user").IsNobody())
        {
            var systemGuardian = Context.Child("system");
            Context.Stop(systemGuardian.IsNobody() ? Self : systemGuardian);
        }

        return true;
    }
}

/// <summary><c>/user</c> and <c>/system</c>: parents of top-level actors, nothing else.</summary>
internal sealed class GuardianActor : ActorBase
{
    protected override bool Receive(object message) => message is Terminated;
}
