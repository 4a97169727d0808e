using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Net.Epoll;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Http;

internal sealed partial class EpollReverseProxy
{
    private enum Phase : byte
    {
        ReadingHead,
        Resolving,
        Connecting,
        SendingRequest,
        ReadingResponseHead,
        SendingResponse,
        Lingering,
        Closed,
    }

    private enum Deadline : byte
    {
        None,
        Idle,
        Header,
        Connect,
        ResponseHead,
        ResponseBody,
        Linger,
    }

    /// <summary>
    /// One client connection as a state machine (RFC 9112 §9.3 keep-alive loop). <see cref="Pump"/> runs the
    /// current phase until it cannot progress (a socket would block), then returns to the loop: readiness
    /// events call it again. Everything here runs on the loop thread.
    /// </summary>
    private sealed class ClientConnection : IEpollHandler
    {
        private const int BufferSize = 16 * 1024;
        private const int BodyBufferSize = 64 * 1024;
        private const int StepBudget = 256;
        private readonly EpollReverseProxy _owner;
        private readonly LoopState _loop;
        private readonly ConnectionContext _context;
        private readonly CancellationToken _serverToken;
        private readonly Socket _socket;
        private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private EpollLoop.Registration _registration;
        private bool _registered;
        private CancellationTokenRegistration _onAbort;
        private CancellationTokenRegistration _onShutdown;
        private Phase _phase;
        private Deadline _deadline;
        private long _deadlineMs;
        private bool _readable = true;
        private bool _writable = true;
        private bool _closeAfterResponse;
        private bool _peerClosed;

        // Client input: [_inStart, _inEnd) not yet consumed.
        private byte[]? _in;
        private int _inStart;
        private int _inEnd;
        private HeadScanState _scan;

        // The exchange in flight.
        private HttpRequest? _request;
        // The in-place parser's reused objects: one request and one response field list per connection, so a request allocates nothing.
        private HttpRequest? _parsedRequest;
        private HttpHeaders? _respHeaders;
        // Whether the client's request lets the connection persist, decided at its head: its fields slice _in, which body bytes reuse.
        private bool _requestPersistent;
        private long _startedAt;
        private long _bodyRemaining;
        private long _bodySent;
        private bool _uploadIncomplete;
        private bool _reused;
        private bool _retried;
        private OriginConnection? _origin;
        private ArrayBufferWriter<byte>? _upHead;
        private int _upSent;

        // The response: head (and small bodies) in _out, origin bytes in _resp: [_respStart, _approvedEnd) body to send, [_approvedEnd, _respEnd) not yet classified.
        private ArrayBufferWriter<byte>? _out;
        private int _outSent;
        private byte[]? _resp;
        private int _respStart;
        private int _approvedEnd;
        private int _respEnd;
        private HeadScanState _respScan;
        private int _status;
        private BodyFraming _respFraming;
        private long _respRemaining;
        private ChunkedScanner _chunks;
        private bool _bodyDone;
        private bool _keepAlive;
        private bool _originReusable;
        private bool _lingerAfter;
        private long _bytesOut;
        private long _discarded;

        public ClientConnection(EpollReverseProxy owner, LoopState loop, ConnectionContext context, CancellationToken serverToken)
        {
            _owner = owner;
            _loop = loop;
            _context = context;
            _serverToken = serverToken;
            _socket = context.SocketConnection.Socket;
        }

        public Task Completion => _completion.Task;

        public int ListIndex { get; set; } = -1;

        private HttpLimits Limits => _owner._limits;

        public void Start()
        {
            _socket.Blocking = false;
            _registration = _loop.Loop.Register(_socket, this);
            _registered = true;
            _loop.Add(this);
            SetDeadline(Deadline.Idle, _owner._limits.HeaderTimeout);
            // Token callbacks come from other threads: they post to the loop.
            _onAbort = _serverToken.UnsafeRegister(static s =>
            {
                var c = (ClientConnection)s!;
                c._loop.Loop.Post(static x => ((ClientConnection)x!).Close("aborted"), c, c);
            }, this);
            _onShutdown = _context.ShutdownRequested.UnsafeRegister(static s =>
            {
                var c = (ClientConnection)s!;
                c._loop.Loop.Post(static x => ((ClientConnection)x!).OnShutdown(), c, c);
            }, this);
            Pump();
        }

