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
    private sealed partial class ClientConnection : IEpollHandler
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
        private bool _servedAny; // a request of this connection ran here: a hand-over continues HTTP/1.1 (no h2 preface any more)

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
        // A dial in progress: the resolved addresses, the next to try, and the failure so far (DialPolicy's rules).
        private IPAddress[]? _dialAddresses;
        private int _dialNext;
        private ConnectResult _dialLast;
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
        private bool _trailersIncomplete; // the chunked body's trailer section is not all in _resp yet: read before classifying again
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
            if (_phase != Phase.ReadingHead || _inEnd != _inStart)
            {
                return;
            }

            if (_servedAny)
            {
                LogClose(_owner._logger, _context.Id, "shutting down while idle");
                Close("shutting down while idle");
                return;
            }

            // A connection accepted before the shutdown whose first request is still on its way: its client saw no sign of
            // the shutdown, so closing it now loses that request. It gets a short grace (never more than it had) to send it.
            var graceEnds = _owner.NowMs + (long)GracefulShutdown.FirstRequestGrace.TotalMilliseconds;
            if (_deadline == Deadline.Idle && _deadlineMs > graceEnds)
            {
                _deadlineMs = graceEnds;
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
                    var reason = !_servedAny && _context.ShutdownRequested.IsCancellationRequested ? "shutting down before the first request arrived" : "idle timeout";
                    LogClose(_owner._logger, _context.Id, reason);
                    Close(reason);
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
            _deadlineMs = _owner.NowMs + (long)after.TotalMilliseconds;
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
