using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Epoll;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Http;

/// <summary>
/// The reverse proxy on the Linux epoll transport: each client connection is a state machine run on one
/// event-loop thread (<see cref="EpollLoop"/>), with its upstream connections on the same loop and a
/// per-loop idle pool, so a keep-alive request costs one receive and one send on each side and no
/// thread hop, pipe or async state machine (the reason haproxy and nginx are fast). Same rules as the
/// pipe-based reverse proxy (<see cref="ReverseProxyService"/> over <see cref="Http1Server"/>): hop-by-hop
/// fields removed (RFC 9110 §7.6.1), Via added (§7.6.3), Content-Length normalised, the client's Host kept,
/// the same limits and timeouts, the same parser. What it does not run itself it hands, at a request
/// boundary and with the bytes already read, to that pipe-based stack: HTTP/1.0 clients, chunked request
/// bodies, <c>Expect</c>, targets other than origin-form (CONNECT's 405, absolute-form, <c>*</c>), and
/// heads the parser rejects (so 400/414/431/505 are answered by the one server that answers them).
/// </summary>
internal sealed partial class EpollReverseProxy : ISocketTransportService, IAsyncDisposable
{
    private readonly IService<ConnectionContext, Unit> _classic;
    private readonly HttpProxyOptions _options;
    private readonly HttpLimits _limits;
    private readonly HostPort _upstream;
    private readonly TcpConnectorOptions _connector;
    private readonly IDnsResolver _dns;
    private readonly byte[]? _via;
    private readonly ILogger _logger;
    private readonly IAccessLog _accessLog;
    private readonly LoopState[] _loops;
    private readonly int _maxIdlePerLoop;
    private readonly int _maxHeadBuffer;
    private readonly IPAddress[]? _literalAddresses;
    private readonly LoopClock _clock;
    private int _disposed;

    public EpollReverseProxy(IService<ConnectionContext, Unit> classic, HttpProxyOptions options, HostPort upstream, TcpConnectorOptions connector,
        IDnsResolver dns, ILoggerFactory loggerFactory, IAccessLog? accessLog = null, TimeProvider? time = null)
    {
        _clock = LoopClock.For(time);
        _literalAddresses = IPAddress.TryParse(upstream.Host, out var literal) ? [literal] : null;
        _classic = classic;
        _options = options;
        _limits = options.Limits;
        _upstream = upstream;
        _connector = connector;
        _dns = dns;
        _via = HttpForwardRules.ViaBytes(options.Via);
        _logger = loggerFactory.CreateLogger("Rama.Proxy.Http.ReverseProxy");
        _accessLog = accessLog ?? AccessLogs.ToLogger(loggerFactory);
        var loops = EpollLoop.Shared;
        _maxIdlePerLoop = Math.Max(1, (options.MaxIdleConnectionsPerTarget + loops.Length - 1) / loops.Length); // before the loops' partitions
        _loops = new LoopState[loops.Length];
        for (var i = 0; i < loops.Length; i++)
        {
            var state = new LoopState(this, loops[i]);
            _loops[i] = state;
            loops[i].Post(static s => ((LoopState)s!).Attach(), state);
        }

        // The largest head the parser accepts, plus room for the start of a body: a fuller buffer is a rejection.
        _maxHeadBuffer = _limits.MaxRequestLineBytes + _limits.MaxHeaderBytes + 4096;
    }

    /// <summary>Whether this machine runs the epoll transport (Linux x86-64).</summary>
    public static bool IsSupported => EpollNative.IsSupported;

    public async ValueTask<Unit> ServeAsync(ConnectionContext context, CancellationToken cancellationToken)
    {
        if (context.TransportKind != ConnectionTransport.EventLoop || Volatile.Read(ref _disposed) != 0 || ProxyTracing.IsEnabled)
        {
            // A listener on the pipes, a layer over the socket, shutting down, or traced (spans and traceparent are the pipe
            // stack's): the pipe-based stack.
            context.StartPipes();
            return await _classic.ServeAsync(context, cancellationToken).ConfigureAwait(false);
        }

        var loop = EpollLoop.Next();
        var connection = new ClientConnection(this, _loops[loop.Index], context, cancellationToken);
        loop.Post(static s => ((ClientConnection)s!).Start(), connection, connection);
        await connection.Completion.ConfigureAwait(false);
        return Unit.Value;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var closed = new List<Task>();
        foreach (var state in _loops)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            state.Loop.Post(static s =>
            {
                var (loopState, tcs) = ((LoopState, TaskCompletionSource))s!;
                loopState.CloseIdle();
                tcs.TrySetResult();
            }, (state, done));
            closed.Add(done.Task);
        }

