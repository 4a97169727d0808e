using Microsoft.Extensions.Logging;

namespace Rama.Proxy.Http.Http2;

/// <summary>HTTP/2 log lines, event ids 2500-2599.</summary>
internal static partial class Http2Log
{
    [LoggerMessage(EventId = 2500, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: connection error {ErrorCode}: {Detail}")]
    public static partial void ConnectionError(ILogger logger, long connectionId, Http2ErrorCode errorCode, string detail);

    [LoggerMessage(EventId = 2501, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: stream {StreamId} error {ErrorCode}: {Detail}")]
    public static partial void StreamError(ILogger logger, long connectionId, int streamId, Http2ErrorCode errorCode, string detail);

    [LoggerMessage(EventId = 2502, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: transport gone ({Detail})")]
    public static partial void TransportGone(ILogger logger, long connectionId, string detail);

    [LoggerMessage(EventId = 2503, Level = LogLevel.Trace, Message = "HTTP/2 connection {ConnectionId}: received {Type} stream={StreamId} length={Length} flags={Flags}")]
    public static partial void FrameReceived(ILogger logger, long connectionId, Http2FrameType type, int streamId, int length, byte flags);

    [LoggerMessage(EventId = 2504, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: stream {StreamId} reset by peer ({ErrorCode})")]
    public static partial void StreamResetByPeer(ILogger logger, long connectionId, int streamId, Http2ErrorCode errorCode);

    [LoggerMessage(EventId = 2505, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: GOAWAY received, last stream {LastStreamId}, {ErrorCode} {Debug}")]
    public static partial void GoAwayReceived(ILogger logger, long connectionId, int lastStreamId, Http2ErrorCode errorCode, string debug);

    [LoggerMessage(EventId = 2506, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: stream {StreamId} send window stalled (connection window: {ConnectionStalled})")]
    public static partial void WindowStalled(ILogger logger, long connectionId, int streamId, bool connectionStalled);

    [LoggerMessage(EventId = 2507, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: stream {StreamId} refused: {Reason}")]
    public static partial void StreamRefused(ILogger logger, long connectionId, int streamId, string reason);

    [LoggerMessage(EventId = 2508, Level = LogLevel.Warning, Message = "HTTP/2 connection {ConnectionId}: stream {StreamId}: the application failed")]
    public static partial void ApplicationFault(ILogger logger, Exception exception, long connectionId, int streamId);

    [LoggerMessage(EventId = 2510, Level = LogLevel.Error, Message = "HTTP/2 connection {ConnectionId}: internal error, connection closed")]
    public static partial void InternalError(ILogger logger, Exception exception, long connectionId);

    [LoggerMessage(EventId = 2509, Level = LogLevel.Debug, Message = "HTTP/2 connection {ConnectionId}: stream {StreamId} response aborted ({Detail})")]
    public static partial void ResponseAborted(ILogger logger, long connectionId, int streamId, string detail);
}
