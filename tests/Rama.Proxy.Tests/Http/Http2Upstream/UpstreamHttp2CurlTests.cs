using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Http.Routing;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// HTTP/1.1 clients (curl) through the reverse proxy to HTTP/2 origins: our Http2Server and nginx, by h2c (prior knowledge) and
/// by https with ALPN h2; a routed cluster of h2c destinations; the pool multiplexing many requests on one connection.
/// </summary>
public class UpstreamHttp2CurlTests
{
    /// <summary>What our h2c origin saw of each request.</summary>
    private sealed record Seen(HttpProtocolVersion Version, string Method, string Target, string? Authority, string? Te, string? Via, string? Connection, string? Custom, long ConnectionId);

    private static (IService<HttpRequest, HttpResponse> App, ConcurrentQueue<Seen> Seen) RecordingOrigin(string name = "h2-origin", TaskCompletionSource? cancelled = null)
    {
        var seen = new ConcurrentQueue<Seen>();
        var app = Service.FromFunc<HttpRequest, HttpResponse>(async (request, ct) =>
        {
            seen.Enqueue(new Seen(request.Version, request.Method, request.Target, request.Extensions.Get<Http2RequestInfo>()?.Authority, request.Headers.GetText("te"),
                request.Headers.GetText("via"), request.Headers.GetText("connection") ?? request.Headers.GetText("x-secret"), request.Headers.GetText("x-kept"),
                request.Connection?.Id ?? -1));
            switch (request.Target.Split('?')[0])
            {
                case "/hash":
                {
                    using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    while (true)
                    {
                        var read = await request.Body.ReadAsync(ct);
                        foreach (var segment in read.Buffer)
                        {
                            sha.AppendData(segment.Span);
                        }

                        request.Body.AdvanceTo(read.Buffer.End);
                        if (read.IsCompleted)
                        {
                            break;
                        }
                    }

                    return HttpResponse.Text(200, Convert.ToHexString(sha.GetHashAndReset()));
                }

                case "/big":
                    return new HttpResponse(200) { Body = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(Http2.Http2TestServices.Big)), BodyLength = Http2.Http2TestServices.Big.Length };
                case "/slow":
                    try
                    {
                        await Task.Delay(Timeout.InfiniteTimeSpan, ct);
                    }
                    catch (OperationCanceledException)
                    {
                        cancelled?.TrySetResult();
                        throw;
                    }

                    return HttpResponse.Text(200, "never");
                case "/drip":
                {
                    // A body that never ends: a chunk every 50 ms until the stream is reset (the writer sees its reader gone).
                    var pipe = new Pipe();
                    _ = Task.Run(async () =>
                    {
                        try
                        {
                            while (true)
                            {
                                var flush = await pipe.Writer.WriteAsync("drip\n"u8.ToArray(), ct);
                                if (flush.IsCompleted)
                                {
                                    break;
                                }

                                await Task.Delay(50, ct);
                            }
                        }
                        catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException or IOException)
                        {
                        }

                        cancelled?.TrySetResult();
                        await pipe.Writer.CompleteAsync();
                    }, CancellationToken.None);
                    return new HttpResponse(200) { Body = pipe.Reader };
                }

                case "/headers":
                {
                    var response = HttpResponse.Text(200, name);
                    response.Headers.Add("X-Origin", name);
                    return response;
                }

                default:
                    return HttpResponse.Text(200, name);
            }
        });
        return (app, seen);
    }

    [Fact]
    public async Task Curl_over_http1_reaches_an_h2c_origin_as_http2_with_the_forwarding_rules()
    {
        var (app, seen) = RecordingOrigin();
        await using var origin = Http2.Http2TestServices.StartServer(app);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)));
        var (code, stdout, stderr) = await Curl.RunAsync("-i", "-H", "Host: app.example", "-H", "Connection: X-Secret", "-H", "X-Secret: 1", "-H", "X-Kept: yes",
            "-H", "TE: trailers", proxy.Url("/headers?x=1"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 200", stdout, StringComparison.Ordinal);
        Assert.Contains("X-Origin: h2-origin", stdout, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Via: 1.1 rama", stdout, StringComparison.OrdinalIgnoreCase);
        var request = Assert.Single(seen);
        Assert.Equal(HttpProtocolVersion.Http2, request.Version);
        Assert.Equal("/headers?x=1", request.Target);
        Assert.Equal("app.example", request.Authority); // RFC 9113 §8.3.1: :authority from the client's Host
        Assert.Equal("trailers", request.Te); // §8.2.2: TE only as "trailers"
        Assert.Equal("1.1 rama", request.Via);
        Assert.Null(request.Connection); // Connection and the fields it names do not go (§8.2.2)
        Assert.Equal("yes", request.Custom);
    }

    [Fact]
    public async Task Bodies_stream_both_ways_over_h2c_intact()
    {
        var payload = new byte[3 * 1024 * 1024];
        new Random(11).NextBytes(payload);
        var file = Path.Combine(Path.GetTempPath(), $"rama-h2up-{Guid.NewGuid():N}.bin");
        await File.WriteAllBytesAsync(file, payload);
        try
        {
            var (app, _) = RecordingOrigin();
            await using var origin = Http2.Http2TestServices.StartServer(app);
            await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)));
            var (code, stdout, stderr) = await Curl.RunAsync("--data-binary", "@" + file, proxy.Url("/hash"));
            Assert.True(code == 0, stderr);
            Assert.Equal(Convert.ToHexString(SHA256.HashData(payload)), stdout.TrimEnd());

            // chunked upload (no Content-Length) and a 1 MiB download
            (code, stdout, stderr) = await Curl.RunAsync("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + file, proxy.Url("/hash"));
            Assert.True(code == 0, stderr);
            Assert.Equal(Convert.ToHexString(SHA256.HashData(payload)), stdout.TrimEnd());
            var big = Path.Combine(Path.GetTempPath(), $"rama-h2up-{Guid.NewGuid():N}.out");
            (code, _, stderr) = await Curl.RunAsync("-o", big, proxy.Url("/big"));
            Assert.True(code == 0, stderr);
            Assert.Equal(Http2.Http2TestServices.Big, await File.ReadAllBytesAsync(big));
            File.Delete(big);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Concurrent_requests_share_one_multiplexed_origin_connection()
    {
        var (app, seen) = RecordingOrigin();
        await using var origin = Http2.Http2TestServices.StartServer(app);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)));
        var urls = Enumerable.Range(0, 40).Select(i => proxy.Url($"/n{i}")).ToArray();
        var (code, stdout, stderr) = await Curl.RunAsync(["--parallel", "--parallel-max", "20", "--parallel-immediate", .. urls]);
        Assert.True(code == 0, stderr);
        Assert.Equal(Enumerable.Repeat("h2-origin", 40), stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(40, seen.Count);
        Assert.Equal(1, origin.AcceptedConnections); // 20 client connections at once, one HTTP/2 connection to the origin
    }

    [Fact]
    public async Task A_refused_h2c_origin_is_502_and_a_silent_one_504_with_its_stream_reset()
    {
        await using (var refused = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", Rama.Testing.Ports.Refused()))))
        {
            var (code, stdout, stderr) = await Curl.RunAsync("-i", refused.Url("/"));
            Assert.True(code == 0, stderr);
            Assert.StartsWith("HTTP/1.1 502", stdout, StringComparison.Ordinal);
        }

        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (app, _) = RecordingOrigin(cancelled: cancelled);
        await using var origin = Http2.Http2TestServices.StartServer(app);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)),
            http: new HttpProxyOptions { UpstreamResponseHeaderTimeout = TimeSpan.FromMilliseconds(500) });
        var (code2, stdout2, stderr2) = await Curl.RunAsync("-i", proxy.Url("/slow"));
        Assert.True(code2 == 0, stderr2);
        Assert.StartsWith("HTTP/1.1 504", stdout2, StringComparison.Ordinal);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10)); // RST_STREAM(CANCEL) reached the origin's handler
    }

    [Fact]
    public async Task A_client_that_goes_away_mid_response_resets_the_origin_stream()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (app, seen) = RecordingOrigin(cancelled: cancelled);
        await using var origin = Http2.Http2TestServices.StartServer(app);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)));
        var (code, stdout, _) = await Curl.RunAsync("--max-time", "3", proxy.Url("/drip"));
        Assert.NotEqual(0, code); // curl gave up mid-body
        Assert.StartsWith("drip", stdout, StringComparison.Ordinal);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10)); // the origin's stream was reset (RST_STREAM CANCEL)
        Assert.Single(seen);
    }

    [Fact]
    public async Task An_origin_answering_before_the_request_body_leaves_no_connection_open()
    {
        var (app, _) = RecordingOrigin();
        await using var origin = Http2.Http2TestServices.StartServer(app);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)));
        var file = Path.Combine(Path.GetTempPath(), $"rama-h2up-{Guid.NewGuid():N}.bin");
        await File.WriteAllBytesAsync(file, new byte[300_000]);
        try
        {
            var (code, stdout, stderr) = await Curl.RunAsync("--data-binary", "@" + file, proxy.Url("/no-read"), proxy.Url("/again"));
            Assert.True(code == 0, stderr);
            Assert.Equal(["h2-origin", "h2-origin"], stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            await Rama.Testing.Eventually.TrueAsync(() => proxy.Server.OpenConnections == 0, TimeSpan.FromSeconds(3), () => $"{proxy.Server.OpenConnections} client connections still open");
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>
    /// The cause of the early-answer test's rare failure, made certain: the origin's stream window (16 KiB) stops the upload with a
    /// piece of the client's body in hand when the answer comes; the upload must give it back and stop before the server drains the
    /// rest of the body (RFC 9112 §9.3) and reads the next request on the same connection. (It once read the connection beside the
    /// upload: "Reading is already in progress", the connection dropped after the first answer and never counted closed.)
    /// </summary>
    [Fact]
    public async Task An_origin_answering_before_the_request_body_at_a_zero_window_leaves_the_connection_for_the_next_request()
    {
        var (app, seen) = RecordingOrigin();
        await using var origin = Http2.Http2TestServices.StartServer(app, new Http2Limits { InitialStreamWindowSize = 16 * 1024 });
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port)));
        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, proxy.Port);
            var stream = client.GetStream();
            var body = new byte[300_000];
            var head = "POST /no-read HTTP/1.1\r\nHost: app.example\r\nContent-Length: 300000\r\n\r\n"u8.ToArray();
            var sending = Task.Run(async () =>
            {
                await stream.WriteAsync(head);
                await stream.WriteAsync(body); // the whole body, as curl sends it after a 2xx that came early
            });
            var first = await ReadResponseAsync(stream);
            Assert.StartsWith("HTTP/1.1 200", first.Head, StringComparison.Ordinal);
            Assert.DoesNotContain("Connection: close", first.Head, StringComparison.OrdinalIgnoreCase); // 300 KB is drained, not a reason to close
            Assert.Equal("h2-origin\n", first.Body);
            await sending.WaitAsync(TimeSpan.FromSeconds(10)); // the proxy read (drained) the body to its end

            await stream.WriteAsync("GET /again HTTP/1.1\r\nHost: app.example\r\n\r\n"u8.ToArray());
            var second = await ReadResponseAsync(stream);
            Assert.StartsWith("HTTP/1.1 200", second.Head, StringComparison.Ordinal);
            Assert.Equal("h2-origin\n", second.Body);
            Assert.Equal(["/no-read", "/again"], seen.Select(s => s.Target));
        }

        await Rama.Testing.Eventually.TrueAsync(() => proxy.Server.OpenConnections == 0, TimeSpan.FromSeconds(5), () => $"{proxy.Server.OpenConnections} client connections still open");
    }

    /// <summary>Reads one response with a Content-Length body (10 s at most).</summary>
    private static async Task<(string Head, string Body)> ReadResponseAsync(System.Net.Sockets.NetworkStream stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = new List<byte>();
        var buffer = new byte[4096];
        int end;
        while ((end = IndexOfHeadEnd(received)) < 0)
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            Assert.True(read > 0, "the proxy closed the connection before a response head: " + System.Text.Encoding.Latin1.GetString([.. received]));
            received.AddRange(buffer.AsSpan(0, read));
        }

        var head = System.Text.Encoding.Latin1.GetString([.. received], 0, end);
        var lengthLine = head.Split("\r\n").Single(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        var length = int.Parse(lengthLine["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        while (received.Count < end + 4 + length)
        {
            var read = await stream.ReadAsync(buffer.AsMemory(0, Math.Min(buffer.Length, end + 4 + length - received.Count)), timeout.Token);
            Assert.True(read > 0, "the proxy closed the connection inside a response body");
            received.AddRange(buffer.AsSpan(0, read));
        }

        return (head, System.Text.Encoding.Latin1.GetString([.. received], end + 4, length));

        static int IndexOfHeadEnd(List<byte> bytes)
        {
            for (var i = 0; i + 3 < bytes.Count; i++)
            {
                if (bytes[i] == '\r' && bytes[i + 1] == '\n' && bytes[i + 2] == '\r' && bytes[i + 3] == '\n')
                {
                    return i;
                }
            }

            return -1;
        }
    }

    [Fact]
    public async Task Nginx_h2c_origin_answers_over_http2()
    {
        await using var nginx = await NginxH2Origin.StartAsync(tls: false);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", nginx.Port)));
        var (code, stdout, stderr) = await Curl.RunAsync("-H", "Host: app.example", proxy.Url("/a/b"), proxy.Url("/a/c"));
        Assert.True(code == 0, stderr);
        Assert.Equal("HTTP/2.0 GET /a/b app.example 1.1 ramaHTTP/2.0 GET /a/c app.example 1.1 rama", stdout);
        var file = Path.Combine(Path.GetTempPath(), $"rama-h2up-{Guid.NewGuid():N}.bin");
        var payload = new byte[300_000];
        new Random(5).NextBytes(payload);
        await File.WriteAllBytesAsync(file, payload);
        try
        {
            (code, stdout, stderr) = await Curl.RunAsync("-o", "/dev/null", "-w", "%{http_code}", "-T", file, proxy.Url("/upload/body.bin"));
            Assert.True(code == 0, stderr);
            Assert.Equal("201", stdout);
            Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(nginx.Root, "upload", "body.bin")));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Https_origin_with_alpn_h2_is_spoken_to_in_http2_and_its_certificate_verified()
    {
        await using var nginx = await NginxH2Origin.StartAsync(tls: true);
        var upstream = new UpstreamTarget(OriginProtocol.Https, new HostPort("127.0.0.1", nginx.Port));
        await using (var proxy = H2ReverseHarness.Listener(upstream, new TlsClientOptions { ExtraTrustedRoots = [nginx.Certificate!] }))
        {
            var (code, stdout, stderr) = await Curl.RunAsync("-H", "Host: app.example", proxy.Url("/x"), proxy.Url("/y"));
            Assert.True(code == 0, stderr);
            Assert.Equal("HTTP/2.0 GET /x app.example 1.1 ramaHTTP/2.0 GET /y app.example 1.1 rama", stdout);
        }

        // Concurrent requests are streams on one TLS connection (nginx numbers its connections).
        await using (var proxy = H2ReverseHarness.Listener(upstream, new TlsClientOptions { ExtraTrustedRoots = [nginx.Certificate!] }))
        {
            var (code, first, stderr) = await Curl.RunAsync(proxy.Url("/conn"));
            Assert.True(code == 0, stderr);
            string[] urls = [.. Enumerable.Repeat(proxy.Url("/conn"), 30)];
            var (codeAll, all, stderrAll) = await Curl.RunAsync(["--parallel", "--parallel-max", "15", "--parallel-immediate", .. urls]);
            Assert.True(codeAll == 0, stderrAll);
            Assert.All(all.Split('\n', StringSplitOptions.RemoveEmptyEntries), c => Assert.Equal(first.Trim(), c));
        }

        // Not trusted: the handshake fails, 502.
        await using var untrusting = H2ReverseHarness.Listener(upstream);
        var (code2, stdout2, stderr2) = await Curl.RunAsync("-i", untrusting.Url("/x"));
        Assert.True(code2 == 0, stderr2);
        Assert.StartsWith("HTTP/1.1 502", stdout2, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Routed_cluster_of_h2c_destinations_balances_over_http2()
    {
        var (appA, seenA) = RecordingOrigin("a");
        var (appB, seenB) = RecordingOrigin("b");
        await using var a = Http2.Http2TestServices.StartServer(appA);
        await using var b = Http2.Http2TestServices.StartServer(appB);
        var routing = new ReverseRoutingOptions
        {
            Routes = [new RouteOptions { RouteId = "all", ClusterId = "grpc" }],
            Clusters =
            [
                new ClusterOptions
                {
                    ClusterId = "grpc",
                    LoadBalancingPolicy = LoadBalancingPolicy.RoundRobin,
                    Destinations =
                    [
                        new DestinationOptions { DestinationId = "a", Address = $"h2c://127.0.0.1:{a.LocalEndPoint.Port}" },
                        new DestinationOptions { DestinationId = "b", Address = $"h2c://127.0.0.1:{b.LocalEndPoint.Port}/" },
                    ],
                },
            ],
        };
        var service = ReverseProxyStack.Create(new ForwardProxyOptions(), routing, out _);
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(service);
        try
        {
            var urls = Enumerable.Range(0, 6).Select(i => $"http://127.0.0.1:{server.LocalEndPoint.Port}/r{i}").ToArray();
            var (code, stdout, stderr) = await Curl.RunAsync(urls);
            Assert.True(code == 0, stderr);
            Assert.Equal(6, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
            Assert.Equal(3, seenA.Count);
            Assert.Equal(3, seenB.Count);
            Assert.All(seenA.Concat(seenB), s => Assert.Equal(HttpProtocolVersion.Http2, s.Version));
        }
        finally
        {
            await server.DisposeAsync();
            await ((IAsyncDisposable)service).DisposeAsync();
        }
    }

    [Fact]
    public async Task Route_timeout_answers_504_and_resets_the_h2c_origin_stream()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (app, _) = RecordingOrigin(cancelled: cancelled);
        await using var origin = Http2.Http2TestServices.StartServer(app);
        var routing = new ReverseRoutingOptions
        {
            Routes = [new RouteOptions { RouteId = "slow", ClusterId = "c", Timeout = TimeSpan.FromMilliseconds(300) }],
            Clusters = [new ClusterOptions { ClusterId = "c", Destinations = [new DestinationOptions { DestinationId = "a", Address = $"h2c://127.0.0.1:{origin.LocalEndPoint.Port}" }] }],
        };
        var service = ReverseProxyStack.Create(new ForwardProxyOptions(), routing, out _);
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(service);
        try
        {
            var (code, stdout, stderr) = await Curl.RunAsync("-i", $"http://127.0.0.1:{server.LocalEndPoint.Port}/slow");
            Assert.True(code == 0, stderr);
            Assert.StartsWith("HTTP/1.1 504", stdout, StringComparison.Ordinal);
            Assert.Contains("route slow", stdout, StringComparison.Ordinal);
            await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(10)); // RST_STREAM(CANCEL) reached the origin
        }
        finally
        {
            await server.DisposeAsync();
            await ((IAsyncDisposable)service).DisposeAsync();
        }
    }

    [Theory]
    [InlineData("h2c://127.0.0.1:50051", OriginProtocol.H2c, 50051)]
    [InlineData("https://origin.internal", OriginProtocol.Https, 443)]
    [InlineData("http://127.0.0.1:8000/", OriginProtocol.Http1, 8000)]
    [InlineData("127.0.0.1:8000", OriginProtocol.Http1, 8000)]
    [InlineData("H2C://[::1]:9000", OriginProtocol.H2c, 9000)]
    public void Upstream_scheme_says_the_protocol(string text, OriginProtocol protocol, int port)
    {
        Assert.True(UpstreamTarget.TryParse(text, requireScheme: false, out var target, out var problem), problem);
        Assert.Equal(protocol, target.Protocol);
        Assert.Equal(port, target.Target.Port);
    }

    [Theory]
    [InlineData("ftp://127.0.0.1:21", "scheme 'ftp'")]
    [InlineData("h2c://127.0.0.1:1/path", "has a path")]
    [InlineData("127.0.0.1", "is not")]
    [InlineData("h2c://user@host:1", "is not")]
    [InlineData("", "is empty")]
    public void Bad_upstreams_are_refused_with_the_reason(string text, string reason)
    {
        Assert.False(UpstreamTarget.TryParse(text, requireScheme: false, out _, out var problem));
        Assert.Contains(reason, problem, StringComparison.Ordinal);
    }
}
