using System.Buffers;

namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>
/// RFC 7541 decoder, one per connection and direction (its dynamic table mirrors the peer encoder's).
/// Decodes a complete header block (HEADERS plus CONTINUATION fragments, RFC 9113 §4.3), so input that
/// ends inside a representation is <see cref="HpackError.Truncated"/>, not "need more data". Fields go to an
/// <see cref="IHpackHeaderHandler"/> in order, as spans: no allocation per field except the copies a
/// literal with incremental indexing puts in the table.
/// Limits (<see cref="HpackLimits"/>): the table size we announced, the longest string (checked from the
/// length prefix, before copying), and the header list size. The HPACK bomb (one large entry indexed
/// thousands of times) stops reaching the handler at <see cref="HpackLimits.MaxHeaderListSize"/>; the rest of
/// the block is still decoded, without handing out fields, so the table stays in step with the peer's and a
/// server may answer 431 on the stream instead of closing the connection (RFC 9113 §4.3: the table state
/// must be kept even for a refused block); then <see cref="HpackError.HeaderListTooLarge"/> is thrown.
/// Every other violation throws at once and the connection must end with COMPRESSION_ERROR.
/// </summary>
internal sealed class HpackDecoder
{
    private readonly HpackLimits _limits;
    private readonly HpackDynamicTable _table;
    private int _announcedTableSize;
    private bool _sizeUpdateRequired;
    private byte[] _nameBuffer = [];
    private byte[] _valueBuffer = [];
    private byte[] _encodedBuffer = [];

    public HpackDecoder(HpackLimits? limits = null)
    {
        _limits = limits ?? new HpackLimits();
        _limits.Validate();
        _announcedTableSize = _limits.HeaderTableSize;
        _table = new HpackDynamicTable(_announcedTableSize);
    }

    /// <summary>The dynamic table (for tests and diagnostics).</summary>
    internal HpackDynamicTable Table => _table;

    /// <summary>
    /// A new SETTINGS_HEADER_TABLE_SIZE of ours took effect (the peer acknowledged it). When it is below the
    /// table's current maximum, the peer's next block must start with a size update within it
    /// (RFC 7541 §4.2, RFC 9113 §4.3.1), else <see cref="HpackError.TableSizeUpdateMissing"/>.
    /// </summary>
    public void SetHeaderTableSize(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        _announcedTableSize = size;
        if (size < _table.MaxSize)
        {
            _sizeUpdateRequired = true;
        }
    }

    /// <summary>Decodes one complete header block into a new list (allocates; for tests and simple callers).</summary>
    public List<HpackHeaderField> Decode(ReadOnlyMemory<byte> block)
    {
        var list = new HpackHeaderList();
        Decode(new ReadOnlySequence<byte>(block), list);
        return list.Fields;
    }

    /// <summary>Decodes one complete header block, handing each field to <paramref name="handler"/> in order.</summary>
    public void Decode(in ReadOnlySequence<byte> block, IHpackHeaderHandler handler)
    {
        var reader = new SequenceReader<byte>(block);
        var state = new BlockState();
        while (reader.TryPeek(out var first))
        {
            if ((first & 0x80) != 0)
            {
                // RFC 7541 §6.1: indexed header field, 1xxxxxxx.
                StartField(ref state);
                var entry = GetEntry(ReadInteger(ref reader, 7));
                Emit(ref state, handler, entry.Name, entry.Value, neverIndexed: false);
            }
            else if ((first & 0x40) != 0)
            {
                // RFC 7541 §6.2.1: literal with incremental indexing, 01xxxxxx.
                StartField(ref state);
                ReadLiteral(ref reader, ref state, handler, prefixBits: 6, index: true, neverIndexed: false);
            }
            else if ((first & 0x20) != 0)
            {
                // RFC 7541 §6.3: dynamic table size update, 001xxxxx; §4.2: only before the first field.
                if (state.FieldSeen)
                {
                    HpackErrors.Throw(HpackError.TableSizeUpdateNotAtStart);
                }

                var size = ReadInteger(ref reader, 5);
                if (size > _announcedTableSize)
                {
                    HpackErrors.Throw(HpackError.TableSizeUpdateTooLarge);
                }

                _table.SetMaxSize(size);
                _sizeUpdateRequired = false;
            }
            else
            {
                // RFC 7541 §6.2.2 without indexing 0000xxxx, §6.2.3 never indexed 0001xxxx.
                StartField(ref state);
                ReadLiteral(ref reader, ref state, handler, prefixBits: 4, index: false, neverIndexed: (first & 0x10) != 0);
            }
        }

        if (_sizeUpdateRequired)
        {
            HpackErrors.Throw(HpackError.TableSizeUpdateMissing);
        }

        if (state.TooLarge)
        {
            HpackErrors.Throw(HpackError.HeaderListTooLarge);
        }
    }

