using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// What the HTTP/2 server adds to each request's <see cref="HttpRequest.Extensions"/>: the stream, the request's
/// :scheme and :authority, and the :protocol of an extended CONNECT (RFC 8441 §4; "websocket" for WebSocket over
/// HTTP/2). A client request carrying one with <see cref="Protocol"/> set is sent as an extended CONNECT.
/// </summary>
public sealed record Http2RequestInfo(int StreamId, string? Scheme, string? Authority, string? Protocol);

/// <summary>
/// Serves HTTP/2 connections (RFC 9113, server role): every stream becomes an <see cref="HttpRequest"/> (method and
/// target from :method / :path, or :authority for CONNECT; Version <see cref="HttpProtocolVersion.Http2"/>; a Host
/// field from :authority when absent; the body streamed) passed to the application, and its
/// <see cref="HttpResponse"/> is written back (streamed body, trailers). A 2xx (or 101) to a CONNECT or extended
/// CONNECT with <see cref="HttpResponse.OnUpgrade"/> turns the stream into a byte tunnel.
/// </summary>
public static class Http2Server
{
    /// <summary>
    /// Serves one connection whose next octets are the client preface (h2c prior knowledge, or TLS with ALPN h2;
    /// peek with <see cref="Http2Preface.Detect"/> to choose between HTTP/1.1 and HTTP/2 without consuming).
    /// Returns when the connection has ended. <paramref name="drain"/>: send GOAWAY and finish the streams in
    /// flight (graceful shutdown, §6.8); <paramref name="abort"/>: end at once.
    /// </summary>
    public static Task ServeAsync(IDuplexPipe transport, IService<HttpRequest, HttpResponse> application, Http2Limits? limits = null,
        ILogger? logger = null, TimeProvider? time = null, CancellationToken drain = default, CancellationToken abort = default) =>
        ServeCoreAsync(transport, application, limits, logger, time, null, 0, drain, abort);

    /// <summary>Serves <paramref name="connection"/>'s transport; drains when it is asked to shut down; requests see its extensions and <see cref="HttpRequest.Connection"/>.</summary>
    public static Task ServeAsync(ConnectionContext connection, IService<HttpRequest, HttpResponse> application, Http2Limits? limits = null,
        ILogger? logger = null, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return ServeCoreAsync(connection.Transport, application, limits, logger, time, connection, connection.Id, connection.ShutdownRequested, default);
    }

    /// <summary>A connection service (for <see cref="TcpServer"/>) speaking HTTP/2 with prior knowledge.</summary>
    public static IService<ConnectionContext, Unit> Create(IService<HttpRequest, HttpResponse> application, Http2Limits? limits = null,
        ILoggerFactory? loggerFactory = null, TimeProvider? time = null)
    {
        (limits ??= new Http2Limits()).Validate();
        var logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Rama.Proxy.Http.Http2");
        return Service.FromFunc<ConnectionContext, Unit>(async (connection, _) =>
        {
            await ServeAsync(connection, application, limits, logger, time).ConfigureAwait(false);
            return Unit.Value;
        });
    }

    private static async Task ServeCoreAsync(IDuplexPipe transport, IService<HttpRequest, HttpResponse> application, Http2Limits? limits,
        ILogger? logger, TimeProvider? time, ConnectionContext? connection, long connectionId, CancellationToken drain, CancellationToken abort)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(application);
        var server = new Http2ServerConnection(transport, application, limits ?? new Http2Limits(), logger ?? NullLogger.Instance, time ?? TimeProvider.System, connection, connectionId);
        using var draining = drain.Register(static s => ((Http2ServerConnection)s!).BeginDrain(), server);
        await server.RunAsync(abort).ConfigureAwait(false);
    }
}

