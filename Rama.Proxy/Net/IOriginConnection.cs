using System.IO.Pipelines;

namespace Rama.Proxy.Net;

/// <summary>
/// A connection the HTTP forwarder sends requests over and pools: a dialed socket (<see cref="SocketConnection"/>) or a TLS
/// stream over one (an https origin behind TLS termination, the origin of a MITM tunnel). Disposing it closes the socket.
/// </summary>
internal interface IOriginConnection : IDuplexPipe, IAsyncDisposable
{
    /// <summary>Cancelled when the socket under it closes or is aborted.</summary>
    CancellationToken ConnectionClosed { get; }
}
