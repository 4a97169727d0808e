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
    }
}
