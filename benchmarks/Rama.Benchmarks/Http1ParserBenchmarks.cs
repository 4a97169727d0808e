using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Support;

namespace Rama.Benchmarks;

/// <summary>The HTTP/1.1 head parser: a browser-like request through a forward proxy, and nginx's response head.</summary>
public class Http1ParserBenchmarks
{
    private static readonly HttpLimits Limits = new();
    private ReadOnlySequence<byte> _request;
    private ReadOnlySequence<byte> _originFormRequest;
    private ReadOnlySequence<byte> _response;
    private ReadOnlySequence<byte> _requestInSegments;

    [GlobalSetup]
    public void Setup()
    {
        var request = Encoding.ASCII.GetBytes(
            "GET http://example.com/assets/app.js?v=42 HTTP/1.1\r\n" +
            "Host: example.com\r\n" +
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
            "Accept: */*\r\n" +
            "Accept-Language: en-US,en;q=0.5\r\n" +
            "Accept-Encoding: gzip, deflate\r\n" +
            "Referer: http://example.com/\r\n" +
            "Proxy-Connection: keep-alive\r\n" +
            "Cookie: session=abcdef0123456789; theme=dark\r\n" +
            "\r\n");
        _request = new ReadOnlySequence<byte>(request);
        _originFormRequest = new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes("GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n"));
        _response = new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes(
            "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 22 Nov 2026 03:00:00 GMT\r\nContent-Type: application/octet-stream\r\n" +
            "Content-Length: 1024\r\nLast-Modified: Sat, 22 Nov 2026 02:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6740f5a0-400\"\r\nAccept-Ranges: bytes\r\n\r\n"));
        _requestInSegments = Sequences.Split(request, 64);
    }

    [Benchmark(Baseline = true, Description = "request head, absolute-form, 8 fields")]
    public HttpRequest? ParseRequest()
    {
        Http1Parser.TryParseRequest(_request, Limits, out var request, out _);
        return request;
    }

    [Benchmark(Description = "request head, origin-form (wrk), 2 fields")]
    public HttpRequest? ParseOriginFormRequest()
    {
        Http1Parser.TryParseRequest(_originFormRequest, Limits, out var request, out _);
        return request;
    }

    [Benchmark(Description = "request head in 64-byte segments")]
    public HttpRequest? ParseSegmentedRequest()
    {
        Http1Parser.TryParseRequest(_requestInSegments, Limits, out var request, out _);
        return request;
    }

    [Benchmark(Description = "response head (nginx), 8 fields")]
    public object? ParseResponse()
    {
        Http1Parser.TryParseResponse(_response, Limits, HttpMethods.Get, out var response, out _);
        return response;
    }

    private byte[] _originFormBytes = [];
    private byte[] _responseBytes = [];
    private HttpRequest? _reusedRequest;
    private readonly HttpHeaders _reusedResponseHeaders = new(16);

    [GlobalSetup(Targets = [nameof(ParseOriginFormRequestInPlace), nameof(ParseResponseInPlace)])]
    public void SetupInPlace()
    {
        Setup();
        _originFormBytes = _originFormRequest.ToArray();
        _responseBytes = _response.ToArray();
    }

    [Benchmark(Description = "request head, origin-form (wrk), in place, reused (epoll reverse proxy)")]
    public HttpRequest? ParseOriginFormRequestInPlace()
    {
        var state = default(HeadScanState);
        Http1Parser.TryParseRequestInPlace(_originFormBytes, 0, _originFormBytes.Length, Limits, ref state, null, ref _reusedRequest, out _);
        return _reusedRequest;
    }

    [Benchmark(Description = "response head (nginx), 8 fields, in place, reused (epoll reverse proxy)")]
    public int ParseResponseInPlace()
    {
        var state = default(HeadScanState);
        Http1Parser.TryParseResponseInPlace(_responseBytes, 0, _responseBytes.Length, Limits, ref state, HttpMethods.Get, _reusedResponseHeaders, out var status, out _);
        return status.Status;
    }
}
