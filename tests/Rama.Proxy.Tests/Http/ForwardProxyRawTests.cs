using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Tests.Support;

namespace Rama.Proxy.Tests.Http;

/// <summary>Raw-socket clients against the proxy on loopback: rejections, dial failures, tunnels, keep-alive edges.</summary>
public class ForwardProxyRawTests
{
    [Fact]
    public async Task Malformed_request_line_answers_400_and_closes()
    {
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync("GET /\r\nHost: a\r\n\r\n");
        AssertErrorAnswer(answer, 400);
    }

    [Fact]
    public async Task Request_line_over_the_limit_answers_414()
    {
        await using var proxy = new ProxyHarness(new HttpProxyOptions { Limits = new HttpLimits { MaxRequestLineBytes = 1024 } });
        var answer = await proxy.SendAndReadToCloseAsync($"GET http://127.0.0.1/{new string('a', 4000)} HTTP/1.1\r\nHost: a\r\n\r\n");
        AssertErrorAnswer(answer, 414);
    }

    [Fact]
    public async Task Header_section_over_the_limit_answers_431()
    {
        await using var proxy = new ProxyHarness(new HttpProxyOptions { Limits = new HttpLimits { MaxHeaderBytes = 2048 } });
        var headers = string.Concat(Enumerable.Range(0, 100).Select(i => $"X-H{i}: {new string('v', 40)}\r\n"));
        var answer = await proxy.SendAndReadToCloseAsync($"GET http://127.0.0.1/ HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        AssertErrorAnswer(answer, 431);
    }

    [Fact]
    public async Task Too_many_header_lines_answers_431()
    {
        await using var proxy = new ProxyHarness(new HttpProxyOptions { Limits = new HttpLimits { MaxHeaderCount = 10 } });
        var headers = string.Concat(Enumerable.Range(0, 11).Select(i => $"X-H{i}: v\r\n"));
        AssertErrorAnswer(await proxy.SendAndReadToCloseAsync($"GET http://127.0.0.1/ HTTP/1.1\r\nHost: a\r\n{headers}\r\n"), 431);
    }

    [Fact]
    public async Task Slowloris_client_gets_408_at_the_header_timeout_and_is_closed()
    {
        await using var proxy = new ProxyHarness(new HttpProxyOptions { Limits = new HttpLimits { HeaderTimeout = TimeSpan.FromSeconds(1) } });
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var clock = Stopwatch.StartNew();
        var reading = ProxyHarness.ReadToCloseAsync(socket, cts.Token);
        var head = Encoding.ASCII.GetBytes("GET http://127.0.0.1/ HTTP/1.1\r\nHost: a\r\nX-Slow: " + new string('z', 200));
        try
        {
            foreach (var b in head)
            {
                if (reading.IsCompleted)
                {
                    break;
                }

                await socket.SendAsync(new[] { b }, cts.Token); // one byte every 50 ms: each byte "makes progress"
                await Task.Delay(50, cts.Token);
            }
        }
        catch (SocketException)
        {
            // the proxy closed while we were still trickling
        }

        var answer = await reading;
        AssertErrorAnswer(answer, 408);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Silent_new_connection_is_closed_at_the_header_timeout_without_an_answer()
    {
        await using var proxy = new ProxyHarness(new HttpProxyOptions { Limits = new HttpLimits { HeaderTimeout = TimeSpan.FromMilliseconds(500) } });
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        Assert.Equal("", await ProxyHarness.ReadToCloseAsync(socket, cts.Token));
    }

    [Fact]
    public async Task Content_length_with_transfer_encoding_answers_400()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync(
            $"POST {origin.Url("/")} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        AssertErrorAnswer(answer, 400);
        Assert.Equal(0, origin.Connections);
    }

    [Fact]
    public async Task Unsupported_version_answers_505()
    {
        await using var proxy = new ProxyHarness();
        AssertErrorAnswer(await proxy.SendAndReadToCloseAsync("GET http://127.0.0.1/ HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    }

    [Fact]
    public async Task Bad_chunked_request_body_answers_400()
    {
        await using var proxy = new ProxyHarness();
        await using var origin = new TestOrigin();
        var answer = await proxy.SendAndReadToCloseAsync(
            $"POST {origin.Url("/hash")} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
        AssertErrorAnswer(answer, 400);
    }

    [Fact]
    public async Task Origin_form_request_to_the_forward_proxy_answers_400()
    {
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync("GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 400", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Target_refusing_connections_answers_502()
    {
        await using var proxy = new ProxyHarness();
        var port = ClosedPort();
        var answer = await proxy.SendAndReadToCloseAsync($"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 502", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Name_that_does_not_resolve_answers_502()
    {
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync("GET http://nosuch.invalid/ HTTP/1.1\r\nHost: nosuch.invalid\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 502", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Target_silent_past_the_connect_timeout_answers_504()
    {
        using var silent = await SilentTarget.CreateAsync();
        Assert.NotNull(silent); // Linux drops SYNs to a full accept queue
        await using var proxy = new ProxyHarness(connectorOptions: new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(1) });
        var clock = Stopwatch.StartNew();
        var answer = await proxy.SendAndReadToCloseAsync($"GET http://127.0.0.1:{silent.Port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 504", answer, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Connect_to_refused_port_answers_502()
    {
        await using var proxy = new ProxyHarness();
        var port = ClosedPort();
        var answer = await proxy.SendAndReadToCloseAsync($"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 502", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bytes_pipelined_after_the_connect_head_reach_the_target()
    {
        using var target = new TcpListener(IPAddress.Loopback, 0);
        target.Start();
        var port = ((IPEndPoint)target.LocalEndpoint).Port;
        await using var proxy = new ProxyHarness();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var client = await proxy.ConnectAsync();
        await client.SendAsync(Encoding.ASCII.GetBytes($"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nPING-pipelined"), cts.Token);
        using var accepted = await target.AcceptTcpClientAsync(cts.Token);
        var stream = accepted.GetStream();
        var buffer = new byte[64];
        var got = new StringBuilder();
        while (got.Length < "PING-pipelined".Length)
        {
            var read = await stream.ReadAsync(buffer, cts.Token);
            Assert.NotEqual(0, read);
            got.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        Assert.Equal("PING-pipelined", got.ToString());
        await stream.WriteAsync("PONG"u8.ToArray(), cts.Token);
        accepted.Client.Shutdown(SocketShutdown.Send);
        client.Shutdown(SocketShutdown.Send);
        var answer = await ProxyHarness.ReadToCloseAsync(client, cts.Token);
        Assert.StartsWith("HTTP/1.1 200 Connection established\r\n", answer, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\nPONG", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("Content-Length", answer, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Pipelined_requests_are_answered_in_order_on_one_connection()
    {
        await using var origin = new TestOrigin(r => TestOrigin.Response(200, r.RequestLine.Split(' ')[1]));
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync(
            $"GET {origin.Url("/one")} HTTP/1.1\r\nHost: a\r\n\r\nGET {origin.Url("/two")} HTTP/1.1\r\nHost: a\r\n\r\nGET {origin.Url("/three")} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var one = answer.IndexOf("/one", StringComparison.Ordinal);
        var two = answer.IndexOf("/two", StringComparison.Ordinal);
        var three = answer.IndexOf("/three", StringComparison.Ordinal);
        Assert.True(one > 0 && two > one && three > two, answer);
        Assert.Equal(1, origin.Connections);
    }

    [Fact]
    public async Task Http10_client_without_keep_alive_is_closed_after_one_response()
    {
        await using var origin = new TestOrigin(_ => TestOrigin.Chunked("a", "b"));
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync($"GET {origin.Url("/")} HTTP/1.0\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("chunked", answer, StringComparison.OrdinalIgnoreCase); // HTTP/1.0: delimited by close
        Assert.EndsWith("\r\n\r\nab", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upstream_garbage_answers_502()
    {
        await using var origin = new TestOrigin(_ => "SSH-2.0-OpenSSH\r\n\r\n"u8.ToArray());
        await using var proxy = new ProxyHarness();
        var answer = await proxy.SendAndReadToCloseAsync($"GET {origin.Url("/")} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 502", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upstream_closing_mid_response_aborts_the_client_connection()
    {
        await using var origin = new TestOrigin(_ => Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part"));
        await using var proxy = new ProxyHarness();
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {origin.Url("/")} HTTP/1.1\r\nHost: a\r\n\r\n"), cts.Token);
        // The head and the first bytes reached the client: the origin wrote them (going away before it wrote anything is
        // another case, a 502 on a connection that stays open).
        var seen = new StringBuilder();
        var buffer = new byte[1024];
        while (!seen.ToString().EndsWith("\r\n\r\nonly-part", StringComparison.Ordinal))
        {
            var read = await socket.ReceiveAsync(buffer, cts.Token);
            Assert.True(read > 0, seen.ToString());
            seen.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        await origin.DisposeAsync(); // the origin goes away with 91 bytes still owed
        var answer = seen + await ProxyHarness.ReadToCloseAsync(socket, cts.Token);

        // The client must see a reset, never a response that looks complete.
        Assert.EndsWith("<RST>", answer, StringComparison.Ordinal);
        var bodyStart = answer.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(answer.Length - bodyStart - 4 - "<RST>".Length < 100, answer);
    }

    [Fact]
    public async Task Pooled_connection_closed_by_the_origin_is_replaced_for_an_idempotent_request()
    {
        // The origin answers without "Connection: close" and then closes: the pooled connection is stale.
        await using var origin = new TestOrigin(_ => null);
        await using var closingOrigin = new TestOrigin(r =>
        {
            return TestOrigin.Response(200, "ok" + r.ConnectionNumber);
        });
        await using var proxy = new ProxyHarness();
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var reader = new TestOrigin.ByteReader(new NetworkStream(socket));
        for (var i = 1; i <= 3; i++)
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {closingOrigin.Url("/")} HTTP/1.1\r\nHost: a\r\n\r\n"), cts.Token);
            Assert.StartsWith("HTTP/1.1 200", await reader.ReadLineAsync(cts.Token), StringComparison.Ordinal);
            while (await reader.ReadLineAsync(cts.Token) is { Length: > 0 })
            {
            }

            await reader.ReadExactlyAsync(3, null, cts.Token);
            if (i == 1)
            {
                // Kill the origin's side of the pooled connection, as an idle timeout would.
                await closingOrigin.DropConnectionsAsync();
                await Task.Delay(100, cts.Token);
            }
        }

        Assert.Equal(2, closingOrigin.Connections);
        Assert.Equal(3, closingOrigin.Requests.Count);
    }

    [Fact]
    public async Task Unbind_closes_idle_keep_alive_connections_at_once()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var stream = new NetworkStream(socket);
        var reader = new TestOrigin.ByteReader(stream);
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {origin.Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n"), cts.Token);
        Assert.Equal("HTTP/1.1 200 X", await reader.ReadLineAsync(cts.Token));
        while (await reader.ReadLineAsync(cts.Token) is { Length: > 0 })
        {
        }

        await reader.ReadExactlyAsync(5, null, cts.Token);
        await proxy.Server.UnbindAsync();
        Assert.Empty(await reader.ReadToEndAsync(cts.Token)); // FIN at once, nothing more
    }

    [Fact]
    public async Task Request_in_flight_at_shutdown_completes_with_connection_close()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var origin = new TestOrigin(_ =>
        {
            release.Task.Wait(TimeSpan.FromSeconds(10));
            return TestOrigin.Response(200, "late");
        });
        await using var proxy = new ProxyHarness();
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.SendAsync(Encoding.ASCII.GetBytes($"GET {origin.Url("/")} HTTP/1.1\r\nHost: a\r\n\r\n"), cts.Token);
        await WaitUntilAsync(() => !origin.Requests.IsEmpty);
        await proxy.Server.UnbindAsync();
        release.SetResult();
        var answer = await ProxyHarness.ReadToCloseAsync(socket, cts.Token);
        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.Contains("Connection: close\r\n", answer, StringComparison.Ordinal);
        Assert.EndsWith("late", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Expect_100_continue_is_answered_when_the_body_is_read()
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness();
        using var socket = await proxy.ConnectAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var reader = new TestOrigin.ByteReader(new NetworkStream(socket));
        await socket.SendAsync(Encoding.ASCII.GetBytes($"POST {origin.Url("/hash")} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"), cts.Token);
        Assert.Equal("HTTP/1.1 100 Continue", await reader.ReadLineAsync(cts.Token));
        Assert.Equal("", await reader.ReadLineAsync(cts.Token));
        await socket.SendAsync("hello"u8.ToArray(), cts.Token);
        var rest = Encoding.ASCII.GetString(await reader.ReadToEndAsync(cts.Token));
        Assert.StartsWith("HTTP/1.1 200", rest, StringComparison.Ordinal);
        Assert.EndsWith(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData("hello"u8.ToArray())), rest, StringComparison.Ordinal);
    }

    private static void AssertErrorAnswer(string answer, int status)
    {
        Assert.StartsWith($"HTTP/1.1 {status} ", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", answer, StringComparison.Ordinal);
        Assert.Contains("\r\nContent-Length: ", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("<RST>", answer, StringComparison.Ordinal); // closed cleanly (FIN), the answer was not lost
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "condition not reached in time");
            await Task.Delay(10);
        }
    }
}
