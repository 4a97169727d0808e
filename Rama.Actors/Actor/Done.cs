namespace Rama.Actors.Actor;

/// <summary>Completion without a value (Akka's <c>Done</c>).</summary>
public sealed class Done
{
    public static readonly Done Instance = new();

    private Done()
    {
    }

    public override string ToString() => "Done";
}
