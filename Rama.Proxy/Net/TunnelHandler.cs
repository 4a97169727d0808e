using System.IO.Pipelines;

namespace Rama.Proxy.Net;

/// <summary>
/// What runs inside an established tunnel (HTTP CONNECT or SOCKS5 CONNECT) once the target is
/// dialled: by default a byte relay; the MITM proxy peeks for a ClientHello and decrypts instead.
/// </summary>
public interface ITunnelHandler
{
    /// <summary>Runs the tunnel until both sides are done. <paramref name="upstream"/> is owned by the caller.</summary>
    Task<RelayResult> RunAsync(ConnectionContext connection, IDuplexPipe client, SocketConnection upstream, HostPort target, CancellationToken cancellationToken);
}

/// <summary>The default tunnel: bytes both ways (<see cref="Relay"/>), closed after <paramref name="idleTimeout"/> without traffic.</summary>
public sealed class RelayTunnel(TimeSpan? idleTimeout = null, TimeProvider? time = null) : ITunnelHandler
{
    /// <summary>A relay with <see cref="Relay.DefaultIdleTimeout"/>.</summary>
    public static RelayTunnel Instance { get; } = new();

    public Task<RelayResult> RunAsync(ConnectionContext connection, IDuplexPipe client, SocketConnection upstream, HostPort target, CancellationToken cancellationToken) =>
        Relay.RunAsync(client, upstream, cancellationToken, idleTimeout, time);
}
