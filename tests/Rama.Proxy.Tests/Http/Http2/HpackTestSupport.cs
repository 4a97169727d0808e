using System.Buffers;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Tests.Http.Http2;

internal static class HpackTestSupport
{
    /// <summary>Bytes from the RFC's hex dumps ("8286 8441 ..."), spaces and newlines ignored.</summary>
    public static byte[] Hex(string hex) => Convert.FromHexString(hex.Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal));

    public static string ToHex(ReadOnlySpan<byte> bytes) => Convert.ToHexString(bytes).ToLowerInvariant();

    public static List<HpackHeaderField> Decode(HpackDecoder decoder, ReadOnlySequence<byte> block)
    {
        var list = new HpackHeaderList();
        decoder.Decode(block, list);
        return list.Fields;
    }

    public static (string Name, string Value)[] Pairs(IEnumerable<HpackHeaderField> fields) => fields.Select(f => (f.NameText, f.ValueText)).ToArray();

    /// <summary>The dynamic table, newest entry first (the order of the RFC's "Dynamic Table" listings).</summary>
    public static (string Name, string Value)[] Entries(HpackDynamicTable table) =>
        Enumerable.Range(1, table.Count)
            .Select(i => (System.Text.Encoding.Latin1.GetString(table[i].Name), System.Text.Encoding.Latin1.GetString(table[i].Value)))
            .ToArray();

    public static HpackDecodingException Refused(Action decode) => Assert.Throws<HpackDecodingException>(decode);
}
