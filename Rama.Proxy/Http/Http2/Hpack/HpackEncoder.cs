using System.Buffers;

namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>When the encoder Huffman-codes a string literal (RFC 7541 §5.2).</summary>
public enum HpackHuffmanMode
{
    /// <summary>When the Huffman form is strictly shorter than the raw octets (what browsers and nghttp2 do).</summary>
    WhenShorter,
    /// <summary>Always (RFC 7541 Appendix C.4 and C.6).</summary>
    Always,
    /// <summary>Never (RFC 7541 Appendix C.3 and C.5).</summary>
    Never,
}

/// <summary>Choices of the HPACK encoder. Defaults follow what browsers and nghttp2 send.</summary>
public sealed record HpackEncoderOptions
{
    /// <summary>
    /// The dynamic table size both ends start with, before any size update: the peer's
    /// SETTINGS_HEADER_TABLE_SIZE as known when the encoder is created. Default 4096: the protocol's initial
    /// value (RFC 9113 §6.5.2).
    /// </summary>
    public int InitialTableSize { get; init; } = 4096;

    /// <summary>
    /// The largest table the encoder uses however much the peer allows (memory per connection). Default
    /// 4096: the protocol's initial value, which browsers' and nghttp2's encoders also keep to.
    /// </summary>
    public int MaxTableSize { get; init; } = 4096;

    /// <summary>Default <see cref="HpackHuffmanMode.WhenShorter"/>.</summary>
    public HpackHuffmanMode Huffman { get; init; } = HpackHuffmanMode.WhenShorter;

    /// <summary>
    /// Encode <c>authorization</c> and <c>proxy-authorization</c>, and <c>cookie</c> values shorter than 20
    /// octets, as never-indexed literals when their <see cref="HpackHeaderField.Indexing"/> is
    /// <see cref="HpackIndexing.Auto"/>: RFC 7541 §7.1.3 (values guessable by probing the table, CRIME-style,
    /// §7.1.1), with nghttp2's thresholds. Default true.
    /// </summary>
    public bool NeverIndexSensitiveFields { get; init; } = true;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(InitialTableSize);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxTableSize);
    }
}

/// <summary>
/// RFC 7541 encoder, one per connection and direction. Fields are written in the order given, never
/// reordered, merged or split (the order of pseudo-headers and fields is part of a client's fingerprint),
/// each with the representation its <see cref="HpackHeaderField.Indexing"/> asks for:
/// a reference when a table holds the whole field (never for <see cref="HpackIndexing.NeverIndexed"/>),
/// else a literal whose name is a reference when a table holds the name (static table first, lowest index,
/// as the RFC 7541 Appendix C examples do). Given the same choices, the output is the Appendix C bytes.
/// </summary>
internal sealed class HpackEncoder
{
    private const int MaxIntegerLength = HpackInteger.MaxEncodedLength;

    private readonly HpackEncoderOptions _options;
    private readonly HpackDynamicTable _table;

    // RFC 7541 §4.2: size changes since the last block: the smallest, then the final one, are signalled.
    private int _pendingSmallest = -1;
    private int _pendingFinal = -1;

    public HpackEncoder(HpackEncoderOptions? options = null)
    {
        _options = options ?? new HpackEncoderOptions();
        _options.Validate();
        _table = new HpackDynamicTable(_options.InitialTableSize);
        if (_options.MaxTableSize < _options.InitialTableSize)
        {
            QueueSizeUpdate(_options.MaxTableSize);
        }
    }

    /// <summary>The dynamic table (for tests and diagnostics).</summary>
    internal HpackDynamicTable Table => _table;

    /// <summary>
    /// The peer's SETTINGS_HEADER_TABLE_SIZE arrived: the table becomes min(it, <see cref="HpackEncoderOptions.MaxTableSize"/>),
    /// signalled by a dynamic table size update at the start of the next block (RFC 7541 §4.2, §6.3).
    /// </summary>
    public void SetPeerHeaderTableSize(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        QueueSizeUpdate(Math.Min(size, _options.MaxTableSize));
    }

    /// <summary>Encodes one header block into <paramref name="output"/>.</summary>
    public void Encode(ReadOnlySpan<HpackHeaderField> fields, IBufferWriter<byte> output)
    {
        WritePendingSizeUpdates(output);
        foreach (var field in fields)
        {
            EncodeField(field, output);
        }
    }

    /// <summary>Encodes one header block into a new array (allocates; for tests and simple callers).</summary>
    public byte[] Encode(ReadOnlySpan<HpackHeaderField> fields)
    {
        var output = new ArrayBufferWriter<byte>(256);
        Encode(fields, output);
        return output.WrittenSpan.ToArray();
    }

    private void QueueSizeUpdate(int size)
    {
        _pendingSmallest = _pendingSmallest < 0 ? size : Math.Min(_pendingSmallest, size);
        _pendingFinal = size;
    }

