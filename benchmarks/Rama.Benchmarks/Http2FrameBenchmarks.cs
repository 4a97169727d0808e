using System.Buffers;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Http.Http2;

namespace Rama.Benchmarks;

/// <summary>
/// The HTTP/2 frame reader (RFC 9113 §4.1): a browser-like burst (SETTINGS, WINDOW_UPDATE, HEADERS, 64 DATA frames of
/// 16 KiB, PING) read from one contiguous buffer, and the same bytes split into 4 KiB segments (what a socket pipe
/// hands over), so the multi-segment header path is measured too.
/// </summary>
public class Http2FrameBenchmarks
{
    private ReadOnlySequence<byte> _contiguous;
    private ReadOnlySequence<byte> _segmented;

    [GlobalSetup]
    public void Setup()
    {
        var output = new ArrayBufferWriter<byte>();
        Http2FrameWriter.WriteSettings(output, [new(1, 65536), new(2, 0), new(4, 6291456), new(6, 262144)]);
        Http2FrameWriter.WriteWindowUpdate(output, 0, 15663105);
        Http2FrameWriter.WriteHeaders(output, 1, new byte[300], endStream: false, 16_384);
        var data = new ReadOnlySequence<byte>(new byte[16_384]);
        for (var i = 0; i < 64; i++)
        {
            Http2FrameWriter.WriteData(output, 1, data, endStream: i == 63);
        }

        Http2FrameWriter.WritePing(output, 42, ack: false);
        var bytes = output.WrittenSpan.ToArray();
        _contiguous = new ReadOnlySequence<byte>(bytes);
        _segmented = Segments.Split(bytes, 4096);
    }

    [Benchmark(Baseline = true, Description = "read 68 frames (1 MiB), one segment")]
    public int ReadContiguous() => ReadAll(_contiguous);

    [Benchmark(Description = "read 68 frames (1 MiB), 4 KiB segments")]
    public int ReadSegmented() => ReadAll(_segmented);

    private static int ReadAll(ReadOnlySequence<byte> buffer)
    {
        var frames = 0;
        while (Http2FrameReader.TryReadFrame(ref buffer, 16_384, out var header, out var payload))
        {
            if (header.Type == Http2FrameType.Data)
            {
                frames += (int)Http2FrameReader.ReadData(header, payload).Length & 1;
            }

            frames++;
        }

        return frames;
    }

    private static class Segments
    {
        public static ReadOnlySequence<byte> Split(byte[] bytes, int size)
        {
            Segment? first = null, last = null;
            for (var i = 0; i < bytes.Length; i += size)
            {
                var chunk = bytes.AsMemory(i, Math.Min(size, bytes.Length - i));
                last = last is null ? first = new Segment(chunk, 0) : last.Append(chunk);
            }

            return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
        }

        private sealed class Segment : ReadOnlySequenceSegment<byte>
        {
            public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
            {
                Memory = memory;
                RunningIndex = runningIndex;
            }

            public Segment Append(ReadOnlyMemory<byte> memory)
            {
                var next = new Segment(memory, RunningIndex + Memory.Length);
                Next = next;
                return next;
            }
        }
    }
}
