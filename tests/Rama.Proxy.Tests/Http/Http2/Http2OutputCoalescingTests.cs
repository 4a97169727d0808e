using System.IO.Pipelines;
using System.Net.Security;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>
/// Responses that become ready together leave in one flush (one send, one TLS record), not one each: the h2 reverse path's
/// client-side sends per request went from 0.97 to ~0.5 with it (benchmarks/results/2026-12-07-h2-3.md). The deferral needs
/// the transport's writer to tell what waits unflushed, so every writer a listener puts under the HTTP/2 server must.
/// </summary>
public sealed class Http2OutputCoalescingTests
{
    [Fact]
    public async Task Responses_released_together_are_flushed_together()
    {
        const int Streams = 40;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var waiting = 0;
        var application = Service.FromFunc<HttpRequest, HttpResponse>(async (request, ct) =>
        {
            Interlocked.Increment(ref waiting);
            await gate.Task.WaitAsync(ct);
            return new HttpResponse(200) { Body = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>("ok"u8.ToArray())), BodyLength = 2 };
        });
        CountingWriter? counter = null;
        await using var client = new RawH2Client(application, serverOutput: inner => counter = new CountingWriter(inner));
        await client.HandshakeAsync();
        for (var i = 0; i < Streams; i++)
        {
            await client.HeadersAsync(1 + 2 * i, true, RawH2Client.Get("/" + i));
        }

        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref waiting) == Streams, TimeSpan.FromSeconds(10)), $"{waiting} of {Streams} streams reached the application");
        var before = counter!.Flushes;
        gate.SetResult();
        var ended = new HashSet<int>();
        while (ended.Count < Streams)
        {
            var (header, _) = await client.ReadFrameAsync().WaitAsync(TimeSpan.FromSeconds(10));
            if (header.StreamId != 0 && header.HasFlag(Http2Flags.EndStream))
            {
                ended.Add(header.StreamId);
            }
        }

        // One flush per response (40) was the old behaviour; the writers that finish together share a few.
        var flushes = counter.Flushes - before;
        Assert.True(flushes <= Streams / 4, $"{flushes} flushes for {Streams} responses released together");
    }

    [Fact]
    public void The_tls_listeners_plaintext_writer_tells_what_waits_unflushed()
    {
        // Without this the HTTP/2 server over TLS flushed (encrypted and sent) every response on its own.
        var wire = new Pipe();
        var back = new Pipe();
        var duplex = new RawH2Client.Duplex(back.Reader, wire.Writer);
        using var ssl = new SslStream(new MemoryStream());
        var plain = new SslDuplexPipe(ssl, duplex);
        Assert.True(plain.Output.CanGetUnflushedBytes);
        var span = plain.Output.GetSpan(100);
        span[..100].Fill(1);
        plain.Output.Advance(100);
        Assert.Equal(100, plain.Output.UnflushedBytes);
    }
}

/// <summary>A writer that counts its flushes and the most bytes that waited unflushed at once; <c>slowFlush</c> plays a transport whose flush takes a moment.</summary>
internal sealed class CountingWriter(PipeWriter inner, bool slowFlush = false) : PipeWriter
{
    private int _flushes;
    private long _maxUnflushed;

    public int Flushes => Volatile.Read(ref _flushes);

    /// <summary>The most bytes that waited unflushed at once.</summary>
    public long MaxUnflushed => Interlocked.Read(ref _maxUnflushed);

    public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => inner.UnflushedBytes;

    public override void Advance(int bytes)
    {
        inner.Advance(bytes);
        if (inner.CanGetUnflushedBytes && inner.UnflushedBytes > Interlocked.Read(ref _maxUnflushed))
        {
            Interlocked.Exchange(ref _maxUnflushed, inner.UnflushedBytes); // one writer at a time holds the lock
        }
    }

    public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null) => inner.Complete(exception);

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _flushes);
        return slowFlush ? SlowFlushAsync(cancellationToken) : inner.FlushAsync(cancellationToken);
    }

    private async ValueTask<FlushResult> SlowFlushAsync(CancellationToken cancellationToken)
    {
        await Task.Delay(1, cancellationToken);
        return await inner.FlushAsync(cancellationToken);
    }
}
