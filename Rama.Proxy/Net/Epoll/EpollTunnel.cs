using System.Buffers;
using System.Net.Sockets;
using static Rama.Proxy.Net.Epoll.EpollNative;

namespace Rama.Proxy.Net.Epoll;

/// <summary>
/// A CONNECT or SOCKS5 tunnel on an <see cref="EpollLoop"/>: both sockets, taken over from their pipes
/// (<see cref="SocketConnection.DetachAsync"/>), relayed by one state machine on one loop, with what
/// <see cref="Relay"/> guarantees: bytes the pipes had received go first, each direction holds at most one
/// 64 KiB buffer and only while bytes are in flight (an idle tunnel holds none), a FIN is passed on as a
/// half-close while the other direction keeps running, a reset is passed on as a reset, and a tunnel in which
/// no byte moves for the idle timeout gets a FIN both ways. Cancellation (drain, shutdown) and an abort of
/// either connection end it the same way.
/// </summary>
internal sealed class EpollTunnel
{
    private const int BufferSize = 64 * 1024;
    private const int StepBudget = 256;

    // Each loop's tunnels, for its idle tick; made on the first tunnel (not at type load: that would start the loops).
    private static LoopTunnels?[]? s_loops;

    private readonly EpollLoop _loop;
    private readonly Side _client;
    private readonly Side _target;
    private readonly Direction _up;
    private readonly Direction _down;
    private readonly long _idleMs;
    private readonly LoopClock _clock;
    private readonly TaskCompletionSource<RelayResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _lastActivityMs;
    private bool _finished;
    private bool _pumping;

    private EpollTunnel(EpollLoop loop, Socket client, Socket target, TimeSpan idleTimeout, LoopClock clock)
    {
        _loop = loop;
        _clock = clock;
        _client = new Side(this, client);
        _target = new Side(this, target);
        _up = new Direction(_client, _target);
        _down = new Direction(_target, _client);
        _idleMs = idleTimeout == Timeout.InfiniteTimeSpan ? long.MaxValue : (long)idleTimeout.TotalMilliseconds;
    }

    /// <summary>Whether tunnels can run on the event loops here (Linux on x86-64, as the reverse proxy's transport).</summary>
    public static bool IsSupported => EpollNative.IsSupported;

    /// <summary>
    /// Relays <paramref name="client"/> and <paramref name="target"/> on a loop until both directions end. Both connections
    /// are detached from their pipes first; the caller disposes them afterwards, as after <see cref="Relay.RunAsync"/>.
    /// </summary>
    /// <param name="time">The stack's clock, on which the idle timeout runs (null: the system's).</param>
    public static async Task<RelayResult> RunAsync(SocketConnection client, SocketConnection target, TimeSpan idleTimeout, CancellationToken cancellationToken,
        TimeProvider? time = null)
    {
        var fromClient = await client.DetachAsync().ConfigureAwait(false);
        var fromTarget = await target.DetachAsync().ConfigureAwait(false);
        var tunnel = new EpollTunnel(EpollLoop.Next(), client.Socket, target.Socket, idleTimeout, LoopClock.For(time));
        tunnel._up.Prime(fromClient);
        tunnel._down.Prime(fromTarget);

        // Whatever ends the connections elsewhere (drain timeout, an abort, shutdown) ends the tunnel on its loop.
        static void Stop(object? state) => ((EpollTunnel)state!).PostStop();
        await using var onCancel = cancellationToken.UnsafeRegister(Stop, tunnel).ConfigureAwait(false);
        await using var onClientClosed = client.ConnectionClosed.UnsafeRegister(Stop, tunnel).ConfigureAwait(false);
        await using var onTargetClosed = target.ConnectionClosed.UnsafeRegister(Stop, tunnel).ConfigureAwait(false);
        tunnel._loop.Post(static s => ((EpollTunnel)s!).Start(), tunnel, tunnel._client);
        return await tunnel._done.Task.ConfigureAwait(false);
    }

    // ---- on the loop thread -------------------------------------------------------------------------

