using System.Diagnostics;
using System.Globalization;
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

namespace Rama.Proxy.Tests.Http;

/// <summary>
/// The epoll reverse-proxy transport (<see cref="ReverseProxyTransport.Epoll"/>) on real loopback sockets: framing,
/// large bodies, hand-over to the pipe stack, timeouts, upstream failures, pool reuse and shutdown. Every test ends
/// with the proxy's open-connection count back at zero.
/// </summary>
public class EpollReverseProxyTests
{
    private const int HandOverEventId = 2103; // EpollReverseProxy.LogHandOver
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Two_pipelined_requests_in_one_write_get_two_responses_in_order()
    {
        await using var origin = new TestOrigin(r => TestOrigin.Response(200, "body of " + r.RequestLine.Split(' ')[1]));
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /first HTTP/1.1\r\nHost: app\r\n\r\nGET /second HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", cts.Token);
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.Equal(2, CountOf(answer, "HTTP/1.1 200 "));
        var first = answer.IndexOf("body of /first", StringComparison.Ordinal);
        var second = answer.IndexOf("body of /second", StringComparison.Ordinal);
        Assert.True(first >= 0 && second > first, answer);
        Assert.EndsWith("body of /second", answer, StringComparison.Ordinal);
        Assert.Equal(["GET /first HTTP/1.1", "GET /second HTTP/1.1"], origin.Requests.Select(r => r.RequestLine));
        Assert.DoesNotContain(proxy.Log.Entries, e => e.EventId.Id == HandOverEventId);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Ten_megabyte_content_length_response_arrives_intact_through_curl()
    {
        var payload = RandomBytes(10 * 1024 * 1024, seed: 1);
        var answer = Concat(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {payload.Length}\r\n\r\n"), payload);
        await using var origin = new TestOrigin(_ => answer);
        await using var proxy = LoggedReverseProxy.Start(origin.Port);

        var result = await Cli.CurlAsync("--fail", proxy.Url("/big"));

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(payload.Length, result.Stdout.Length);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(result.Stdout));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Ten_megabyte_chunked_response_arrives_intact_through_curl()
    {
        var payload = RandomBytes(10 * 1024 * 1024, seed: 2);
        var answer = ChunkedResponse(payload, seed: 3);
        await using var origin = new TestOrigin(_ => answer);
        await using var proxy = LoggedReverseProxy.Start(origin.Port);

        var result = await Cli.CurlAsync("--fail", "-D", "-", "-o", "/dev/null", proxy.Url("/big"));
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("Transfer-Encoding: chunked", result.Text, StringComparison.OrdinalIgnoreCase);

        result = await Cli.CurlAsync("--fail", proxy.Url("/big"));
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(payload.Length, result.Stdout.Length);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(result.Stdout));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Five_megabyte_post_with_content_length_arrives_intact_at_the_origin()
    {
        var payload = RandomBytes(5 * 1024 * 1024, seed: 4);
        using var file = new TempFile(payload);
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port);

        // "Expect:" (empty) stops curl from asking 100-continue, which would hand the request to the pipe stack.
        var result = await Cli.CurlAsync("--fail", "-H", "Expect:", "--data-binary", "@" + file.Path, proxy.Url("/hash"));

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(payload)), result.Text);
        var seen = Assert.Single(origin.Requests);
        Assert.Equal(payload.Length, seen.BodyLength);
        Assert.Equal(payload.Length.ToString(CultureInfo.InvariantCulture), seen.Header("Content-Length"));
        Assert.DoesNotContain(proxy.Log.Entries, e => e.EventId.Id == HandOverEventId);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Chunked_upload_is_handed_to_the_pipe_stack_and_arrives_intact()
    {
        var payload = RandomBytes(5 * 1024 * 1024, seed: 5);
        using var file = new TempFile(payload);
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port);

