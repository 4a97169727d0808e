using Microsoft.Extensions.Logging;

namespace Rama.Proxy.Observability;

/// <summary>
/// The access log through <see cref="ILogger"/>: the Information lines every stack wrote before the sink existed, with
/// their categories and event ids. A refused SOCKS5 request (reply other than 0) has no line here: it is logged at Debug
/// by the SOCKS5 server, as before.
/// </summary>
internal sealed partial class LoggerAccessLog(ILoggerFactory loggerFactory) : IAccessLog
{
    private readonly ILogger _http = loggerFactory.CreateLogger("Rama.Proxy.Http.AccessLog");
    private readonly ILogger _socks5 = loggerFactory.CreateLogger("Rama.Proxy.Socks5");
    private readonly ILogger _mitm = loggerFactory.CreateLogger("Rama.Proxy.Tls.Mitm");

    public bool IsEnabled => _http.IsEnabled(LogLevel.Information) || _socks5.IsEnabled(LogLevel.Information) || _mitm.IsEnabled(LogLevel.Information);

    public void Write(in AccessLogEntry entry)
    {
        switch (entry.Kind)
        {
            case AccessKind.Socks5:
                if (entry.Status == 0 && _socks5.IsEnabled(LogLevel.Information))
                {
                    LogTunnel(_socks5, entry.ConnectionId, entry.User ?? "-", entry.TargetText, entry.BytesFromClient, entry.BytesToClient,
                        entry.Duration.TotalMilliseconds, entry.Upstream ?? "-");
                }

                return;
            case AccessKind.Tls when entry.Method is null:
                return; // a raw TLS relay had no line before
            case AccessKind.Mitm:
                if (_mitm.IsEnabled(LogLevel.Information))
                {
                    LogDecrypted(_mitm, entry.Authority.Host is null ? "-" : entry.Authority.ToString(), entry.Method ?? "-", entry.Target ?? "-",
                        entry.Authority.Host ?? "-", entry.Status);
                }

                break;
        }

        if (_http.IsEnabled(LogLevel.Information))
        {
            LogAccess(_http, entry.Method ?? "-", entry.TargetText, entry.Status, entry.BytesToClient, (long)entry.Duration.TotalMilliseconds,
                entry.User ?? "-", entry.ConnectionId, entry.Upstream ?? "-", entry.Protocol ?? "HTTP/1.1", entry.Http2Fingerprint ?? "-");
        }
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "{Method} {Target} {Status} {Bytes} bytes {DurationMs} ms user={User} connection={ConnectionId} upstream={Upstream} protocol={Protocol} h2fp={Http2Fingerprint}")]
    private static partial void LogAccess(ILogger logger, string method, string target, int status, long bytes, long durationMs, string user, long connectionId, string upstream,
        string protocol, string http2Fingerprint);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "socks5 {ConnectionId} user={User} CONNECT {Target} up={Up} down={Down} ms={Elapsed:0.0} upstream={Upstream}")]
    private static partial void LogTunnel(ILogger logger, long connectionId, string user, string target, long up, long down, double elapsed, string upstream);

    [LoggerMessage(EventId = 7100, Level = LogLevel.Information, Message = "MITM {Target}: {Method} {Path} host={Host} -> {Status}")]
    private static partial void LogDecrypted(ILogger logger, string target, string method, string path, string host, int status);
}
