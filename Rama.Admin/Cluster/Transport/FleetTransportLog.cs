using Microsoft.Extensions.Logging;

namespace Rama.Admin.Cluster.Transport;

/// <summary>The fleet transport's log lines (event ids 9200-9219).</summary>
internal static partial class FleetTransportLog
{
    [LoggerMessage(EventId = 9200, Level = LogLevel.Information, Message = "Fleet transport listening on {Endpoint} as {Address} ({Security})")]
    public static partial void Listening(ILogger logger, string endpoint, string address, string security);

    [LoggerMessage(EventId = 9201, Level = LogLevel.Information, Message = "Connection to cluster peer {Peer} failed before it was established ({Why}): the association fails and Akka.Remote retries it")]
    public static partial void OutboundTransportFailure(ILogger logger, string peer, string why);

    [LoggerMessage(EventId = 9202, Level = LogLevel.Error, Message = "Refused cluster peer {Peer}: {Why}. This member is not yet in the fleet: it could not prove fleet membership and shuts down")]
    public static partial void UntrustedWhileJoining(ILogger logger, string peer, string why);

    [LoggerMessage(EventId = 9203, Level = LogLevel.Error, Message = "Refused cluster peer {Peer}: {Why}. This member is in the fleet: the association fails, the member stays")]
    public static partial void UntrustedWhileMember(ILogger logger, string peer, string why);

    [LoggerMessage(EventId = 9204, Level = LogLevel.Warning, Message = "Refused cluster peer {Peer}: {Why}")]
    public static partial void InboundUntrusted(ILogger logger, string peer, string why);

    [LoggerMessage(EventId = 9205, Level = LogLevel.Warning, Message = "Rejected incoming connection from {Peer} due to TLS handshake failure: {Why}")]
    public static partial void InboundHandshakeFailed(ILogger logger, string peer, string why);

    [LoggerMessage(EventId = 9206, Level = LogLevel.Information, Message = "Incoming connection from {Peer} closed before it was established ({Why})")]
    public static partial void InboundTransportFailure(ILogger logger, string peer, string why);

    [LoggerMessage(EventId = 9207, Level = LogLevel.Warning, Message = "Association {Local} -> {Remote}: a frame of {Length} bytes is over the limit of {Limit} bytes; closing the association")]
    public static partial void FrameTooLarge(ILogger logger, string local, string remote, long length, int limit);

    [LoggerMessage(EventId = 9208, Level = LogLevel.Debug, Message = "Association {Local} -> {Remote} closed: {Why}")]
    public static partial void Closed(ILogger logger, string local, string remote, string why);

    [LoggerMessage(EventId = 9209, Level = LogLevel.Warning, Message = "Fleet transport: accepting connections on {Endpoint} failed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception, string endpoint);
}
