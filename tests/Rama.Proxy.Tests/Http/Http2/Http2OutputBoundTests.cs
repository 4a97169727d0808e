using System.IO.Pipelines;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>Runs alone: its bodies and slow flushes load the thread pool, which the flush-coalescing tests measure beside it.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class Http2OutputLoadCollection
{
    public const string Name = "http2 output load (alone)";
}

/// <summary>What waits unflushed in the HTTP/2 writer stays bounded however many streams send at once.</summary>
[Collection(Http2OutputLoadCollection.Name)]
public sealed class Http2OutputBoundTests
{
    [Fact]
    public async Task Bodies_sent_at_once_on_wide_windows_keep_what_waits_unflushed_bounded()
    {
        // Streams sending bodies at once contend for the writer: each writer that found another queued left its frames to
        // that one, and under steady contention none flushed. What waited unflushed is not held back by the transport (only
        // a flush is), so it grew with the bodies: 4 streams of 20 MB through the reverse proxy made a 300 MB heap and ran
        // at 135 MB/s (h2load -m 4; 790 MB/s bounded).
        const int Streams = 16;
        const int BodyBytes = 2 * 1024 * 1024;
        var chunk = new byte[16 * 1024];
        var application = Service.FromFunc<HttpRequest, HttpResponse>((request, ct) =>
        {
            var body = new Pipe();
            _ = Task.Run(async () =>
            {
                for (var sent = 0; sent < BodyBytes; sent += chunk.Length)
                {
                    await body.Writer.WriteAsync(chunk, ct);
                }

                await body.Writer.CompleteAsync();
            }, ct);
            return ValueTask.FromResult(new HttpResponse(200) { Body = body.Reader, BodyLength = BodyBytes });
        });
        CountingWriter? counter = null;
        // A transport whose flush takes a moment (a socket send, a TLS record) while the bodies keep coming: writers queue.
        await using var client = new RawH2Client(application, serverOutput: inner => counter = new CountingWriter(inner, slowFlush: true));
        await client.HandshakeAsync(new Http2Setting((ushort)Http2SettingId.InitialWindowSize, int.MaxValue)); // h2load's and browsers' wide windows
        await client.SendAsync(o => Http2FrameWriter.WriteWindowUpdate(o, 0, int.MaxValue - 65_535));
        var ids = Enumerable.Range(0, Streams).Select(i => 1 + 2 * i).ToArray();
        foreach (var id in ids)
        {
            await client.HeadersAsync(id, true, RawH2Client.Get("/" + id));
        }

        var responses = await client.ReadResponsesAsync(new HpackDecoder(), ids).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(Streams * BodyBytes, responses.Values.Sum(r => r.Body.Length));
        Assert.True(counter!.MaxUnflushed <= 256 * 1024, $"{counter.MaxUnflushed:N0} bytes waited unflushed at once ({Streams} bodies of {BodyBytes:N0})");
    }
}
