using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Rama.Proxy.Net;

// The listener's own limits: connections per listener and per client address (refused with a protocol-correct answer,
// Limits/ConnectionRefusal), and the accept loop's pause when the process is out of descriptors.
public sealed partial class TcpServer
{
    private readonly ConcurrentDictionary<IPAddress, int> _perClient = new();
    private TaskCompletionSource? _freed;
    private int _refusing;
    private static int s_shortRefusing; // refusals in flight while short of descriptors, every listener of the process
    private long _refused;
    private long _outOfDescriptors;
    private long? _descriptorLimit = ReadDescriptorLimit();
    private long _descriptorLimitReadAt = Environment.TickCount64;

    /// <summary>Connections refused by <see cref="TcpServerOptions.MaxConnections"/> or <see cref="TcpServerOptions.MaxConnectionsPerIp"/>.</summary>
    public long RefusedConnections => Interlocked.Read(ref _refused);

    /// <summary>Accepts that failed because the process or system was out of descriptors (EMFILE, ENFILE) or buffers.</summary>
    public long OutOfDescriptorAccepts => Interlocked.Read(ref _outOfDescriptors);

    private string ListenerName => _options.Name ?? LocalEndPoint.ToString();

    // On the accept loop: true when the socket was handed to a refusal (or closed); else it holds its client's slot.
    private bool OverLimit(Socket socket, out IPAddress? client, out bool shortOfDescriptors)
    {
        client = null;
        string? reason = null;
        shortOfDescriptors = ShortOfDescriptors(socket);
        if (shortOfDescriptors)
        {
            reason = "the node is short of file descriptors";
        }
        else if (_options.MaxConnections is { } max && OpenConnections >= max)
        {
            reason = string.Create(CultureInfo.InvariantCulture, $"listener '{ListenerName}' is at its limit of {max} connections");
        }
        else if (_options.MaxConnectionsPerIp is { } perIp && (socket.RemoteEndPoint as IPEndPoint)?.Address is { } remote)
        {
            client = remote.IsIPv4MappedToIPv6 ? remote.MapToIPv4() : remote;
            if (_perClient.AddOrUpdate(client, 1, static (_, n) => n + 1) > perIp)
            {
                ConnectionEnded(client);
                reason = string.Create(CultureInfo.InvariantCulture, $"client {client} is at its limit of {perIp} connections on listener '{ListenerName}'");
                client = null;
            }
        }

        if (reason is null)
        {
            return false;
        }

        Interlocked.Increment(ref _refused);
        var remoteText = socket.RemoteEndPoint?.ToString() ?? "?";
        // Short of descriptors, refusals in flight hold descriptors of the headroom, which the process shares: all listeners
        // together hold a quarter of it at most, so the runtime always has some (at the limit it aborts the process when the
        // thread pool starts a thread).
        if (shortOfDescriptors && Interlocked.Increment(ref s_shortRefusing) > DescriptorLimit.Headroom / 4)
        {
            Interlocked.Decrement(ref s_shortRefusing);
            socket.Dispose();
            LogRefusedUnanswered(_logger, remoteText, LocalEndPoint.ToString(), DescriptorLimit.Headroom / 4, reason);
            return true;
        }

        if (Interlocked.Increment(ref _refusing) > _options.MaxPendingRefusals)
        {
            Interlocked.Decrement(ref _refusing);
            if (shortOfDescriptors)
            {
                Interlocked.Decrement(ref s_shortRefusing);
            }

            socket.Dispose();
            LogRefusedUnanswered(_logger, remoteText, LocalEndPoint.ToString(), _options.MaxPendingRefusals, reason);
            return true;
        }

        _ = RefuseAsync(socket, remoteText, reason, shortOfDescriptors);
        return true;
    }

    private async Task RefuseAsync(Socket socket, string remote, string reason, bool shortOfDescriptors)
    {
        try
        {
            var client = socket.RemoteEndPoint as IPEndPoint;
            var started = Stopwatch.GetTimestamp();
            var answer = await ConnectionRefusal.RefuseAsync(socket, reason, TimeSpan.FromSeconds(1), _options.RefusalTimeout, _shutdown.ShutdownRequested).ConfigureAwait(false);
            LogRefused(_logger, remote, LocalEndPoint.ToString(), answer, reason);
            WriteRefusal(client, answer, reason, started);
        }
        finally
        {
            Interlocked.Decrement(ref _refusing);
            if (shortOfDescriptors)
            {
                Interlocked.Decrement(ref s_shortRefusing);
                WakeAcceptLoop(); // its descriptor is free again: an accept loop paused on EMFILE tries again
            }
        }
    }

