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
    /// <summary>Errors as answers, the hand-over to the pipe-based stack, and closing.</summary>
    private sealed partial class ClientConnection
    {
        // ---- errors as answers --------------------------------------------------------------------

        /// <summary>An expected forwarding outcome before any response byte went out: the status the pipe-based stack answers with.</summary>
        private void Fail(ForwardError error, string detail)
        {
            CloseOrigin();
            var status = HttpForwardRules.StatusFor(error);
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
            if (_servedAny)
            {
                _context.Extensions.Set(Http1Continued.Instance);
            }

            Detach();
            _phase = Phase.Closed;
            _ = RunClassicAsync(prefix);
        }

        private async Task RunClassicAsync(byte[] prefix)
        {
            try
            {
                _socket.Blocking = true;
                _context.StartPipes(prefix);
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
}
