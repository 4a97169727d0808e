using System.Buffers;

namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>
/// RFC 7541 §5.1: integers with an N-bit prefix (1 &lt;= N &lt;= 8). A value below 2^N-1 fits the prefix;
/// otherwise the prefix is all ones and the rest follows 7 bits per octet, least significant first, with
/// the high bit set on every octet but the last.
/// </summary>
internal static class HpackInteger
{
    /// <summary>
    /// RFC 7541 §5.1 leaves the bound to the implementation: we refuse values above 2^31-1 and more than 5
    /// continuation octets (enough for 2^31-1 with any prefix; more could only be padding with zero groups).
    /// </summary>
    public const int MaxContinuationOctets = 5;

    /// <summary>The most octets an encoded integer takes (the prefix octet and 5 continuations).</summary>
    public const int MaxEncodedLength = 1 + MaxContinuationOctets;

    /// <summary>
    /// Reads an integer whose prefix is the low <paramref name="prefixBits"/> bits of the next octet.
    /// Returns false, consuming nothing, when the input ends inside it ("need more data").
    /// Throws <see cref="HpackError.IntegerOverflow"/>.
    /// </summary>
    public static bool TryDecode(ref SequenceReader<byte> reader, int prefixBits, out int value)
    {
        var start = reader.Consumed;
        if (!reader.TryRead(out var first))
        {
            value = 0;
            return false;
        }

        var max = (1 << prefixBits) - 1;
        long result = first & max;
        if (result < max)
        {
            value = (int)result;
            return true;
        }

        for (var shift = 0; shift < 7 * MaxContinuationOctets; shift += 7)
        {
            if (!reader.TryRead(out var octet))
            {
                reader.Rewind(reader.Consumed - start);
                value = 0;
                return false;
            }

            result += (long)(octet & 0x7F) << shift;
            if (result > int.MaxValue)
            {
                HpackErrors.Throw(HpackError.IntegerOverflow);
            }

            if ((octet & 0x80) == 0)
            {
                value = (int)result;
                return true;
            }
        }

        value = 0;
        return HpackErrors.Throw<bool>(HpackError.IntegerOverflow);
    }

    /// <summary>
    /// Writes <paramref name="value"/> with an N-bit prefix; <paramref name="flags"/> holds the bits of the
    /// first octet above the prefix (the representation's pattern). Returns octets written.
    /// </summary>
    public static int Encode(int value, int prefixBits, byte flags, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            destination[0] = (byte)(flags | value);
            return 1;
        }

        destination[0] = (byte)(flags | max);
        var rest = (uint)(value - max);
        var written = 1;
        while (rest >= 0x80)
        {
            destination[written++] = (byte)(rest | 0x80);
            rest >>= 7;
        }

        destination[written++] = (byte)rest;
        return written;
    }

    /// <summary>Octets <see cref="Encode"/> writes for this value and prefix.</summary>
    public static int GetEncodedLength(int value, int prefixBits)
    {
        var max = (1 << prefixBits) - 1;
        if (value < max)
        {
            return 1;
        }

        var rest = (uint)(value - max);
        var length = 2;
        while (rest >= 0x80)
        {
            rest >>= 7;
            length++;
        }

        return length;
    }
}