        await Task.WhenAll(closed).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        if (_classic is IAsyncDisposable disposable)
        {
            await disposable.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Milliseconds of the stack's clock (<see cref="LoopClock"/>), on which the deadlines and the idle pool run.</summary>
    private long NowMs => _clock.NowMs;

    /// <summary>Per-loop state: the connections on it (for timeouts) and its idle upstream connections. Loop thread only.</summary>
    private sealed class LoopState(EpollReverseProxy owner, EpollLoop loop) : IEpollTicker
    {
        public EpollLoop Loop { get; } = loop;

        public EpollReverseProxy Owner { get; } = owner;

        public List<ClientConnection> Connections { get; } = [];

        /// <summary>This loop's partition of the idle upstream connections (the pool's rules: <see cref="IdleConnections{TConnection}"/>), touched by its thread only.</summary>
        public IdleConnections<OriginConnection> Idle { get; } = new(owner._maxIdlePerLoop);

        // Scratch list of the connections a sweep or shutdown closes (loop thread only, reused).
        private readonly List<OriginConnection> _closing = [];

        public void Attach() => Loop.AddTicker(this);

        public void Add(ClientConnection connection)
        {
            connection.ListIndex = Connections.Count;
            Connections.Add(connection);
        }

        public void Remove(ClientConnection connection)
        {
            var index = connection.ListIndex;
            if (index < 0)
            {
                return;
            }

            var last = Connections[^1];
            Connections[index] = last;
            last.ListIndex = index;
            Connections.RemoveAt(Connections.Count - 1);
            connection.ListIndex = -1;
        }

        public OriginConnection? TakeIdle()
        {
            while (Idle.TryTakeNewest(out var origin, out _))
            {
                if (!origin.PeerClosed)
                {
                    return origin;
                }

                origin.Close();
            }

            return null;
        }

        public void ReturnIdle(OriginConnection origin)
        {
            if (Volatile.Read(ref Owner._disposed) != 0 || origin.PeerClosed)
            {
                origin.Close();
                return;
            }

            origin.Owner = null;
            if (!Idle.TryAdd(origin, Owner.NowMs))
            {
                origin.Close(); // this loop's partition is full
            }
        }

        public void RemoveIdle(OriginConnection origin) => Idle.Remove(origin);

        public void CloseIdle()
        {
            Idle.Clear(_closing);
            CloseAll();
        }

        public void OnTick(long loopNowMs)
        {
            var nowMs = Owner.NowMs; // the proxy's clock, not the loop's
            for (var i = Connections.Count - 1; i >= 0; i--)
            {
                if (i < Connections.Count)
                {
                    Connections[i].OnTick(nowMs);
                }
            }

            Idle.RemoveWhere((Now: nowMs, Limit: (long)Owner._options.PooledConnectionIdleTimeout.TotalMilliseconds),
                static (clock, _, since) => clock.Now - since >= clock.Limit, _closing);
            CloseAll();
        }

        private void CloseAll()
        {
            foreach (var origin in _closing)
            {
                origin.Close();
            }

            _closing.Clear();
        }
    }

    /// <summary>One upstream connection: its socket, readiness flags and the client exchange using it (null while pooled). Loop thread only.</summary>
    private sealed class OriginConnection(LoopState loop, Socket socket) : IEpollHandler
    {
        private EpollLoop.Registration _registration;
        private bool _registered;

        public Socket Socket { get; } = socket;

        public ClientConnection? Owner { get; set; }

        public bool Readable { get; set; }

        public bool Writable { get; set; }

        /// <summary>The origin closed its side, reset, or sent bytes while idle: never reused.</summary>
        public bool PeerClosed { get; private set; }

        /// <summary>A short read drained the socket, unless the origin closed: then the next read returns the end of file that no further edge announces.</summary>
        public void ShortRead()
        {
            if (!PeerClosed)
            {
                Readable = false;
            }
        }

        public void Register()
        {
            _registration = loop.Loop.Register(Socket, this);
            _registered = true;
        }

        public void OnEvents(uint events)
        {
            if ((events & (EpollNative.EpollIn | EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            {
                Readable = true;
            }

            if ((events & (EpollNative.EpollOut | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            {
                Writable = true;
            }

            if ((events & (EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            {
                PeerClosed = true;
            }

            if (Owner is { } owner)
            {
                owner.Pump();
            }
            else if (Readable)
            {
                // Idle and the origin spoke or closed: an idle connection has nothing to say, so it is not reused.
                loop.RemoveIdle(this);
                Close();
            }
        }

        public void OnFault(Exception exception)
        {
            if (Owner is { } owner)
            {
                owner.OnFault(exception);
            }
            else
            {
                loop.RemoveIdle(this);
                Close();
            }
        }

        public void Close()
        {
            Owner = null;
            if (_registered)
            {
                _registered = false;
                loop.Loop.Unregister(_registration);
            }

            Socket.Dispose();
        }
    }
}
