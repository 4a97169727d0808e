using System.Buffers;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Socks5;

namespace Rama.Benchmarks;

/// <summary>The SOCKS5 handshake parsers (RFC 1928): greeting, then CONNECT to an IPv4 address or a domain name.</summary>
public class Socks5Benchmarks
{
    private readonly ReadOnlySequence<byte> _greeting = new([5, 2, 0, 2]);
    private readonly ReadOnlySequence<byte> _connectIPv4 = new([5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]);
    private readonly ReadOnlySequence<byte> _connectDomain = new([5, 1, 0, 3, 11, .. "example.com"u8.ToArray(), 0x01, 0xBB]);

    [Benchmark(Description = "greeting (2 methods)")]
    public Socks5ParseStatus Greeting() => Socks5Protocol.TryParseGreeting(_greeting, out _, out _);

    [Benchmark(Description = "CONNECT IPv4")]
    public Socks5ParseStatus ConnectIPv4() => Socks5Protocol.TryParseRequest(_connectIPv4, out _, out _);

    [Benchmark(Description = "CONNECT domain")]
    public Socks5ParseStatus ConnectDomain() => Socks5Protocol.TryParseRequest(_connectDomain, out _, out _);
}
