using System.Buffers;
using System.Text;
using Rama.Proxy.Http.Http2.Hpack;
using Rama.Proxy.Tests.Support;
using static Rama.Proxy.Tests.Http.Http2.HpackTestSupport;

namespace Rama.Proxy.Tests.Http.Http2;

public class HpackEncoderTests
{
    [Theory]
    [InlineData("authorization", "Basic dXNlcjpwYXNzd29yZA==")]
    [InlineData("proxy-authorization", "Bearer a-long-token-value-well-past-twenty-octets")]
    [InlineData("cookie", "sid=abc")]
    public void Sensitive_fields_are_never_indexed_by_default(string name, string value)
    {
        var encoder = new HpackEncoder();
        var block = encoder.Encode([HpackHeaderField.From(name, value)]);
        Assert.Equal(0x10, block[0] & 0xF0); // §6.2.3 0001xxxx
        Assert.Equal(0, encoder.Table.Count);
        var field = Assert.Single(new HpackDecoder().Decode(block));
        Assert.Equal(HpackIndexing.NeverIndexed, field.Indexing);
    }

    [Fact]
    public void The_static_table_lookup_finds_every_entry_and_the_lowest_index_for_a_name()
    {
        // RFC 7541 Appendix A: each (name, value) pair at its own index; a name with another value gets its first index
        // (":status" 8, "accept-encoding" 16), an unknown or longer name none.
        for (var index = 1; index <= HpackStaticTable.Count; index++)
        {
            var entry = HpackStaticTable.Get(index);
            Assert.Equal(index, HpackStaticTable.Find(entry.Name, entry.Value, out var full));
            Assert.True(full, Encoding.ASCII.GetString(entry.Name));
        }

        Assert.Equal(8, HpackStaticTable.Find(":status"u8, "418"u8, out var statusFull));
        Assert.False(statusFull);
        Assert.Equal(2, HpackStaticTable.Find(":method"u8, "PUT"u8, out _));
        Assert.Equal(16, HpackStaticTable.Find("accept-encoding"u8, "br"u8, out _));
        Assert.Equal(0, HpackStaticTable.Find("x-request-id"u8, "1"u8, out var unknownFull));
        Assert.False(unknownFull);
        Assert.Equal(0, HpackStaticTable.Find("access-control-allow-credentials-and-more"u8, ""u8, out _));
        Assert.Equal(0, HpackStaticTable.Find(""u8, ""u8, out _));
    }

    [Fact]
    public void Long_cookie_is_indexed_and_sensitivity_can_be_turned_off()
    {
        var encoder = new HpackEncoder();
        encoder.Encode([HpackHeaderField.From("cookie", "session=0123456789abcdef")]);
        Assert.Equal(1, encoder.Table.Count);

        var plain = new HpackEncoder(new HpackEncoderOptions { NeverIndexSensitiveFields = false });
        plain.Encode([HpackHeaderField.From("authorization", "Basic x")]);
        Assert.Equal(1, plain.Table.Count);
    }

    [Fact]
    public void Never_indexed_field_is_never_a_reference_even_when_the_table_holds_it()
    {
        var encoder = new HpackEncoder();
        encoder.Encode([HpackHeaderField.From("x-secret", "s3cret", HpackIndexing.Incremental)]);
        var block = encoder.Encode([HpackHeaderField.From("x-secret", "s3cret", HpackIndexing.NeverIndexed)]);
        Assert.Equal("1f2f", ToHex(block.AsSpan(0, 2))); // never indexed, name index 62 (15 + 47)
    }

    [Fact]
    public void Never_indexed_flag_survives_decoding_and_reencoding_through_a_proxy()
    {
        var client = new HpackEncoder();
        var block = client.Encode(
        [
            HpackHeaderField.From(":method", "GET"),
            HpackHeaderField.From("x-api-key", "k-123", HpackIndexing.NeverIndexed),
            HpackHeaderField.From("accept", "*/*"),
        ]);
        var received = new HpackDecoder().Decode(block);
        Assert.Equal([HpackIndexing.Auto, HpackIndexing.NeverIndexed, HpackIndexing.Auto], received.Select(f => f.Indexing));

        var forwarded = new HpackEncoder().Encode(received.ToArray());
        var upstream = new HpackDecoder().Decode(forwarded);
        Assert.Equal(Pairs(received), Pairs(upstream));
        Assert.Equal(HpackIndexing.NeverIndexed, upstream[1].Indexing);
    }

