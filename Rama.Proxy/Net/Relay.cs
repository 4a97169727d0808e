using System.Buffers;
using System.IO.Pipelines;

namespace Rama.Proxy.Net;

/// <summary>Bytes moved by a finished relay, and whether it ended because the tunnel sat idle.</summary>
public readonly record struct RelayResult(long ClientToTarget, long TargetToClient)
{
    public bool IdleTimedOut { get; init; }
}

/// <summary>
/// Bidirectional relay between two duplex pipes. Each direction copies one buffer at a time and
/// waits for the destination's flush before reading more, so memory per tunnel is bounded by the
/// pipes' pause thresholds (back-pressure). When one side ends its output (FIN), the relay
/// completes the other side's output (half-close) and keeps the reverse direction running until
/// it ends too. A tunnel in which no byte moves either way for the idle timeout is closed (both
/// sides get FIN), so a vanished peer cannot hold a tunnel forever.
/// </summary>
public static class Relay
{
    /// <summary>Default idle timeout of a tunnel: 15 min, squid's <c>read_timeout</c> (haproxy leaves <c>timeout tunnel</c> to the operator; 15 min outlives any keep-alive a client holds open inside a tunnel).</summary>
    public static readonly TimeSpan DefaultIdleTimeout = TimeSpan.FromMinutes(15);

    /// <summary>
    /// Relays both ways until both directions end. <paramref name="idleTimeout"/>: null means
    /// <see cref="DefaultIdleTimeout"/>, <see cref="Timeout.InfiniteTimeSpan"/> means none.
    /// </summary>
    public static async Task<RelayResult> RunAsync(IDuplexPipe client, IDuplexPipe target, CancellationToken cancellationToken,
        TimeSpan? idleTimeout = null, TimeProvider? time = null)
    {
        var idle = idleTimeout ?? DefaultIdleTimeout;
        if (idle == Timeout.InfiniteTimeSpan)
        {
            var upOnly = CopyAsync(client.Input, target, cancellationToken, null);
            var downOnly = CopyAsync(target.Input, client, cancellationToken, null);
            await Task.WhenAll(upOnly, downOnly).ConfigureAwait(false);
            return new RelayResult(await upOnly.ConfigureAwait(false), await downOnly.ConfigureAwait(false));
        }

        var activity = new Activity(time ?? TimeProvider.System);
        using var relay = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var finished = new CancellationTokenSource();
        var up = CopyAsync(client.Input, target, relay.Token, activity);
        var down = CopyAsync(target.Input, client, relay.Token, activity);
        var watchdog = WatchIdleAsync(activity, idle, relay, finished.Token);
        await Task.WhenAll(up, down).ConfigureAwait(false);
        await finished.CancelAsync().ConfigureAwait(false);
        var timedOut = await watchdog.ConfigureAwait(false);
        return new RelayResult(await up.ConfigureAwait(false), await down.ConfigureAwait(false)) { IdleTimedOut = timedOut };
    }

    /// <summary>Last time a byte moved in either direction (a timestamp of the tunnel's TimeProvider).</summary>
    private sealed class Activity(TimeProvider time)
    {
        private long _last = time.GetTimestamp();

        public TimeProvider Time => time;

        public void Touch() => Volatile.Write(ref _last, time.GetTimestamp());

        public TimeSpan Idle => time.GetElapsedTime(Volatile.Read(ref _last));
    }

    // One timer per tunnel, re-armed for the time left rather than ticking; true when it closed the tunnel.
    private static async Task<bool> WatchIdleAsync(Activity activity, TimeSpan idle, CancellationTokenSource relay, CancellationToken finished)
    {
        try
        {
            while (true)
            {
                var left = idle - activity.Idle;
                if (left <= TimeSpan.Zero)
                {
                    await relay.CancelAsync().ConfigureAwait(false);
                    return true;
                }

                await Task.Delay(left, activity.Time, finished).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Copies until <paramref name="from"/> ends or <paramref name="to"/> stops taking data, then completes <paramref name="to"/> (half-close).</summary>
    public static Task<long> CopyAsync(PipeReader from, PipeWriter to, CancellationToken cancellationToken) => CopyAsync(from, to, cancellationToken, null);

    // To a socket: sent straight from the source's buffers (no copy into the socket's output pipe).
    private static Task<long> CopyAsync(PipeReader from, IDuplexPipe to, CancellationToken cancellationToken, Activity? activity) =>
        to is SocketConnection socket ? SendDirectAsync(from, socket, cancellationToken, activity) : CopyAsync(from, to.Output, cancellationToken, activity);

    private static async Task<long> SendDirectAsync(PipeReader from, SocketConnection to, CancellationToken cancellationToken, Activity? activity)
    {
        long total = 0;
        Exception? failure = null;
        try
        {
            total = await to.SendFromAsync(from, activity is null ? null : activity.Touch, cancellationToken).ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            // A reset on the reading side: pass it on so the other side is closed, not half-closed.
            failure = ex;
        }
        catch (InvalidOperationException)
        {
            // The pipe was completed under us by a close on the other side.
        }
        finally
        {
            await to.Output.CompleteAsync(failure).ConfigureAwait(false);
            await from.CompleteAsync().ConfigureAwait(false);
        }

        return total;
    }

    private static async Task<long> CopyAsync(PipeReader from, PipeWriter to, CancellationToken cancellationToken, Activity? activity)
    {
        long total = 0;
        Exception? failure = null;
        try
        {
            while (true)
            {
                var result = await from.ReadAsync(cancellationToken).ConfigureAwait(false);
                var buffer = result.Buffer;
                var stop = false;
                if (!buffer.IsEmpty)
                {
                    activity?.Touch();
                    foreach (var segment in buffer)
                    {
                        to.Write(segment.Span);
                    }

                    total += buffer.Length;
                    var flush = await to.FlushAsync(cancellationToken).ConfigureAwait(false);
                    stop = flush.IsCompleted || flush.IsCanceled;
                }

                from.AdvanceTo(buffer.End);
                if (stop || result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (IOException ex)
        {
            // A reset on the reading side: pass it on so the other side is closed, not half-closed.
            failure = ex;
        }
        catch (InvalidOperationException)
        {
            // The pipe was completed under us by a close on the other side.
        }
        finally
        {
            await to.CompleteAsync(failure).ConfigureAwait(false);
            await from.CompleteAsync().ConfigureAwait(false);
        }

        return total;
    }
}
