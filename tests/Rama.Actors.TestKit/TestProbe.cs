using Rama.Actors.Actor;

namespace Rama.Actors.TestKit;

/// <summary>
/// A stand-alone test actor with its own queue (Akka's <c>TestProbe</c>): pass <see cref="Ref"/> where
/// an actor is expected, then assert on what it received.
/// </summary>
public sealed class TestProbe : TestKitBase
{
    internal TestProbe(ActorSystem system, TimingState timing, string? name)
        : base(system, timing, name ?? "testProbe")
    {
    }

    /// <summary>The probe's actor reference (same as <see cref="TestKitBase.TestActor"/>).</summary>
    public IActorRef Ref => TestActor;

    /// <summary>Sends to <paramref name="actor"/> with this probe as sender.</summary>
    public void Tell(IActorRef actor, object message) => Send(actor, message);

    public override string ToString() => $"TestProbe({Ref.Path})";
}