    private void WritePendingSizeUpdates(IBufferWriter<byte> output)
    {
        if (_pendingFinal < 0)
        {
            return;
        }

        var span = output.GetSpan(2 * MaxIntegerLength);
        var written = 0;
        if (_pendingSmallest < _pendingFinal)
        {
            // The table shrank below the final size in between: the peer must evict as we did.
            written += HpackInteger.Encode(_pendingSmallest, 5, 0x20, span);
            _table.SetMaxSize(_pendingSmallest);
        }

        written += HpackInteger.Encode(_pendingFinal, 5, 0x20, span[written..]);
        _table.SetMaxSize(_pendingFinal);
        output.Advance(written);
        _pendingSmallest = _pendingFinal = -1;
    }

    private void EncodeField(in HpackHeaderField field, IBufferWriter<byte> output)
    {
        var name = field.Name.Span;
        var value = field.Value.Span;
        var indexing = field.Indexing;
        if (indexing == HpackIndexing.Auto && _options.NeverIndexSensitiveFields && IsSensitive(name, value))
        {
            indexing = HpackIndexing.NeverIndexed;
        }

        var nameIndex = HpackStaticTable.Find(name, value, out var fullMatch);
        if (!fullMatch)
        {
            var dynamicIndex = _table.Find(name, value, out var dynamicFullMatch);
            if (dynamicFullMatch || (nameIndex == 0 && dynamicIndex != 0))
            {
                nameIndex = HpackStaticTable.Count + dynamicIndex;
                fullMatch = dynamicFullMatch;
            }
        }

        if (fullMatch && indexing != HpackIndexing.NeverIndexed)
        {
            // RFC 7541 §6.1: indexed header field.
            var span = output.GetSpan(MaxIntegerLength);
            output.Advance(HpackInteger.Encode(nameIndex, 7, 0x80, span));
            return;
        }

        if (indexing == HpackIndexing.Auto)
        {
            // An entry taking most of the table would evict everything for one field that may not come back.
            indexing = (long)field.Size * 4 <= (long)_table.MaxSize * 3 ? HpackIndexing.Incremental : HpackIndexing.WithoutIndexing;
        }

        // RFC 7541 §6.2.1 01xxxxxx (6-bit prefix), §6.2.2 0000xxxx and §6.2.3 0001xxxx (4-bit prefix).
        var (pattern, prefixBits) = indexing switch
        {
            HpackIndexing.Incremental => ((byte)0x40, 6),
            HpackIndexing.NeverIndexed => ((byte)0x10, 4),
            _ => ((byte)0x00, 4),
        };

        var nameForm = nameIndex == 0 ? ChooseForm(name) : default;
        var valueForm = ChooseForm(value);
        var destination = output.GetSpan(MaxIntegerLength + (nameIndex == 0 ? nameForm.LiteralLength : 0) + valueForm.LiteralLength);
        var written = HpackInteger.Encode(nameIndex, prefixBits, pattern, destination);
        if (nameIndex == 0)
        {
            written += WriteString(name, nameForm, destination[written..]);
        }

        written += WriteString(value, valueForm, destination[written..]);
        output.Advance(written);
        if (indexing == HpackIndexing.Incremental)
        {
            _table.Add(new HpackTableEntry(name.ToArray(), value.ToArray()));
        }
    }

    private StringForm ChooseForm(ReadOnlySpan<byte> text)
    {
        if (_options.Huffman == HpackHuffmanMode.Never)
        {
            return new StringForm(false, text.Length);
        }

        var huffmanLength = HpackHuffman.GetEncodedLength(text);
        return _options.Huffman == HpackHuffmanMode.Always || huffmanLength < text.Length
            ? new StringForm(true, huffmanLength)
            : new StringForm(false, text.Length);
    }

    private static int WriteString(ReadOnlySpan<byte> text, StringForm form, Span<byte> destination)
    {
        // RFC 7541 §5.2: H bit, 7-bit-prefix length, octets.
        var prefix = HpackInteger.Encode(form.Octets, 7, form.Huffman ? (byte)0x80 : (byte)0x00, destination);
        if (!form.Huffman)
        {
            text.CopyTo(destination[prefix..]);
            return prefix + text.Length;
        }

        return prefix + HpackHuffman.Encode(text, destination[prefix..]);
    }

    /// <summary>RFC 7541 §7.1.3: credentials always; cookies when short enough to be guessed (nghttp2: under 20 octets).</summary>
    private static bool IsSensitive(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) =>
        name.SequenceEqual("authorization"u8)
        || name.SequenceEqual("proxy-authorization"u8)
        || (name.SequenceEqual("cookie"u8) && value.Length < 20);

    /// <summary>A string literal's form: Huffman or raw, and the octets after the length prefix.</summary>
    private readonly record struct StringForm(bool Huffman, int Octets)
    {
        public int LiteralLength => HpackInteger.GetEncodedLength(Octets, 7) + Octets;
    }
}
