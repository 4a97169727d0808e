using Rama.Proxy.Net;

namespace Rama.Proxy.Observability;

/// <summary>The access-log line of a connection a listener's limit refused (<see cref="TcpServerOptions.Refused"/>).</summary>
public static class RefusalAccessLog
{
    /// <summary>
    /// Writes each answered refusal to <paramref name="accessLog"/> while it is enabled: kind and status by what the client
    /// was told (HTTP and HTTP/2 503, SOCKS5 reply 1, TLS 503 for the internal_error alert), no method or target (nothing
    /// was read as a request), the limit as reason. Null when there is no access log.
    /// </summary>
    public static Action<ConnectionRefused>? For(IAccessLog? accessLog) => accessLog is null ? null : refused =>
    {
        if (!accessLog.IsEnabled)
        {
            return;
        }

        accessLog.Write(new AccessLogEntry
        {
            Time = DateTimeOffset.UtcNow,
            Kind = refused.Answer switch
            {
                RefusalAnswer.Socks5GeneralFailure => AccessKind.Socks5,
                RefusalAnswer.TlsInternalError => AccessKind.Tls,
                _ => AccessKind.Http,
            },
            Client = refused.Client,
            Status = refused.Answer == RefusalAnswer.Socks5GeneralFailure ? 1 : 503,
            Duration = refused.Duration,
            Protocol = refused.Answer == RefusalAnswer.Http2Refused ? "HTTP/2" : null,
            Reason = refused.Reason,
        });
    };
}
