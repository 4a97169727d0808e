using System.IO.Pipelines;
using System.Net;
using Rama.Proxy.Core;

namespace Rama.Proxy.Net;

/// <summary>
/// How a connection's bytes move. The listener chooses once (<see cref="TcpServer.Transport"/>) and each connection records it
/// (<see cref="ConnectionContext.TransportKind"/>); services read the record instead of guessing from the objects they are given.
/// </summary>
public enum ConnectionTransport
{
    /// <summary>The accepted socket through System.IO.Pipelines (<see cref="SocketConnection"/>'s pipes): portable, every service runs on it.</summary>
    Pipes,
    /// <summary>The raw socket, not started, for a service that drives it on the Linux epoll event loops (<see cref="ISocketTransportService"/>).</summary>
    EventLoop,
    /// <summary>Another byte stream over the socket (a TLS layer, a MITM-decrypted tunnel): pipes only, the socket is not this protocol's wire.</summary>
    Layered,
}

/// <summary>
/// One accepted connection as it travels the pipeline. A layer that changes the wire (TLS, PROXY
/// protocol) replaces <see cref="Transport"/>; per-connection facts go in <see cref="Extensions"/>.
/// The socket is owned by the server that accepted it, which closes it when the pipeline returns.
/// </summary>
public sealed class ConnectionContext
{
    private readonly SocketConnection _socket;
    private IDuplexPipe _transport;
    private ConnectionTransport _socketTransport;
    private bool _layered;

    public ConnectionContext(long id, SocketConnection socket, CancellationToken shutdownRequested)
        : this(id, socket, shutdownRequested, ConnectionTransport.Pipes)
    {
    }

    /// <summary>A connection whose listener chose <paramref name="transport"/> (<see cref="ConnectionTransport.EventLoop"/>: the socket is not started).</summary>
    internal ConnectionContext(long id, SocketConnection socket, CancellationToken shutdownRequested, ConnectionTransport transport)
    {
        Id = id;
        _socket = socket;
        _transport = socket;
        _socketTransport = transport;
        ShutdownRequested = shutdownRequested;
        Extensions = new Extensions();
    }

    private ConnectionContext(ConnectionContext outer, IDuplexPipe transport)
    {
        Id = outer.Id;
        _socket = outer._socket;
        _transport = transport;
        _socketTransport = outer._socketTransport;
        _layered = true;
        ShutdownRequested = outer.ShutdownRequested;
        RemoteEndPoint = outer.RemoteEndPoint;
        Listener = outer.Listener;
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

    /// <summary>The bytes of the connection; replaced by layers that change the wire (and put back by them when they are done).</summary>
    public IDuplexPipe Transport
    {
        get => _transport;
        set
        {
            _transport = value;
            _layered = !ReferenceEquals(value, _socket); // the one place that tells a layer's stream from the socket's
        }
    }

    /// <summary>How this connection's bytes move now: the listener's choice, <see cref="ConnectionTransport.Layered"/> under a layer, <see cref="ConnectionTransport.Pipes"/> after a hand-over.</summary>
    public ConnectionTransport TransportKind => _layered ? ConnectionTransport.Layered : _socketTransport;

    /// <summary>
    /// Moves a connection of the event loops to the pipes (a hand-over at a request boundary, or a service that does not drive
    /// the raw socket): the socket's pipes start, with <paramref name="prefix"/> (bytes already read) as the first input.
    /// </summary>
    internal void StartPipes(ReadOnlySpan<byte> prefix = default)
    {
        if (_socketTransport == ConnectionTransport.EventLoop)
        {
            _socketTransport = ConnectionTransport.Pipes;
            _socket.Start(prefix);
        }
    }

    public Extensions Extensions { get; }

    /// <summary>The peer's address; a PROXY-protocol layer may replace it with the original client's.</summary>
    public IPEndPoint? RemoteEndPoint { get; set; }

    /// <summary>The connection instruments of the listener that accepted this connection; null when it came from elsewhere (tests).</summary>
    internal Metrics.ListenerMetrics? Listener { get; init; }

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
