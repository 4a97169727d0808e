using System.Buffers;
using System.Text;

namespace Rama.Proxy.Tests.Support;

/// <summary>Builds multi-segment sequences so parsers meet every segment boundary.</summary>
public static class Sequences
{
    public static ReadOnlySequence<byte> Whole(byte[] bytes) => new(bytes);

    public static ReadOnlySequence<byte> Whole(string text) => new(Encoding.Latin1.GetBytes(text));

    /// <summary>Each byte its own segment.</summary>
    public static ReadOnlySequence<byte> OneBytePerSegment(byte[] bytes) => Split(bytes, 1);

    public static ReadOnlySequence<byte> OneBytePerSegment(string text) => Split(Encoding.Latin1.GetBytes(text), 1);

    public static ReadOnlySequence<byte> Split(byte[] bytes, int segmentSize)
    {
        if (bytes.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        Segment? first = null;
        Segment? last = null;
        for (var i = 0; i < bytes.Length; i += segmentSize)
        {
            var chunk = bytes.AsMemory(i, Math.Min(segmentSize, bytes.Length - i));
            if (first is null)
            {
                first = last = new Segment(chunk, 0);
            }
            else
            {
                last = last!.Append(chunk);
            }
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