        public void OnEvents(uint events)
        {
            if ((events & (EpollNative.EpollIn | EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            {
                _readable = true;
            }

            if ((events & (EpollNative.EpollOut | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            {
                _writable = true;
            }

            if ((events & (EpollNative.EpollRdHup | EpollNative.EpollHup | EpollNative.EpollErr)) != 0)
            {
                _peerClosed = true;
            }

            Pump();
        }

        public void OnFault(Exception exception)
        {
            if (exception is ObjectDisposedException)
            {
                Close("closed locally");
                return;
            }

            LogFault(_owner._logger, exception, _context.Id);
            Abort("proxy fault: " + exception.GetType().Name);
        }

        private void OnShutdown()
        {
            _closeAfterResponse = true;
            if (_phase == Phase.ReadingHead && _inEnd == _inStart)
            {
                LogClose(_owner._logger, _context.Id, "shutting down while idle");
                Close("shutting down while idle");
            }
        }

        public void OnTick(long nowMs)
        {
            if (_deadline == Deadline.None || nowMs < _deadlineMs)
            {
                return;
            }

            try
            {
                OnDeadline();
            }
            catch (Exception ex)
            {
                OnFault(ex);
            }
        }

        private void OnDeadline()
        {

            var kind = _deadline;
            _deadline = Deadline.None;
            switch (kind)
            {
                case Deadline.Idle:
                    LogClose(_owner._logger, _context.Id, "idle timeout");
                    Close("idle timeout");
                    break;
                case Deadline.Header:
                    // Slowloris: the head did not complete within HeaderTimeout of its first byte.
                    LogRejected(_owner._logger, _context.Id, 408, HttpRejectReason.HeaderTimeout);
                    _context.TrySetCloseReason("rejected: 408 HeaderTimeout");
                    SendFinal(408, HttpRejection.Describe(HttpRejectReason.HeaderTimeout));
                    break;
                case Deadline.Connect:
                    Fail(ForwardError.ConnectTimedOut, "connect timed out");
                    break;
                case Deadline.ResponseHead:
                    Fail(ForwardError.UpstreamTimedOut, "no response head in time");
                    break;
                case Deadline.ResponseBody:
                    AbortMidBody("the origin sent nothing for the upstream timeout mid-body");
                    break;
                case Deadline.Linger:
                    Close("lingering close timed out");
                    break;
            }

            Pump(); // a timeout's answer goes out now (a no-op once closed)
        }

        private void SetDeadline(Deadline kind, TimeSpan after)
        {
            _deadline = kind;
            _deadlineMs = EpollLoop.NowMs + (long)after.TotalMilliseconds;
        }

        /// <summary>Runs the current phase until nothing more can be done without waiting for a socket.</summary>
        public void Pump()
        {
            var progress = true;
            var budget = StepBudget;
            while (progress)
            {
                if (--budget == 0)
                {
                    // Fairness: a connection whose both sides never block (a bulk body on loopback) yields to the
                    // others on its loop; the readiness flags are still set, so it continues from the queue.
                    _loop.Loop.Post(static s => ((ClientConnection)s!).Pump(), this, this);
                    return;
                }

                progress = _phase switch
                {
                    Phase.ReadingHead => StepReadHead(),
                    Phase.Connecting => StepConnecting(),
                    Phase.SendingRequest => StepSendRequest(),
                    Phase.ReadingResponseHead => StepReadResponseHead(),
                    Phase.SendingResponse => StepSendResponse(),
                    Phase.Lingering => StepLinger(),
                    _ => false,
                };
            }
        }

        // ---- request head -------------------------------------------------------------------------

        private bool StepReadHead()
        {
            if (_inEnd > _inStart)
            {
                var headStart = _inStart;
                int consumed;
                bool parsed;
                try
                {
                    parsed = Http1Parser.TryParseRequestInPlace(_in!, _inStart, _inEnd - _inStart, Limits, ref _scan, _context.Extensions,
                        ref _parsedRequest, out consumed);
                }
                catch (HttpCodecException)
                {
                    HandOver(headStart); // the pipe-based server rejects it, exactly as it rejects everything else
                    return false;
                }

                if (parsed)
                {
                    _inStart = consumed;
                    OnRequest(_parsedRequest!, headStart);
                    return true;
                }
            }

            if (!_readable)
            {
                return false;
            }

            EnsureInputSpace();
            if (_inEnd == _in!.Length)
            {
                // Still incomplete with the largest head the parser accepts buffered: its rejection is the pipe server's to send.
                HandOver(_inStart);
                return false;
            }

            var read = _socket.Receive(_in.AsSpan(_inEnd), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                _readable = false;
                return false;
            }

            if (error != SocketError.Success)
            {
                LogClose(_owner._logger, _context.Id, "client reset");
                Close("client reset");
                return false;
            }

            if (read == 0)
            {
                var reason = _inEnd > _inStart ? "client closed inside a request head" : "client closed";
                LogClose(_owner._logger, _context.Id, reason);
                Close(reason);
                return false;
            }

            if (_inEnd == _inStart)
            {
                // First bytes of a head: the header timeout runs from here; later bytes do not extend it.
                SetDeadline(Deadline.Header, Limits.HeaderTimeout);
            }

            _inEnd += read;
            if (_inEnd < _in.Length)
            {
                ShortRead();
            }

            return true;
        }

        // A short read drained the socket: wait for the next edge. Not once the peer closed: its FIN may have come
        // with the data just read, and no further edge will announce the end of file that the next read returns.
        private void ShortRead()
        {
            if (!_peerClosed)
            {
                _readable = false;
            }
        }

        private void EnsureInputSpace()
        {
            if (_in is null)
            {
                _in = ArrayPool<byte>.Shared.Rent(BufferSize);
                _inStart = _inEnd = 0;
                return;
            }

            if (_inStart == _inEnd)
            {
                _inStart = _inEnd = 0;
                return;
            }

            if (_inEnd < _in.Length)
            {
                return;
            }

            if (_inStart > 0)
            {
                // Move the unconsumed bytes to the front (the head scan state is relative to _inStart).
                Buffer.BlockCopy(_in, _inStart, _in, 0, _inEnd - _inStart);
                _inEnd -= _inStart;
                _inStart = 0;
                return;
            }

            if (_in.Length < _owner._maxHeadBuffer)
            {
                _in = Regrow(_in, 0, _inEnd, Math.Min(_in.Length * 2, _owner._maxHeadBuffer));
            }
        }

        /// <summary>A pooled buffer of at least <paramref name="size"/> holding <paramref name="buffer"/>'s [from, to) at its start; the old one goes back to the pool.</summary>
        private static byte[] Regrow(byte[] buffer, int from, int to, int size)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(size);
            Buffer.BlockCopy(buffer, from, bigger, 0, to - from);
            ArrayPool<byte>.Shared.Return(buffer);
            return bigger;
        }

        private void OnRequest(HttpRequest request, int headStart)
        {
            // What the pipe-based stack runs: HTTP/1.0 (keep-alive negotiation, no chunked answers), chunked
            // uploads (re-encoded there), Expect (it sends 100 Continue on the first body read), and every target
            // other than origin-form (CONNECT's 405, absolute-form, '*').
            if (request.Version != HttpProtocolVersion.Http11 || request.BodyFraming == BodyFraming.Chunked
                || request.TargetForm != RequestTargetForm.Origin || request.Headers.Contains("Expect"u8))
            {
                HandOver(headStart);
                return;
            }

            _request = request;
            _requestPersistent = Http1Parser.IsPersistent(request.Version, request.Headers);
            request.Connection = _context;
            _startedAt = Stopwatch.GetTimestamp();
            _bodyRemaining = request.BodyFraming == BodyFraming.ContentLength ? request.ContentLength : 0;
            _bodySent = 0;
            _uploadIncomplete = false;
            _retried = false;
            _deadline = Deadline.None;
            WriteUpstreamHead(request);
            AcquireOrigin();
        }

        /// <summary>The head for the origin: the forwarder's rules (<see cref="ForwardProxyService"/>) for a reverse proxy (the client's Host kept).</summary>
        private void WriteUpstreamHead(HttpRequest request)
        {
            var output = _upHead ??= new ArrayBufferWriter<byte>(1024);
            output.ResetWrittenCount();
            _upSent = 0;
            Http1Writer.WriteLatin1(output, request.Method);
            output.Write(" "u8);
            Http1Writer.WriteLatin1(output, request.Target);
            output.Write(" HTTP/1.1\r\n"u8);
            var source = request.Headers;
            var namesOtherFields = ForwardProxyService.NamesOtherFields(source);
            var wroteLength = false;
            foreach (var field in source)
            {
                if (ForwardProxyService.IsDropped(source, namesOtherFields, field))
                {
                    continue;
                }

                if (request.BodyFraming == BodyFraming.ContentLength && field.NameIs(HeaderNames.ContentLength))
                {
                    if (!wroteLength)
                    {
                        WriteContentLength(output, field.Name.Span, request.ContentLength);
                        wroteLength = true;
                    }

                    continue;
                }

                Http1Writer.WriteField(output, field.Name.Span, field.Value.Span);
            }

            if (_owner._via is { } via)
            {
                Http1Writer.WriteField(output, s_viaName, via);
            }

            output.Write("\r\n"u8);
        }

        private static void WriteContentLength(ArrayBufferWriter<byte> output, ReadOnlySpan<byte> name, long value)
        {
            output.Write(name);
            output.Write(": "u8);
            Http1Writer.WriteNumber(output, value);
            output.Write("\r\n"u8);
        }

        // ---- upstream connection ------------------------------------------------------------------

        private void AcquireOrigin()
        {
            var pooled = _loop.TakeIdle();
            if (pooled is not null)
            {
                _origin = pooled;
                pooled.Owner = this;
                _reused = true;
                _phase = Phase.SendingRequest;
                return;
            }

            Dial();
        }

        /// <summary>A new upstream connection: resolved (or the cached addresses) and connected without blocking the loop.</summary>
        private void Dial()
        {
            _reused = false;
            SetDeadline(Deadline.Connect, _owner._connector.ConnectTimeout);
            if (_owner.TryGetAddresses(out var addresses))
            {
                ConnectTo(addresses!);
                return;
            }

            _phase = Phase.Resolving;
            _ = ResolveThenConnectAsync();
        }

        private async Task ResolveThenConnectAsync()
        {
            IPAddress[]? addresses = null;
            string? failure = null;
            try
            {
                addresses = await _owner.ResolveAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or ArgumentException)
            {
                failure = ex.Message;
            }

            _loop.Loop.Post(static s =>
            {
                var (c, a, f) = ((ClientConnection, IPAddress[]?, string?))s!;
                if (c._phase != Phase.Resolving)
                {
                    return; // closed (or timed out) meanwhile
                }

                if (a is null)
                {
                    c.Fail(ForwardError.ConnectFailed, "the upstream name did not resolve: " + f);
                }
                else
                {
                    c.ConnectTo(a);
                }

                c.Pump();
            }, (this, addresses, failure), this);
        }

        private void ConnectTo(IPAddress[] addresses)
        {
            if (addresses.Length == 0)
            {
                Fail(ForwardError.ConnectFailed, "NameNotResolved: no address");
                return;
            }

            var address = addresses[0];
            if (_owner._connector.AllowDestination is { } allow && !allow(address))
            {
                Fail(ForwardError.NotAllowed, $"destination {address} not allowed");
                return;
            }

            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { Blocking = false, NoDelay = _owner._connector.NoDelay };
            var origin = new OriginConnection(_loop, socket) { Owner = this };
            var connected = false;
            try
            {
                // A non-blocking connect answers "in progress"; EPOLLOUT says when it is done (connect(2)).
                socket.Connect(new IPEndPoint(address, _owner._upstream.Port));
                connected = true;
                _deadline = Deadline.None;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.IOPending)
            {
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                Fail(ForwardError.ConnectFailed, $"{ex.SocketErrorCode}: {ex.Message}");
                return;
            }

            origin.Register();
            _origin = origin;
            _phase = connected ? Phase.SendingRequest : Phase.Connecting;
        }

        private bool StepConnecting()
        {
            var origin = _origin!;
            if (!origin.Writable)
            {
                return false;
            }

            var error = (SocketError)(int)origin.Socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
            if (error != SocketError.Success)
            {
                CloseOrigin();
                Fail(ForwardError.ConnectFailed, $"{error}: connect failed");
                return true;
            }

            _deadline = Deadline.None;
            _phase = Phase.SendingRequest;
            return true;
        }

        // ---- request to the origin ----------------------------------------------------------------

        private bool StepSendRequest()
        {
            var origin = _origin!;
            var head = _upHead!;
            if (_upSent < head.WrittenCount)
            {
                if (!origin.Writable)
                {
                    return CheckEarlyResponse();
                }

                var sent = origin.Socket.Send(head.WrittenSpan[_upSent..], SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock)
                {
                    origin.Writable = false;
                    return CheckEarlyResponse();
                }

                if (error != SocketError.Success)
                {
                    return OriginFailedBeforeResponse($"send failed: {error}");
                }

                _upSent += sent;
                if (_upSent < head.WrittenCount)
                {
                    origin.Writable = false;
                }

                return true;
            }

            if (_bodyRemaining > 0)
            {
                if (_inEnd > _inStart)
                {
                    if (!origin.Writable)
                    {
                        return CheckEarlyResponse();
                    }

                    var take = (int)Math.Min(_inEnd - _inStart, _bodyRemaining);
                    var sent = origin.Socket.Send(_in.AsSpan(_inStart, take), SocketFlags.None, out var error);
                    if (error == SocketError.WouldBlock)
                    {
                        origin.Writable = false;
                        return CheckEarlyResponse();
                    }

                    if (error != SocketError.Success)
                    {
                        return OriginFailedBeforeResponse($"send failed: {error}");
                    }

                    _inStart += sent;
                    _bodyRemaining -= sent;
                    _bodySent += sent;
                    if (sent < take)
                    {
                        origin.Writable = false;
                    }

                    return true;
                }

                if (!_readable)
                {
                    return CheckEarlyResponse();
                }

                EnsureInputSpace();
                var read = _socket.Receive(_in.AsSpan(_inEnd), SocketFlags.None, out var readError);
                if (readError == SocketError.WouldBlock)
                {
                    _readable = false;
                    return CheckEarlyResponse();
                }

                if (readError != SocketError.Success || read == 0)
                {
                    // RFC 9112 §6.3: the client closed before the body it announced; nothing can be answered.
                    LogClose(_owner._logger, _context.Id, "client closed inside a request body");
                    Close("client closed inside a request body");
                    return false;
                }

                _inEnd += read;
                if (_inEnd < _in!.Length)
                {
                    ShortRead();
                }

                return true;
            }

            _phase = Phase.ReadingResponseHead;
            SetDeadline(Deadline.ResponseHead, _owner._options.UpstreamResponseHeaderTimeout);
            return true;
        }

        // An origin may answer before it has read the whole body (RFC 9112 §9.3): stop uploading and read the answer.
        // The readiness flag may be stale (a pooled connection's last read filled its buffer), so this reads to know.
        private bool CheckEarlyResponse()
        {
            var origin = _origin!;
            if (!origin.Readable)
            {
                return false;
            }

            _resp ??= ArrayPool<byte>.Shared.Rent(BufferSize);
            var read = origin.Socket.Receive(_resp.AsSpan(_respEnd), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                origin.Readable = false;
                return false;
            }

            if (error != SocketError.Success || read == 0)
            {
                return OriginFailedBeforeResponse(read == 0 ? "closed while the request was sent" : $"receive failed: {error}");
            }

            _respEnd += read;
            _uploadIncomplete = _upSent < _upHead!.WrittenCount || _bodyRemaining > 0;
            _phase = Phase.ReadingResponseHead;
            SetDeadline(Deadline.ResponseHead, _owner._options.UpstreamResponseHeaderTimeout);
            return true;
        }

        private bool OriginFailedBeforeResponse(string detail)
        {
            // RFC 9110 §9.2.2 / RFC 9112 §9.3.1: a pooled connection the origin closed before answering; retry on a
            // fresh one only if idempotent and no body byte was sent.
            if (_reused && !_retried && _bodySent == 0 && !_uploadIncomplete && HttpMethods.IsIdempotent(_request!.Method))
            {
                LogRetry(_owner._logger, _request.Method, _request.Target);
                CloseOrigin();
                _retried = true;
                _upSent = 0;
                _respScan = default;
                _respStart = _approvedEnd = _respEnd = 0;
                Dial();
                return true;
            }

            Fail(ForwardError.UpstreamClosed, detail);
            return true;
        }

        // ---- response from the origin -------------------------------------------------------------

        private bool StepReadResponseHead()
        {
            var origin = _origin!;
            _resp ??= ArrayPool<byte>.Shared.Rent(BufferSize);
            if (_respEnd > _respStart)
            {
                ResponseStatus head;
                int consumed;
                bool parsed;
                var headers = _respHeaders ??= new HttpHeaders(16);
                try
                {
                    parsed = Http1Parser.TryParseResponseInPlace(_resp, _respStart, _respEnd - _respStart, Limits, ref _respScan,
                        _request!.Method, headers, out head, out consumed);
                }
                catch (HttpCodecException ex)
                {
                    CloseOrigin();
                    Fail(ForwardError.UpstreamProtocolError, ex.Message);
                    return true;
                }

                if (parsed)
                {
                    _respStart = consumed;
                    _respScan = default;
                    if (head.Status == 101)
                    {
                        // We never ask for an upgrade (Upgrade is not forwarded): a 101 is a broken origin.
                        CloseOrigin();
                        Fail(ForwardError.UpstreamProtocolError, "101 Switching Protocols without an upgrade request");
                        return true;
                    }

                    if (head.IsInterim)
                    {
                        return true; // 1xx: skipped, the final head follows (the client sent no Expect)
                    }

                    OnResponseHead(head, headers);
                    return true;
                }
            }

            if (!origin.Readable)
            {
                return false;
            }

            CompactResponse();
            if (_respEnd == _resp.Length)
            {
                // The parser rejects a head at its limit before this; a full buffer here means a head larger than the buffer.
                if (_resp.Length >= _owner._maxHeadBuffer)
                {
                    CloseOrigin();
                    Fail(ForwardError.UpstreamProtocolError, "response head too large");
                    return true;
                }

                _resp = Regrow(_resp, 0, _respEnd, Math.Min(_resp.Length * 2, _owner._maxHeadBuffer));
            }

            var read = origin.Socket.Receive(_resp.AsSpan(_respEnd), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                origin.Readable = false;
                return false;
            }

            if (error != SocketError.Success || read == 0)
            {
                var nothingYet = _respEnd == 0 && _respStart == 0;
                return nothingYet
                    ? OriginFailedBeforeResponse(read == 0 ? "closed before a response" : $"receive failed: {error}")
                    : FailAfterPartialHead();
            }

            _respEnd += read;
            if (_respEnd < _resp.Length)
            {
                origin.ShortRead();
            }

            return true;
        }

        private bool FailAfterPartialHead()
        {
            CloseOrigin();
            Fail(ForwardError.UpstreamClosed, "closed inside the response head");
            return true;
        }

        private void CompactResponse()
        {
            if (_respStart == _respEnd)
            {
                _respStart = _approvedEnd = _respEnd = 0;
            }
            else if (_respEnd == _resp!.Length && _respStart > 0)
            {
                var length = _respEnd - _respStart;
                Buffer.BlockCopy(_resp, _respStart, _resp, 0, length);
                _approvedEnd -= _respStart;
                _respEnd = length;
                _respStart = 0;
            }
        }

        // The head's fields slice _resp: used here, before any body byte moves.
        private void OnResponseHead(ResponseStatus head, HttpHeaders headers)
        {
            var request = _request!;
            _deadline = Deadline.None;
            _status = head.Status;
            _originReusable = Http1Parser.IsPersistent(head.Version, headers) && head.Framing != BodyFraming.UntilClose && !_uploadIncomplete; // before the Connection field goes
            _keepAlive = _requestPersistent && !_closeAfterResponse
                && !_context.ShutdownRequested.IsCancellationRequested && !_uploadIncomplete;
            // RFC 9112 §6.3 (1)/(2): no body in answers to HEAD, in 1xx/204/304.
            var bodyAllowed = !(request.IsHead || head.Status < 200 || head.Status is 204 or 304);
            _respFraming = bodyAllowed ? head.Framing : BodyFraming.None;
            _respRemaining = head.ContentLength;
            _chunks = new ChunkedScanner(Limits.MaxChunkLineBytes, Limits.MaxHeaderBytes);
            if (_respFraming == BodyFraming.UntilClose)
            {
                _keepAlive = false; // the origin's close ends the body; so does ours (an HTTP/1.1 client reads to close)
            }

            ForwardProxyService.RemoveHopByHop(headers);
            var output = _out ??= new ArrayBufferWriter<byte>(1024);
            output.ResetWrittenCount();
            _outSent = 0;
            Http1Writer.WriteStatusLine(output, head.Status, head.Reason);
            var wroteLength = false;
            foreach (var field in headers)
            {
                if (field.NameIs(HeaderNames.ContentLength))
                {
                    // One Content-Length with the parsed value; none in a 1xx/204; as given for HEAD/304 (the GET's length).
                    if (wroteLength || head.Status is < 200 or 204 || (bodyAllowed && _respFraming != BodyFraming.ContentLength))
                    {
                        continue;
                    }

                    wroteLength = true;
                    if (bodyAllowed)
                    {
                        WriteContentLength(output, field.Name.Span, head.ContentLength);
                        continue;
                    }
                }

                Http1Writer.WriteField(output, field.Name.Span, field.Value.Span);
            }

            if (_owner._via is { } via)
            {
                Http1Writer.WriteField(output, s_viaName, via);
            }

            if (_respFraming == BodyFraming.ContentLength && !wroteLength)
            {
                WriteContentLength(output, HeaderNames.ContentLength, head.ContentLength);
            }

            if (_respFraming == BodyFraming.Chunked)
            {
                output.Write("Transfer-Encoding: chunked\r\n"u8); // passed through as the origin framed it, checked by the scanner
            }

            if (!_keepAlive)
            {
                output.Write("Connection: close\r\n"u8);
            }

            output.Write("\r\n"u8);
            _bodyDone = _respFraming == BodyFraming.None || (_respFraming == BodyFraming.ContentLength && _respRemaining == 0);
            _approvedEnd = _respStart;
            _bytesOut = 0;
            var large = _respFraming is BodyFraming.Chunked or BodyFraming.UntilClose
                || (_respFraming == BodyFraming.ContentLength && _respRemaining > _resp!.Length);
            if (large && _resp!.Length < BodyBufferSize)
            {
                // A large body moves in 64 KiB reads (loopback's segment size): a quarter of the syscalls of 16 KiB ones.
                var buffered = _respEnd - _respStart;
                _resp = Regrow(_resp, _respStart, _respEnd, BodyBufferSize);
                _respStart = _approvedEnd = 0;
                _respEnd = buffered;
            }

            if (!_bodyDone)
            {
                try
                {
                    Classify();
                }
                catch (HttpCodecException ex)
                {
                    // Bad chunked framing in the first body bytes, before anything went to the client: a 502, like a bad head.
                    CloseOrigin();
                    Fail(ForwardError.UpstreamProtocolError, ex.Message);
                    return;
                }

                // A small body already here goes out with the head, in one send.
                var approved = _approvedEnd - _respStart;
                if (approved > 0 && approved <= 8 * 1024)
                {
                    output.Write(_resp.AsSpan(_respStart, approved));
                    _bytesOut += approved;
                    _respStart = _approvedEnd;
                }
            }

            _phase = Phase.SendingResponse;
        }

        // Marks the buffered origin bytes that belong to the body as ready to send; finds the body's end.
        private void Classify()
        {
            var available = _respEnd - _approvedEnd;
            if (available == 0 || _bodyDone)
            {
                return;
            }

            int take;
            switch (_respFraming)
            {
                case BodyFraming.ContentLength:
                    take = (int)Math.Min(available, _respRemaining);
                    _respRemaining -= take;
                    _bodyDone = _respRemaining == 0;
                    break;
                case BodyFraming.Chunked:
                    take = _chunks.Scan(_resp.AsSpan(_approvedEnd, available)); // throws on bad framing
                    _bodyDone = _chunks.IsDone;
                    break;
                default:
                    take = available;
                    break;
            }

            _approvedEnd += take;
        }

        private bool StepSendResponse()
        {
            var output = _out!;
            if (_outSent < output.WrittenCount)
            {
                if (!_writable)
                {
                    return false;
                }

                var sent = _socket.Send(output.WrittenSpan[_outSent..], SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock)
                {
                    _writable = false;
                    return false;
                }

                if (error != SocketError.Success)
                {
                    return ClientGoneMidResponse(error);
                }

                _outSent += sent;
                if (_outSent < output.WrittenCount)
                {
                    _writable = false;
                }

                return true;
            }

            if (_respStart < _approvedEnd)
            {
                if (!_writable)
                {
                    return false;
                }

                var sent = _socket.Send(_resp.AsSpan(_respStart, _approvedEnd - _respStart), SocketFlags.None, out var error);
                if (error == SocketError.WouldBlock)
                {
                    _writable = false;
                    return false;
                }

                if (error != SocketError.Success)
                {
                    return ClientGoneMidResponse(error);
                }

                if (sent < _approvedEnd - _respStart)
                {
                    _writable = false;
                }

                _respStart += sent;
                _bytesOut += sent;
                return true;
            }

            if (_bodyDone || _origin is null)
            {
                FinishExchange();
                return true;
            }

            if (_respEnd > _approvedEnd)
            {
                try
                {
                    Classify();
                }
                catch (HttpCodecException ex)
                {
                    // The head is out: no status can be sent any more. Reset, so the client sees a broken response, never a truncated one that looks complete.
                    return AbortMidBody("bad chunked framing from the origin: " + ex.Message);
                }

                return true;
            }

            var origin = _origin;
            if (!origin.Readable)
            {
                WaitForBody();
                return false;
            }

            CompactResponse();
            var read = origin.Socket.Receive(_resp.AsSpan(_respEnd), SocketFlags.None, out var readError);
            if (readError == SocketError.WouldBlock)
            {
                origin.Readable = false;
                WaitForBody();
                return false;
            }

            _deadline = Deadline.None;

            if (readError != SocketError.Success || read == 0)
            {
                if (read == 0 && readError == SocketError.Success && _respFraming == BodyFraming.UntilClose)
                {
                    _bodyDone = true; // RFC 9112 §6.3 (8): the close delimits the body
                    _originReusable = false;
                    return true;
                }

                return AbortMidBody("origin closed before the end of the response body");
            }

            _respEnd += read;
            if (_respEnd < _resp!.Length)
            {
                origin.ShortRead();
            }

            return true;
        }

        // nginx's proxy_read_timeout: the upstream timeout also bounds the wait between two reads of a body.
        private void WaitForBody()
        {
            if (_deadline == Deadline.None)
            {
                SetDeadline(Deadline.ResponseBody, _owner._options.UpstreamResponseHeaderTimeout);
            }
        }

        private bool ClientGoneMidResponse(SocketError error)
        {
            LogClose(_owner._logger, _context.Id, $"client gone mid-response ({error})");
            CloseOrigin();
            Close("client reset");
            return false;
        }

        private bool AbortMidBody(string detail)
        {
            LogResponseAborted(_owner._logger, _context.Id, _request?.Method ?? "-", _request?.Target ?? "-", detail);
            CloseOrigin();
            Abort("response body failed: " + detail);
            return false;
        }

        private void FinishExchange()
        {
            _deadline = Deadline.None;
            if (_origin is { } origin)
            {
                _origin = null;
                if (_originReusable && _respEnd == _respStart && _bodyDone && !HasMoreBytes(origin))
                {
                    _loop.ReturnIdle(origin);
                }
                else
                {
                    origin.Close(); // excess bytes after the body, or framing that ends with the connection
                }
            }

            if (_request is { } request && _owner._accessLog.IsEnabled)
            {
                _owner._accessLog.Write(new AccessLogEntry
                {
                    Time = DateTimeOffset.UtcNow,
                    Kind = AccessKind.Reverse,
                    Client = _context.RemoteEndPoint,
                    Method = request.Method,
                    Target = request.Target,
                    Status = _status,
                    BytesFromClient = _bodySent,
                    BytesToClient = _bytesOut,
                    Duration = Stopwatch.GetElapsedTime(_startedAt),
                    ConnectionId = _context.Id,
                });
            }

            _request = null;
            ReturnResponseBuffer();
            if (!_keepAlive)
            {
                _context.TrySetCloseReason("connection: close");
                var lingering = _lingerAfter || _inEnd > _inStart || _bodyRemaining > 0 || _uploadIncomplete;
                CloseGracefully(lingering);
                return;
            }

            _scan = default;
            _phase = Phase.ReadingHead;
            if (_inEnd > _inStart)
            {
                SetDeadline(Deadline.Header, Limits.HeaderTimeout); // pipelined: the next head started already
            }
            else
            {
                ReturnInputBuffer();
                SetDeadline(Deadline.Idle, Limits.KeepAliveTimeout);
            }
        }

        // A connection whose last read filled the buffer may hold more: bytes past the response's end mean it is not reusable.
        private static bool HasMoreBytes(OriginConnection origin)
        {
            if (!origin.Readable)
            {
                return false;
            }

            Span<byte> probe = stackalloc byte[1];
            _ = origin.Socket.Receive(probe, SocketFlags.None, out var error);
            origin.Readable = false;
            return error != SocketError.WouldBlock;
        }

        // ---- errors as answers --------------------------------------------------------------------

        /// <summary>An expected forwarding outcome before any response byte went out: the status the pipe-based stack answers with.</summary>
        private void Fail(ForwardError error, string detail)
        {
            CloseOrigin();
            var status = ForwardProxyService.StatusFor(error);
            LogForwardFailed(_owner._logger, _request?.Method ?? "-", _request?.Target ?? "-", error, status, detail);
            _status = status;
            _deadline = Deadline.None;
            // The request body was not all read: the connection cannot carry another request.
            var clean = _bodyRemaining == 0 && !_uploadIncomplete;
            _keepAlive = clean && _request is not null && _requestPersistent && !_closeAfterResponse
                && !_context.ShutdownRequested.IsCancellationRequested;
            _lingerAfter = !clean;
            WriteText(status, $"{ReasonPhrases.For(status)}: {error}", _keepAlive);
        }

        /// <summary>An answer after which the connection closes (408), with a lingering close so the client reads it.</summary>
        private void SendFinal(int status, string text)
        {
            CloseOrigin();
            _status = status;
            _keepAlive = false;
            _lingerAfter = true;
            _request = null;
            WriteText(status, text, keepAlive: false);
            Pump();
        }

        private void WriteText(int status, string text, bool keepAlive)
        {
            var body = System.Text.Encoding.UTF8.GetBytes(text + "\n");
            var output = _out ??= new ArrayBufferWriter<byte>(1024);
            output.ResetWrittenCount();
            _outSent = 0;
            Http1Writer.WriteStatusLine(output, status, null);
            output.Write("Content-Type: text/plain; charset=utf-8\r\nContent-Length: "u8);
            Http1Writer.WriteNumber(output, body.Length);
            output.Write(keepAlive ? "\r\n\r\n"u8 : "\r\nConnection: close\r\n\r\n"u8);
            output.Write(body);
            _bytesOut = body.Length;
            _bodyDone = true;
            _respFraming = BodyFraming.None;
            _respStart = _approvedEnd = _respEnd = 0;
            _phase = Phase.SendingResponse;
        }

        // ---- hand-over and closing ----------------------------------------------------------------

        /// <summary>
        /// Gives the connection to the pipe-based stack at a request boundary: the unconsumed bytes from
        /// <paramref name="from"/> become the first bytes of its input.
        /// </summary>
        private void HandOver(int from)
        {
            var prefix = _in is null ? [] : _in.AsSpan(from, _inEnd - from).ToArray();
            LogHandOver(_owner._logger, _context.Id, prefix.Length);
            Detach();
            _phase = Phase.Closed;
            _ = RunClassicAsync(prefix);
        }

        private async Task RunClassicAsync(byte[] prefix)
        {
            try
            {
                _socket.Blocking = true;
                _context.SocketConnection.Start(prefix);
                await _owner._classic.ServeAsync(_context, _serverToken).ConfigureAwait(false);
                _completion.TrySetResult();
            }
            catch (Exception ex)
            {
                _completion.TrySetException(ex);
            }
        }

        private void CloseGracefully(bool lingering)
        {
            if (!lingering)
            {
                Close(_context.CloseReason ?? "closed");
                return;
            }

            // nginx's lingering close: FIN after the answer, then read and discard (bounded) so that closing does not
            // reset the connection before the client read what we sent.
            try
            {
                _socket.Shutdown(SocketShutdown.Send);
            }
            catch (SocketException)
            {
                Close("client reset");
                return;
            }

            _discarded = 0;
            _phase = Phase.Lingering;
            SetDeadline(Deadline.Linger, Limits.LingeringCloseTimeout);
        }

        private bool StepLinger()
        {
            if (!_readable)
            {
                return false;
            }

            EnsureInputSpace();
            _inStart = _inEnd = 0;
            var read = _socket.Receive(_in.AsSpan(), SocketFlags.None, out var error);
            if (error == SocketError.WouldBlock)
            {
                _readable = false;
                return false;
            }

            _discarded += read;
            if (error != SocketError.Success || read == 0 || _discarded > Limits.MaxDrainBytes)
            {
                Close(_context.CloseReason ?? "closed");
                return false;
            }

            return true;
        }

        private void CloseOrigin()
        {
            if (_origin is { } origin)
            {
                _origin = null;
                origin.Close();
            }
        }

        /// <summary>Ends the connection with a reset (RST): the client must not take a broken response for a complete one.</summary>
        private void Abort(string reason) => End(reason, reset: true);

        /// <summary>Ends the connection (the server that accepted it closes the socket: FIN). Idempotent.</summary>
        public void Close(string reason) => End(reason, reset: false);

        private void End(string reason, bool reset)
        {
            if (_phase == Phase.Closed)
            {
                return;
            }

            _context.TrySetCloseReason(reason);
            CloseOrigin();
            Detach();
            _phase = Phase.Closed;
            if (reset)
            {
                _context.Abort(reason); // before completing: the server's graceful close must not come first (a FIN)
            }

            _completion.TrySetResult();
        }

        private void Detach()
        {
            _deadline = Deadline.None;
            if (_registered)
            {
                _registered = false;
                _loop.Loop.Unregister(_registration);
            }

            _loop.Remove(this);
            _onAbort.Dispose();
            _onShutdown.Dispose();
            ReturnInputBuffer();
            ReturnResponseBuffer();
        }

        private void ReturnInputBuffer()
        {
            if (_in is { } buffer)
            {
                _in = null;
                _inStart = _inEnd = 0;
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private void ReturnResponseBuffer()
        {
            if (_resp is { } buffer)
            {
                _resp = null;
                _respStart = _approvedEnd = _respEnd = 0;
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    [LoggerMessage(EventId = 2100, Level = LogLevel.Debug, Message = "{Method} {Target}: {Error} -> {Status} ({Detail})")]
    private static partial void LogForwardFailed(ILogger logger, string method, string target, ForwardError error, int status, string detail);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Debug, Message = "{Method} {Target}: pooled connection was closed by the origin; retrying on a new one")]
    private static partial void LogRetry(ILogger logger, string method, string target);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: closing, {Reason}")]
    private static partial void LogClose(ILogger logger, long connectionId, string reason);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: handed to the pipe-based HTTP server with {Bytes} bytes read")]
    private static partial void LogHandOver(ILogger logger, long connectionId, int bytes);

    [LoggerMessage(EventId = 2104, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: rejected with {Status} ({Reason})")]
    private static partial void LogRejected(ILogger logger, long connectionId, int status, HttpRejectReason reason);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: response to {Method} {Target} aborted mid-body: {Detail}")]
    private static partial void LogResponseAborted(ILogger logger, long connectionId, string method, string target, string detail);

    [LoggerMessage(EventId = 2106, Level = LogLevel.Error, Message = "Connection {ConnectionId}: reverse proxy fault")]
    private static partial void LogFault(ILogger logger, Exception exception, long connectionId);
}
