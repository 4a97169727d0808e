namespace Rama.Actors.Listeners;

// The listener protocol: small immutable records of strings and numbers, so they can cross the wire
// when a fleet's admin asks a node (the next issues).

/// <summary>Bind the endpoint and start accepting. Answer: <see cref="ListenerBound"/> or <c>Status.Failure</c> (<see cref="ListenerBindException"/>).</summary>
public sealed record BindListener
{
    public static readonly BindListener Instance = new();
}

public sealed record ListenerBound(string Name, string Endpoint);

/// <summary>Stop accepting (the <c>service-unbind</c> phase). Answer: <see cref="ListenerUnbound"/>.</summary>
public sealed record UnbindListener
{
    public static readonly UnbindListener Instance = new();
}

public sealed record ListenerUnbound(string Name, string Endpoint, int InFlight);

/// <summary>Stop accepting, wait for in-flight connections up to the timeout, then close the rest (the <c>service-requests-done</c> phase). Answer: <see cref="ListenerDrained"/>.</summary>
public sealed record DrainListener(TimeSpan Timeout);

public sealed record ListenerDrained(string Name, string Endpoint, int ClosedAfterTimeout, int OpenConnections);

/// <summary>Answered at once, also while the listener drains. Answer: <see cref="ListenerStatus"/> (from a listener) or <see cref="ListenersStatus"/> (from the supervisor).</summary>
public sealed record GetListenerStatus
{
    public static readonly GetListenerStatus Instance = new();
}

public sealed record ListenerStatus(string Name, string Endpoint, bool Bound, bool Draining, int OpenConnections, long AcceptedConnections);

// The supervisor's protocol (every listener of the node).

public sealed record BindAllListeners
{
    public static readonly BindAllListeners Instance = new();
}

public sealed record AllListenersBound(IReadOnlyList<ListenerBound> Listeners);

public sealed record UnbindAllListeners
{
    public static readonly UnbindAllListeners Instance = new();
}

public sealed record AllListenersUnbound(int Listeners, int InFlight);

public sealed record DrainAllListeners(TimeSpan Timeout);

public sealed record AllListenersDrained(int ClosedAfterTimeout, int OpenConnections);

public sealed record ListenersStatus(IReadOnlyList<ListenerStatus> Listeners, bool Draining);

/// <summary>A listener could not bind its endpoint (in use, not a local address, no permission).</summary>
public sealed class ListenerBindException : Exception
{
    public ListenerBindException()
    {
    }

    public ListenerBindException(string message) : base(message)
    {
    }

    public ListenerBindException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public ListenerBindException(string name, string endpoint, System.Net.Sockets.SocketException cause)
        : base($"listener '{name}' cannot listen on {endpoint}: {Describe(cause.SocketErrorCode, cause.Message)}", cause)
    {
        Endpoint = endpoint;
    }

    /// <summary>The address that could not be bound.</summary>
    public string? Endpoint { get; }

    private static string Describe(System.Net.Sockets.SocketError error, string message) => error switch
    {
        System.Net.Sockets.SocketError.AddressAlreadyInUse => "address already in use (another process listens there)",
        System.Net.Sockets.SocketError.AddressNotAvailable => "not an address of this machine",
        System.Net.Sockets.SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
        _ => message,
    };
}
