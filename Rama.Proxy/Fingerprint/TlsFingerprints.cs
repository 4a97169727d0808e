using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Http;

namespace Rama.Proxy.Fingerprint;

/// <summary>The TLS fingerprints of a connection, computed once by the TLS layer from its ClientHello and kept in the extensions bag.</summary>
public sealed record TlsFingerprints(Ja3 Ja3, Ja4 Ja4);

/// <summary>
/// Logs each request at Information with its fingerprints (JA3/JA4 of the connection, JA4H of the request, the Akamai HTTP/2
/// fingerprint of an h2 connection) and keeps the JA4H in the request's bag. With the category <c>Rama.Proxy.Fingerprint</c>
/// above Information the line and the JA4H hash are skipped (they cost a hash and a console write per request: measured in
/// benchmarks/results/2026-12-07-h2-perf-2.md); the echo service and traces compute the JA4H themselves when it is not in the bag.
/// </summary>
public sealed partial class FingerprintLogLayer(ILogger logger) : ILayer<HttpRequest, HttpResponse>
{
    public IService<HttpRequest, HttpResponse> Layer(IService<HttpRequest, HttpResponse> inner) => Service.FromFunc<HttpRequest, HttpResponse>((request, token) =>
    {
        if (logger.IsEnabled(LogLevel.Information))
        {
            var ja4h = Ja4H.Cached(request);
            request.Extensions.Set(ja4h);
            var tls = request.Extensions.Get<TlsFingerprints>();
            LogRequest(logger, request.Method, request.Target, tls?.Ja3.Hash ?? "-", tls?.Ja4.Fingerprint ?? "-", ja4h.Fingerprint,
                request.Extensions.Get<Http.Http2.Http2Fingerprint>()?.Akamai ?? "-");
        }

        return inner.ServeAsync(request, token);
    });

    [LoggerMessage(EventId = 7200, Level = LogLevel.Information, Message = "{Method} {Target} ja3={Ja3} ja4={Ja4} ja4h={Ja4H} h2={Akamai}")]
    private static partial void LogRequest(ILogger logger, string method, string target, string ja3, string ja4, string ja4h, string akamai);
}
