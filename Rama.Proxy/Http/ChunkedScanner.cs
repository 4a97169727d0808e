namespace Rama.Proxy.Http;

/// <summary>
/// Finds where a chunked body (RFC 9112 §7.1) ends while it is passed through unchanged: the framing
/// (chunk-size lines, the CRLF after each chunk's data, the trailer section) is checked byte by byte,
/// chunk data is skipped by count. Incremental: feed the body in any pieces. Strict: CRLF line ends,
/// hex sizes without overflow, bounded chunk-size and trailer lines.
/// </summary>
internal struct ChunkedScanner(int maxLineBytes, int maxTrailerBytes)
{
    private enum Step : byte
    {
        Size,
        Extension,
        SizeLf,
        Data,
        DataCr,
        DataLf,
        TrailerStart,
        TrailerLine,
        TrailerLf,
        FinalLf,
        Done,
    }

    private Step _step;
    private long _size;
    private bool _sawDigit;
    private int _lineBytes;
    private int _trailerBytes;

    /// <summary>Whether the last chunk and the trailer section's empty line have been seen.</summary>
    public readonly bool IsDone => _step == Step.Done;

    /// <summary>
    /// Scans <paramref name="data"/>; returns how many of its bytes belong to the body (all of them unless the
    /// body ended inside it). Throws <see cref="HttpCodecException"/> (<see cref="HttpRejectReason.InvalidChunk"/>) on bad framing.
    /// </summary>
    public int Scan(ReadOnlySpan<byte> data)
    {
        var i = 0;
        while (i < data.Length && _step != Step.Done)
        {
            if (_step == Step.Data)
            {
                var take = (int)Math.Min(_size, data.Length - i);
                i += take;
                _size -= take;
                if (_size == 0)
                {
                    _step = Step.DataCr;
                }

                continue;
            }

            var b = data[i++];
            switch (_step)
            {
                case Step.Size:
                    CountLine();
                    var digit = HexValue(b);
                    if (digit >= 0)
                    {
                        if (_size > (long.MaxValue >> 4))
                        {
                            Fail(); // chunk-size overflow
                        }

                        _size = (_size << 4) | (uint)digit;
                        _sawDigit = true;
                    }
                    else if (_sawDigit && b is (byte)';' or (byte)' ' or (byte)'\t')
                    {
                        _step = Step.Extension; // RFC 9112 §7.1.1: BWS then chunk-ext, not interpreted
                    }
                    else if (_sawDigit && b == '\r')
                    {
                        _step = Step.SizeLf;
                    }
                    else
                    {
                        Fail();
                    }

                    break;
                case Step.Extension:
                    CountLine();
                    if (b == '\r')
                    {
                        _step = Step.SizeLf;
                    }
                    else if (b == '\n' || (b < 0x20 && b != '\t') || b == 0x7F)
                    {
                        Fail();
                    }

                    break;
                case Step.SizeLf:
                    Expect(b, '\n');
                    _lineBytes = 0;
                    _sawDigit = false;
                    _step = _size == 0 ? Step.TrailerStart : Step.Data;
                    break;
                case Step.DataCr:
                    Expect(b, '\r');
                    _step = Step.DataLf;
                    break;
                case Step.DataLf:
                    Expect(b, '\n');
                    _step = Step.Size;
                    break;
                case Step.TrailerStart:
                    if (b == '\r')
                    {
                        _step = Step.FinalLf;
                        break;
                    }

                    CountTrailer(b);
                    _step = Step.TrailerLine;
                    break;
                case Step.TrailerLine:
                    if (b == '\r')
                    {
                        _step = Step.TrailerLf;
                    }
                    else
                    {
                        CountTrailer(b);
                    }

                    break;
                case Step.TrailerLf:
                    Expect(b, '\n');
                    _step = Step.TrailerStart;
                    break;
                case Step.FinalLf:
                    Expect(b, '\n');
                    _step = Step.Done;
                    break;
            }
        }

        return i;
    }

    private void CountLine()
    {
        if (++_lineBytes > maxLineBytes)
        {
            Fail();
        }
    }

    private void CountTrailer(byte b)
    {
        if (++_trailerBytes > maxTrailerBytes || b == '\n' || (b < 0x20 && b != '\t') || b == 0x7F)
        {
            Fail();
        }
    }

    private static void Expect(byte b, char expected)
    {
        if (b != expected)
        {
            Fail();
        }
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    private static void Fail() => HttpRejection.Throw(HttpRejectReason.InvalidChunk);
}
