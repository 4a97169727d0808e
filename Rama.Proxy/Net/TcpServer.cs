using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;

namespace Rama.Proxy.Net;

/// <summary>
/// A connection service that runs the accepted socket on a transport of its own: the server hands it a
/// <see cref="ConnectionContext"/> whose <see cref="SocketConnection"/> is not started (no pipes running), and
/// the service either drives the socket itself or starts the pipes. Tracking, abort and close stay the server's.
/// </summary>
public interface ISocketTransportService : IService<ConnectionContext, Unit>
{
}

/// <summary>Options of a <see cref="TcpServer"/>.</summary>
public sealed record TcpServerOptions
{
    /// <summary>Listen backlog. Default 512 (Kestrel's default).</summary>
    public int Backlog { get; init; } = 512;

    /// <summary>Disable Nagle on accepted sockets. Default on.</summary>
    public bool NoDelay { get; init; } = true;

    public SocketConnectionOptions Connection { get; init; } = SocketConnectionOptions.Default;

    /// <summary>
    /// The listener's name in refusals, logs and metrics (<c>rama.listener</c>). Default: its address.
    /// </summary>
    public string? Name { get; init; }

    /// <summary>
    /// Connections open at once before new ones are refused (<see cref="ConnectionRefusal"/>: 503, SOCKS5 0x01, a TLS
    /// alert). Null: no limit (the node's default is half the descriptor limit, <see cref="DescriptorLimit"/>).
    /// </summary>
    public int? MaxConnections { get; init; }

    /// <summary>Connections open at once from one client address before its new ones are refused. Null (default): no limit.</summary>
    public int? MaxConnectionsPerIp { get; init; }

    /// <summary>How long a refused connection may take to say which protocol it speaks and to read the answer. Default 5 s.</summary>
    public TimeSpan RefusalTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Refusals answered at once; past it a refused connection is closed without an answer, so a flood costs bounded
    /// descriptors and memory. Default 64: our choice (each holds a socket for at most <see cref="RefusalTimeout"/>).
    /// </summary>
    public int MaxPendingRefusals { get; init; } = 64;

    /// <summary>
    /// Told of every refused connection that was answered (the 503, SOCKS5 0x01, TLS alert or HTTP/2 refusal, with the
    /// limit as its reason), e.g. <c>Observability.RefusalAccessLog.For(accessLog)</c> for its access-log line. Null
    /// (default): nobody.
    /// </summary>
    public Action<ConnectionRefused>? Refused { get; init; }

