namespace Rama.Actors.Proxy;

// Listener protocol. Plain records of strings and numbers so they can cross the wire later.

/// <summary>Bind the endpoint and start accepting. Answer: <see cref="ListenerBound"/> or <c>Status.Failure</c>.</summary>
public sealed record BindListener
{
    public static readonly BindListener Instance = new();
}

public sealed record ListenerBound(string Endpoint);

/// <summary>Stop accepting (the <c>service-unbind</c> phase). Answer: <see cref="ListenerUnbound"/>.</summary>
public sealed record UnbindListener
{
    public static readonly UnbindListener Instance = new();
}

public sealed record ListenerUnbound(string Endpoint, int InFlight);

/// <summary>Wait for in-flight connections up to the timeout, then close the rest (the <c>service-requests-done</c> phase). Answer: <see cref="ListenerDrained"/>.</summary>
public sealed record DrainListener(TimeSpan Timeout);

public sealed record ListenerDrained(string Endpoint, int ClosedAfterTimeout, int OpenConnections);

/// <summary>Answer: <see cref="ListenerStatus"/>.</summary>
public sealed record GetListenerStatus
{
    public static readonly GetListenerStatus Instance = new();
}

public sealed record ListenerStatus(string Endpoint, bool Bound, int OpenConnections, long AcceptedConnections);

// Supervisor protocol (all listeners of the node).

public sealed record BindAllListeners
{
    public static readonly BindAllListeners Instance = new();
}

public sealed record AllListenersBound(IReadOnlyList<string> Endpoints);

public sealed record UnbindAllListeners
{
    public static readonly UnbindAllListeners Instance = new();
}

public sealed record DrainAllListeners(TimeSpan Timeout);

public sealed record AllListenersDrained(int ClosedAfterTimeout, int OpenConnections);
