using System.Buffers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;

namespace Rama.Proxy.Net;

/// <summary>Whether the first bytes of a connection belong to a route.</summary>
public enum PeekMatch
{
    No,
    Yes,
    /// <summary>Not enough bytes yet to tell.</summary>
    NeedMore,
}

/// <summary>One route of a <see cref="PeekRouter"/>.</summary>
public sealed record PeekRoute(string Name, Func<ReadOnlySequence<byte>, PeekMatch> Match, IService<ConnectionContext, Unit> Service)
{
    /// <summary>A route chosen by the first byte.</summary>
    public static PeekRoute FirstByte(string name, Func<byte, bool> predicate, IService<ConnectionContext, Unit> service) =>
        new(name, bytes => bytes.IsEmpty ? PeekMatch.NeedMore : predicate(bytes.FirstSpan[0]) ? PeekMatch.Yes : PeekMatch.No, service);
}

/// <summary>
/// Chooses a service from the first bytes of a connection without consuming them: the chosen
/// service reads the same bytes again. A client that sends nothing within the timeout is closed;
/// a connection that matches no route goes to the fallback (or is closed when there is none).
/// </summary>
public sealed partial class PeekRouter(
    IReadOnlyList<PeekRoute> routes,
    IService<ConnectionContext, Unit>? fallback,
    TimeSpan firstBytesTimeout,
    TimeProvider? time = null,
    ILogger? logger = null) : IService<ConnectionContext, Unit>
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly ILogger _logger = logger ?? NullLogger.Instance;

    public async ValueTask<Unit> ServeAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        // The peek runs in a frame of its own: a connection that lives long after it (a tunnel) keeps none of its state
        // (the input pipe, the timeout sources).
        var chosen = await ChooseAsync(connection, cancellationToken).ConfigureAwait(false);
        return chosen is null ? Unit.Value : await chosen.ServeAsync(connection, cancellationToken).ConfigureAwait(false);
    }

    // The service whose route matched the first bytes (or the fallback); null when the connection is closed, with its reason.
    private async ValueTask<IService<ConnectionContext, Unit>?> ChooseAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        var input = connection.Transport.Input;
        IService<ConnectionContext, Unit>? chosen = null;
        using (var timeout = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
        using (var deadline = new FirstRequestDeadline(timeout, connection.ShutdownRequested, _time))
        {
            deadline.Arm(firstBytesTimeout);
            try
            {
                while (chosen is null)
                {
                    var result = await input.ReadAsync(linked.Token).ConfigureAwait(false);
                    var buffer = result.Buffer;
                    var undecided = false;
                    foreach (var route in routes)
                    {
                        var match = route.Match(buffer);
                        if (match == PeekMatch.Yes)
                        {
                            chosen = route.Service;
                            break;
                        }

                        undecided |= match == PeekMatch.NeedMore;
                    }

                    if (chosen is null && (!undecided || result.IsCompleted))
                    {
                        chosen = buffer.IsEmpty ? null : fallback;
                        if (chosen is null)
                        {
                            input.AdvanceTo(buffer.Start, buffer.End);
                            LogNoRoute(_logger, connection.Id, buffer.IsEmpty ? "closed before sending anything" : "no protocol matched");
                            connection.TrySetCloseReason(buffer.IsEmpty ? "closed before sending anything" : "unknown protocol");
                            return null;
                        }
                    }

                    if (chosen is not null)
                    {
                        // Consume nothing and examine nothing: the chosen service sees the same bytes at once.
                        input.AdvanceTo(buffer.Start);
                    }
                    else
                    {
                        input.AdvanceTo(buffer.Start, buffer.End);
                    }
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                var reason = connection.ShutdownRequested.IsCancellationRequested ? "shutting down before the first bytes arrived"
                    : "no data within the first-bytes timeout";
                LogNoRoute(_logger, connection.Id, reason);
                connection.TrySetCloseReason(reason);
                return null;
            }
        }

        return chosen;
    }

    [LoggerMessage(EventId = 1200, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: closing, {Reason}")]
    private static partial void LogNoRoute(ILogger logger, long connectionId, string reason);
}
