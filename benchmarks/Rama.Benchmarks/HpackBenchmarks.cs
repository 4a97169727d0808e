using System.Buffers;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Benchmarks;

/// <summary>
/// The HPACK codec (RFC 7541) on a browser's request headers (Firefox 128 over HTTP/2): the first request of a
/// connection (literals, Huffman, table inserts) and a repeat of it (every field a one-octet reference).
/// </summary>
public class HpackBenchmarks
{
    private static readonly HpackHeaderField[] Request =
    [
        HpackHeaderField.From(":method", "GET"),
        HpackHeaderField.From(":path", "/assets/app.js?v=42"),
        HpackHeaderField.From(":authority", "example.com"),
        HpackHeaderField.From(":scheme", "https"),
        HpackHeaderField.From("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        HpackHeaderField.From("accept", "*/*"),
        HpackHeaderField.From("accept-language", "en-US,en;q=0.5"),
        HpackHeaderField.From("accept-encoding", "gzip, deflate, br, zstd"),
        HpackHeaderField.From("referer", "https://example.com/"),
        HpackHeaderField.From("sec-fetch-dest", "script"),
        HpackHeaderField.From("sec-fetch-mode", "no-cors"),
        HpackHeaderField.From("sec-fetch-site", "same-origin"),
        HpackHeaderField.From("cookie", "session=abcdef0123456789; theme=dark"),
        HpackHeaderField.From("te", "trailers"),
    ];

    private readonly NullHandler _handler = new();
    private readonly ArrayBufferWriter<byte> _output = new(1024);
    private ReadOnlySequence<byte> _firstBlock;
    private ReadOnlySequence<byte> _repeatBlock;
    private HpackDecoder _warmDecoder = null!;
    private HpackEncoder _warmEncoder = null!;

    [GlobalSetup]
    public void Setup()
    {
        var encoder = new HpackEncoder();
        _firstBlock = new ReadOnlySequence<byte>(encoder.Encode(Request));
        _repeatBlock = new ReadOnlySequence<byte>(encoder.Encode(Request));
        _warmDecoder = new HpackDecoder();
        _warmDecoder.Decode(_firstBlock, _handler);
        _warmEncoder = new HpackEncoder();
        _warmEncoder.Encode(Request);
    }

    [Benchmark(Baseline = true, Description = "decode first request (14 fields, literals + Huffman, new decoder)")]
    public int DecodeFirstRequest()
    {
        var decoder = new HpackDecoder();
        decoder.Decode(_firstBlock, _handler);
        return _handler.Count;
    }

    [Benchmark(Description = "decode repeat request (14 indexed fields)")]
    public int DecodeRepeatRequest()
    {
        _warmDecoder.Decode(_repeatBlock, _handler);
        return _handler.Count;
    }

    [Benchmark(Description = "encode first request (new encoder)")]
    public int EncodeFirstRequest()
    {
        _output.ResetWrittenCount();
        new HpackEncoder().Encode(Request, _output);
        return _output.WrittenCount;
    }

    [Benchmark(Description = "encode repeat request (table holds every field)")]
    public int EncodeRepeatRequest()
    {
        _output.ResetWrittenCount();
        _warmEncoder.Encode(Request, _output);
        return _output.WrittenCount;
    }

    private sealed class NullHandler : IHpackHeaderHandler
    {
        public int Count { get; private set; }

        public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed) => Count += name.Length + value.Length;
    }
}