    /// <summary>First pause of the accept loop when the process is out of descriptors (EMFILE/ENFILE); doubles per failure. Default 10 ms.</summary>
    public TimeSpan AcceptBackoffInitial { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Longest pause of the accept loop when out of descriptors (a connection closing ends it sooner). Default 1 s.</summary>
    public TimeSpan AcceptBackoffMax { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// A bound TCP endpoint: the accept loop and the per-connection pipelines (a tracked Task each, not
/// a thread). Lifecycle: <see cref="Bind"/>, <see cref="Start"/>, <see cref="Unbind"/> (stop
/// accepting; new connections are refused by the kernel), <see cref="DrainAsync"/> (in-flight
/// connections finish), <see cref="AbortAll"/> (the rest are closed).
/// </summary>
public sealed partial class TcpServer : IAsyncDisposable
{
    private static long s_nextConnectionId;
    private readonly Socket _listenSocket;
    private readonly TcpServerOptions _options;
    private readonly ILogger _logger;
    private readonly GracefulShutdown _shutdown = new();
    private readonly ConcurrentDictionary<long, SocketConnection> _connections = new();
    private readonly Metrics.ListenerMetrics _metrics;
    private Task _acceptLoop = Task.CompletedTask;
    private int _unbound;

    private TcpServer(Socket listenSocket, TcpServerOptions options, ILogger logger)
    {
        _listenSocket = listenSocket;
        _options = options;
        _logger = logger;
        LocalEndPoint = (IPEndPoint)listenSocket.LocalEndPoint!;
        _metrics = new Metrics.ListenerMetrics(options.Name, LocalEndPoint);
    }

    /// <summary>The bound address (with the real port when 0 was asked for).</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Connections accepted and not yet closed.</summary>
    public int OpenConnections => _shutdown.ActiveGuards;

    public long AcceptedConnections { get; private set; }

    public bool IsBound => Volatile.Read(ref _unbound) == 0;

    // Set once the listening socket is closed (after the queued clients were taken): the accept loop ends.
    private volatile bool _listenClosed;

    /// <summary>
    /// How this listener's connections move their bytes, chosen once at <see cref="Start"/>: <see cref="ConnectionTransport.EventLoop"/>
    /// for an <see cref="ISocketTransportService"/> (its connections arrive with the socket not started), else the pipes.
    /// </summary>
    public ConnectionTransport Transport { get; private set; }

    /// <summary>Binds and listens; throws <see cref="SocketException"/> when the address is in use or not local.</summary>
    public static TcpServer Bind(IPEndPoint endPoint, TcpServerOptions? options = null, ILogger? logger = null)
    {
        options ??= new TcpServerOptions();
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endPoint.AddressFamily == AddressFamily.InterNetworkV6 && endPoint.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            AllowRebindOverTimeWait(socket);
            socket.Bind(endPoint);
            socket.Listen(options.Backlog);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new TcpServer(socket, options, logger ?? NullLogger.Instance);
    }

    /// <summary>
    /// Lets a restarted listener bind a port that still has TIME_WAIT connections, without letting a second process
    /// listen on it. .NET's <c>ReuseAddress</c> sets SO_REUSEPORT too on Linux, and two processes then share the port
    /// (each gets a part of the connections), so on Unix SO_REUSEADDR alone is set, as Kestrel does; on Windows
    /// SO_REUSEADDR means port stealing, so nothing is set there (its default already rebinds over TIME_WAIT).
    /// </summary>
    private static void AllowRebindOverTimeWait(Socket socket)
    {
        // SOL_SOCKET / SO_REUSEADDR: 1 / 2 on Linux, 0xffff / 4 on the BSDs and macOS.
        if (OperatingSystem.IsLinux())
        {
            socket.SetRawSocketOption(1, 2, BitConverter.GetBytes(1));
        }
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD())
        {
            socket.SetRawSocketOption(0xffff, 4, BitConverter.GetBytes(1));
        }
    }

    /// <summary>Starts accepting; each connection runs <paramref name="service"/> then is closed gracefully.</summary>
    public void Start(IService<ConnectionContext, Unit> service)
    {
        Transport = service is ISocketTransportService ? ConnectionTransport.EventLoop : ConnectionTransport.Pipes;
        _acceptLoop = AcceptLoopAsync(service);
    }

    private async Task AcceptLoopAsync(IService<ConnectionContext, Unit> service)
    {
        var pause = new AcceptPause(this);
        while (true)
        {
            Socket socket;
            try
            {
                socket = await _listenSocket.AcceptAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.OperationAborted or SocketError.Interrupted || _listenClosed)
            {
                return;
            }
            catch (SocketException ex) when (AcceptPause.IsOutOfResources(ex.SocketErrorCode))
            {
                // EMFILE/ENFILE (or out of buffers): the client stays queued; pause instead of spinning on it.
                await pause.WaitAsync(ex.SocketErrorCode).ConfigureAwait(false);
                continue;
            }
            catch (SocketException ex)
            {
                // ECONNABORTED and friends: a client gave up while queued; keep accepting.
                LogAcceptError(_logger, LocalEndPoint.ToString(), ex.SocketErrorCode);
                continue;
            }

            // Accepted as the listener was unbound: the client's handshake is done and its request may be on the way, so it
            // is served like any connection in flight (told to finish by the shutdown), not reset.
            AcceptedConnections++;
            if (OverLimit(socket, out var client, out var shortOfDescriptors))
            {
                if (shortOfDescriptors)
                {
                    await pause.ShortAsync().ConfigureAwait(false);
                }

                continue;
            }

            pause.Resumed();

            socket.NoDelay = _options.NoDelay;
            var guard = _shutdown.Guard();
            _ = RunConnectionAsync(socket, service, guard, client);
            if (_listenClosed)
            {
                return;
            }
        }
    }

    private async Task RunConnectionAsync(Socket socket, IService<ConnectionContext, Unit> service, ShutdownGuard guard, IPAddress? client)
    {
        await Task.Yield(); // keep the accept loop accepting
        var id = Interlocked.Increment(ref s_nextConnectionId);
        var connection = new SocketConnection(socket, _options.Connection);
        socket = null!; // the connection owns it (and may hand it over): this frame, which lasts as long, keeps no reference
        _connections[id] = connection;
        var acceptedAt = _metrics.Accepted();
        try
        {
            var transport = Transport;
            if (transport == ConnectionTransport.Pipes)
            {
                connection.Start();
            }

            var context = new ConnectionContext(id, connection, _shutdown.ShutdownRequested, transport) { RemoteEndPoint = connection.RemoteEndPoint, Listener = _metrics };
            LogConnectionOpened(_logger, id, connection.RemoteEndPoint?.ToString() ?? "?", LocalEndPoint.ToString());
            await service.ServeAsync(context, connection.ConnectionClosed).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            connection.TrySetCloseReason("cancelled");
        }
        catch (IOException ex)
        {
            connection.TrySetCloseReason("io error: " + ex.Message);
        }
        catch (Exception ex)
        {
            connection.TrySetCloseReason("pipeline fault: " + ex.GetType().Name);
            LogPipelineFault(_logger, ex, id);
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            _connections.TryRemove(id, out _);
            _metrics.Closed(acceptedAt);
            LogConnectionClosed(_logger, id, connection.CloseReason ?? "closed");
            guard.Dispose();
            ConnectionEnded(client);
        }
    }

    /// <summary>Stops accepting and closes the listening socket. Connections in flight continue; they are told to finish via <see cref="ConnectionContext.ShutdownRequested"/>.</summary>
    public async Task UnbindAsync()
    {
        if (Interlocked.Exchange(ref _unbound, 1) != 0)
        {
            return;
        }

        _shutdown.RequestShutdown();
        await TakeQueuedClientsAsync().ConfigureAwait(false);
        _listenClosed = true;
        _listenSocket.Dispose();
        WakeAcceptLoop();
        await _acceptLoop.ConfigureAwait(false);
        LogUnbound(_logger, LocalEndPoint.ToString(), OpenConnections);
    }

    // Clients whose handshake the kernel has completed but that the accept loop has not taken yet sit in the listen
    // queue; closing the listening socket resets them, and a client that already sent its request sees it fail (a loaded
    // node drained by a roll lost one request in ~700 this way). So the accept loop (still running, its connections told
    // to finish) takes them first: the listening socket polls readable while any is queued. Bounded: a listener that is
    // paused (short of descriptors) or keeps receiving new clients is closed after QueuedClientsWait anyway.
    private async Task TakeQueuedClientsAsync()
    {
        var started = Stopwatch.GetTimestamp();
        while (Stopwatch.GetElapsedTime(started) < QueuedClientsWait)
        {
            bool queued;
            try
            {
                queued = _listenSocket.Poll(0, SelectMode.SelectRead);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

            if (!queued || _acceptLoop.IsCompleted)
            {
                return;
            }

            await Task.Delay(QueuedClientsPoll).ConfigureAwait(false);
        }
    }

    private static readonly TimeSpan QueuedClientsWait = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan QueuedClientsPoll = TimeSpan.FromMilliseconds(2);

    /// <summary>Waits for in-flight connections; true if all finished within <paramref name="timeout"/>.</summary>
    public Task<bool> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _shutdown.WaitForIdleAsync(timeout, cancellationToken);

    /// <summary>Closes every open connection at once; returns how many were open.</summary>
    public int AbortAll(string reason)
    {
        var count = 0;
        foreach (var (_, connection) in _connections)
        {
            connection.Abort(reason);
            count++;
        }

        return count;
    }

    public async ValueTask DisposeAsync()
    {
        await UnbindAsync().ConfigureAwait(false);
        AbortAll("server disposed");
        await _shutdown.WaitForIdleAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        _shutdown.Dispose();
    }

    [LoggerMessage(EventId = 1000, Level = LogLevel.Debug, Message = "Connection {ConnectionId} from {Remote} on {Local}")]
    private static partial void LogConnectionOpened(ILogger logger, long connectionId, string remote, string local);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Debug, Message = "Connection {ConnectionId} closed: {Reason}")]
    private static partial void LogConnectionClosed(ILogger logger, long connectionId, string reason);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Connection {ConnectionId}: pipeline fault")]
    private static partial void LogPipelineFault(ILogger logger, Exception exception, long connectionId);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Warning, Message = "Accept on {Local} failed: {Error}")]
    private static partial void LogAcceptError(ILogger logger, string local, SocketError error);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Information, Message = "Unbound {Local}; {Open} connections in flight")]
    private static partial void LogUnbound(ILogger logger, string local, int open);
}
