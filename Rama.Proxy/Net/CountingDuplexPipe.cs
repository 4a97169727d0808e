using System.Buffers;
using System.IO.Pipelines;

namespace Rama.Proxy.Net;

/// <summary>
/// A duplex pipe that counts the bytes its user consumes from <see cref="Input"/> and writes to <see cref="Output"/>,
/// for the access log of a tunnel whose bytes a layer above transforms (a MITM tunnel's TLS records: the counts are what
/// crossed the client's side of the tunnel). Counts are read after the tunnel ends.
/// </summary>
public sealed class CountingDuplexPipe : IDuplexPipe
{
    private readonly CountingReader _input;
    private readonly CountingWriter _output;

    public CountingDuplexPipe(IDuplexPipe inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _input = new CountingReader(inner.Input);
        _output = new CountingWriter(inner.Output);
    }

    public PipeReader Input => _input;

    public PipeWriter Output => _output;

    /// <summary>Bytes consumed from the input (the client sent them).</summary>
    public long BytesRead => Interlocked.Read(ref _input.Consumed);

    /// <summary>Bytes written to the output (sent to the client).</summary>
    public long BytesWritten => Interlocked.Read(ref _output.Written);

    private sealed class CountingReader(PipeReader inner) : PipeReader
    {
        public long Consumed;
        private ReadOnlySequence<byte> _last;

        public override bool TryRead(out ReadResult result)
        {
            var read = inner.TryRead(out result);
            if (read)
            {
                _last = result.Buffer;
            }

            return read;
        }

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var result = await inner.ReadAsync(cancellationToken).ConfigureAwait(false);
            _last = result.Buffer;
            return result;
        }

        public override void AdvanceTo(SequencePosition consumed)
        {
            Count(consumed);
            inner.AdvanceTo(consumed);
        }

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            Count(consumed);
            inner.AdvanceTo(consumed, examined);
        }

        private void Count(SequencePosition consumed)
        {
            Interlocked.Add(ref Consumed, _last.Slice(_last.Start, consumed).Length);
            _last = default;
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }

    private sealed class CountingWriter(PipeWriter inner) : PipeWriter
    {
        public long Written;

        public override void Advance(int bytes)
        {
            Interlocked.Add(ref Written, bytes);
            inner.Advance(bytes);
        }

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            Interlocked.Add(ref Written, source.Length);
            return inner.WriteAsync(source, cancellationToken);
        }

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);

        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;
    }
}
