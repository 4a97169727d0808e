using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Rama.Proxy.Net.Epoll.EpollNative;

namespace Rama.Proxy.Net.Epoll;

/// <summary>Something registered with an <see cref="EpollLoop"/>: told of readiness changes on its loop's thread.</summary>
internal interface IEpollHandler
{
    /// <summary>Readiness (EPOLLIN/OUT/RDHUP/HUP/ERR bits) changed. Runs on the loop thread; must not block.</summary>
    void OnEvents(uint events);

    /// <summary>An exception escaped <see cref="OnEvents"/> or a posted action for this handler: close what it owns.</summary>
    void OnFault(Exception exception);
}

/// <summary>Called on the loop thread every <see cref="EpollLoop.TickInterval"/> (timeouts, idle pools).</summary>
internal interface IEpollTicker
{
    void OnTick(long nowMs);
}

/// <summary>
/// One event-loop thread over one epoll set (haproxy's and nginx's shape, and Tmds's Kestrel transport's):
/// sockets are registered once, edge-triggered, for in, out and peer-close; handlers keep their own
/// readiness flags, so a read or a write costs one syscall and no <c>epoll_ctl</c> per request. Everything
/// a handler owns is touched only on its loop's thread; other threads <see cref="Post"/> work to it (an
/// eventfd wakes the loop). A coarse tick (<see cref="TickInterval"/>) drives timeouts.
/// </summary>
internal sealed unsafe class EpollLoop
{
    /// <summary>Timeout granularity: every ticker runs this often. 100 ms, a tenth of the shortest timeout tests use.</summary>
    public static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(100);

    private const int MaxEvents = 256;
    private const ulong WakeToken = ulong.MaxValue;

    private static readonly Lazy<EpollLoop[]> s_shared = new(() =>
    {
        var loops = new EpollLoop[Math.Max(1, Environment.ProcessorCount)];
        for (var i = 0; i < loops.Length; i++)
        {
            loops[i] = new EpollLoop(i);
        }

        return loops;
    });

    private static int s_next;

    private readonly int _epfd;
    private readonly int _wakeFd;
    private readonly ConcurrentQueue<(Action<object?> Action, object? State, IEpollHandler? Owner)> _posted = new();
    private readonly List<IEpollHandler?> _handlers = [];
    private readonly List<uint> _generations = [];
    private readonly Stack<int> _freeSlots = new();
    private readonly Dictionary<int, int> _slotByFd = [];
    private readonly List<IEpollTicker> _tickers = [];
    private int _wakePending;

