using System.IO.Pipelines;

namespace Rama.Proxy.Net;

/// <summary>
/// What runs inside an established tunnel (HTTP CONNECT or SOCKS5 CONNECT) once the target is
/// dialled: by default a byte relay; the MITM proxy peeks for a ClientHello and decrypts instead.
/// </summary>
public interface ITunnelHandler
{
    /// <summary>Runs the tunnel until both sides are done. <paramref name="upstream"/> is owned by the caller.</summary>
    /// <param name="connection">The client connection the tunnel runs on.</param>
    /// <param name="client">The client side of the tunnel (bytes the client sent after the CONNECT are already in its input).</param>
    /// <param name="upstream">The first connection to <paramref name="target"/>, already dialled; owned by the caller.</param>
    /// <param name="target">The tunnel's target as the client asked for it.</param>
    /// <param name="redial">
    /// Dials the tunnel's target again exactly as the first connection was dialled: same connector,
    /// same upstream selection (filter, sticky session). For handlers that need more than one
    /// connection to the target (the MITM proxy after the origin closed); connections it returns are
    /// owned by the handler.
    /// </param>
    /// <param name="cancellationToken">Ends the tunnel.</param>
    Task<RelayResult> RunAsync(ConnectionContext connection, IDuplexPipe client, SocketConnection upstream, HostPort target,
        Func<CancellationToken, ValueTask<ConnectResult>> redial, CancellationToken cancellationToken);
}

/// <summary>
/// The default tunnel: bytes both ways (<see cref="Relay"/>), closed after <paramref name="idleTimeout"/> without traffic.
/// With <paramref name="eventLoops"/> a tunnel whose client side is the accepted socket itself (no TLS or other layer
/// in between) runs on the epoll event loops instead (<see cref="Epoll.EpollTunnel"/>: the same guarantees, no pipes;
/// Linux x86-64); any other tunnel runs on the pipes.
/// </summary>
public sealed class RelayTunnel(TimeSpan? idleTimeout = null, TimeProvider? time = null, bool eventLoops = false) : ITunnelHandler
{
    /// <summary>A relay with <see cref="Relay.DefaultIdleTimeout"/>.</summary>
    public static RelayTunnel Instance { get; } = new();

    /// <inheritdoc/>
    /// <remarks>A relay needs one connection: <paramref name="redial"/> is not used.</remarks>
    public Task<RelayResult> RunAsync(ConnectionContext connection, IDuplexPipe client, SocketConnection upstream, HostPort target,
        Func<CancellationToken, ValueTask<ConnectResult>> redial, CancellationToken cancellationToken) =>
        eventLoops && connection.TransportKind == ConnectionTransport.Pipes && upstream.IsStarted
            ? Epoll.EpollTunnel.RunAsync(connection.SocketConnection, upstream, idleTimeout ?? Relay.DefaultIdleTimeout, cancellationToken, time)
            : Relay.RunAsync(client, upstream, cancellationToken, idleTimeout, time);
}
