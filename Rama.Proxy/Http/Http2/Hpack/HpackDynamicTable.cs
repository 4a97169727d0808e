namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>
/// RFC 7541 §2.3.2, §4: the dynamic table, a FIFO of entries. Index 1 is the newest entry (the whole
/// address space puts it at 62, after the static table). Entries are evicted oldest first whenever the
/// table's size (the sum of RFC 7541 §4.1 entry sizes) would exceed its maximum size.
/// </summary>
internal sealed class HpackDynamicTable
{
    /// <summary>RFC 7541 §4.1: each entry costs its name and value plus 32 octets.</summary>
    public const int EntryOverhead = 32;

    private HpackTableEntry[] _ring;
    private int _newest = -1; // ring slot of the newest entry
    private int _count;

    public HpackDynamicTable(int maxSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        MaxSize = maxSize;
        _ring = new HpackTableEntry[Math.Clamp(maxSize / EntryOverhead, 1, 16)];
    }

    /// <summary>Entries in the table.</summary>
    public int Count => _count;

    /// <summary>RFC 7541 §4.1: the sum of the entries' sizes.</summary>
    public int Size { get; private set; }

    /// <summary>The maximum size (RFC 7541 §4.2), set by a dynamic table size update.</summary>
    public int MaxSize { get; private set; }

    /// <summary>The entry at a 1-based dynamic index (1 = newest).</summary>
    public HpackTableEntry this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(index, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(index, _count);
            var slot = _newest - (index - 1);
            return _ring[slot < 0 ? slot + _ring.Length : slot];
        }
    }

    /// <summary>
    /// RFC 7541 §4.4: adds an entry, first evicting from the end until it fits. An entry larger than the
    /// maximum size empties the table and is not added (not an error).
    /// </summary>
    public void Add(HpackTableEntry entry)
    {
        var size = entry.Size;
        if (size > MaxSize)
        {
            Clear();
            return;
        }

        EvictUntil(MaxSize - size);
        if (_count == _ring.Length)
        {
            Grow();
        }

        _newest = (_newest + 1) % _ring.Length;
        _ring[_newest] = entry;
        _count++;
        Size += size;
    }

    /// <summary>RFC 7541 §4.3: a new maximum size; entries are evicted until the table fits it.</summary>
    public void SetMaxSize(int maxSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        MaxSize = maxSize;
        EvictUntil(maxSize);
    }

    /// <summary>
    /// The 1-based dynamic index of an entry with this name and value, else of the newest entry with this
    /// name, else 0. Linear: the table holds at most <see cref="MaxSize"/>/32 entries.
    /// </summary>
    public int Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out bool fullMatch)
    {
        fullMatch = false;
        var nameIndex = 0;
        for (var i = 1; i <= _count; i++)
        {
            var entry = this[i];
            if (!name.SequenceEqual(entry.Name))
            {
                continue;
            }

            if (value.SequenceEqual(entry.Value))
            {
                fullMatch = true;
                return i;
            }

            if (nameIndex == 0)
            {
                nameIndex = i;
            }
        }

        return nameIndex;
    }

    private void EvictUntil(int size)
    {
        while (Size > size)
        {
            var oldest = _newest - (_count - 1);
            if (oldest < 0)
            {
                oldest += _ring.Length;
            }

            Size -= _ring[oldest].Size;
            _ring[oldest] = default;
            _count--;
        }
    }

    private void Clear()
    {
        Array.Clear(_ring);
        _count = 0;
        _newest = -1;
        Size = 0;
    }

    private void Grow()
    {
        // Bounded: an entry costs at least 32 octets, so Count <= MaxSize / 32.
        var bigger = new HpackTableEntry[_ring.Length * 2];
        for (var i = 0; i < _count; i++)
        {
            bigger[_count - 1 - i] = this[i + 1];
        }

        _ring = bigger;
        _newest = _count - 1;
    }
}