    private void WriteRefusal(IPEndPoint? client, RefusalAnswer answer, string reason, long started)
    {
        if (answer != RefusalAnswer.None && _options.Refused is { } refused)
        {
            refused(new ConnectionRefused(client, answer, reason, Stopwatch.GetElapsedTime(started)));
        }
    }

    // A connection closed: its client's slot goes, and a paused accept loop tries again at once.
    private void ConnectionEnded(IPAddress? client)
    {
        if (client is not null && _perClient.AddOrUpdate(client, 0, static (_, n) => n - 1) <= 0)
        {
            _perClient.TryRemove(new KeyValuePair<IPAddress, int>(client, 0));
        }

        Volatile.Read(ref _freed)?.TrySetResult();
    }

    private void WakeAcceptLoop() => Volatile.Read(ref _freed)?.TrySetResult();

    // The accepted descriptor's number says how many are in use (POSIX gives the lowest free one): within the headroom of
    // the limit, this connection is refused and the accept loop pauses as on EMFILE.
    private bool ShortOfDescriptors(Socket socket) =>
        DescriptorLimitNow() is { } limit && socket.SafeHandle.DangerousGetHandle() >= limit - DescriptorLimit.Headroom;

    // After EMFILE: accepting again is worth it once half the headroom is free (an accepted descriptor within the headroom
    // is refused with its answer, at a bounded rate and number); the other half stays the runtime's.
    private bool DescriptorsToRefuse() =>
        DescriptorLimitNow() is not { } max || DescriptorLimit.LowestFree() is not { } lowest || lowest < max - DescriptorLimit.Headroom / 2;

    // The limit may be changed on a running process (prlimit --pid): read again at most once a second (accept loop only).
    private long? DescriptorLimitNow()
    {
        var now = Environment.TickCount64;
        if (now - _descriptorLimitReadAt >= 1000)
        {
            (_descriptorLimit, _descriptorLimitReadAt) = (ReadDescriptorLimit(), now);
        }

        return _descriptorLimit;
    }

    // Too low a limit to keep headroom (a test's, a container's): no gauge, EMFILE alone pauses accepting.
    private static long? ReadDescriptorLimit() => DescriptorLimit.Current() is { } limit && limit > 2 * DescriptorLimit.Headroom ? limit : null;

    /// <summary>
    /// The accept loop's pause when out of descriptors: the client stays in the listen queue, so retrying at once would
    /// spin the CPU on the same failure. It waits 10 ms, doubling to 1 s (<see cref="TcpServerOptions.AcceptBackoffInitial"/>,
    /// <see cref="TcpServerOptions.AcceptBackoffMax"/>), or until one of this listener's connections or refusals closes (a
    /// descriptor came free), until half the headroom is free, and warns at most every 10 s. Established connections are
    /// not touched.
    /// </summary>
    private sealed class AcceptPause(TcpServer server)
    {
        private static readonly TimeSpan WarnEvery = TimeSpan.FromSeconds(10);
        private static long s_warned; // process-wide: at most one warning every 10 s, whatever the listener
        private TimeSpan _backoff;
        private long _since;
        private long _failures;
        private bool _logged;

        // EMFILE and ENFILE map to TooManyOpenSockets; ENOBUFS and ENOMEM to NoBufferSpaceAvailable.
        public static bool IsOutOfResources(SocketError error) => error is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable;

