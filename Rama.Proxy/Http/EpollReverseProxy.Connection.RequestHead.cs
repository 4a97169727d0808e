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
    /// <summary>Accepting a request: reading and parsing its head, deciding what runs here, writing the head for the origin.</summary>
    private sealed partial class ClientConnection
    {
        // ---- request head -------------------------------------------------------------------------

        private bool StepReadHead()
        {
            if (_inEnd > _inStart)
            {
                var headStart = _inStart;
                if (!_servedAny && _in![_inStart] == (byte)'P')
                {
                    // RFC 9113 §3.3: a fresh connection opening with the h2c preface goes to the pipe server, which serves HTTP/2.
                    var preface = Http2.Http2Preface.Detect(new ReadOnlySequence<byte>(_in, _inStart, _inEnd - _inStart));
                    if (preface == Http2.PrefaceMatch.Match)
                    {
                        HandOver(headStart);
                        return false;
                    }
                }

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
            // other than origin-form (CONNECT's 405, absolute-form, '*'), and upgrades (RFC 9110 §7.8: the 101 and the
            // relayed tunnel are the forwarder's, ForwardProxyService.Upgrade.cs).
            // A Content-Length over the body limit too: the pipe stack answers its 413 (Http1Server).
            if (request.Version != HttpProtocolVersion.Http11 || request.BodyFraming == BodyFraming.Chunked
                || (request.BodyFraming == BodyFraming.ContentLength && request.ContentLength > _owner._limits.MaxRequestBodySize)
                || request.TargetForm != RequestTargetForm.Origin || request.Headers.Contains("Expect"u8)
                || (request.Headers.Contains(HeaderNames.Upgrade) && ForwardProxyService.UpgradeOffer(request) is not null))
            {
                HandOver(headStart);
                return;
            }

            _servedAny = true;

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

        /// <summary>The head for the origin: the forwarders' rule (<see cref="HttpForwardRules.WriteRequestHead"/>) for a reverse proxy (the client's Host kept).</summary>
        private void WriteUpstreamHead(HttpRequest request)
        {
            var output = _upHead ??= new ArrayBufferWriter<byte>(1024);
            output.ResetWrittenCount();
            _upSent = 0;
            HttpForwardRules.WriteRequestHead(output, request, request.Target, _owner._upstream, authority: null, _owner._via);
        }

        private static void WriteContentLength(ArrayBufferWriter<byte> output, ReadOnlySpan<byte> name, long value)
        {
            output.Write(name);
            output.Write(": "u8);
            Http1Writer.WriteNumber(output, value);
            output.Write("\r\n"u8);
        }
    }
}