    private void Start()
    {
        var loops = LazyInitializer.EnsureInitialized(ref s_loops, static () => new LoopTunnels?[EpollLoop.Shared.Length]);
        var tunnels = loops[_loop.Index]; // this loop's slot: only its own thread writes it
        if (tunnels is null)
        {
            tunnels = loops[_loop.Index] = new LoopTunnels();
            _loop.AddTicker(tunnels);
        }

        _lastActivityMs = _clock.NowMs;
        try
        {
            EpollLoop.LeaveOtherEpollSets(_client.Socket);
            EpollLoop.LeaveOtherEpollSets(_target.Socket);
            _client.Registration = _loop.Register(_client.Socket, _client);
            _target.Registration = _loop.Register(_target.Socket, _target);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // A socket closed before the loop got it (an abort racing the hand-over): nothing can be relayed.
            Finish(idleTimedOut: false, reset: true);
            return;
        }

        tunnels.Add(this);
        Pump();
    }

    private void PostStop() => _loop.Post(static s => ((EpollTunnel)s!).Stop(), this, _client);

    private void Stop() => End(idleTimedOut: false);

    // Cancelled, or idle for the timeout: as the pipe relay, both sides get FIN.
    private void End(bool idleTimedOut)
    {
        if (!_finished)
        {
            _up.SendFin();
            _down.SendFin();
            Finish(idleTimedOut, reset: false);
        }
    }

    private void Pump()
    {
        if (_finished || _pumping)
        {
            return;
        }

        _pumping = true;
        try
        {
            var budget = StepBudget;
            var more = _up.Step(ref budget) | _down.Step(ref budget);
            if (_finished)
            {
                return;
            }

            if (_up.Done && _down.Done)
            {
                Finish(idleTimedOut: false, reset: false);
            }
            else if (more)
            {
                // Budget spent with work left: let the loop's other connections run, then carry on.
                _loop.Post(static s => ((EpollTunnel)s!).Pump(), this, _client);
            }
        }
        finally
        {
            _pumping = false;
        }
    }

    private void Touch() => _lastActivityMs = _clock.NowMs;

    // A reset read from one side goes on as a reset to the other (RST, not a FIN it would take for a clean end).
    private void PassReset() => Finish(idleTimedOut: false, reset: true);

    private void Finish(bool idleTimedOut, bool reset)
    {
        if (_finished)
        {
            return;
        }

        _finished = true;
        s_loops?[_loop.Index]?.Remove(this);
        _client.Unregister(_loop);
        _target.Unregister(_loop);
        _up.ReturnBuffer();
        _down.ReturnBuffer();
        if (reset)
        {
            SetLingerZero(_client.Socket);
            SetLingerZero(_target.Socket);
        }

        _done.TrySetResult(new RelayResult(_up.Total, _down.Total) { IdleTimedOut = idleTimedOut });
    }