/// <summary>The server role of <see cref="Http2Connection"/>: streams to requests, responses to frames.</summary>
internal sealed class Http2ServerConnection(IDuplexPipe transport, IService<HttpRequest, HttpResponse> application, Http2Limits limits, ILogger logger,
    TimeProvider time, ConnectionContext? connection, long connectionId)
    : Http2Connection(transport, isServer: true, limits, logger, time, connectionId)
{
    /// <summary>The opaque data of the PING that measures the drain's round trip ("drain" in ASCII).</summary>
    internal const ulong DrainPingData = 0x0000_0064_7261_696E;

    private readonly List<Task> _running = [];
    private readonly TaskCompletionSource _drainPingAcked = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// §6.8 graceful shutdown, in two steps as the RFC recommends: a GOAWAY with 2^31-1 tells the client to open no new
    /// stream, while streams it sent before it saw that are still taken (a client that opened one as the drain began
    /// would otherwise see it refused); after one round trip (the ACK of a PING sent behind it, at most
    /// <see cref="Http2Limits.DrainPingTimeout"/>) the final GOAWAY names the last stream taken. Those finish, later ones are
    /// refused (REFUSED_STREAM: safe to retry), and the connection closes when none is left.
    /// </summary>
    public void BeginDrain() => _ = DrainAsync();

    private async Task DrainAsync()
    {
        if (!await AnnounceGoAwayAsync().ConfigureAwait(false))
        {
            CloseWhenIdle(); // a GOAWAY went out already (its streams finish): the drain has nothing to announce
            return;
        }

        await SendPingAsync(DrainPingData, ack: false).ConfigureAwait(false);
        try
        {
            await _drainPingAcked.Task.WaitAsync(Limits.DrainPingTimeout, Time, Closing).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // a client that does not answer PING gets the final GOAWAY anyway
        }
        catch (OperationCanceledException)
        {
            return; // the connection ended meanwhile
        }

        await SendGoAwayAsync(Http2ErrorCode.NoError, null).ConfigureAwait(false);
        CloseWhenIdle();
    }

    protected override void OnPingAck(ulong data)
    {
        if (data == DrainPingData)
        {
            _drainPingAcked.TrySetResult();
        }
    }

    protected override async ValueTask OnHeadAsync(Http2Stream? stream, int streamId, Http2HeaderCollector block, bool endStream, bool tooLarge)
    {
        if (streamId > GoAwaySentLastStreamId)
        {
            await RefuseAsync(streamId, Http2ErrorCode.RefusedStream, "after GOAWAY").ConfigureAwait(false);
            return;
        }

        if (tooLarge)
        {
            // RFC 9113 §10.5.1, RFC 6585 §5: 431 on the stream; the table is in step (the decoder ran to the end of the block).
            CountReset("too many oversized header lists");
            RememberRefused(streamId);
            Http2Log.StreamRefused(Logger, ConnectionId, streamId, "header list too large");
            var refused = new Http2Stream(this, streamId, 0, 0);
            await SendHeadersAsync(refused, ToFields(new HttpHeaders(0), 431), endStream: true, Closing).ConfigureAwait(false);
            if (!endStream)
            {
                await SendRstStreamAsync(streamId, Http2ErrorCode.NoError).ConfigureAwait(false);
            }

            return;
        }

        if (block.Complete(Limits.EnableConnectProtocol) is { } malformed || (endStream && block.ContentLength > 0))
        {
            await RefuseAsync(streamId, Http2ErrorCode.ProtocolError, block.Malformed ?? "content-length without DATA").ConfigureAwait(false); // §8.1.1
            return;
        }

        var opened = TryOpenPeerStream(streamId, endStream);
        if (opened is null)
        {
            await RefuseAsync(streamId, Http2ErrorCode.RefusedStream, "SETTINGS_MAX_CONCURRENT_STREAMS reached").ConfigureAwait(false); // §5.1.2
            return;
        }

        opened.ExpectedLength = block.ContentLength;
        var request = CreateRequest(opened, block, endStream);
        opened.Request = request;
        var task = RunStreamAsync(opened, request);
        lock (_running)
        {
            if (_running.Count > 2 * Limits.MaxConcurrentStreams)
            {
                _running.RemoveAll(t => t.IsCompleted);
            }

            _running.Add(task);
        }
    }

    private async ValueTask RefuseAsync(int streamId, Http2ErrorCode code, string reason)
    {
        Http2Log.StreamRefused(Logger, ConnectionId, streamId, reason);
        RememberRefused(streamId);
        CountReset("too many refused streams");
        await SendRstStreamAsync(streamId, code).ConfigureAwait(false);
    }

    private HttpRequest CreateRequest(Http2Stream stream, Http2HeaderCollector block, bool endStream)
    {
        var method = block.Method!;
        var classicConnect = method == HttpMethods.Connect && block.Protocol is null;
        var (target, form) = classicConnect ? (block.Authority!, RequestTargetForm.Authority)
            : block.Path == "*" ? ("*", RequestTargetForm.Asterisk)
            : (block.Path!, RequestTargetForm.Origin);
        var headers = block.Headers;
        if (block.Authority is not null && !headers.Contains("host"u8))
        {
            // RFC 9113 §8.3.1: :authority stands for Host; HTTP/1.1 code downstream routes on Host.
            headers.Insert(0, "host"u8.ToArray(), Encoding.Latin1.GetBytes(block.Authority));
        }

        var request = new HttpRequest(method, target, form, HttpProtocolVersion.Http2, headers, connection?.Extensions)
        {
            Connection = connection,
            Body = endStream ? EmptyBody.Instance : stream.Body!,
            BodyFraming = endStream || method == HttpMethods.Connect ? BodyFraming.None
                : block.ContentLength >= 0 ? BodyFraming.ContentLength : BodyFraming.Chunked,
            ContentLength = Math.Max(0, block.ContentLength),
        };
        request.Extensions.Set(new Http2RequestInfo(stream.Id, block.Scheme, block.Authority, block.Protocol));
        if (Fingerprint is { } fingerprint)
        {
            request.Extensions.Set(fingerprint);
        }

        return request;
    }

    private async Task RunStreamAsync(Http2Stream stream, HttpRequest request)
    {
        await Task.Yield(); // the read loop goes on with the next frame
        var token = stream.Aborted.Token;
        HttpResponse response;
        try
        {
            response = await application.ServeAsync(request, token).ConfigureAwait(false);
        }
        catch (Exception) when (token.IsCancellationRequested)
        {
            await stream.CompleteBodyAsync().ConfigureAwait(false);
            return;
        }
        catch (Exception error)
        {
            Http2Log.ApplicationFault(Logger, error, ConnectionId, stream.Id);
            response = HttpResponse.Text(500, "internal server error");
        }

        try
        {
            await WriteResponseAsync(stream, request, response, token).ConfigureAwait(false);
        }
        catch (Exception error) when (error is IOException or OperationCanceledException or InvalidOperationException or Http2Exception)
        {
            Http2Log.ResponseAborted(Logger, ConnectionId, stream.Id, error.Message);
            await ResetIfOpenAsync(stream, Http2ErrorCode.Cancel).ConfigureAwait(false);
        }
        catch (Exception error)
        {
            // The application's body reader failed mid-body: the status is gone, the stream is reset.
            Http2Log.ApplicationFault(Logger, error, ConnectionId, stream.Id);
            await ResetIfOpenAsync(stream, Http2ErrorCode.InternalError).ConfigureAwait(false);
        }
        finally
        {
            await response.Body.CompleteAsync().ConfigureAwait(false);
            await stream.CompleteBodyAsync().ConfigureAwait(false);
        }

        if (!stream.Reset && stream.LocalClosed && !stream.RemoteClosed)
        {
            // RFC 9113 §8.1: the response is complete; the rest of the request body is not wanted.
            AbortStream(stream, Http2ErrorCode.NoError, new IOException("response complete before the request body"));
            await SendRstStreamAsync(stream.Id, Http2ErrorCode.NoError, afterResponse: true).ConfigureAwait(false);
        }
    }

    private async ValueTask ResetIfOpenAsync(Http2Stream stream, Http2ErrorCode code)
    {
        if (stream.Reset || HasClosed)
        {
            return;
        }

        AbortStream(stream, code, new IOException($"stream reset ({code})"));
        try
        {
            await SendRstStreamAsync(stream.Id, code).ConfigureAwait(false);
        }
        catch (Exception error) when (error is OperationCanceledException or IOException or InvalidOperationException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, error.Message);
        }
    }

    private async Task WriteResponseAsync(Http2Stream stream, HttpRequest request, HttpResponse response, CancellationToken token)
    {
        var status = response.Status;
        var extendedConnect = request.Extensions.Get<Http2RequestInfo>()?.Protocol is not null;
        if (status == 101 && response.OnUpgrade is not null && extendedConnect)
        {
            status = 200; // RFC 8441 §5: the 101 of an HTTP/1.1 upgrade is a 200 here (RFC 9113 §8.6 has no 101)
        }

        var tunnel = response.OnUpgrade is not null && request.IsConnect && status is >= 200 and < 300;
        var noBody = request.IsHead || status is 204 or 304;
        var contentLength = !tunnel && !noBody && response.BodyLength is { } length && !response.Headers.Contains("content-length"u8)
            ? Encoding.ASCII.GetBytes(length.ToString(System.Globalization.CultureInfo.InvariantCulture))
            : null;

        // The head's fields from the shared pool: they are encoded (under the write lock) before each send below returns.
        var fields = RentResponseFields(response.Headers, status, contentLength);
        try
        {
            if (tunnel)
            {
                await SendHeadersAsync(stream, fields, endStream: false, token).ConfigureAwait(false);
                ReturnFields(fields);
                fields = default;
                await RunTunnelAsync(stream, response.OnUpgrade!, token).ConfigureAwait(false);
                return;
            }

            var empty = noBody || (ReferenceEquals(response.Body, EmptyBody.Instance) && (response.Trailers is null || response.Trailers.Count == 0));
            if (empty)
            {
                await SendHeadersAsync(stream, fields, endStream: true, token).ConfigureAwait(false);
            }
            else
            {
                await SendHeadAndBodyAsync(stream, fields, response.Body, TrailerSource.Of(response), token).ConfigureAwait(false);
            }
        }
        finally
        {
            ReturnFields(fields);
        }
    }

    private async Task RunTunnelAsync(Http2Stream stream, Func<IDuplexPipe, CancellationToken, Task> onUpgrade, CancellationToken token)
    {
        var outbound = new Pipe(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, useSynchronizationContext: false));
        var pump = PumpAsync();
        try
        {
            await onUpgrade(new TunnelPipe((PipeReader?)stream.Body ?? EmptyBody.Instance, outbound.Writer), token).ConfigureAwait(false);
        }
        finally
        {
            await outbound.Writer.CompleteAsync().ConfigureAwait(false);
        }

        await pump.ConfigureAwait(false);

        async Task PumpAsync()
        {
            try
            {
                await SendBodyAsync(stream, outbound.Reader, TrailerSource.None, token).ConfigureAwait(false);
                await outbound.Reader.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception error)
            {
                await outbound.Reader.CompleteAsync(error).ConfigureAwait(false); // the application's writes end too
                throw;
            }
        }
    }

    protected override async Task OnConnectionClosedAsync()
    {
        Task[] running;
        lock (_running)
        {
            running = [.. _running];
        }

        try
        {
            await Task.WhenAll(running).ConfigureAwait(false);
        }
        catch (Exception error) when (error is IOException or OperationCanceledException)
        {
            Http2Log.TransportGone(Logger, ConnectionId, error.Message);
        }
    }

    private sealed class TunnelPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
