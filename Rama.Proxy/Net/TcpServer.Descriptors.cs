using System.Runtime.InteropServices;

namespace Rama.Proxy.Net;

/// <summary>
/// The process's descriptor limit (RLIMIT_NOFILE, as the .NET runtime left it: it raises the soft limit to the hard
/// one at start-up), and the default connection limit of a listener derived from it.
/// </summary>
public static partial class DescriptorLimit
{
    /// <summary>The default of a listener's <c>MaxConnections</c> where the descriptor limit is unknown (not Linux or macOS).</summary>
    public const int FallbackMaxConnections = 10_000;

    /// <summary>The soft descriptor limit of this process, or null where it cannot be read.</summary>
    public static long? Current()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return null;
        }

        try
        {
            // RLIMIT_NOFILE is 7 on Linux, 8 on macOS; struct rlimit is two 64-bit values there.
            Span<ulong> limit = stackalloc ulong[2];
            unsafe
            {
                fixed (ulong* p = limit)
                {
                    if (GetRlimit(OperatingSystem.IsLinux() ? 7 : 8, p) != 0)
                    {
                        return null;
                    }
                }
            }

            return limit[0] > int.MaxValue ? int.MaxValue : (long)limit[0];
        }
        catch (DllNotFoundException)
        {
            return null;
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// A listener's default connection limit: half the descriptor limit, because a proxied connection holds two
    /// descriptors (the client's and the upstream's), so past half the process would run out of descriptors anyway and a
    /// clean 503 beats a failed dial. 10,000 under the benchmarks' 20,000; <see cref="FallbackMaxConnections"/> where unknown.
    /// </summary>
    public static int DefaultMaxConnections() =>
        Current() is { } limit ? (int)Math.Clamp(limit / 2, 1, int.MaxValue) : FallbackMaxConnections;

    /// <summary>
    /// Descriptors kept free for the runtime and for the connections already open: a listener stops accepting when an
    /// accepted descriptor's number comes within this many of the limit. At the limit itself the .NET runtime cannot start
    /// a thread (the thread pool adding a worker aborts the process with "Out of memory."), load an assembly, or dial an
    /// upstream. 64: a burst of thread starts; nothing next to a limit of 20,000.
    /// </summary>
    public const int Headroom = 64;

    /// <summary>
    /// The lowest free descriptor number (POSIX hands out the lowest free one, so every number below it is in use), or
    /// null where it cannot be told: when it is at or past <c>limit - Headroom</c> the process is short of descriptors.
    /// </summary>
    public static long? LowestFree()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return null;
        }

        try
        {
            using var probe = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read);
            return probe.DangerousGetHandle();
        }
        catch (IOException)
        {
            return long.MaxValue; // EMFILE / ENFILE: none free
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static unsafe partial int GetRlimit(int resource, ulong* limit);
}
