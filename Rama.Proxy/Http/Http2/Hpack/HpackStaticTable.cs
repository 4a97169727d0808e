using System.Text;

namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>One (name, value) pair of an HPACK table. Names are lowercase (RFC 9113 §8.2.1).</summary>
internal readonly record struct HpackTableEntry(byte[] Name, byte[] Value)
{
    /// <summary>RFC 7541 §4.1: the size of an entry is name + value + 32 octets.</summary>
    public int Size => Name.Length + Value.Length + HpackDynamicTable.EntryOverhead;
}

/// <summary>RFC 7541 Appendix A: the 61 predefined entries, indices 1..61.</summary>
internal static class HpackStaticTable
{
    public const int Count = 61;

    private static readonly HpackTableEntry[] s_entries =
    [
        E(":authority", ""),
        E(":method", "GET"),
        E(":method", "POST"),
        E(":path", "/"),
        E(":path", "/index.html"),
        E(":scheme", "http"),
        E(":scheme", "https"),
        E(":status", "200"),
        E(":status", "204"),
        E(":status", "206"),
        E(":status", "304"),
        E(":status", "400"),
        E(":status", "404"),
        E(":status", "500"),
        E("accept-charset", ""),
        E("accept-encoding", "gzip, deflate"),
        E("accept-language", ""),
        E("accept-ranges", ""),
        E("accept", ""),
        E("access-control-allow-origin", ""),
        E("age", ""),
        E("allow", ""),
        E("authorization", ""),
        E("cache-control", ""),
        E("content-disposition", ""),
        E("content-encoding", ""),
        E("content-language", ""),
        E("content-length", ""),
        E("content-location", ""),
        E("content-range", ""),
        E("content-type", ""),
        E("cookie", ""),
        E("date", ""),
        E("etag", ""),
        E("expect", ""),
        E("expires", ""),
        E("from", ""),
        E("host", ""),
        E("if-match", ""),
        E("if-modified-since", ""),
        E("if-none-match", ""),
        E("if-range", ""),
        E("if-unmodified-since", ""),
        E("last-modified", ""),
        E("link", ""),
        E("location", ""),
        E("max-forwards", ""),
        E("proxy-authenticate", ""),
        E("proxy-authorization", ""),
        E("range", ""),
        E("referer", ""),
        E("refresh", ""),
        E("retry-after", ""),
        E("server", ""),
        E("set-cookie", ""),
        E("strict-transport-security", ""),
        E("transfer-encoding", ""),
        E("user-agent", ""),
        E("vary", ""),
        E("via", ""),
        E("www-authenticate", ""),
    ];

    /// <summary>The entry at a 1-based index (1..61).</summary>
    public static HpackTableEntry Get(int index) => s_entries[index - 1];

    /// <summary>
    /// The index of an entry with this name and value (full match), else of the first entry with this
    /// name (the lowest index, as the RFC 7541 Appendix C examples choose), else 0.
    /// </summary>
    public static int Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out bool fullMatch)
    {
        fullMatch = false;
        if ((uint)name.Length >= (uint)s_byNameLength.Length)
        {
            return 0;
        }

        // Only the entries whose name has this length (at most 6 of the 61; the encoder looks up every field it sends).
        var nameIndex = 0;
        foreach (var index in s_byNameLength[name.Length])
        {
            var entry = s_entries[index - 1];
            if (!name.SequenceEqual(entry.Name))
            {
                continue;
            }

            if (nameIndex == 0)
            {
                nameIndex = index;
            }

            if (value.SequenceEqual(entry.Value))
            {
                fullMatch = true;
                return index;
            }
        }

        return nameIndex;
    }

    // 1-based indices of the entries by the length of their name, in table order (so the first name match is the lowest index).
    private static readonly byte[][] s_byNameLength = BuildNameLengthBuckets();

    private static byte[][] BuildNameLengthBuckets()
    {
        var longest = s_entries.Max(e => e.Name.Length);
        var buckets = new List<byte>[longest + 1];
        for (var i = 0; i < s_entries.Length; i++)
        {
            (buckets[s_entries[i].Name.Length] ??= []).Add((byte)(i + 1));
        }

        return [.. buckets.Select(b => b is null ? [] : b.ToArray())];
    }

    private static HpackTableEntry E(string name, string value) => new(Encoding.ASCII.GetBytes(name), Encoding.ASCII.GetBytes(value));
}
