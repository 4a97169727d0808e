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
    /// <summary>Forwarding upstream: an origin connection (pooled or dialed), the head and body sent to it, the retry-once rule.</summary>
    private sealed partial class ClientConnection
    {
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

        /// <summary>
        /// A new upstream connection, by <see cref="DialPolicy"/>'s rules as <see cref="TcpConnector"/> dials: resolved by the
        /// stack's resolver, every address tried in turn (disallowed ones skipped) within one connect timeout, each connect
        /// non-blocking on the loop.
        /// </summary>
        private void Dial()
        {
            _reused = false;
            SetDeadline(Deadline.Connect, _owner._connector.ConnectTimeout);
            if (_owner._literalAddresses is { } literal)
            {
                ConnectTo(literal);
                return;
            }

            ValueTask<IPAddress[]> resolving;
            try
            {
                resolving = _owner._dns.ResolveAsync(_owner._upstream.Host, CancellationToken.None);
            }
            catch (Exception ex) when (ex is SocketException or TimeoutException or ArgumentException)
            {
                Fail(ForwardError.ConnectFailed, "the upstream name did not resolve: " + ex.Message);
                return;
            }

            if (resolving.IsCompletedSuccessfully)
            {
                ConnectTo(resolving.Result); // an answer the resolver had at hand: no thread hop
                return;
            }

            _phase = Phase.Resolving;
            _ = ResolveThenConnectAsync(resolving);
        }

        private async Task ResolveThenConnectAsync(ValueTask<IPAddress[]> resolving)
        {
            IPAddress[]? addresses = null;
            string? failure = null;
            try
            {
                addresses = await resolving.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or TimeoutException or ArgumentException)
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
                var none = DialPolicy.NoAddress(_owner._upstream.Host);
                Fail(HttpForwardRules.ErrorFor(none.Error), HttpForwardRules.Describe(none));
                return;
            }

            _dialAddresses = addresses;
            _dialNext = 0;
            _dialLast = DialPolicy.NothingTried;
            ConnectNext();
        }

        // The next allowed address; when none is left, the last failure (a refused address, or the last connect's error) is the answer.
        private void ConnectNext()
        {
            var addresses = _dialAddresses!;
            int index;
            while ((index = DialPolicy.NextAllowed(addresses, _dialNext, _owner._connector, ref _dialLast)) >= 0)
            {
                _dialNext = index + 1;
                var address = addresses[index];
                var socket = DialPolicy.CreateSocket(address, _owner._connector, blocking: false);
                var connected = false;
                try
                {
                    // A non-blocking connect answers "in progress"; EPOLLOUT says when it is done (connect(2)).
                    socket.Connect(new IPEndPoint(address, _owner._upstream.Port));
                    connected = true;
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.WouldBlock or SocketError.InProgress or SocketError.IOPending)
                {
                }
                catch (SocketException ex)
                {
                    socket.Dispose();
                    _dialLast = DialPolicy.Failed(address, _owner._upstream.Port, ex.SocketErrorCode);
                    continue;
                }

                var origin = new OriginConnection(_loop, socket) { Owner = this };
                origin.Register();
                _origin = origin;
                if (connected)
                {
                    _deadline = Deadline.None;
                }

                _phase = connected ? Phase.SendingRequest : Phase.Connecting;
                return;
            }

            _dialAddresses = null;
            Fail(HttpForwardRules.ErrorFor(_dialLast.Error), HttpForwardRules.Describe(_dialLast));
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
                var address = _dialAddresses![_dialNext - 1];
                CloseOrigin();
                _dialLast = DialPolicy.Failed(address, _owner._upstream.Port, error);
                ConnectNext(); // the next address, or the answer
                return true;
            }

            _dialAddresses = null;
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
            if (HttpForwardRules.MayRetry(ForwardError.UpstreamClosed, _reused, _retried, _request!.Method, bodyStarted: _bodySent != 0 || _uploadIncomplete))
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
    }
}