    private static void SetLingerZero(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    /// <summary>One socket of the tunnel: its readiness as the loop reported it.</summary>
    private sealed class Side(EpollTunnel tunnel, Socket socket) : IEpollHandler
    {
        public EpollTunnel Tunnel { get; } = tunnel;

        public Socket Socket { get; } = socket;

        public EpollLoop.Registration? Registration { get; set; }

        public bool Readable { get; set; } = true;

        public bool Writable { get; set; } = true;

        /// <summary>The peer's FIN or a hang-up was reported: a short read no longer means "drained".</summary>
        public bool PeerHup { get; set; }

        public void OnEvents(uint events)
        {
            if ((events & (EpollIn | EpollRdHup | EpollHup | EpollErr)) != 0)
            {
                Readable = true;
            }

            if ((events & (EpollRdHup | EpollHup | EpollErr)) != 0)
            {
                PeerHup = true;
            }

            if ((events & (EpollOut | EpollHup | EpollErr)) != 0)
            {
                Writable = true;
            }

            Tunnel.Pump();
        }

        public void OnFault(Exception exception) => Tunnel.PassReset();

        public void Unregister(EpollLoop loop)
        {
            if (Registration is { } registration)
            {
                Registration = null;
                loop.Unregister(registration);
            }
        }
    }

    /// <summary>One direction: bytes read from <see cref="_from"/> and not yet written to <see cref="_to"/>.</summary>
    private sealed class Direction(Side from, Side to)
    {
        private readonly Side _from = from;
        private readonly Side _to = to;
        private byte[]? _buffer;
        private int _start;
        private int _end;
        private bool _sourceEnded;
        private bool _sourceReset;
        private bool _finSent;

        public long Total { get; private set; }

        /// <summary>The source ended and everything read from it was written, FIN included.</summary>
        public bool Done => _finSent;

        private EpollTunnel Tunnel => _from.Tunnel;

        /// <summary>What the source's pipe had received and not handed on, and how its input had ended.</summary>
        public void Prime(DetachedSocket detached)
        {
            _sourceEnded = detached.InputEnded || detached.InputReset;
            _sourceReset = detached.InputReset;
            if (detached.Pending.Length > 0)
            {
                _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(BufferSize, detached.Pending.Length));
                detached.Pending.CopyTo(_buffer, 0);
                _end = detached.Pending.Length;
            }
        }

        /// <summary>Moves bytes until the source is drained or the destination full; true when the budget ran out first.</summary>
        public bool Step(ref int budget)
        {
            while (budget-- > 0)
            {
                if (Tunnel._finished)
                {
                    return false;
                }

                if (_end > _start)
                {
                    if (!_to.Writable)
                    {
                        return false;
                    }

                    var sent = _to.Socket.Send(_buffer.AsSpan(_start, _end - _start), SocketFlags.None, out var sendError);
                    if (sendError == SocketError.WouldBlock)
                    {
                        _to.Writable = false;
                        return false;
                    }

                    if (sendError != SocketError.Success)
                    {
                        Tunnel.PassReset(); // the destination reset: so is the source, as the pipe relay does
                        return false;
                    }

                    _start += sent;
                    Total += sent;
                    Tunnel.Touch();
                    if (_start == _end)
                    {
                        _start = _end = 0;
                    }

                    continue;
                }

                if (_sourceEnded)
                {
                    if (_sourceReset)
                    {
                        Tunnel.PassReset();
                        return false;
                    }

                    SendFin();
                    return false;
                }

                if (!_from.Readable)
                {
                    ReturnBuffer(); // drained: an idle direction holds no buffer
                    return false;
                }

                _buffer ??= ArrayPool<byte>.Shared.Rent(BufferSize);
                var read = _from.Socket.Receive(_buffer, SocketFlags.None, out var receiveError);
                if (receiveError == SocketError.WouldBlock)
                {
                    _from.Readable = false;
                    ReturnBuffer();
                    return false;
                }

                if (receiveError != SocketError.Success)
                {
                    _sourceEnded = _sourceReset = true; // what was read before the reset is already on its way
                    continue;
                }

                if (read == 0)
                {
                    _sourceEnded = true;
                    continue;
                }

                // A read short of the buffer drained the socket, unless the peer's FIN came with it (then read on to see it).
                if (read < _buffer.Length && !_from.PeerHup)
                {
                    _from.Readable = false;
                }

                _start = 0;
                _end = read;
                Tunnel.Touch();
            }

            return true;
        }

        /// <summary>Half-close: the destination learns the source is done. Once.</summary>
        public void SendFin()
        {
            if (_finSent)
            {
                return;
            }

            _finSent = true;
            ReturnBuffer();
            try
            {
                _to.Socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Already gone: nothing to tell it.
            }
        }

        /// <summary>Gives the buffer back to the pool when it holds nothing still to send, or when the tunnel is over.</summary>
        public void ReturnBuffer()
        {
            if (_buffer is not null && (_end == _start || Tunnel._finished))
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = null;
                _start = _end = 0;
            }
        }
    }

    /// <summary>The tunnels of one loop, for its idle-timeout tick.</summary>
    private sealed class LoopTunnels : IEpollTicker
    {
        private readonly HashSet<EpollTunnel> _tunnels = [];
        private readonly List<EpollTunnel> _due = [];

        public void Add(EpollTunnel tunnel) => _tunnels.Add(tunnel);

        public void Remove(EpollTunnel tunnel) => _tunnels.Remove(tunnel);

        public void OnTick(long loopNowMs)
        {
            _due.Clear();
            foreach (var tunnel in _tunnels)
            {
                if (tunnel._clock.NowMs - tunnel._lastActivityMs >= tunnel._idleMs) // each tunnel's stack's clock
                {
                    _due.Add(tunnel);
                }
            }

            foreach (var tunnel in _due)
            {
                tunnel.End(idleTimedOut: true);
            }

            _due.Clear();
        }
    }
}
