using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

/// <summary>
/// The in-place parser (the epoll reverse proxy's): a head parsed where it lies in a connection's buffer, into reused
/// objects, must give exactly what the copying parser gives, read nothing outside its window, carry nothing over from
/// the connection's previous head, and allocate nothing for a repeated request.
/// </summary>
public class InPlaceParserTests
{
    private static readonly HttpLimits Limits = new() { MaxRequestLineBytes = 256, MaxHeaderBytes = 512, MaxHeaderCount = 10 };

    private static readonly string[] ValidRequests =
    [
        "GET /p?q=1 HTTP/1.1\r\nHost: h:1\r\nA: b\r\nConnection: close\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "\r\nGET / HTTP/1.0\r\nX: 1\r\n\r\n",
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    ];

    private static readonly string[] ValidResponses =
    [
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.0 204 \r\nX: y\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    ];

    [Fact]
    public void Requests_parsed_in_place_inside_a_larger_buffer_match_the_copying_parser()
    {
        var gen =
            from text in Gen.Elements(ValidRequests)
            from mutations in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), HttpPropertyGen.Bytes), 3)
            from cut in Gen.Choose(0, 1000)
            from before in Gen.ArrayOf(HttpPropertyGen.Bytes, 7)
            from after in Gen.ArrayOf(HttpPropertyGen.Bytes, 9)
            from previous in Gen.Elements(ValidRequests[0], ValidRequests[2])
            select (HttpPropertyGen.Mutate(text, mutations, cut), before, after, previous);
        Prop.ForAll(gen.ToArbitrary(), c => RequestsAgree(c.Item1, c.before, c.after, c.previous)).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Responses_parsed_in_place_inside_a_larger_buffer_match_the_copying_parser()
    {
        var gen =
            from text in Gen.Elements(ValidResponses)
            from mutations in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), HttpPropertyGen.Bytes), 3)
            from cut in Gen.Choose(0, 1000)
            from before in Gen.ArrayOf(HttpPropertyGen.Bytes, 5)
            from after in Gen.ArrayOf(HttpPropertyGen.Bytes, 11)
            from method in Gen.Elements(HttpMethods.Get, HttpMethods.Head)
            select (HttpPropertyGen.Mutate(text, mutations, cut), before, after, method);
        Prop.ForAll(gen.ToArbitrary(), c => ResponsesAgree(c.Item1, c.before, c.after, c.method)).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void A_reused_request_keeps_nothing_of_the_previous_one()
    {
        var connection = new Extensions();
        HttpRequest? request = null;
        var first = Encoding.ASCII.GetBytes("POST /a HTTP/1.1\r\nHost: one\r\nContent-Length: 3\r\nX-First: 1\r\n\r\n");
        var state = default(HeadScanState);
        Assert.True(Http1Parser.TryParseRequestInPlace(first, 0, first.Length, Limits, ref state, connection, ref request, out _));
        var reused = request!;
        reused.Extensions.Set(new ProxyUser("alice"));
        reused.Body = System.IO.Pipelines.PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>("abc"u8.ToArray()));

        var second = Encoding.ASCII.GetBytes("GET /b HTTP/1.1\r\nHost: two\r\n\r\n");
        state = default;
        Assert.True(Http1Parser.TryParseRequestInPlace(second, 0, second.Length, Limits, ref state, connection, ref request, out var end));
        Assert.Same(reused, request);
        request = reused;
        Assert.Equal(second.Length, end);
        Assert.Equal(("GET", "/b", BodyFraming.None, 0L), (request.Method, request.Target, request.BodyFraming, request.ContentLength));
        Assert.Equal(["Host: two"], request.Headers.Select(f => f.ToString()));
        Assert.False(request.Extensions.TryGet<ProxyUser>(out _), "the previous request's extension survived");
        Assert.True(request.Body.TryRead(out var body) && body.IsCompleted && body.Buffer.IsEmpty, "the previous request's body survived");

        // The connection's own values are still seen through the request's bag.
        connection.Set(new ProxyUser("conn"));
        Assert.True(request.Extensions.TryGet<ProxyUser>(out var user) && user.Name == "conn");
    }

    [Fact]
    public void The_target_string_is_reused_only_for_the_same_target_bytes()
    {
        HttpRequest? request = null;
        var targets = new List<string>();
        foreach (var text in new[] { "GET /same HTTP/1.1\r\nHost: h\r\n\r\n", "GET /same HTTP/1.1\r\nHost: h\r\n\r\n", "GET /other HTTP/1.1\r\nHost: h\r\n\r\n" })
        {
            var bytes = Encoding.ASCII.GetBytes(text);
            var state = default(HeadScanState);
            Assert.True(Http1Parser.TryParseRequestInPlace(bytes, 0, bytes.Length, Limits, ref state, null, ref request, out _));
            targets.Add(request!.Target);
        }

        Assert.Same(targets[0], targets[1]);
        Assert.Equal("/other", targets[2]);
    }

    [Fact]
    public void A_standard_reason_phrase_is_the_shared_string_and_another_is_kept_as_sent()
    {
        var headers = new HttpHeaders();
        var ok = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        var state = default(HeadScanState);
        Assert.True(Http1Parser.TryParseResponseInPlace(ok, 0, ok.Length, Limits, ref state, HttpMethods.Get, headers, out var status, out _));
        Assert.Same(ReasonPhrases.For(200), status.Reason);

        var custom = Encoding.ASCII.GetBytes("HTTP/1.1 200 All Good\r\n\r\n");
        state = default;
        Assert.True(Http1Parser.TryParseResponseInPlace(custom, 0, custom.Length, Limits, ref state, HttpMethods.Get, headers, out status, out _));
        Assert.Equal("All Good", status.Reason);
        Assert.Empty(headers); // the first head's field is gone
    }

    [Fact]
    public void A_repeated_request_and_response_head_parse_in_place_without_allocating()
    {
        // wrk's request and nginx's answer, in a connection-sized buffer behind earlier bytes, as the epoll reverse proxy parses them.
        var buffer = new byte[4096];
        var request = Encoding.ASCII.GetBytes("GET /1k HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n");
        var response = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 22 Nov 2026 03:00:00 GMT\r\n" +
            "Content-Type: application/octet-stream\r\nContent-Length: 1024\r\nConnection: keep-alive\r\nETag: \"6740f5a0-400\"\r\nAccept-Ranges: bytes\r\n\r\n");
        request.CopyTo(buffer, 100);
        response.CopyTo(buffer, 1000);
        var connection = new Extensions();
        HttpRequest? parsed = null;
        var headers = new HttpHeaders(16);
        var responseLimits = new HttpLimits();

        void ParseBoth()
        {
            var state = default(HeadScanState);
            Assert.True(Http1Parser.TryParseRequestInPlace(buffer, 100, request.Length, Limits, ref state, connection, ref parsed, out _));
            state = default;
            Assert.True(Http1Parser.TryParseResponseInPlace(buffer, 1000, response.Length, responseLimits, ref state, parsed!.Method, headers, out _, out _));
        }

        ParseBoth(); // the first request creates the reused objects
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            ParseBoth();
        }

        // Under one byte per pair of heads: the smallest object is 24 bytes, so any allocation per head would show as 2,400 or more.
        // (The runtime's counter can move by a few bytes on its own, so not exactly 0.)
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 100, $"{allocated} bytes allocated for 100 request and response heads");
        Assert.Equal(7, headers.Count);
        Assert.Equal(2, parsed!.Headers.Count);
    }

    // Outcome of one parse: need-more, a rejection reason, or what was parsed, as text.
    private static string Outcome(Func<(bool Parsed, string Text)> parse)
    {
        try
        {
            var (parsed, text) = parse();
            return parsed ? text : "need more";
        }
        catch (HttpCodecException ex)
        {
            return "rejected " + ex.Reason;
        }
    }

    private static string Describe(HttpRequest r, long consumed) =>
        $"{r.Method} {r.Target} {r.TargetForm} {r.Version} {r.BodyFraming} {r.ContentLength} [{string.Join("|", r.Headers.Select(f => f.ToString()))}] at {consumed}";

    private static bool RequestsAgree(byte[] head, byte[] before, byte[] after, string previous)
    {
        var copying = Outcome(() =>
        {
            var parsed = Http1Parser.TryParseRequest(Sequences.Whole(head), Limits, out var r, out var consumed);
            return (parsed, parsed ? Describe(r!, consumed.GetInteger()) : "");
        });

        // The same bytes between garbage, parsed into a request that held another head before.
        var buffer = before.Concat(head).Concat(after).ToArray();
        var prior = Encoding.ASCII.GetBytes(previous);
        HttpRequest? reused = null;
        var priorState = default(HeadScanState);
        Http1Parser.TryParseRequestInPlace(prior, 0, prior.Length, Limits, ref priorState, null, ref reused, out _);
        var inPlace = Outcome(() =>
        {
            var state = default(HeadScanState);
            var parsed = Http1Parser.TryParseRequestInPlace(buffer, before.Length, head.Length, Limits, ref state, null, ref reused, out var end);
            return (parsed, parsed ? Describe(reused!, end - before.Length) : "");
        });
        return copying == inPlace ? true : throw new Xunit.Sdk.XunitException($"copying: {copying}\nin place: {inPlace}");
    }

    private static bool ResponsesAgree(byte[] head, byte[] before, byte[] after, string method)
    {
        var copying = Outcome(() =>
        {
            var state = default(HeadScanState);
            var parsed = Http1Parser.TryParseResponse(Sequences.Whole(head), Limits, ref state, method, out var r, out var consumed);
            return (parsed, parsed ? $"{r!.Status} {r.Reason} {r.Version} {r.Framing} {r.ContentLength} [{string.Join("|", r.Headers.Select(f => f.ToString()))}] at {consumed.GetInteger()}" : "");
        });
        var buffer = before.Concat(head).Concat(after).ToArray();
        var headers = new HttpHeaders();
        headers.Add("Stale", "field");
        var inPlace = Outcome(() =>
        {
            var state = default(HeadScanState);
            var parsed = Http1Parser.TryParseResponseInPlace(buffer, before.Length, head.Length, Limits, ref state, method, headers, out var s, out var end);
            return (parsed, parsed ? $"{s.Status} {s.Reason} {s.Version} {s.Framing} {s.ContentLength} [{string.Join("|", headers.Select(f => f.ToString()))}] at {end - before.Length}" : "");
        });
        return copying == inPlace ? true : throw new Xunit.Sdk.XunitException($"copying: {copying}\nin place: {inPlace}");
    }
}
