using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tls;

/// <summary>The result of dialling the origin: a plaintext pipe and what owns it, or why not.</summary>
public readonly record struct OriginDial(IDuplexPipe? Pipe, IAsyncDisposable? Owner, ForwardError Error, string Detail)
{
    public static OriginDial Failed(ForwardError error, string detail) => new(null, null, error, detail);
}

/// <summary>Dials the origin of a connection (plain TCP, or TLS on top); called once per client connection, again after the origin closes.</summary>
public delegate ValueTask<OriginDial> OriginDialer(HttpRequest request, CancellationToken cancellationToken);

/// <summary>
/// HTTP-aware forwarding to one fixed origin per client connection, used behind TLS termination
/// (<c>--upstream</c> in HTTP mode) and by the MITM proxy on decrypted requests: each origin-form
/// request is written to the origin (hop-by-hop fields removed, RFC 9110 §7.6.1), the response
/// streamed back. One origin connection per client connection, reused while both keep it alive
/// (mitmproxy does the same). The request body is sent before the response is read (no early
/// answers, unlike the forward proxy). Meant to fold into the reverse proxy (issue 3) later.
/// </summary>
public sealed partial class OriginForwarder(OriginDialer dial, HttpLimits limits, ILogger logger, TimeSpan responseHeaderTimeout, TimeProvider? time = null)
    : IService<HttpRequest, HttpResponse>
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Wraps a connection service so requests on one connection share one origin connection (closed when the connection ends).</summary>
    public static IService<ConnectionContext, Unit> Scoped(IService<ConnectionContext, Unit> inner) => Service.FromFunc<ConnectionContext, Unit>(async (connection, token) =>
    {
        var slot = new OriginSlot();
        connection.Extensions.Set(slot);
        try
        {
            return await inner.ServeAsync(connection, token).ConfigureAwait(false);
        }
        finally
        {
            await slot.ReleaseAsync().ConfigureAwait(false);
        }
    });

    public async ValueTask<HttpResponse> ServeAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var slot = request.Extensions.Get<OriginSlot>() ?? new OriginSlot();
        var reused = slot.Pipe is not null;
        for (var attempt = 0; ; attempt++)
        {
            if (slot.Pipe is null)
            {
                var dialled = await dial(request, cancellationToken).ConfigureAwait(false);
                if (dialled.Pipe is null)
                {
                    return Fail(request, dialled.Error, dialled.Detail);
                }

                slot.Set(dialled.Pipe, dialled.Owner);
            }

            var (response, error, detail) = await ExchangeAsync(request, slot, cancellationToken).ConfigureAwait(false);
            if (response is not null)
            {
                return response;
            }

            await slot.ReleaseAsync().ConfigureAwait(false);
            // RFC 9112 §9.3.1: a kept-alive origin connection closed before answering; retry once when nothing but the head was sent.
            if (HttpForwardRules.MayRetry(error, reused, retried: attempt > 0, request.Method, bodyStarted: request.BodyFraming != BodyFraming.None))
            {
                continue;
            }

            return Fail(request, error, detail);
        }
    }

    private async ValueTask<(HttpResponse?, ForwardError, string)> ExchangeAsync(HttpRequest request, OriginSlot slot, CancellationToken cancellationToken)
    {
        var origin = slot.Pipe!;
        ResponseHead? head;
        try
        {
            var headers = HttpForwardRules.CopyEndToEnd(request.Headers);
            var chunked = request.BodyFraming == BodyFraming.Chunked;
            if (chunked)
            {
                headers.Add("Transfer-Encoding"u8.ToArray(), "chunked"u8.ToArray());
            }

            Http1Writer.WriteRequestHead(origin.Output, request.Method, request.Target, headers);
            if (request.BodyFraming == BodyFraming.None)
            {
                await origin.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await Http1Writer.CopyBodyAsync(request.Body, origin.Output, chunked, chunked ? -1 : request.ContentLength, cancellationToken).ConfigureAwait(false);
            }

            using var timeout = new CancellationTokenSource(responseHeaderTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                head = await ReadHeadAsync(origin.Input, request.Method, linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                return (null, ForwardError.UpstreamTimedOut, "no response head in time");
            }
        }
        catch (HttpCodecException ex) when (ex.Reason is HttpRejectReason.InvalidStatusLine or HttpRejectReason.InvalidHeader or HttpRejectReason.HeadersTooLarge
                                                or HttpRejectReason.TooManyHeaders or HttpRejectReason.InvalidContentLength or HttpRejectReason.UnsupportedVersion)
        {
            return (null, ForwardError.UpstreamProtocolError, ex.Message);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException)
        {
            return (null, ForwardError.UpstreamClosed, ex.Message);
        }

        if (head is null)
        {
            return (null, ForwardError.UpstreamClosed, "closed before a response");
        }

        var body = new Http1BodyReader(origin.Input, head.Framing, head.ContentLength, limits);
        var keep = head.KeepAlive && head.Framing != BodyFraming.UntilClose;
        body.OnCompleted(async reachedEnd =>
        {
            if (!(reachedEnd && keep))
            {
                await slot.ReleaseAsync().ConfigureAwait(false);
            }
        });
        HttpForwardRules.RemoveHopByHop(head.Headers); // parsed for this exchange only; keep-alive was read above
        return (new HttpResponse(head.Status, head.Headers)
        {
            Reason = head.Reason,
            Body = body,
            BodyLength = head.KnownBodyLength,
        }, ForwardError.None, "");
    }

    private ValueTask<ResponseHead?> ReadHeadAsync(PipeReader input, string method, CancellationToken cancellationToken) =>
        Http1ResponseReader.ReadFinalHeadAsync(input, limits, method, rejectSwitchingProtocols: true, cancellationToken);

    private HttpResponse Fail(HttpRequest request, ForwardError error, string detail)
    {
        var status = HttpForwardRules.StatusFor(error);
        LogFailed(logger, request.Method, request.Target, error, status, detail);
        return HttpResponse.Text(status, $"{ReasonPhrases.For(status)}: {error}");
    }

    [LoggerMessage(EventId = 7010, Level = LogLevel.Debug, Message = "{Method} {Target} to the origin: {Error} -> {Status} ({Detail})")]
    private static partial void LogFailed(ILogger logger, string method, string target, ForwardError error, int status, string detail);

    /// <summary>The origin connection of one client connection.</summary>
    internal sealed class OriginSlot
    {
        private IAsyncDisposable? _owner;

        public IDuplexPipe? Pipe { get; private set; }

        public void Set(IDuplexPipe pipe, IAsyncDisposable? owner)
        {
            Pipe = pipe;
            _owner = owner;
        }

        public async ValueTask ReleaseAsync()
        {
            var owner = _owner;
            Pipe = null;
            _owner = null;
            if (owner is not null)
            {
                await owner.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}
