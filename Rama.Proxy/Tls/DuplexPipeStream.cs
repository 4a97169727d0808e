using System.Buffers;
using System.IO.Pipelines;

namespace Rama.Proxy.Tls;

/// <summary>
/// A connection's duplex pipe seen as a <see cref="Stream"/>, for <see cref="System.Net.Security.SslStream"/>
/// to run over (Bedrock's TLS middleware shape). Async only. Disposing it does not close the
/// connection: its owner (the server or the connector's caller) does.
/// </summary>
internal sealed class DuplexPipeStream(IDuplexPipe pipe) : Stream
{
    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            var result = await pipe.Input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var data = result.Buffer;
            if (buffer.IsEmpty)
            {
                // A zero-byte read (SslStream waits for data this way): report readiness, consume nothing.
                pipe.Input.AdvanceTo(data.Start);
                return 0;
            }

            if (data.IsEmpty)
            {
                pipe.Input.AdvanceTo(data.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return 0;
                }

                continue;
            }

            var count = (int)Math.Min(buffer.Length, data.Length);
            data.Slice(0, count).CopyTo(buffer.Span);
            pipe.Input.AdvanceTo(data.GetPosition(count));
            return count;
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>
    /// Copies a TLS record into the connection's writer without flushing it: SslStream writes one record per call (16 KiB of
    /// plaintext at most) and flushes its inner stream between handshake messages and on its own FlushAsync, which the
    /// plaintext writer calls once after all its segments. The records of one flush leave in one send, not one each (a bulk
    /// download over TLS made one ~8 KiB sendmsg per record). The bytes of one write are bounded by the record size; what a
    /// flush leaves waits under the transport's back-pressure like any other write.
    /// </summary>
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        pipe.Output.Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        var flush = await pipe.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            throw new IOException("the peer stopped reading");
        }
    }

    public override void Flush()
    {
        // Nothing flushes synchronously here: SslStream flushes through FlushAsync.
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