        public async Task WaitAsync(SocketError error)
        {
            Interlocked.Increment(ref server._outOfDescriptors);
            _failures++;
            var local = server.LocalEndPoint.ToString();
            if (_backoff == TimeSpan.Zero)
            {
                (_backoff, _since) = (server._options.AcceptBackoffInitial, Stopwatch.GetTimestamp());
                if (Stopwatch.GetElapsedTime(Interlocked.Read(ref s_warned)) >= WarnEvery || Interlocked.Read(ref s_warned) == 0)
                {
                    Interlocked.Exchange(ref s_warned, Stopwatch.GetTimestamp());
                    _logged = true;
                    LogOutOfDescriptors(server._logger, local, error, server.OpenConnections);
                }
            }

            while (server.IsBound)
            {
                var freed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                Volatile.Write(ref server._freed, freed);
                await Task.WhenAny(Task.Delay(_backoff), freed.Task).ConfigureAwait(false);
                Volatile.Write(ref server._freed, null);
                if (server.DescriptorsToRefuse())
                {
                    return; // free within the headroom's lower half: the next accept is served or refused, not left queued
                }

                _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, server._options.AcceptBackoffMax.Ticks));
                if (Stopwatch.GetElapsedTime(Interlocked.Read(ref s_warned)) >= WarnEvery)
                {
                    Interlocked.Exchange(ref s_warned, Stopwatch.GetTimestamp());
                    _logged = true;
                    LogStillOutOfDescriptors(server._logger, local, error, _failures, server.OpenConnections);
                }
            }
        }

        /// <summary>
        /// Short of descriptors (an accepted descriptor fell within the headroom and was refused): the next accept waits the
        /// initial back-off only, so every client queued meanwhile gets its refusal (503, SOCKS5 0x01, a TLS alert) at a
        /// bounded rate, at most one per back-off, instead of waiting in the listen queue until descriptors free up.
        /// EMFILE itself (nothing can be accepted) still waits in <see cref="WaitAsync"/>.
        /// </summary>
        public async Task ShortAsync()
        {
            Interlocked.Increment(ref server._outOfDescriptors);
            _failures++;
            var local = server.LocalEndPoint.ToString();
            if (_backoff == TimeSpan.Zero)
            {
                (_backoff, _since) = (server._options.AcceptBackoffInitial, Stopwatch.GetTimestamp());
            }

            if (Interlocked.Read(ref s_warned) == 0 || Stopwatch.GetElapsedTime(Interlocked.Read(ref s_warned)) >= WarnEvery)
            {
                var first = !_logged;
                Interlocked.Exchange(ref s_warned, Stopwatch.GetTimestamp());
                _logged = true;
                if (first)
                {
                    LogShortOfDescriptors(server._logger, local, server.OpenConnections, DescriptorLimit.Headroom, (long)server._options.AcceptBackoffInitial.TotalMilliseconds);
                }
                else
                {
                    LogStillOutOfDescriptors(server._logger, local, SocketError.TooManyOpenSockets, _failures, server.OpenConnections);
                }
            }

            await Task.Delay(server._options.AcceptBackoffInitial).ConfigureAwait(false);
        }

        public void Resumed()
        {
            if (_backoff == TimeSpan.Zero)
            {
                return;
            }

            if (_logged)
            {
                LogAcceptResumed(server._logger, server.LocalEndPoint.ToString(), (long)Stopwatch.GetElapsedTime(_since).TotalMilliseconds, _failures);
            }

            (_backoff, _failures, _logged) = (TimeSpan.Zero, 0, false);
        }
    }

    [LoggerMessage(EventId = 1010, Level = LogLevel.Warning, Message = "Accept on {Local} failed: out of descriptors ({Error}); accepting pauses (10 ms doubling to 1 s, or until a connection closes) and the {Open} open connections are kept")]
    private static partial void LogOutOfDescriptors(ILogger logger, string local, SocketError error, int open);

    [LoggerMessage(EventId = 1015, Level = LogLevel.Warning, Message = "Listener {Local} is short of file descriptors, out of descriptors but the {Headroom} it keeps free ({Open} connections open): new clients are refused (503, SOCKS5 0x01, a TLS alert), at most one every {BackoffMs} ms, until descriptors free up; open connections are kept")]
    private static partial void LogShortOfDescriptors(ILogger logger, string local, int open, int headroom, long backoffMs);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "Accept on {Local} still out of descriptors ({Error}): {Failures} failed accepts so far, {Open} connections open")]
    private static partial void LogStillOutOfDescriptors(ILogger logger, string local, SocketError error, long failures, int open);

    [LoggerMessage(EventId = 1012, Level = LogLevel.Information, Message = "Accept on {Local} resumed after {Millis} ms out of descriptors ({Failures} failed accepts)")]
    private static partial void LogAcceptResumed(ILogger logger, string local, long millis, long failures);

    [LoggerMessage(EventId = 1013, Level = LogLevel.Debug, Message = "Connection from {Remote} on {Local} refused ({Answer}): {Reason}")]
    private static partial void LogRefused(ILogger logger, string remote, string local, RefusalAnswer answer, string reason);

    [LoggerMessage(EventId = 1014, Level = LogLevel.Debug, Message = "Connection from {Remote} on {Local} closed unanswered ({Pending} refusals in flight): {Reason}")]
    private static partial void LogRefusedUnanswered(ILogger logger, string remote, string local, int pending, string reason);
}
