using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// HTTP/1.1 to HTTP/1.1 trailer sections (RFC 9112 §7.1.2) through the reverse proxy on both transports: the epoll relay passes
/// the chunked framing through but drops, like the pipe stack, the fields a trailer may not carry (RFC 9110 §6.5.1), and answers
/// a bad trailer section as the pipe stack does. Real peers: nginx's <c>add_trailer</c> and curl <c>--raw</c>; raw-socket origins
/// and clients for exact bytes.
/// </summary>
public class EpollTrailerTests
{
    private const int HandOverEventId = 2103; // EpollReverseProxy.LogHandOver
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    // Forbidden in a trailer: framing, routing, authentication, cookies, content description (RFC 9110 §6.5.1).
    private const string ForbiddenLines = "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil.example\r\nAuthorization: Basic eDp5\r\n"
        + "Set-Cookie: session=stolen\r\nContent-Type: text/html\r\n";

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Nginx_trailers_reach_curl_with_X_Checksum_and_without_Set_Cookie(ReverseProxyTransport transport)
    {
        await using var origin = await NginxH2Origin.StartAsync(tls: false, http2: false);
        await using var proxy = LoggedReverseProxy.Start(origin.Port, transport: transport);

        var result = await Cli.CurlAsync("--raw", "-D", "-", proxy.Url("/trailers"));

        Assert.True(result.ExitCode == 0, result.Stderr);
        var text = result.Text;
        Assert.Contains("Transfer-Encoding: chunked\r\n", text, StringComparison.Ordinal);
        Assert.True(text.EndsWith("trailer body\n\r\n0\r\nX-Checksum: abc123\r\n\r\n", StringComparison.Ordinal), text);
        Assert.DoesNotContain("Set-Cookie", text, StringComparison.OrdinalIgnoreCase); // nginx sent it as a trailer: dropped
        Assert.DoesNotContain("x=1", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Origin_trailer_section_loses_its_forbidden_fields_and_keeps_the_others_in_order_then_the_connection_serves_again(
        ReverseProxyTransport transport)
    {
        var trailers = "X-Checksum: abc\r\n" + ForbiddenLines + "grpc-status: 0\r\nx-lower-case: Mixed Value\r\n";
        await using var origin = new TestOrigin(r => r.RequestLine.StartsWith("GET /t ", StringComparison.Ordinal)
            ? Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + trailers + "\r\n")
            : TestOrigin.DefaultHandler(r));
        await using var proxy = LoggedReverseProxy.Start(origin.Port, transport: transport);

        // Two requests on one connection: the second answer arriving intact shows the first one's framing ended where it should.
        var answer = await proxy.Harness.SendAndReadToCloseAsync(
            "GET /t HTTP/1.1\r\nHost: app\r\n\r\nGET /hello HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);

        var first = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4;
        var second = answer.IndexOf("HTTP/1.1 200", first, StringComparison.Ordinal);
        Assert.True(first > 4 && second > first, answer);
        Assert.Equal("5\r\nhello\r\n0\r\nX-Checksum: abc\r\ngrpc-status: 0\r\nx-lower-case: Mixed Value\r\n\r\n", answer[first..second]);
        Assert.EndsWith("\r\n\r\nhello", answer, StringComparison.Ordinal);
        Assert.Equal(2, origin.Requests.Count);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Trailer_section_arriving_in_two_pieces_is_filtered_once_whole(ReverseProxyTransport transport)
    {
        await using var origin = new ScriptedOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port, transport: transport);
        using var client = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await client.SendAsync("GET /split HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"u8.ToArray(), cts.Token);

        var upstream = await origin.AcceptRequestAsync(cts.Token);
        await upstream.SendAsync("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-First: 1\r\nSet-Cook"u8.ToArray(), cts.Token);
        // The chunk's data reaches the client before the trailer section is whole (nothing waits for the body's end) ...
        var seen = await ReadUntilAsync(client, "hello\r\n", cts.Token);
        // ... and the rest of the section, a forbidden field split in the middle, comes only now.
        await upstream.SendAsync("ie: a=b\r\nContent-Length: 99\r\nX-Last: 2\r\n\r\n"u8.ToArray(), cts.Token);
        var answer = seen + await ProxyHarness.ReadToCloseAsync(client, cts.Token);

        Assert.True(answer.EndsWith("\r\n\r\n5\r\nhello\r\n0\r\nX-First: 1\r\nX-Last: 2\r\n\r\n", StringComparison.Ordinal), answer);
        Assert.DoesNotContain("a=b", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("99", answer, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Trailer_section_larger_than_the_relay_buffer_is_filtered_whole_within_raised_limits(ReverseProxyTransport transport)
    {
        // ~150 KB of trailer fields (the epoll relay's body buffer is 64 KiB), a forbidden one every 100 lines.
        var kept = new StringBuilder();
        var sent = new StringBuilder();
        for (var i = 0; i < 1500; i++)
        {
            var line = $"X-Pad-{i:D4}: {new string((char)('a' + (i % 26)), 90)}\r\n";
            kept.Append(line);
            sent.Append(line);
            if (i % 100 == 0)
            {
                sent.Append("Set-Cookie: n=").Append(i).Append("\r\n");
            }
        }

        var limits = new HttpLimits { MaxHeaderBytes = 256 * 1024, MaxHeaderCount = 2000 };
        await using var origin = new TestOrigin(_ =>
            Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + sent + "\r\n"));
        await using var proxy = LoggedReverseProxy.Start(origin.Port, limits, transport: transport);

        var answer = await proxy.Harness.SendAndReadToCloseAsync("GET /big HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.True(answer.EndsWith("\r\n\r\n5\r\nhello\r\n0\r\n" + kept + "\r\n", StringComparison.Ordinal), answer[..Math.Min(answer.Length, 300)]);
        Assert.DoesNotContain("Set-Cookie", answer, StringComparison.Ordinal);
    }

    public static TheoryData<ReverseProxyTransport, string> BadOriginSections()
    {
        var data = new TheoryData<ReverseProxyTransport, string>();
        foreach (var transport in (ReverseProxyTransport[])[ReverseProxyTransport.Epoll, ReverseProxyTransport.Sockets])
        {
            data.Add(transport, "X-Fine: 1\r\nBad Header\r\n\r\n"); // no colon (RFC 9112 §5.1)
            data.Add(transport, "X-Fine: 1\r\n folded\r\n\r\n"); // obs-fold (§5.2)
            data.Add(transport, string.Concat(Enumerable.Repeat("X-Many: 1\r\n", new HttpLimits().MaxHeaderCount + 1)) + "\r\n");
            data.Add(transport, "X-Big: " + new string('b', new HttpLimits().MaxHeaderBytes) + "\r\n\r\n");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(BadOriginSections))]
    public async Task Bad_origin_trailer_section_ends_the_response_without_a_well_formed_end_and_logs_it(ReverseProxyTransport transport, string section)
    {
        await using var origin = new TestOrigin(_ =>
            Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + section));
        await using var proxy = LoggedReverseProxy.Start(origin.Port, transport: transport);

        var answer = await proxy.Harness.SendAndReadToCloseAsync("GET /bad HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", Bound);

        Assert.DoesNotContain("\r\n0\r\n\r\n", answer, StringComparison.Ordinal); // never a last chunk that looks complete
        Assert.DoesNotContain("X-Fine", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("X-Many", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("X-Big", answer, StringComparison.Ordinal);
        Assert.Contains(proxy.Log.Entries, e => e.Level == LogLevel.Debug && e.Message.Contains("GET /bad aborted mid-body", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Epoll)]
    [InlineData(ReverseProxyTransport.Sockets)]
    public async Task Client_request_trailers_reach_the_origin_without_the_forbidden_fields(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port, transport: transport);

        var answer = await proxy.Harness.SendAndReadToCloseAsync(
            "POST /hash HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n" + ForbiddenLines + "grpc-status: 0\r\n\r\n", Bound);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.EndsWith(Convert.ToHexString(SHA256.HashData("hello"u8)), answer, StringComparison.Ordinal);
        var seen = Assert.Single(origin.Requests);
        Assert.Equal(["X-Checksum: abc", "grpc-status: 0"], seen.TrailerLines!);
        if (transport == ReverseProxyTransport.Epoll)
        {
            // The epoll transport gives a chunked upload to the pipe stack at its head, so one rule filters both.
            Assert.Contains(proxy.Log.Entries, e => e.EventId.Id == HandOverEventId);
        }
    }

    public static TheoryData<ReverseProxyTransport, string, int> BadRequestSections()
    {
        var data = new TheoryData<ReverseProxyTransport, string, int>();
        foreach (var transport in (ReverseProxyTransport[])[ReverseProxyTransport.Epoll, ReverseProxyTransport.Sockets])
        {
            data.Add(transport, "Bad Header\r\n\r\n", 400);
            data.Add(transport, "X-Fine: 1\r\n folded\r\n\r\n", 400);
            data.Add(transport, string.Concat(Enumerable.Repeat("X-Many: 1\r\n", new HttpLimits().MaxHeaderCount + 1)) + "\r\n", 431);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(BadRequestSections))]
    public async Task Bad_request_trailer_section_is_rejected_and_never_reaches_the_origin_whole(ReverseProxyTransport transport, string section, int status)
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port, transport: transport);

        var answer = await proxy.Harness.SendAndReadToCloseAsync(
            "POST /hash HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" + section, Bound);

        Assert.StartsWith($"HTTP/1.1 {status} ", answer, StringComparison.Ordinal);
        Assert.DoesNotContain(origin.Requests, r => r.TrailerLines is { Count: > 0 });
    }

    private static async Task<string> ReadUntilAsync(Socket socket, string end, CancellationToken cancellationToken)
    {
        var received = new StringBuilder();
        var buffer = new byte[4096];
        while (!received.ToString().Contains(end, StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(buffer, cancellationToken);
            Assert.True(read > 0, "closed before: " + received);
            received.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }

        return received.ToString();
    }

    /// <summary>An origin on 127.0.0.1:0 whose test writes each piece of the answer itself, when it chooses.</summary>
    private sealed class ScriptedOrigin : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly List<Socket> _accepted = [];

        public ScriptedOrigin() => _listener.Start();

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        /// <summary>Accepts the proxy's connection and reads one request head (no body) from it.</summary>
        public async Task<Socket> AcceptRequestAsync(CancellationToken cancellationToken)
        {
            var socket = await _listener.AcceptSocketAsync(cancellationToken);
            _accepted.Add(socket);
            var head = new StringBuilder();
            var buffer = new byte[4096];
            while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var read = await socket.ReceiveAsync(buffer, cancellationToken);
                Assert.True(read > 0, "the proxy closed inside the request head");
                head.Append(Encoding.Latin1.GetString(buffer, 0, read));
            }

            return socket;
        }

        public ValueTask DisposeAsync()
        {
            foreach (var socket in _accepted)
            {
                socket.Dispose();
            }

            _listener.Stop();
            return ValueTask.CompletedTask;
        }
    }
}