    private void StartField(ref BlockState state)
    {
        if (!state.FieldSeen)
        {
            state.FieldSeen = true;
            if (_sizeUpdateRequired)
            {
                HpackErrors.Throw(HpackError.TableSizeUpdateMissing);
            }
        }
    }

    private void ReadLiteral(ref SequenceReader<byte> reader, ref BlockState state, IHpackHeaderHandler handler, int prefixBits, bool index, bool neverIndexed)
    {
        var nameIndex = ReadInteger(ref reader, prefixBits);
        var name = nameIndex == 0 ? ReadString(ref reader, ref _nameBuffer) : GetEntry(nameIndex).Name;
        var value = ReadString(ref reader, ref _valueBuffer);
        Emit(ref state, handler, name, value, neverIndexed);
        if (index)
        {
            // RFC 7541 §4.4: may evict the entry the name came from; the copy is made first.
            _table.Add(new HpackTableEntry(name.ToArray(), value.ToArray()));
        }
    }

    private void Emit(ref BlockState state, IHpackHeaderHandler handler, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed)
    {
        // RFC 9113 §6.5.2: the header list size counts name + value + 32 per field.
        state.ListSize += name.Length + value.Length + HpackDynamicTable.EntryOverhead;
        if (state.ListSize > _limits.MaxHeaderListSize)
        {
            state.TooLarge = true;
        }

        if (!state.TooLarge)
        {
            handler.OnHeader(name, value, neverIndexed);
        }
    }

    private HpackTableEntry GetEntry(int index)
    {
        // RFC 7541 §2.3.3: 1..61 static, 62.. dynamic (62 = newest); 0 and past the end are errors.
        if (index == 0)
        {
            HpackErrors.Throw(HpackError.IndexOutOfRange);
        }

        if (index <= HpackStaticTable.Count)
        {
            return HpackStaticTable.Get(index);
        }

        var dynamicIndex = index - HpackStaticTable.Count;
        if (dynamicIndex > _table.Count)
        {
            HpackErrors.Throw(HpackError.IndexOutOfRange);
        }

        return _table[dynamicIndex];
    }

    private static int ReadInteger(ref SequenceReader<byte> reader, int prefixBits) =>
        HpackInteger.TryDecode(ref reader, prefixBits, out var value) ? value : HpackErrors.Throw<int>(HpackError.Truncated);

    /// <summary>
    /// RFC 7541 §5.2: H bit, 7-bit-prefix length, octets. Returns a slice of the block when the string is raw
    /// and within one segment, else of <paramref name="buffer"/> (valid until the next string into it).
    /// </summary>
    private ReadOnlySpan<byte> ReadString(ref SequenceReader<byte> reader, ref byte[] buffer)
    {
        if (!reader.TryPeek(out var first))
        {
            HpackErrors.Throw(HpackError.Truncated);
        }

        var huffman = (first & 0x80) != 0;
        var length = ReadInteger(ref reader, 7);
        if (length > _limits.MaxStringLength)
        {
            HpackErrors.Throw(HpackError.StringTooLong);
        }

        if (reader.Remaining < length)
        {
            HpackErrors.Throw(HpackError.Truncated);
        }

        ReadOnlySpan<byte> octets;
        var unread = reader.UnreadSpan;
        if (unread.Length >= length)
        {
            octets = unread[..length];
        }
        else
        {
            // The string crosses a segment boundary: copy it (into the output buffer when raw).
            ref var copy = ref huffman ? ref _encodedBuffer : ref buffer;
            EnsureCapacity(ref copy, length);
            reader.TryCopyTo(copy.AsSpan(0, length));
            octets = copy.AsSpan(0, length);
        }

        reader.Advance(length);
        if (!huffman)
        {
            return octets;
        }

        // The decoded string is capped at the limit too: StringTooLong when it would pass it.
        var capacity = Math.Min(HpackHuffman.GetMaxDecodedLength(length), _limits.MaxStringLength);
        EnsureCapacity(ref buffer, capacity);
        var written = HpackHuffman.Decode(octets, buffer.AsSpan(0, capacity));
        return buffer.AsSpan(0, written);
    }

    private static void EnsureCapacity(ref byte[] buffer, int length)
    {
        if (buffer.Length < length)
        {
            // Bounded by MaxStringLength; grows to the largest string seen, kept for the connection.
            buffer = new byte[Math.Max(length, Math.Min(buffer.Length * 2, int.MaxValue / 2))];
        }
    }

    private struct BlockState
    {
        public bool FieldSeen;
        public long ListSize;
        public bool TooLarge;
    }
}
