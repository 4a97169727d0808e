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
    /// <summary>The response: its head read and rewritten, its body relayed back, the exchange finished.</summary>
    private sealed partial class ClientConnection
    {
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
                        // Upgrade requests go to the pipe server (OnRequest): here nothing asked to switch, so a 101 is a broken origin.
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
            _chunks = new ChunkedScanner(Limits);
            _trailersIncomplete = false;
            if (_respFraming == BodyFraming.UntilClose)
            {
                _keepAlive = false; // the origin's close ends the body; so does ours (an HTTP/1.1 client reads to close)
            }

            HttpForwardRules.RemoveHopByHop(headers);
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

            HttpForwardRules.WriteVia(output, _owner._via);

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
                catch (HttpCodecException) when (_chunks.AtTrailers)
                {
                    // A bad trailer section: the head and the body before it go out, then the next Classify meets it again and
                    // aborts, as the pipe stack does (its trailers are read after the head went out).
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

            switch (_respFraming)
            {
                case BodyFraming.ContentLength:
                    var take = (int)Math.Min(available, _respRemaining);
                    _respRemaining -= take;
                    _bodyDone = _respRemaining == 0;
                    _approvedEnd += take;
                    break;
                case BodyFraming.Chunked:
                    _approvedEnd += _chunks.Scan(_resp.AsSpan(_approvedEnd, available)); // throws on bad framing
                    if (_chunks.AtTrailers && _approvedEnd < _respEnd)
                    {
                        ClassifyTrailers();
                    }

                    break;
                default:
                    _approvedEnd += available;
                    break;
            }
        }

        // RFC 9110 §6.5.1: the trailer section goes on without the fields a trailer may not carry, the rule of every other path
        // that writes trailers (Http1Writer.WriteLastChunk). It waits whole in _resp (bounded like a head); the kept lines close up
        // in place, and the bytes after the section move down behind them. No trailer fields (the usual "\r\n"): nothing moves.
        private void ClassifyTrailers()
        {
            var sectionStart = _approvedEnd;
            if (!_chunks.TryFilterTrailers(_resp.AsSpan(sectionStart, _respEnd - sectionStart), out var sectionLength, out var kept))
            {
                _trailersIncomplete = true; // read more before looking again
                return;
            }

            if (kept < sectionLength)
            {
                var after = sectionStart + sectionLength;
                Buffer.BlockCopy(_resp!, after, _resp!, sectionStart + kept, _respEnd - after);
                _respEnd -= sectionLength - kept;
            }

            _approvedEnd += kept;
            _bodyDone = true;
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

            if (_respEnd > _approvedEnd && !_trailersIncomplete)
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
            if (_respEnd == _resp!.Length)
            {
                // Only a trailer section still incomplete fills the buffer (the body before it was sent, and CompactResponse moved it
                // to the front): room up to the largest head, more than the section's limit, at which the scan rejects it first.
                if (_resp.Length >= _owner._maxHeadBuffer)
                {
                    return AbortMidBody("trailer section larger than the buffer");
                }

                _resp = Regrow(_resp, 0, _respEnd, Math.Min(_resp.Length * 2, _owner._maxHeadBuffer));
            }

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
            _trailersIncomplete = false;
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

            if (_request is { } metered)
            {
                ProxyMetrics.RequestCompleted(AccessKind.Reverse, _context.Listener, null, metered.Method, _status, _bodySent, _bytesOut, TimeProvider.System, _startedAt);
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
    }
}