    [Fact]
    public void Fields_keep_the_given_order_for_fingerprints()
    {
        // Chrome's pseudo-header order (m, a, s, p) and Firefox's (m, p, a, s) come back as given.
        string[][] orders =
        [
            [":method", ":authority", ":scheme", ":path"],
            [":method", ":path", ":authority", ":scheme"],
        ];
        foreach (var order in orders)
        {
            var fields = order.Select(n => HpackHeaderField.From(n, n == ":method" ? "GET" : n == ":scheme" ? "https" : n == ":path" ? "/" : "example.com"))
                .Append(HpackHeaderField.From("cookie", "a=1"))
                .Append(HpackHeaderField.From("cookie", "b=2"))
                .ToArray();
            var decoded = new HpackDecoder().Decode(new HpackEncoder().Encode(fields));
            Assert.Equal(Pairs(fields), Pairs(decoded));
        }
    }

    [Fact]
    public void Peer_table_size_changes_are_signalled_at_the_start_of_the_next_block_smallest_first()
    {
        var encoder = new HpackEncoder();
        encoder.Encode([HpackHeaderField.From("x", "y")]);
        encoder.SetPeerHeaderTableSize(0);
        encoder.SetPeerHeaderTableSize(2048);
        var block = encoder.Encode([HpackHeaderField.From(":method", "GET")]);
        Assert.Equal("203fe10f82", ToHex(block)); // 0 then 2048 (RFC 7541 §4.2), then the field
        Assert.Equal(0, encoder.Table.Count);
        Assert.Equal(2048, encoder.Table.MaxSize);
        Assert.Equal("82", ToHex(encoder.Encode([HpackHeaderField.From(":method", "GET")]))); // signalled once
    }

    [Fact]
    public void Peer_table_size_above_our_cap_is_capped()
    {
        var encoder = new HpackEncoder(new HpackEncoderOptions { MaxTableSize = 4096 });
        encoder.SetPeerHeaderTableSize(65536);
        Assert.Equal("3fe11f82", ToHex(encoder.Encode([HpackHeaderField.From(":method", "GET")]))); // 4096
        Assert.Equal(4096, encoder.Table.MaxSize);
    }

    [Fact]
    public void Cap_below_the_initial_size_is_signalled_in_the_first_block()
    {
        var encoder = new HpackEncoder(new HpackEncoderOptions { MaxTableSize = 0 });
        var block = encoder.Encode([HpackHeaderField.From("x", "y")]);
        Assert.Equal(0x20, block[0]);
        Assert.Equal(0, encoder.Table.Count);
        Assert.Equal([("x", "y")], Pairs(new HpackDecoder().Decode(block)));
    }

    [Fact]
    public void Huffman_is_used_only_when_shorter_by_default()
    {
        // "x-a" is 18 bits (3 octets) Huffman-coded, no gain: raw. "www.example.com" goes from 15 to 12 octets.
        var block = new HpackEncoder().Encode([HpackHeaderField.From("x-a", "www.example.com", HpackIndexing.WithoutIndexing)]);
        Assert.Equal("00" + "03782d61" + "8cf1e3c2e5f23a6ba0ab90f4ff", ToHex(block));

        // Octets 1 and 2 have 23- and 28-bit codes: 7 octets Huffman-coded, so they go raw.
        var raw = new HpackEncoder().Encode([new HpackHeaderField("x"u8.ToArray(), new byte[] { 1, 2 }, HpackIndexing.WithoutIndexing)]);
        Assert.Equal("00" + "0178" + "020102", ToHex(raw));
    }

