using System.Runtime.InteropServices;

namespace Rama.Proxy.Net.Epoll;

/// <summary>
/// The few Linux calls the epoll transport needs beyond what <see cref="System.Net.Sockets.Socket"/> offers
/// (epoll(7), eventfd(2)). Reads and writes on sockets stay <see cref="System.Net.Sockets.Socket"/>'s own
/// non-blocking calls.
/// </summary>
internal static unsafe partial class EpollNative
{
    public const int EpollCtlAdd = 1;
    public const int EpollCtlDel = 2;

    public const uint EpollIn = 0x001;
    public const uint EpollOut = 0x004;
    public const uint EpollErr = 0x008;
    public const uint EpollHup = 0x010;
    public const uint EpollRdHup = 0x2000;
    public const uint EpollEt = 1u << 31;

    public const int EpollCloexec = 0x80000; // O_CLOEXEC
    public const int EfdNonblock = 0x800;   // O_NONBLOCK
    public const int EfdCloexec = 0x80000;

    public const int EIntr = 4;

    /// <summary>
    /// Linux's <c>struct epoll_event</c> on x86-64: packed, 12 bytes (the kernel's
    /// <c>__EPOLL_PACKED</c>). Other architectures lay it out with padding; the transport is only
    /// enabled where this layout holds (<see cref="IsSupported"/>).
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 12)]
    public struct EpollEvent
    {
        [FieldOffset(0)]
        public uint Events;

        [FieldOffset(4)]
        public ulong Data;
    }

    /// <summary>Linux on x86-64 (the layout above); elsewhere callers use the portable socket transport.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    public static partial int EpollCtl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    public static partial int EpollWait(int epfd, EpollEvent* events, int maxEvents, int timeout);

    [LibraryImport("libc", EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initialValue, int flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buffer, nint count);
}
