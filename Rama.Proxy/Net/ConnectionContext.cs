using System.IO.Pipelines;
using System.Net;
using Rama.Proxy.Core;

namespace Rama.Proxy.Net;

/// <summary>
/// One accepted connection as it travels the pipeline. A layer that changes the wire (TLS, PROXY
/// protocol) replaces <see cref="Transport"/>; per-connection facts go in <see cref="Extensions"/>.
/// The socket is owned by the server that accepted it, which closes it when the pipeline returns.
/// </summary>
public sealed class ConnectionContext
{
    private readonly SocketConnection _socket;

    public ConnectionContext(long id, SocketConnection socket, CancellationToken shutdownRequested)
    {
        Id = id;
        _socket = socket;
        Transport = socket;
        ShutdownRequested = shutdownRequested;
        Extensions = new Extensions();
    }

    private ConnectionContext(ConnectionContext outer, IDuplexPipe transport)
    {
        Id = outer.Id;
        _socket = outer._socket;
        Transport = transport;
        ShutdownRequested = outer.ShutdownRequested;
        RemoteEndPoint = outer.RemoteEndPoint;
        Extensions = new Extensions(outer.Extensions);
    }

    /// <summary>
    /// A context for a protocol nested in this connection (a MITM-decrypted CONNECT tunnel): the same
    /// socket (closing, abort, close reason), another transport, a child extensions bag.
    /// </summary>
    public ConnectionContext CreateNested(IDuplexPipe transport) => new(this, transport);

    /// <summary>The accepted socket connection under every layer.</summary>
    internal SocketConnection SocketConnection => _socket;

    /// <summary>Process-unique connection id (for logs).</summary>
    public long Id { get; }

    /// <summary>The bytes of the connection; replaced by layers that change the wire.</summary>
    public IDuplexPipe Transport { get; set; }

    public Extensions Extensions { get; }

    /// <summary>The peer's address; a PROXY-protocol layer may replace it with the original client's.</summary>
    public IPEndPoint? RemoteEndPoint { get; set; }

    public IPEndPoint? LocalEndPoint => _socket.LocalEndPoint;

    /// <summary>Cancelled when the server begins a graceful shutdown: finish the current request, take no new one.</summary>
    public CancellationToken ShutdownRequested { get; }

    /// <summary>Cancelled when the connection is aborted.</summary>
    public CancellationToken ConnectionClosed => _socket.ConnectionClosed;

    public string? CloseReason => _socket.CloseReason;

    /// <summary>Records why the connection ends (first reason wins).</summary>
    public bool TrySetCloseReason(string reason) => _socket.TrySetCloseReason(reason);

    /// <summary>Closes the connection at once.</summary>
    public void Abort(string reason) => _socket.Abort(reason);
}