    [Fact]
    public void Large_field_is_not_indexed_automatically()
    {
        var encoder = new HpackEncoder();
        encoder.Encode([HpackHeaderField.From("x-big", new string('v', 3100))]); // 3,137 > 3/4 of 4,096
        Assert.Equal(0, encoder.Table.Count);
        encoder.Encode([HpackHeaderField.From("x-big", new string('v', 3000))]);
        Assert.Equal(1, encoder.Table.Count);
    }

    [Fact]
    public void Encoder_writes_into_a_buffer_writer_across_blocks()
    {
        var encoder = new HpackEncoder();
        var output = new ArrayBufferWriter<byte>(1);
        encoder.Encode([HpackHeaderField.From(":method", "GET"), HpackHeaderField.From("user-agent", new string('u', 300))], output);
        Assert.Equal(2, new HpackDecoder().Decode(output.WrittenMemory).Count);
    }

    [Fact]
    public void Random_header_lists_round_trip_with_random_table_sizes()
    {
        var random = new Random(20261206);
        string[] names =
        [
            ":method", ":path", ":authority", ":scheme", ":status", "accept", "accept-encoding", "cookie", "authorization",
            "user-agent", "content-type", "content-length", "x-request-id", "x-forwarded-for", "set-cookie", "cache-control",
        ];
        var fieldsChecked = 0;
        for (var connection = 0; connection < 300; connection++)
        {
            var tableSize = random.Next(4) switch { 0 => 0, 1 => random.Next(32, 300), 2 => 4096, _ => random.Next(0, 10_000) };
            var huffman = (HpackHuffmanMode)random.Next(3);
            var decoder = new HpackDecoder(new HpackLimits { HeaderTableSize = tableSize, MaxHeaderListSize = 1 << 20 });
            var encoder = new HpackEncoder(new HpackEncoderOptions { InitialTableSize = tableSize, MaxTableSize = tableSize, Huffman = huffman });
            var blocks = random.Next(1, 6);
            for (var b = 0; b < blocks; b++)
            {
                if (random.Next(5) == 0)
                {
                    encoder.SetPeerHeaderTableSize(random.Next(0, tableSize + 1));
                }

                var fields = new HpackHeaderField[random.Next(0, 20)];
                for (var i = 0; i < fields.Length; i++)
                {
                    var name = random.Next(4) == 0 ? "x-custom-" + random.Next(10) : names[random.Next(names.Length)];
                    var value = new byte[random.Next(4) == 0 ? random.Next(0, 400) : random.Next(0, 24)];
                    if (random.Next(2) == 0)
                    {
                        random.NextBytes(value); // any octet, obs-text and controls included: HPACK carries bytes
                    }
                    else
                    {
                        Array.Fill(value, (byte)('a' + random.Next(3)));
                    }

                    fields[i] = new HpackHeaderField(Encoding.ASCII.GetBytes(name), value, (HpackIndexing)random.Next(4));
                }

                var block = encoder.Encode(fields);
                var decoded = random.Next(3) == 0
                    ? Decode(decoder, Sequences.Split(block, random.Next(1, 8)))
                    : decoder.Decode(block);

                Assert.Equal(fields.Length, decoded.Count);
                for (var i = 0; i < fields.Length; i++)
                {
                    Assert.Equal(fields[i].Name.ToArray(), decoded[i].Name.ToArray());
                    Assert.Equal(fields[i].Value.ToArray(), decoded[i].Value.ToArray());
                    var neverIndexed = fields[i].Indexing == HpackIndexing.NeverIndexed || (fields[i].Indexing == HpackIndexing.Auto && IsSensitive(fields[i]));
                    Assert.Equal(neverIndexed, decoded[i].Indexing == HpackIndexing.NeverIndexed);
                    fieldsChecked++;
                }

                // Both tables evolve alike: same entries, same size.
                Assert.Equal(Entries(encoder.Table), Entries(decoder.Table));
                Assert.Equal(encoder.Table.Size, decoder.Table.Size);
                Assert.True(decoder.Table.Size <= tableSize);
            }
        }

        Assert.True(fieldsChecked > 3000, $"{fieldsChecked} fields");
    }

    private static bool IsSensitive(HpackHeaderField field) =>
        field.NameText is "authorization" or "proxy-authorization" || (field.NameText == "cookie" && field.Value.Length < 20);
}
