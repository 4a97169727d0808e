using System.Buffers;
using Rama.Proxy.Http.Http2.Hpack;
using Rama.Proxy.Tests.Support;
using static Rama.Proxy.Tests.Http.Http2.HpackTestSupport;

namespace Rama.Proxy.Tests.Http.Http2;

public class HpackDecoderTests
{
    [Theory]
    [InlineData("80", HpackError.IndexOutOfRange)] // §6.1: index 0
    [InlineData("be", HpackError.IndexOutOfRange)] // 62 with an empty dynamic table
    [InlineData("ff00", HpackError.IndexOutOfRange)] // 127
    [InlineData("7e0161", HpackError.IndexOutOfRange)] // literal whose name index is 62, table empty
    [InlineData("ff8080808080", HpackError.IntegerOverflow)] // the fifth continuation octet announces a sixth
    [InlineData("ff808080808001", HpackError.IntegerOverflow)] // a sixth continuation octet
    [InlineData("ff8080808008", HpackError.IntegerOverflow)] // 127 + 2^31 > 2^31-1
    [InlineData("ffffffffff0f", HpackError.IntegerOverflow)] // 2^32 + 126
    [InlineData("ff", HpackError.Truncated)]
    [InlineData("40", HpackError.Truncated)] // no name length
    [InlineData("40036162", HpackError.Truncated)] // name shorter than announced
    [InlineData("400161", HpackError.Truncated)] // name without value
    [InlineData("04", HpackError.Truncated)] // indexed name without value
    [InlineData("0403", HpackError.Truncated)]
    [InlineData("0481", HpackError.Truncated)] // Huffman value announced, absent
    [InlineData("8220", HpackError.TableSizeUpdateNotAtStart)]
    [InlineData("3fe21f", HpackError.TableSizeUpdateTooLarge)] // 4097 > the 4096 announced
    [InlineData("3fe1ff7f", HpackError.TableSizeUpdateTooLarge)]
    [InlineData("3f", HpackError.Truncated)]
    [InlineData("018118", HpackError.InvalidHuffman)] // 'a' (00011) padded with zeros
    [InlineData("01821fff", HpackError.InvalidHuffman)] // 'a' padded with 11 ones (more than 7)
    [InlineData("0181ff", HpackError.InvalidHuffman)] // 8 bits of padding alone
    [InlineData("0184ffffffff", HpackError.InvalidHuffman)] // EOS (30 ones) in the string
    [InlineData("0184fffffffc", HpackError.InvalidHuffman)] // EOS then zero padding
    [InlineData("00811800", HpackError.InvalidHuffman)] // a Huffman name with zero padding
    [InlineData("017f818001", HpackError.StringTooLong)] // 16,512 octets > 16 KiB, refused from the length
    [InlineData("017fffff01", HpackError.StringTooLong)] // 32,894 octets
    public void Malformed_block_is_refused_with_its_reason_whole_and_one_byte_per_segment(string hex, HpackError error)
    {
        var bytes = Hex(hex);
        Assert.Equal(error, Refused(() => new HpackDecoder().Decode(bytes)).Error);
        Assert.Equal(error, Refused(() => Decode(new HpackDecoder(), Sequences.OneBytePerSegment(bytes))).Error);
    }

    [Theory]
    [InlineData(HpackError.HeaderListTooLarge, false, 431)]
    [InlineData(HpackError.IndexOutOfRange, true, null)]
    [InlineData(HpackError.InvalidHuffman, true, null)]
    [InlineData(HpackError.Truncated, true, null)]
    public void Errors_map_to_compression_error_except_a_too_large_list(HpackError error, bool connectionError, int? status)
    {
        Assert.Equal(connectionError, HpackErrors.IsConnectionError(error));
        Assert.Equal(status, HpackErrors.StatusCode(error));
        Assert.Equal(connectionError, new HpackDecodingException(error, "x").IsConnectionError);
    }

    [Fact]
    public void Valid_huffman_padding_of_up_to_seven_ones_is_accepted()
    {
        Assert.Equal("a", Assert.Single(new HpackDecoder().Decode(Hex("01811f"))).ValueText);
        Assert.Equal("", Assert.Single(new HpackDecoder().Decode(Hex("0180"))).ValueText);
    }

    [Fact]
    public void Hpack_bomb_stops_at_the_list_limit_and_allocates_less_than_it()
    {
        // One 4,033-octet entry (name "x", 4000-octet value), then 20,000 one-octet references to it: ~80 MB decoded.
        var block = BombBlock(references: 20_000);
        Bomb(block); // warm up (JIT, static tables)

        var before = GC.GetAllocatedBytesForCurrentThread();
        var (error, fields, decoder) = Bomb(block);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(HpackError.HeaderListTooLarge, error);
        Assert.Equal(32 * 1024 / 4033, fields); // 8 fields fit 32 KiB; the 9th is refused
        Assert.True(allocated < new HpackLimits().MaxHeaderListSize, $"allocated {allocated} bytes");

        // The rest of the block was still decoded: the table is in step, the next block decodes (a 431, not a lost connection).
        Assert.Equal(1, decoder.Table.Count);
        Assert.Equal(new string('a', 4000), Assert.Single(decoder.Decode(Hex("be"))).ValueText);
    }

    [Fact]
    public void Header_list_size_counts_name_value_and_32_per_field()
    {
        var limits = new HpackLimits { MaxHeaderListSize = 42 + 32 }; // ":method GET" is 42
        Assert.Single(new HpackDecoder(limits).Decode(Hex("82")));
        Assert.Equal(2, new HpackDecoder(limits with { MaxHeaderListSize = 84 }).Decode(Hex("8282")).Count);
        Assert.Equal(HpackError.HeaderListTooLarge, Refused(() => new HpackDecoder(limits).Decode(Hex("8282"))).Error);
    }