        var result = await Cli.CurlAsync("--fail", "-H", "Expect:", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + file.Path, proxy.Url("/hash"));

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(payload)), result.Text);
        Assert.Equal(payload.Length, Assert.Single(origin.Requests).BodyLength);
        Assert.Contains(proxy.Log.Entries, e => e.EventId.Id == HandOverEventId);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Http10_request_is_answered_through_the_pipe_stack()
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port);

        var result = await Cli.CurlAsync("-0", "-i", proxy.Url("/hello"));

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Matches(@"^HTTP/1\.[01] 200 ", result.Text);
        Assert.EndsWith("\r\n\r\nhello", result.Text, StringComparison.Ordinal);
        Assert.Equal("/hello", Assert.Single(origin.Requests).RequestLine.Split(' ')[1]);
        Assert.Contains(proxy.Log.Entries, e => e.EventId.Id == HandOverEventId);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Expect_100_continue_gets_100_then_the_final_answer()
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        var body = RandomBytes(64 * 1024, seed: 6);
        await SendAsync(socket, $"POST /hash HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n", cts.Token);

        // The client waits for the interim answer before it sends the body (RFC 9110 §10.1.1).
        var interim = await ReadHeadAsync(socket, cts.Token);
        Assert.StartsWith("HTTP/1.1 100 ", interim, StringComparison.Ordinal);
        await socket.SendAsync(body, cts.Token);
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n" + Convert.ToHexString(SHA256.HashData(body)), answer, StringComparison.Ordinal);
        Assert.Contains(proxy.Log.Entries, e => e.EventId.Id == HandOverEventId);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Response_delimited_by_the_origin_closing_arrives_whole_and_then_the_client_connection_closes()
    {
        // Large enough that the proxy, held back by a client that does not read yet, still has data to read when the origin's FIN is queued.
        var body = RandomText(1024 * 1024, seed: 7);
        var originDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await socket.SendAsync(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body), cts.Token);
            socket.Shutdown(SocketShutdown.Send); // RFC 9112 §6.3 (8): the close ends the body
            originDone.TrySetResult();
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /until-close HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token); // keep-alive asked: the proxy must still close
        await Task.WhenAny(originDone.Task, Task.Delay(TimeSpan.FromSeconds(3), cts.Token)); // the client reads only once the origin has closed (or 3 s passed)

        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        var split = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(split > 0, answer);
        var head = answer[..split];
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Content-Length", head, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Transfer-Encoding", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(body, answer[(split + 4)..]); // complete, and no "<RST>": a clean close
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Origin_closing_before_the_end_of_a_content_length_body_resets_the_client()
    {
        var sent = RandomText(1024 * 1024, seed: 9);
        var originDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            // Announces twice what it sends, then closes: its FIN is queued behind data the proxy has not read yet
            // (the client does not read until then, so the proxy is held back).
            await socket.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {2 * sent.Length}\r\n\r\n{sent}"), cts.Token);
            socket.Shutdown(SocketShutdown.Send);
            originDone.TrySetResult();
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /short HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
        await Task.WhenAny(originDone.Task, Task.Delay(TimeSpan.FromSeconds(3), cts.Token)); // the client reads only once the origin has closed (or 3 s passed)

        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.EndsWith("<RST>", answer, StringComparison.Ordinal); // a reset, never a clean end of a short body
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Chunked_framing_broken_mid_body_resets_the_client_without_a_complete_looking_response()
    {
        var firstChunk = new string('a', 1024);
        var clientHasFirstChunk = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await socket.SendAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{firstChunk}\r\n"), cts.Token);
            await clientHasFirstChunk.Task.WaitAsync(cts.Token);
            await socket.SendAsync("zz\r\nnot a chunk\r\n0\r\n\r\n"u8.ToArray(), cts.Token); // a size line that is not hex
            await WaitForCloseAsync(socket, cts.Token);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /broken HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);

        var start = await ReadUntilAsync(socket, firstChunk + "\r\n", cts.Token);
        Assert.StartsWith("HTTP/1.1 200 ", start, StringComparison.Ordinal);
        clientHasFirstChunk.SetResult();
        var rest = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.Equal("<RST>", rest);
        Assert.DoesNotContain("0\r\n\r\n", start + rest, StringComparison.Ordinal);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Chunked_framing_broken_in_the_first_body_bytes_never_looks_complete_and_is_no_proxy_fault()
    {
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            // Head and bad framing in one write: the proxy sees them in one read.
            await socket.SendAsync("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"u8.ToArray(), cts.Token);
            await WaitForCloseAsync(socket, cts.Token);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /broken HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", cts.Token); // a 502 keeps a keep-alive connection

        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.DoesNotContain("0\r\n\r\n", answer, StringComparison.Ordinal);
        Assert.True(answer.EndsWith("<RST>", StringComparison.Ordinal) || answer.StartsWith("HTTP/1.1 502 ", StringComparison.Ordinal), answer);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
        // A broken origin is an expected forwarding outcome (STYLE: values, not faults), not an Error-level "reverse proxy fault".
        Assert.DoesNotContain(proxy.Log.Entries, e => e.Level >= LogLevel.Error);
    }

    [Fact]
    public async Task Slowloris_partial_head_gets_408_at_the_header_timeout_and_is_closed()
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port, new HttpLimits { HeaderTimeout = TimeSpan.FromSeconds(1) });
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        var clock = Stopwatch.StartNew();
        var reading = ProxyHarness.ReadToCloseAsync(socket, cts.Token);
        await SendAsync(socket, "GET /slow HTTP/1.1\r\nHost: app\r\nX-Slow: ", cts.Token);
        try
        {
            // Trickle one byte every 100 ms: later bytes must not extend the header timeout.
            while (!reading.IsCompleted && clock.Elapsed < TimeSpan.FromSeconds(5))
            {
                await socket.SendAsync("z"u8.ToArray(), cts.Token);
                await Task.WhenAny(reading, Task.Delay(100, cts.Token));
            }
        }
        catch (SocketException)
        {
            // the proxy closed while we were still trickling
        }

        var answer = await reading;

        socket.Shutdown(SocketShutdown.Send); // ends the proxy's lingering close
        Assert.StartsWith("HTTP/1.1 408 ", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", answer, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(4));
        Assert.Empty(origin.Requests);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Origin_silent_mid_body_for_the_upstream_timeout_resets_the_client()
    {
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            // Announces 100 bytes, sends 10, then says nothing more (and does not close).
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"u8.ToArray(), cts.Token);
            await WaitForCloseAsync(socket, cts.Token);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port, upstreamResponseHeaderTimeout: TimeSpan.FromSeconds(1));
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await SendAsync(socket, "GET /stalls HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);

        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.EndsWith("0123456789<RST>", answer, StringComparison.Ordinal); // never a clean end of a short body
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(4));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Idle_keep_alive_connection_is_closed_at_the_keep_alive_timeout()
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port, new HttpLimits { KeepAliveTimeout = TimeSpan.FromSeconds(1) });
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /hello HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
        var (head, body) = await ReadResponseAsync(socket, cts.Token);
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);
        Assert.DoesNotContain("Connection: close", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("hello", Encoding.ASCII.GetString(body));
        var idle = Stopwatch.StartNew();

        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket)); // FIN (or reset), and no bytes

        Assert.InRange(idle.Elapsed, TimeSpan.FromSeconds(0.8), TimeSpan.FromSeconds(4));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Origin_that_accepts_but_never_answers_gets_504_at_the_response_header_timeout()
    {
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await WaitForCloseAsync(socket, cts.Token); // silent until the proxy gives up
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port, upstreamResponseHeaderTimeout: TimeSpan.FromSeconds(1));
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        var clock = Stopwatch.StartNew();
        await SendAsync(socket, "GET /never HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n", cts.Token);

        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        socket.Shutdown(SocketShutdown.Send);
        Assert.StartsWith("HTTP/1.1 504 ", answer, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(5));
        Assert.Equal(1, origin.Accepted);
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Refused_upstream_port_answers_502_and_keeps_the_client_connection()
    {
        await using var proxy = LoggedReverseProxy.Start(Ports.Refused());
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        for (var i = 0; i < 2; i++)
        {
            await SendAsync(socket, "GET /down HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
            var (head, _) = await ReadResponseAsync(socket, cts.Token);
            Assert.StartsWith("HTTP/1.1 502 ", head, StringComparison.Ordinal);
        }

        socket.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Origin_closing_its_keep_alive_connection_after_each_response_still_serves_five_sequential_gets()
    {
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            // No "Connection: close": the proxy pools the connection, which the origin then closes.
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nreply"u8.ToArray(), cts.Token);
            socket.Shutdown(SocketShutdown.Send);
            await WaitForCloseAsync(socket, cts.Token);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        for (var i = 0; i < 5; i++)
        {
            await SendAsync(socket, $"GET /n{i} HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
            var (head, body) = await ReadResponseAsync(socket, cts.Token);
            Assert.True(head.StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal), $"request {i}: {head}");
            Assert.Equal("reply", Encoding.ASCII.GetString(body));
        }

        Assert.True(origin.Accepted >= 5, $"{origin.Accepted} origin connections for 5 requests");
        socket.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Get_on_a_pooled_connection_the_origin_closes_on_receiving_it_is_retried_on_a_fresh_one()
    {
        // Each origin connection answers one request; a second request on it is read and the connection closed
        // unanswered: the race a pooled keep-alive connection loses to the origin's idle close (RFC 9112 §9.3.1).
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nreply"u8.ToArray(), cts.Token);
            await TinyHttpOrigin.ReadHeadAsync(socket);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        for (var i = 0; i < 5; i++)
        {
            await SendAsync(socket, $"GET /n{i} HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
            var (head, body) = await ReadResponseAsync(socket, cts.Token);
            Assert.True(head.StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal), $"request {i}: {head}");
            Assert.Equal("reply", Encoding.ASCII.GetString(body));
        }

        Assert.Equal(5, origin.Accepted);
        socket.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Post_on_a_pooled_connection_after_a_response_that_filled_the_read_buffer_arrives_intact()
    {
        // A response of exactly 16 KiB, head included, written at once: the proxy's first read of it fills its
        // read buffer exactly (EpollReverseProxy.ClientConnection.BufferSize).
        const int exact = 16 * 1024;
        var prefix = "HTTP/1.1 200 OK\r\nContent-Length: 00000\r\n\r\n";
        var fill = new string('f', exact - prefix.Length);
        var full = Encoding.ASCII.GetBytes(prefix.Replace("00000", fill.Length.ToString("D5", CultureInfo.InvariantCulture), StringComparison.Ordinal) + fill);
        Assert.Equal(exact, full.Length);
        await using var origin = new TestOrigin(r => r.RequestLine.StartsWith("GET ", StringComparison.Ordinal) ? full : TestOrigin.DefaultHandler(r));
        await using var proxy = LoggedReverseProxy.Start(origin.Port, upstreamResponseHeaderTimeout: TimeSpan.FromSeconds(3));
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);

        await SendAsync(socket, "GET /exact HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
        var (head, body) = await ReadResponseAsync(socket, cts.Token);
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);
        Assert.Equal(fill, Encoding.ASCII.GetString(body));

        var upload = RandomBytes(1024 * 1024, seed: 8);
        await socket.SendAsync(Concat(Encoding.ASCII.GetBytes($"POST /hash HTTP/1.1\r\nHost: app\r\nContent-Length: {upload.Length}\r\n\r\n"), upload), cts.Token);
        (head, body) = await ReadResponseAsync(socket, cts.Token);

        Assert.True(head.StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal), head);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(upload)), Encoding.ASCII.GetString(body));
        Assert.Equal(1, origin.Connections); // the POST went on the pooled connection
        socket.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Switching_protocols_from_the_origin_to_a_request_without_upgrade_answers_502()
    {
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await socket.SendAsync("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"u8.ToArray(), cts.Token);
            await WaitForCloseAsync(socket, cts.Token);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        // RFC 9110 §7.8: a server never switches unasked (an upgrade request goes to the pipe server and its 101 is relayed:
        // ReverseHttp2InboundTests); here the epoll path itself reads the 101.
        await SendAsync(socket, "GET /ws HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);

        var (head, _) = await ReadResponseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 502 ", head, StringComparison.Ordinal);
        socket.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Unbind_then_drain_closes_an_idle_keep_alive_connection_promptly()
    {
        await using var origin = new TestOrigin();
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /hello HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
        var (head, _) = await ReadResponseAsync(socket, cts.Token);
        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);
        Assert.Equal(1, proxy.Harness.Server.OpenConnections);

        var clock = Stopwatch.StartNew();
        await proxy.Harness.Server.UnbindAsync();
        var drained = await proxy.Harness.Server.DrainAsync(TimeSpan.FromSeconds(2), cts.Token);

        Assert.True(drained, $"{proxy.Harness.Server.OpenConnections} connections still open after the drain");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), clock.Elapsed.ToString());
        Assert.Equal(0, await Sockets.ReceiveOrZeroAsync(socket));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task Unbind_during_a_request_lets_it_finish_with_connection_close_then_drains()
    {
        var requestSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var answerNow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var origin = new RawOrigin(async socket =>
        {
            using var cts = new CancellationTokenSource(Bound);
            await TinyHttpOrigin.ReadHeadAsync(socket);
            requestSeen.TrySetResult();
            await answerNow.Task.WaitAsync(cts.Token);
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate"u8.ToArray(), cts.Token);
            await WaitForCloseAsync(socket, cts.Token);
        });
        await using var proxy = LoggedReverseProxy.Start(origin.Port);
        using var socket = await proxy.Harness.ConnectAsync();
        using var cts = new CancellationTokenSource(Bound);
        await SendAsync(socket, "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n", cts.Token);
        await requestSeen.Task.WaitAsync(cts.Token);

        await proxy.Harness.Server.UnbindAsync();
        answerNow.SetResult();
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        Assert.StartsWith("HTTP/1.1 200 ", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", answer, StringComparison.OrdinalIgnoreCase);
        Assert.EndsWith("\r\n\r\nlate", answer, StringComparison.Ordinal);
        Assert.True(await proxy.Harness.Server.DrainAsync(TimeSpan.FromSeconds(2), cts.Token));
        await proxy.Harness.AssertNoOpenConnectionsAsync();
    }

    // ---- helpers ------------------------------------------------------------------------------

    private static async Task SendAsync(Socket socket, string text, CancellationToken cancellationToken) =>
        await socket.SendAsync(Encoding.Latin1.GetBytes(text), cancellationToken);

    /// <summary>Reads one byte at a time up to the end of a head (so nothing after it is consumed).</summary>
    private static async Task<string> ReadHeadAsync(Socket socket, CancellationToken cancellationToken)
    {
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || head[^4] != '\r' || head[^3] != '\n' || head[^2] != '\r' || head[^1] != '\n')
        {
            if (await socket.ReceiveAsync(one, cancellationToken) == 0)
            {
                throw new IOException($"closed inside a response head: {Encoding.Latin1.GetString([.. head])}");
            }

            head.Add(one[0]);
        }

        return Encoding.Latin1.GetString([.. head]);
    }

    /// <summary>One response with a Content-Length body, on a connection that stays open.</summary>
    private static async Task<(string Head, byte[] Body)> ReadResponseAsync(Socket socket, CancellationToken cancellationToken)
    {
        var head = await ReadHeadAsync(socket, cancellationToken);
        var line = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        Assert.True(line is not null, "no Content-Length in: " + head);
        var length = int.Parse(line["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
        return (head, length == 0 ? [] : await Sockets.ReceiveExactlyAsync(socket, length));
    }

    /// <summary>Reads until the received text ends with <paramref name="end"/>.</summary>
    private static async Task<string> ReadUntilAsync(Socket socket, string end, CancellationToken cancellationToken)
    {
        var received = new StringBuilder();
        var buffer = new byte[16 * 1024];
        while (!received.ToString().EndsWith(end, StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(buffer, cancellationToken);
            if (read == 0)
            {
                throw new IOException("closed before: " + end);
            }

            received.Append(Encoding.Latin1.GetString(buffer, 0, read));
        }

        return received.ToString();
    }

    /// <summary>An origin waits for the proxy to close (or reset) its connection.</summary>
    private static async Task WaitForCloseAsync(Socket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[4096];
        try
        {
            while (await socket.ReceiveAsync(buffer, cancellationToken) > 0)
            {
            }
        }
        catch (SocketException)
        {
        }
    }

    private static int CountOf(string text, string part)
    {
        var count = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static string RandomText(int length, int seed)
    {
        var random = new Random(seed);
        return string.Create(length, random, static (span, r) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (char)r.Next('a', 'z' + 1);
            }
        });
    }

    private static byte[] Concat(byte[] first, byte[] second)
    {
        var all = new byte[first.Length + second.Length];
        first.CopyTo(all, 0);
        second.CopyTo(all, first.Length);
        return all;
    }

    /// <summary>A chunked response of <paramref name="payload"/>: chunk sizes from 1 byte to 64 KiB, hex in either case, some extensions, a trailer.</summary>
    private static byte[] ChunkedResponse(byte[] payload, int seed)
    {
        var random = new Random(seed);
        using var output = new MemoryStream();
        output.Write("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"u8);
        var at = 0;
        var n = 0;
        while (at < payload.Length)
        {
            var size = Math.Min(payload.Length - at, random.Next(4) == 0 ? random.Next(1, 16) : random.Next(1, 64 * 1024));
            var hex = size.ToString(n % 2 == 0 ? "X" : "x", CultureInfo.InvariantCulture);
            var line = n % 5 == 0 ? $"{hex};n={n}\r\n" : $"{hex}\r\n";
            output.Write(Encoding.ASCII.GetBytes(line));
            output.Write(payload, at, size);
            output.Write("\r\n"u8);
            at += size;
            n++;
        }

        output.Write("0\r\nX-Trailer: done\r\n\r\n"u8);
        return output.ToArray();
    }
}
