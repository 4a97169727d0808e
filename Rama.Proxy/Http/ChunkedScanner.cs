namespace Rama.Proxy.Http;

/// <summary>
/// Finds where a chunked body (RFC 9112 §7.1) ends while it is passed through: the framing (chunk-size lines, the CRLF after
/// each chunk's data) is checked byte by byte, chunk data is skipped by count. Incremental: feed the body in any pieces.
/// Strict: CRLF line ends, hex sizes without overflow, bounded chunk-size lines. <see cref="Scan"/> stops where the trailer
/// section starts (<see cref="AtTrailers"/>); <see cref="TryFilterTrailers"/> then checks that section as the pipe stack's
/// parser does and drops, where it lies, the fields a trailer may not carry (RFC 9110 §6.5.1): the same rule wherever Rama
/// writes trailers.
/// </summary>
internal struct ChunkedScanner(HttpLimits limits)
{
    private enum Step : byte
    {
        Size,
        Extension,
        SizeLf,
        Data,
        DataCr,
        DataLf,
        Trailers,
        Done,
    }

    private Step _step;
    private long _size;
    private bool _sawDigit;
    private int _lineBytes;
    private long _trailerNextLine;
    private int _trailerLines;

    /// <summary>Whether the last chunk and the trailer section's empty line have been seen.</summary>
    public readonly bool IsDone => _step == Step.Done;

    /// <summary>Whether the last chunk has been seen and its trailer section (at least its empty line) is next: <see cref="TryFilterTrailers"/>.</summary>
    public readonly bool AtTrailers => _step == Step.Trailers;

    /// <summary>
    /// Scans <paramref name="data"/>; returns how many of its bytes belong to the body before its trailer section (all of them
    /// unless the last chunk's line ended inside it). Throws <see cref="HttpCodecException"/> (<see cref="HttpRejectReason.InvalidChunk"/>)
    /// on bad framing.
    /// </summary>
    public int Scan(ReadOnlySpan<byte> data)
    {
        var i = 0;
        while (i < data.Length && _step < Step.Trailers)
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
                    _step = _size == 0 ? Step.Trailers : Step.Data;
                    break;
                case Step.DataCr:
                    Expect(b, '\r');
                    _step = Step.DataLf;
                    break;
                case Step.DataLf:
                    Expect(b, '\n');
                    _step = Step.Size;
                    break;
            }
        }

        return i;
    }

    private void CountLine()
    {
        if (++_lineBytes > limits.MaxChunkLineBytes)
        {
            Fail();
        }
    }

    /// <summary>
    /// At <see cref="AtTrailers"/>: the trailer section that starts at <paramref name="data"/>[0] (RFC 9112 §7.1.2), found and checked
    /// as the pipe stack checks it (<see cref="Http1Parser.TryScanTrailers"/>: bounded like a header section, the same rejections);
    /// false while it is incomplete (call again with the same start and more bytes). On true the body is done: the section took
    /// <paramref name="sectionLength"/> bytes, and the first <paramref name="keptLength"/> bytes of <paramref name="data"/> are now
    /// the section to send: the field lines a trailer may carry (<see cref="HttpForwardRules.MayBeTrailerName"/>), byte
    /// for byte and in their order, and the empty line. Nothing moves unless a line is dropped; nothing is written if it throws.
    /// </summary>
    public bool TryFilterTrailers(Span<byte> data, out int sectionLength, out int keptLength)
    {
        keptLength = 0;
        if (_trailerNextLine == 0 && data.Length >= 2 && data[0] == '\r' && data[1] == '\n')
        {
            sectionLength = keptLength = 2; // the usual case: no trailer fields
            _step = Step.Done;
            return true;
        }

        if (!Http1Parser.TryScanTrailers(data, limits, ref _trailerNextLine, ref _trailerLines, out sectionLength))
        {
            return false;
        }

        // Checked whole above: now the lines to drop go, the kept ones close up in place.
        var read = 0;
        var written = 0;
        while (true)
        {
            var length = data[read..sectionLength].IndexOf((byte)'\n') + 1;
            if (length == 2)
            {
                data.Slice(read, 2).CopyTo(data[written..]); // the empty line
                written += 2;
                break;
            }

            var line = data.Slice(read, length);
            if (HttpForwardRules.MayBeTrailerName(line[..line.IndexOf((byte)':')]))
            {
                if (written != read)
                {
                    line.CopyTo(data[written..]);
                }

                written += length;
            }

            read += length;
        }

        keptLength = written;
        _step = Step.Done;
        return true;
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
