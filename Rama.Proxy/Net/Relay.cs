using System.Buffers;
using System.IO.Pipelines;

namespace Rama.Proxy.Net;

/// <summary>Bytes moved by a finished relay.</summary>
public readonly record struct RelayResult(long ClientToTarget, long TargetToClient);

/// <summary>
/// Bidirectional relay between two duplex pipes. Each direction copies one buffer at a time and
/// waits for the destination's flush before reading more, so memory per tunnel is bounded by the
/// pipes' pause thresholds (back-pressure). When one side ends its output (FIN), the relay
/// completes the other side's output (half-close) and keeps the reverse direction running until
/// it ends too.
/// </summary>
public static class Relay
{
    public static async Task<RelayResult> RunAsync(IDuplexPipe client, IDuplexPipe target, CancellationToken cancellationToken)
    {
        var up = CopyAsync(client.Input, target.Output, cancellationToken);
        var down = CopyAsync(target.Input, client.Output, cancellationToken);
        await Task.WhenAll(up, down).ConfigureAwait(false);
        return new RelayResult(await up.ConfigureAwait(false), await down.ConfigureAwait(false));
    }

    /// <summary>Copies until <paramref name="from"/> ends or <paramref name="to"/> stops taking data, then completes <paramref name="to"/> (half-close).</summary>
    public static async Task<long> CopyAsync(PipeReader from, PipeWriter to, CancellationToken cancellationToken)
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
