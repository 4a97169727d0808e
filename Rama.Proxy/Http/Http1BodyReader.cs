using System.Buffers;
using System.IO.Pipelines;

namespace Rama.Proxy.Http;

/// <summary>
/// A message body read from a connection's input, delimited per RFC 9112 §6.3, exposed as a
/// <see cref="PipeReader"/> without copying: a Content-Length body is the input sliced to what is
/// left; a chunked body (§7.1) is the data of the current chunk (chunk-size lines, CRLFs and the
/// trailer section are consumed here and never shown; the trailer fields go to <see cref="OnTrailers"/>). Positions are the input's own, so
/// <see cref="AdvanceTo(SequencePosition, SequencePosition)"/> passes straight through.
/// A consumer sees at most one chunk at a time: it must consume to make progress (every copy
/// loop does). Completing this reader does not complete the connection's input.
/// </summary>
internal sealed class Http1BodyReader : PipeReader
{
    private enum State
    {
        Data,
        ChunkSize,
        ChunkDataEnd,
        Trailers,
        Done,
    }

    private readonly PipeReader _input;
    private readonly BodyFraming _framing;
    private readonly HttpLimits _limits;
    private State _state;
    private long _remaining;
    private ReadOnlySequence<byte> _shown;
    private bool _readPending;
    private bool _shownIsLast;
    private Func<ValueTask>? _beforeFirstRead;
    private Func<bool, ValueTask>? _onCompleted;
    private Action<HttpHeaders>? _onTrailers;
    private int _completed;

    private readonly long? _maxBytes;
    private long _announced;

    /// <param name="maxBytes">A request's body limit (<see cref="HttpLimits.MaxRequestBodySize"/>): a chunked body announcing more is refused (413) before those bytes are shown.</param>
    public Http1BodyReader(PipeReader input, BodyFraming framing, long contentLength, HttpLimits limits, long? maxBytes = null)
    {
        _maxBytes = maxBytes;
        _input = input;
        _framing = framing;
        _limits = limits;
        (_state, _remaining) = framing switch
        {
            BodyFraming.ContentLength when contentLength > 0 => (State.Data, contentLength),
            BodyFraming.Chunked => (State.ChunkSize, 0L),
            BodyFraming.UntilClose => (State.Data, long.MaxValue),
            _ => (State.Done, 0L),
        };
    }

    /// <summary>Body bytes handed out and consumed so far.</summary>
    public long BytesConsumed { get; private set; }

    /// <summary>True once the whole body (with its chunked framing and trailers) has been read.</summary>
    public bool IsEnd => _state == State.Done;

    /// <summary>True when the consumer completed the reader.</summary>
    public bool IsCompleted => Volatile.Read(ref _completed) != 0;

    public BodyFraming Framing => _framing;

    /// <summary>Bytes still expected of a Content-Length body; -1 when unknown.</summary>
    public long Remaining => _framing == BodyFraming.ContentLength ? _remaining : _state == State.Done ? 0 : -1;

    /// <summary>Runs once before the first read (the server sends 100 Continue here, RFC 9110 §10.1.1).</summary>
    public void OnFirstRead(Func<ValueTask> callback) => _beforeFirstRead = callback;

    /// <summary>Runs once when the consumer completes the reader, with whether the body was read to its end.</summary>
    public void OnCompleted(Func<bool, ValueTask> callback) => _onCompleted = callback;

    /// <summary>
    /// Receives the trailer fields of a chunked body (RFC 9112 §7.1.2) when there are any, before the read that reports the
    /// body's end returns, so a consumer that read the body to its end sees them.
    /// </summary>
    public void OnTrailers(Action<HttpHeaders> callback) => _onTrailers = callback;