    private EpollLoop(int index)
    {
        _epfd = EpollCreate1(EpollCloexec);
        if (_epfd < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        _wakeFd = EventFd(0, EfdNonblock | EfdCloexec);
        if (_wakeFd < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        var ev = new EpollEvent { Events = EpollIn, Data = WakeToken };
        if (EpollCtl(_epfd, EpollCtlAdd, _wakeFd, &ev) != 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        Index = index;
        var thread = new Thread(Run) { IsBackground = true, Name = $"rama-epoll-{index}" };
        thread.UnsafeStart();
    }

    /// <summary>The loops of the process: one per core, started on first use, living as long as the process (like .NET's own socket engine threads).</summary>
    public static EpollLoop[] Shared => s_shared.Value;

    /// <summary>The next loop in round-robin order, for a new connection.</summary>
    public static EpollLoop Next()
    {
        var loops = Shared;
        return loops[(int)((uint)Interlocked.Increment(ref s_next) % (uint)loops.Length)];
    }

    public int Index { get; }

    /// <summary>Milliseconds of a monotonic clock: when the loop ticks (real time). What runs on the loop keeps its stack's time (<see cref="LoopClock"/>).</summary>
    public static long NowMs => Environment.TickCount64;

    /// <summary>Runs <paramref name="action"/> on the loop thread; a fault goes to <paramref name="owner"/>'s <see cref="IEpollHandler.OnFault"/>.</summary>
    public void Post(Action<object?> action, object? state, IEpollHandler? owner = null)
    {
        _posted.Enqueue((action, state, owner));
        if (Interlocked.Exchange(ref _wakePending, 1) == 0)
        {
            ulong one = 1;
            _ = EpollNative.Write(_wakeFd, &one, sizeof(ulong));
        }
    }

    /// <summary>Adds a ticker. Loop thread only.</summary>
    public void AddTicker(IEpollTicker ticker) => _tickers.Add(ticker);

    /// <summary>
    /// Registers <paramref name="socket"/> (already non-blocking) edge-triggered for in, out and peer close. Loop
    /// thread only. A socket closed elsewhere (an abort) leaves the set by itself (the kernel drops a closed
    /// descriptor); its number may then be reused by a socket registered later, so <see cref="Unregister"/> removes
    /// a descriptor only while it still belongs to that registration.
    /// </summary>
    public Registration Register(Socket socket, IEpollHandler handler) => Register((int)socket.SafeHandle.DangerousGetHandle(), socket, handler);

    /// <summary>
    /// Registers a bare descriptor (already non-blocking) that the caller owns and closes on this loop's thread, after
    /// <see cref="Unregister"/> (the epoll tunnel, which keeps no <see cref="Socket"/> per side).
    /// </summary>
    public Registration Register(int fd, IEpollHandler handler) => Register(fd, null, handler);

    private Registration Register(int fd, Socket? socket, IEpollHandler handler)
    {
        int slot;
        if (_freeSlots.Count > 0)
        {
            slot = _freeSlots.Pop();
            _handlers[slot] = handler;
        }
        else
        {
            slot = _handlers.Count;
            _handlers.Add(handler);
            _generations.Add(0);
        }

        var generation = ++CollectionsMarshal.AsSpan(_generations)[slot];
        var ev = new EpollEvent { Events = EpollIn | EpollOut | EpollRdHup | EpollEt, Data = ((ulong)generation << 32) | (uint)slot };
        if (EpollCtl(_epfd, EpollCtlAdd, fd, &ev) != 0)
        {
            var error = Marshal.GetLastPInvokeError();
            _handlers[slot] = null;
            _freeSlots.Push(slot);
            throw new SocketException(error);
        }

        _slotByFd[fd] = slot;
        return new Registration(socket, fd, slot);
    }

    /// <summary>
    /// Takes <paramref name="socket"/> out of every other epoll set of the process: a socket .NET has run async
    /// operations on stays in its socket engine's set, edge-triggered, and every readiness change would wake that
    /// engine's thread too (measured: 3.3-3.6 context switches per tunnelled request against 1.4 on the pipes).
    /// Only for a socket no .NET async operation will touch again (one taken over with <see cref="SocketConnection.DetachAsync"/>):
    /// closing it still works (the runtime's own removal then finds nothing to remove).
    /// </summary>
    public static void LeaveOtherEpollSets(Socket socket)
    {
        var fd = (int)socket.SafeHandle.DangerousGetHandle();
        foreach (var epfd in OtherEpollSets())
        {
            var ev = default(EpollEvent);
            _ = EpollCtl(epfd, EpollCtlDel, fd, &ev); // ENOENT for sets it was never in
        }
    }

    private static int[]? s_otherEpollSets;

    // The process's epoll descriptors other than the loops' (the runtime's socket engines), found once in /proc/self/fd.
    private static int[] OtherEpollSets()
    {
        if (Volatile.Read(ref s_otherEpollSets) is { } known)
        {
            return known;
        }

        var ours = new HashSet<int>();
        foreach (var loop in Shared)
        {
            ours.Add(loop._epfd);
        }

        var found = new List<int>();
        try
        {
            foreach (var path in Directory.EnumerateFiles("/proc/self/fd"))
            {
                if (int.TryParse(Path.GetFileName(path), out var fd) && !ours.Contains(fd)
                    && new FileInfo(path).LinkTarget == "anon_inode:[eventpoll]")
                {
                    found.Add(fd);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // No /proc: the sockets stay in the runtime's set too (correct, only slower).
        }

        var sets = found.ToArray();
        Volatile.Write(ref s_otherEpollSets, sets);
        return sets;
    }

    /// <summary>Removes a registration. Loop thread only; once per registration.</summary>
    public void Unregister(Registration registration)
    {
        if (_slotByFd.TryGetValue(registration.Fd, out var current) && current == registration.Slot)
        {
            _slotByFd.Remove(registration.Fd);
            if (registration.Socket is not { SafeHandle.IsClosed: true })
            {
                var ev = default(EpollEvent);
                _ = EpollCtl(_epfd, EpollCtlDel, registration.Fd, &ev);
            }
        }

        _handlers[registration.Slot] = null;
        CollectionsMarshal.AsSpan(_generations)[registration.Slot]++; // events already fetched for it are ignored
        _freeSlots.Push(registration.Slot);
    }

    private void Run()
    {
        var events = stackalloc EpollEvent[MaxEvents];
        var tickMs = (long)TickInterval.TotalMilliseconds;
        var nextTick = NowMs + tickMs;
        while (true)
        {
            var timeout = (int)Math.Clamp(nextTick - NowMs, 0, tickMs);
            var count = EpollWait(_epfd, events, MaxEvents, _posted.IsEmpty ? timeout : 0);
            if (count < 0 && Marshal.GetLastPInvokeError() != EIntr)
            {
                // EBADF/EINVAL cannot happen on our own descriptors; back off rather than spin.
                Thread.Sleep(10);
            }

            for (var i = 0; i < count; i++)
            {
                var data = events[i].Data;
                if (data == WakeToken)
                {
                    ulong value;
                    _ = EpollNative.Read(_wakeFd, &value, sizeof(ulong));
                    continue;
                }

                var slot = (int)(uint)data;
                var generation = (uint)(data >> 32);
                if (slot < _handlers.Count && _generations[slot] == generation && _handlers[slot] is { } handler)
                {
                    Dispatch(handler, events[i].Events);
                }
            }

            RunPosted();
            var now = NowMs;
            if (now >= nextTick)
            {
                nextTick = now + tickMs;
                foreach (var ticker in _tickers)
                {
                    try
                    {
                        ticker.OnTick(now);
                    }
                    catch (Exception)
                    {
                        // Tickers catch their own faults; the loop serves every other connection regardless.
                    }
                }
            }
        }
    }

    private void RunPosted()
    {
        Volatile.Write(ref _wakePending, 0);
        while (_posted.TryDequeue(out var item))
        {
            try
            {
                item.Action(item.State);
            }
            catch (Exception ex) when (item.Owner is not null)
            {
                Fault(item.Owner, ex);
            }
        }
    }

    private static void Dispatch(IEpollHandler handler, uint events)
    {
        try
        {
            handler.OnEvents(events);
        }
        catch (Exception ex)
        {
            Fault(handler, ex);
        }
    }

    private static void Fault(IEpollHandler handler, Exception ex)
    {
        try
        {
            handler.OnFault(ex);
        }
        catch (Exception)
        {
            // A fault path that faults: nothing more can be done for that handler; the loop keeps serving the rest.
        }
    }

    /// <summary>A socket's place in a loop's epoll set.</summary>
    internal readonly record struct Registration(Socket? Socket, int Fd, int Slot);
}
