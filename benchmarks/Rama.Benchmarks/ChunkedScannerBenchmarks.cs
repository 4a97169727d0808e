using System.Text;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Http;

namespace Rama.Benchmarks;

/// <summary>
/// The epoll relay's chunked pass-through (<see cref="ChunkedScanner"/>): a small chunked body without trailers (the usual case,
/// whose trailer section is its last CRLF) and the same body with a trailer section whose forbidden fields are dropped in place.
/// </summary>
public class ChunkedScannerBenchmarks
{
    private static readonly HttpLimits Limits = new();
    private static readonly byte[] Plain = Encoding.ASCII.GetBytes("400\r\n" + new string('x', 1024) + "\r\n0\r\n\r\n");
    private static readonly byte[] WithTrailers = Encoding.ASCII.GetBytes(
        "400\r\n" + new string('x', 1024) + "\r\n0\r\nX-Checksum: abc123\r\nSet-Cookie: a=b\r\ngrpc-status: 0\r\nContent-Length: 5\r\n\r\n");
    private readonly byte[] _buffer = new byte[2048];

    [Benchmark(Baseline = true, Description = "1 KiB chunked body, no trailers")]
    public int NoTrailers() => Relay(Plain);

    [Benchmark(Description = "1 KiB chunked body, 4 trailer fields (2 dropped)")]
    public int FilteredTrailers() => Relay(WithTrailers);

    private int Relay(byte[] body)
    {
        body.CopyTo(_buffer, 0); // the filter rewrites the section in place
        var scanner = new ChunkedScanner(Limits);
        var approved = scanner.Scan(_buffer.AsSpan(0, body.Length));
        scanner.TryFilterTrailers(_buffer.AsSpan(approved, body.Length - approved), out _, out var kept);
        return approved + kept;
    }
}