    /// <summary>Disarms the first-read callback; true if it had not run yet.</summary>
    public bool CancelFirstRead() => Interlocked.Exchange(ref _beforeFirstRead, null) is not null;

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_state == State.Done)
        {
            return new ReadResult(default, false, true);
        }

        if (Interlocked.Exchange(ref _beforeFirstRead, null) is { } first)
        {
            await first().ConfigureAwait(false);
        }

        while (true)
        {
            var inner = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (TryShow(inner, out var result))
            {
                return result;
            }
        }
    }

    public override bool TryRead(out ReadResult result)
    {
        result = default;
        if (_state == State.Done)
        {
            result = new ReadResult(default, false, true);
            return true;
        }

        if (_beforeFirstRead is not null)
        {
            return false; // the first read must go through ReadAsync
        }

        return _input.TryRead(out var inner) && TryShow(inner, out result);
    }

    /// <summary>
    /// Consumes framing at the front of <paramref name="inner"/> and shows the body bytes that follow.
    /// False (with the input advanced) means more input is needed.
    /// </summary>
    private bool TryShow(ReadResult inner, out ReadResult result)
    {
        var buffer = inner.Buffer;
        result = default;
        if (inner.IsCanceled)
        {
            _input.AdvanceTo(buffer.Start);
            result = new ReadResult(default, isCanceled: true, isCompleted: false);
            return true;
        }

        while (true)
        {
            switch (_state)
            {
                case State.ChunkSize:
                    if (!Http1Parser.TryParseChunkSize(buffer, _limits.MaxChunkLineBytes, out var size, out var used))
                    {
                        return NeedMore(inner.IsCompleted, buffer);
                    }

                    buffer = buffer.Slice(used);
                    _announced += size;
                    if (_announced > _maxBytes || _announced < 0)
                    {
                        _input.AdvanceTo(buffer.Start);
                        throw new HttpCodecException(HttpRejectReason.BodyTooLarge, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                            $"Content Too Large: the chunked request body grew past the limit of {_maxBytes} bytes"));
                    }

                    (_state, _remaining) = size == 0 ? (State.Trailers, 0L) : (State.Data, size);
                    continue;

                case State.ChunkDataEnd:
                    if (buffer.Length < 2)
                    {
                        return NeedMore(inner.IsCompleted, buffer);
                    }

                    var reader = new SequenceReader<byte>(buffer);
                    if (!reader.IsNext("\r\n"u8, advancePast: true))
                    {
                        HttpRejection.Throw(HttpRejectReason.InvalidChunk); // §7.1: chunk-data is followed by CRLF
                    }

                    buffer = buffer.Slice(2);
                    _state = State.ChunkSize;
                    continue;

                case State.Trailers:
                    if (!Http1Parser.TryParseTrailers(buffer, _limits, out var trailerBytes, out var trailers))
                    {
                        return NeedMore(inner.IsCompleted, buffer);
                    }

                    _input.AdvanceTo(buffer.GetPosition(trailerBytes));
                    if (trailers is not null)
                    {
                        _onTrailers?.Invoke(trailers);
                    }

                    _state = State.Done;
                    result = new ReadResult(default, false, true);
                    return true;

                case State.Data:
                    if (buffer.IsEmpty)
                    {
                        if (inner.IsCompleted && _framing == BodyFraming.UntilClose)
                        {
                            _input.AdvanceTo(buffer.End);
                            _state = State.Done;
                            result = new ReadResult(default, false, true);
                            return true;
                        }

                        return NeedMore(inner.IsCompleted, buffer);
                    }

                    _shown = buffer.Length > _remaining ? buffer.Slice(0, _remaining) : buffer;
                    _readPending = true;
                    var last = _framing == BodyFraming.ContentLength ? _shown.Length == _remaining : _framing == BodyFraming.UntilClose && inner.IsCompleted;
                    _shownIsLast = last;
                    result = new ReadResult(_shown, isCanceled: false, isCompleted: last);
                    return true;

                default:
                    _input.AdvanceTo(buffer.Start);
                    result = new ReadResult(default, false, true);
                    return true;
            }
        }
    }

    private bool NeedMore(bool inputCompleted, in ReadOnlySequence<byte> buffer)
    {
        if (inputCompleted)
        {
            _input.AdvanceTo(buffer.Start, buffer.End);
            HttpRejection.Throw(HttpRejectReason.UnexpectedEndOfBody);
        }

        _input.AdvanceTo(buffer.Start, buffer.End);
        return false;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (!_readPending)
        {
            return; // the last result was synthesized (end, cancel): nothing of the input is held
        }

        _readPending = false;
        var taken = _shown.Slice(_shown.Start, consumed).Length;
        BytesConsumed += taken;
        if (_framing == BodyFraming.UntilClose)
        {
            if (_shownIsLast && taken == _shown.Length)
            {
                _state = State.Done;
            }
        }
        else
        {
            _remaining -= taken;
            if (_remaining == 0)
            {
                _state = _framing == BodyFraming.Chunked ? State.ChunkDataEnd : State.Done;
            }
        }

        _input.AdvanceTo(consumed, examined);
    }

    public override void CancelPendingRead() => _input.CancelPendingRead();

    public override void Complete(Exception? exception = null)
    {
        var task = CompleteAsync(exception);
        if (!task.IsCompletedSuccessfully)
        {
            _ = task.AsTask();
        }
    }

    public override ValueTask CompleteAsync(Exception? exception = null)
    {
        if (Interlocked.Exchange(ref _completed, 1) != 0)
        {
            return ValueTask.CompletedTask;
        }

        return Interlocked.Exchange(ref _onCompleted, null) is { } callback ? callback(IsEnd) : ValueTask.CompletedTask;
    }

    /// <summary>Reads and discards the rest of the body, up to <paramref name="maxBytes"/>; true if it ended within that.</summary>
    public async ValueTask<bool> DrainAsync(long maxBytes, CancellationToken cancellationToken)
    {
        CancelFirstRead();
        var drained = 0L;
        while (_state != State.Done)
        {
            var result = await ReadAsync(cancellationToken).ConfigureAwait(false);
            drained += result.Buffer.Length;
            AdvanceTo(result.Buffer.End);
            if (result.IsCanceled || drained > maxBytes)
            {
                return false;
            }
        }

        return true;
    }
}
