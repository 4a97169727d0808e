using System.Buffers;
using System.Runtime.InteropServices;
using static Rama.Proxy.Net.Epoll.EpollNative;

namespace Rama.Proxy.Net.Epoll;

/// <summary>
/// A CONNECT or SOCKS5 tunnel on an <see cref="EpollLoop"/>: both sockets, taken over from their pipes
/// (<see cref="SocketConnection.DetachAsync"/>), relayed by one state machine on one loop, with what
/// <see cref="Relay"/> guarantees: bytes the pipes had received go first, each direction holds at most one
/// 64 KiB buffer and only while bytes are in flight (an idle tunnel holds none), a FIN is passed on as a
/// half-close while the other direction keeps running, a reset is passed on as a reset, and a tunnel in which
/// no byte moves for the idle timeout gets a FIN both ways. Cancellation (drain, shutdown) ends it the same way; an
/// abort of either connection resets that side (as <see cref="SocketConnection.Abort"/> does) and sends FIN to the other.
/// <para>
/// Idle cost: once on its loop, a tunnel is this record, its two sides and two directions (~0.4 KB) and the two kernel
/// sockets. Each side is a bare descriptor, a <c>dup</c> of the accepted or dialled socket's: the connections release
/// their <see cref="System.Net.Sockets.Socket"/> objects (and the socket engine's context and cached event args with
/// them) and their pipes (<see cref="SocketConnection.ReleaseDetached"/>), and no async frame of the hand-over stays
/// behind. The tunnel closes both descriptors itself when it finishes.
/// </para>
/// </summary>
internal sealed partial class EpollTunnel
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
    private readonly TaskCompletionSource<RelayResult> _done;
    private readonly CancellationToken _cancel;
    private readonly CancellationToken _clientClosed;
    private readonly CancellationToken _targetClosed;
    private CancellationTokenRegistration _onCancel;
    private CancellationTokenRegistration _onClientClosed;
    private CancellationTokenRegistration _onTargetClosed;
    private long _lastActivityMs;
    private bool _finished;
    private bool _pumping;

    private EpollTunnel(EpollLoop loop, int clientFd, int targetFd, TimeSpan idleTimeout, LoopClock clock, TaskCompletionSource<RelayResult> done,
        CancellationToken cancel, CancellationToken clientClosed, CancellationToken targetClosed)
    {
        _loop = loop;
        _done = done;
        _clock = clock;
        _client = new Side(this, clientFd);
        _target = new Side(this, targetFd);
        _up = new Direction(_client, _target);
        _down = new Direction(_target, _client);
        _idleMs = idleTimeout == Timeout.InfiniteTimeSpan ? long.MaxValue : (long)idleTimeout.TotalMilliseconds;
        _cancel = cancel;
        _clientClosed = clientClosed;
        _targetClosed = targetClosed;
    }

    /// <summary>Whether tunnels can run on the event loops here (Linux on x86-64, as the reverse proxy's transport).</summary>
    public static bool IsSupported => EpollNative.IsSupported;

    /// <summary>
    /// Relays <paramref name="client"/> and <paramref name="target"/> on a loop until both directions end. Both connections
    /// are detached from their pipes first; the caller disposes them afterwards, as after <see cref="Relay.RunAsync"/>.
    /// </summary>
    /// <param name="time">The stack's clock, on which the idle timeout runs (null: the system's).</param>
    public static Task<RelayResult> RunAsync(SocketConnection client, SocketConnection target, TimeSpan idleTimeout, CancellationToken cancellationToken,
        TimeProvider? time = null)
    {
        var done = new TaskCompletionSource<RelayResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = HandOverAsync(client, target, idleTimeout, cancellationToken, time, done);
        return done.Task;
    }

    // The hand-over: its frame ends once the tunnel is posted to its loop, so an idle tunnel keeps none of it (the caller
    // awaits only the tunnel's own task).
    private static async Task HandOverAsync(SocketConnection client, SocketConnection target, TimeSpan idleTimeout,
        CancellationToken cancellationToken, TimeProvider? time, TaskCompletionSource<RelayResult> done)
    {
        try
        {
            var fromClient = await client.DetachAsync().ConfigureAwait(false);
            var fromTarget = await target.DetachAsync().ConfigureAwait(false);
            var clientFd = TakeOver(client);
            var targetFd = TakeOver(target);
            if (clientFd < 0 || targetFd < 0)
            {
                // A socket closed before the tunnel got it (an abort racing the hand-over): nothing can be relayed.
                CloseDescriptor(clientFd, reset: true);
                CloseDescriptor(targetFd, reset: true);
                done.TrySetResult(new RelayResult(0, 0));
                return;
            }

            var tunnel = new EpollTunnel(EpollLoop.Next(), clientFd, targetFd, idleTimeout, LoopClock.For(time), done,
                cancellationToken, client.ConnectionClosed, target.ConnectionClosed);
            tunnel._up.Prime(fromClient);
            tunnel._down.Prime(fromTarget);
            tunnel._loop.Post(static s => ((EpollTunnel)s!).Start(), tunnel, tunnel._client);
        }
        catch (Exception ex)
        {
            done.TrySetException(ex); // as the awaited hand-over would have thrown it
        }
    }

    /// <summary>
    /// A descriptor of the tunnel's own for <paramref name="connection"/>'s socket (a <c>dup</c>), then the connection's
    /// <see cref="System.Net.Sockets.Socket"/> and pipes are released; -1 when the socket was already closed.
    /// </summary>
    private static int TakeOver(SocketConnection connection)
    {
        var socket = connection.Socket;
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added); // an abort on another thread cannot close (and reuse) the number meanwhile
            // Out of the runtime's epoll set first: a registration there belongs to the open socket, not to the number,
            // and could no longer be removed once this number is closed.
            EpollLoop.LeaveOtherEpollSets(socket);
            var fd = Fcntl((int)handle.DangerousGetHandle(), FDupFdCloexec, 0);
            if (fd < 0)
            {
                return -1;
            }

            handle.DangerousRelease();
            added = false;
            connection.ReleaseDetached();
            return fd;
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    // ---- on the loop thread -------------------------------------------------------------------------

    private void Start()
    {
        if (_finished)
        {
            return; // stopped before it started (already cancelled when the hand-over began)
        }

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
            _client.Registration = _loop.Register(_client.Fd, _client);
            _target.Registration = _loop.Register(_target.Fd, _target);
        }
        catch (System.Net.Sockets.SocketException)
        {
            Finish(idleTimedOut: false, reset: true);
            return;
        }

        // Whatever ends the connections elsewhere (drain timeout, an abort, shutdown) ends the tunnel on its loop. Registered
        // here, on the loop, so that Finish (also here) disposes exactly what was registered; a token already cancelled
        // runs its callback at once, which only posts the stop.
        static void OnStop(object? state) => ((EpollTunnel)state!).PostStop();
        if (_cancel != _clientClosed && _cancel != _targetClosed) // often the client connection's own token: once is enough
        {
            _onCancel = _cancel.UnsafeRegister(OnStop, this);
        }

        _onClientClosed = _clientClosed.UnsafeRegister(OnStop, this);
        _onTargetClosed = _targetClosed.UnsafeRegister(OnStop, this);
        tunnels.Add(this);
        Pump();
    }

    private void PostStop() => _loop.Post(static s => ((EpollTunnel)s!).Stop(), this, _client);

    // An aborted connection is reset (SocketConnection.Abort's promise; its own descriptor is gone, this one is the socket),
    // the other side gets FIN; plain cancellation (drain, shutdown) sends FIN both ways.
    private void Stop()
    {
        _client.Aborted |= _clientClosed.IsCancellationRequested;
        _target.Aborted |= _targetClosed.IsCancellationRequested;
        End(idleTimedOut: false);
    }

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
        _onCancel.Dispose();
        _onClientClosed.Dispose();
        _onTargetClosed.Dispose();
        _client.Unregister(_loop);
        _target.Unregister(_loop);
        _up.ReturnBuffer();
        _down.ReturnBuffer();
        _client.Close(reset || _client.Aborted);
        _target.Close(reset || _target.Aborted);
        _done.TrySetResult(new RelayResult(_up.Total, _down.Total) { IdleTimedOut = idleTimedOut });
    }

    // A reset closes with SO_LINGER 0 (RST), as Socket.LingerState = (true, 0) then Dispose did.
    private static unsafe void CloseDescriptor(int fd, bool reset)
    {
        if (fd < 0)
        {
            return;
        }

        if (reset)
        {
            var linger = stackalloc int[2] { 1, 0 }; // struct linger { l_onoff = 1, l_linger = 0 }
            _ = SetSockOpt(fd, SolSocket, SoLinger, linger, 2 * sizeof(int));
        }

        _ = Close(fd);
    }

    // recv/send on a non-blocking descriptor: bytes, or -1 with errno (EINTR retried).
    private static unsafe int Receive(int fd, Span<byte> buffer, out int errno)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = Recv(fd, p, buffer.Length, 0);
                if (n >= 0)
                {
                    errno = 0;
                    return (int)n;
                }

                errno = Marshal.GetLastPInvokeError();
                if (errno != EIntr)
                {
                    return -1;
                }
            }
        }
    }

    private static unsafe int Send(int fd, ReadOnlySpan<byte> data, out int errno)
    {
        fixed (byte* p = data)
        {
            while (true)
            {
                var n = SendTo(fd, p, data.Length, MsgNoSignal);
                if (n >= 0)
                {
                    errno = 0;
                    return (int)n;
                }

                errno = Marshal.GetLastPInvokeError();
                if (errno != EIntr)
                {
                    return -1;
                }
            }
        }
    }

    private const int EAgain = 11; // also EWOULDBLOCK on Linux
    private const int MsgNoSignal = 0x4000;
    private const int ShutWr = 1;
    private const int SolSocket = 1;
    private const int SoLinger = 13;
    private const int FDupFdCloexec = 1030;

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static unsafe partial nint Recv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static unsafe partial nint SendTo(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    private static partial int Shutdown(int fd, int how);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "setsockopt", SetLastError = true)]
    private static unsafe partial int SetSockOpt(int fd, int level, int name, void* value, int length);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    /// <summary>One socket of the tunnel (a descriptor the tunnel owns): its readiness as the loop reported it.</summary>
    private sealed class Side(EpollTunnel tunnel, int fd) : IEpollHandler
    {
        public EpollTunnel Tunnel { get; } = tunnel;

        /// <summary>The descriptor; -1 once closed.</summary>
        public int Fd { get; private set; } = fd;

        /// <summary>Its connection was aborted: closed with a reset, and sent no FIN before.</summary>
        public bool Aborted { get; set; }

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

        /// <summary>Closes the descriptor (after <see cref="Unregister"/>); with <paramref name="reset"/> a RST. Once.</summary>
        public void Close(bool reset)
        {
            CloseDescriptor(Fd, reset);
            Fd = -1;
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

                    var sent = Send(_to.Fd, _buffer.AsSpan(_start, _end - _start), out var sendError);
                    if (sent < 0 && sendError == EAgain)
                    {
                        _to.Writable = false;
                        return false;
                    }

                    if (sent < 0)
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
                var read = Receive(_from.Fd, _buffer, out var receiveError);
                if (read < 0 && receiveError == EAgain)
                {
                    _from.Readable = false;
                    ReturnBuffer();
                    return false;
                }

                if (read < 0)
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
            if (!_to.Aborted && _to.Fd >= 0)
            {
                _ = Shutdown(_to.Fd, ShutWr); // fails only when the socket is already gone: nothing to tell it
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