    [Fact]
    public void Huffman_string_that_decodes_past_the_string_limit_is_refused()
    {
        // 8 octets of 'a' codes (5 bits each) decode to 12 octets; the limit is 10.
        var encoded = new byte[8];
        var aaaa = new byte[12];
        Array.Fill(aaaa, (byte)'a');
        Assert.Equal(8, HpackHuffman.Encode(aaaa, encoded));
        var block = new byte[] { 0x01, 0x88 }.Concat(encoded).ToArray();
        Assert.Equal(12, Assert.Single(new HpackDecoder(new HpackLimits { MaxStringLength = 12 }).Decode(block)).Value.Length);
        Assert.Equal(HpackError.StringTooLong, Refused(() => new HpackDecoder(new HpackLimits { MaxStringLength = 10 }).Decode(block)).Error);
    }

    [Fact]
    public void Size_updates_at_the_start_of_a_block_evict_and_may_come_twice()
    {
        var decoder = new HpackDecoder();
        decoder.Decode(Hex("400178 0179")); // x: y, 34 octets
        Assert.Equal(34, decoder.Table.Size);
        Assert.Single(decoder.Decode(Hex("20 3fe10f 82"))); // 0 (evicts), then 2048
        Assert.Equal(0, decoder.Table.Count);
        Assert.Equal(2048, decoder.Table.MaxSize);
        decoder.Decode(Hex("400178 0179"));
        Assert.Equal(HpackError.IndexOutOfRange, Refused(() => decoder.Decode(Hex("20 be"))).Error);
    }

    [Fact]
    public void Lowered_table_size_requires_an_update_in_the_next_block()
    {
        var decoder = new HpackDecoder();
        decoder.SetHeaderTableSize(1024);
        Assert.Equal(HpackError.TableSizeUpdateMissing, Refused(() => decoder.Decode(Hex("82"))).Error);

        decoder = new HpackDecoder();
        decoder.SetHeaderTableSize(1024);
        Assert.Equal(HpackError.TableSizeUpdateTooLarge, Refused(() => decoder.Decode(Hex("3fe10f 82"))).Error); // 2048
        decoder = new HpackDecoder();
        decoder.SetHeaderTableSize(1024);
        Assert.Single(decoder.Decode(Hex("3fe107 82"))); // 1024
        Assert.Equal(1024, decoder.Table.MaxSize);
        Assert.Single(decoder.Decode(Hex("82"))); // required once only
    }

    [Fact]
    public void Raised_table_size_needs_no_update()
    {
        var decoder = new HpackDecoder(new HpackLimits { HeaderTableSize = 256 });
        decoder.SetHeaderTableSize(8192);
        Assert.Single(decoder.Decode(Hex("82")));
        Assert.Single(decoder.Decode(Hex("3fe13f 82"))); // 8192 is now allowed
        Assert.Equal(8192, decoder.Table.MaxSize);
    }

    [Fact]
    public void Entry_larger_than_the_table_empties_it_without_error()
    {
        var decoder = new HpackDecoder(new HpackLimits { HeaderTableSize = 40 });
        decoder.Decode(Hex("400178 0179")); // 34
        var fields = decoder.Decode(Hex("400178 0a30313233343536373839")); // x: 0123456789, 43 > 40
        Assert.Single(fields);
        Assert.Equal(0, decoder.Table.Count);
        Assert.Equal(0, decoder.Table.Size);
    }

    [Fact]
    public void Incremental_literal_may_take_its_name_from_the_entry_it_evicts()
    {
        // Table of 40: "x: y" (34) is the only entry; "x: z" names it by index 62 and evicts it when added.
        var decoder = new HpackDecoder(new HpackLimits { HeaderTableSize = 40 });
        decoder.Decode(Hex("400178 0179"));
        Assert.Equal(("x", "z"), Pairs(decoder.Decode(Hex("7e 017a")))[0]);
        Assert.Equal([("x", "z")], Entries(decoder.Table));
    }

    [Fact]
    public void Empty_block_decodes_to_no_fields()
    {
        Assert.Empty(new HpackDecoder().Decode(ReadOnlyMemory<byte>.Empty));
    }

    [Fact]
    public void Limits_are_validated()
    {
        Assert.Throws<ArgumentException>(() => new HpackDecoder(new HpackLimits { MaxHeaderListSize = 0 }));
        Assert.Throws<ArgumentException>(() => new HpackDecoder(new HpackLimits { MaxStringLength = -1 }));
        Assert.Throws<ArgumentException>(() => new HpackDecoder(new HpackLimits { HeaderTableSize = -1 }));
    }

    private static byte[] BombBlock(int references)
    {
        var block = new List<byte> { 0x40, 0x01, (byte)'x', 0x7F };
        var rest = new byte[HpackInteger.MaxEncodedLength];
        var written = HpackInteger.Encode(4000, 7, 0, rest);
        block.RemoveAt(block.Count - 1);
        block.AddRange(rest.AsSpan(0, written).ToArray());
        block.AddRange(Enumerable.Repeat((byte)'a', 4000));
        block.AddRange(Enumerable.Repeat((byte)0xBE, references));
        return [.. block];
    }

    private static (HpackError? Error, int Fields, HpackDecoder Decoder) Bomb(byte[] block)
    {
        var decoder = new HpackDecoder();
        var counter = new CountingHandler();
        try
        {
            decoder.Decode(new ReadOnlySequence<byte>(block), counter);
            return (null, counter.Count, decoder);
        }
        catch (HpackDecodingException e)
        {
            return (e.Error, counter.Count, decoder);
        }
    }

    private sealed class CountingHandler : IHpackHeaderHandler
    {
        public int Count { get; private set; }

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed) => Count++;
    }
}
