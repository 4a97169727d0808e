using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Rama.Admin.Admin;

/// <summary>
/// The admin endpoint of this process (a DI singleton): a TCP listener that answers <c>pbm</c> with the registered
/// palettes and, on the same port, HTTP <c>GET /healthz</c>, <c>/readyz</c> and <c>/metrics</c> (<see cref="AdminHttp"/>). Bound when the actor system starts (<c>akka.AddRamaAdmin()</c>), closed in coordinated shutdown's
/// <c>before-actor-system-terminate</c> phase, so it keeps answering while the listeners drain.
/// </summary>
public sealed partial class AdminEndpoint : IAsyncDisposable
{
    private readonly AdminServer _server;

    internal AdminEndpoint(AdminOptions options, IEnumerable<IAdminPalette> palettes, ILogger logger, TimeProvider time,
        IEnumerable<IReadinessCheck>? readiness = null, Microsoft.AspNetCore.Http.RequestDelegate? metrics = null, IServiceProvider? services = null)
    {
        Options = options;
        _server = new AdminServer(options, palettes, logger, time, readiness, metrics, services);
    }

    public AdminOptions Options { get; }

    /// <summary>The address bound (with the port picked when <see cref="AdminOptions.Bind"/> has port 0); null before the start.</summary>
    public IPEndPoint? BoundEndpoint => _server.BoundEndpoint;

    /// <summary>Binds and starts accepting. Throws <see cref="AdminBindException"/> when the address cannot be bound.</summary>
    internal void Start() => _server.Start();

    /// <summary>Stops accepting and ends every connection (a <c>tail</c> gets "the node is shutting down").</summary>
    internal Task StopAsync() => _server.StopAsync();

    public ValueTask DisposeAsync() => _server.DisposeAsync();
}

/// <summary>The admin endpoint could not bind its address (in use, not an address of this machine, no permission).</summary>
public sealed class AdminBindException : Exception
{
    public AdminBindException()
    {
    }

    public AdminBindException(string message) : base(message)
    {
    }

    public AdminBindException(string message, Exception innerException) : base(message, innerException)
    {
    }

    internal AdminBindException(IPEndPoint endpoint, SocketException cause)
        : base($"admin endpoint {endpoint}: {Describe(cause.SocketErrorCode, cause.Message)}", cause)
    {
        Endpoint = endpoint.ToString();
    }

    /// <summary>The address that could not be bound.</summary>
    public string? Endpoint { get; }

    private static string Describe(SocketError error, string message) => error switch
    {
        SocketError.AddressAlreadyInUse => "address already in use (another process listens there; --admin picks another address)",
        SocketError.AddressNotAvailable => "not an address of this machine",
        SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
        _ => message,
    };
}
