using System.IO.Pipelines;
using System.Net.Security;

namespace Rama.Proxy.Tls;

/// <summary>
/// The plaintext side of an authenticated <see cref="SslStream"/> as a duplex pipe: what a TLS layer
/// puts in <c>ConnectionContext.Transport</c>. Completing <see cref="Output"/> is a TLS half-close:
/// close_notify (RFC 8446 §6.1) then FIN on the wire below, while <see cref="Input"/> keeps reading.
/// </summary>
public sealed class SslDuplexPipe : IDuplexPipe, IAsyncDisposable
{
    private readonly SslStream _ssl;
    private readonly IDuplexPipe _wire;
    private readonly IAsyncDisposable? _owned;
    private readonly ClosingWriter _output;
    private int _disposed;

    internal SslDuplexPipe(SslStream ssl, IDuplexPipe wire, IAsyncDisposable? owned = null)
    {
        _ssl = ssl;
        _wire = wire;
        _owned = owned;
        Input = PipeReader.Create(ssl, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4096, leaveOpen: true));
        _output = new ClosingWriter(this, PipeWriter.Create(ssl, new StreamPipeWriterOptions(minimumBufferSize: 16 * 1024, leaveOpen: true)));
    }

    public PipeReader Input { get; }

    public PipeWriter Output => _output;

    /// <summary>The authenticated stream (negotiated protocol, cipher, ALPN, certificates).</summary>
    public SslStream Stream => _ssl;

    private async ValueTask HalfCloseAsync()
    {
        try
        {
            await _ssl.ShutdownAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or NotSupportedException)
        {
            // the wire is gone already
        }

        await _wire.Output.CompleteAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await Input.CompleteAsync().ConfigureAwait(false);
        await _output.CompleteAsync().ConfigureAwait(false);
        await _output.Closed.ConfigureAwait(false);
        await _ssl.DisposeAsync().ConfigureAwait(false);
        if (_owned is not null)
        {
            await _owned.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A writer whose completion sends close_notify and FIN once.</summary>
    private sealed class ClosingWriter(SslDuplexPipe owner, PipeWriter inner) : PipeWriter
    {
        private Task? _closed;

        public Task Closed => Volatile.Read(ref _closed) ?? Task.CompletedTask;

        public override void Advance(int bytes) => inner.Advance(bytes);

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        // What waits unflushed: the HTTP/2 writer coalesces stream frames into one flush (one TLS record) while it is small.
        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

        public override long UnflushedBytes => inner.UnflushedBytes;

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        public override ValueTask<FlushResult> WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default) =>
            inner.WriteAsync(source, cancellationToken);

        public override void Complete(Exception? exception = null) => _ = CompleteAsync(exception).AsTask();

        public override ValueTask CompleteAsync(Exception? exception = null)
        {
            var closing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (Interlocked.CompareExchange(ref _closed, closing.Task, null) is { } already)
            {
                return new ValueTask(already);
            }

            return new ValueTask(CloseAsync(exception, closing));
        }

        private async Task CloseAsync(Exception? exception, TaskCompletionSource closing)
        {
            try
            {
                try
                {
                    await inner.CompleteAsync(exception).ConfigureAwait(false); // flushes what was written
                }
                catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
                {
                }

                if (exception is null)
                {
                    await owner.HalfCloseAsync().ConfigureAwait(false);
                }
                else
                {
                    await owner._wire.Output.CompleteAsync(exception).ConfigureAwait(false);
                }
            }
            finally
            {
                closing.TrySetResult();
            }
        }
    }
}
