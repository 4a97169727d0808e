using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2;

/// <summary>Our HTTP/2 client against nginx (h2c) and against our own server over an in-memory pipe.</summary>
public class Http2ClientTests
{
    private static HttpRequest Get(string path, string host = "test")
    {
        var headers = new HttpHeaders();
        headers.Add("Host", host);
        headers.Add("User-Agent", "rama-h2-test");
        return new HttpRequest(HttpMethods.Get, path, RequestTargetForm.Origin, HttpProtocolVersion.Http2, headers);
    }

    private static async Task<byte[]> ReadAllAsync(PipeReader body)
    {
        using var memory = new MemoryStream();
        while (true)
        {
            var read = await body.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            foreach (var segment in read.Buffer)
            {
                memory.Write(segment.Span);
            }

            body.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                await body.CompleteAsync();
                return memory.ToArray();
            }
        }
    }

    /// <summary>A client connected to our server through two in-memory pipes.</summary>
    private sealed class Loopback : IAsyncDisposable
    {
        private readonly CancellationTokenSource _drain = new();
        private readonly CancellationTokenSource _abort = new();

        public Loopback(IService<HttpRequest, HttpResponse> application, Http2Limits? limits = null)
        {
            var toServer = new Pipe();
            var toClient = new Pipe();
            Server = Http2Server.ServeAsync(new DuplexPipe(toServer.Reader, toClient.Writer), application, limits, drain: _drain.Token, abort: _abort.Token);
            Client = Http2ClientConnection.Start(new DuplexPipe(toClient.Reader, toServer.Writer));
        }

        public Task Server { get; }

        public Http2ClientConnection Client { get; }

        public void Drain() => _drain.Cancel();

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            await _abort.CancelAsync();
            await Server.WaitAsync(TimeSpan.FromSeconds(10));
            _drain.Dispose();
            _abort.Dispose();
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    [Fact]
    public async Task Post_1_MiB_is_echoed_and_trailers_arrive_after_the_body()
    {
        await using var loop = new Loopback(Http2TestServices.Application());
        var request = new HttpRequest(HttpMethods.Post, "/echo", RequestTargetForm.Origin, HttpProtocolVersion.Http2, new HttpHeaders())
        {
            Body = PipeReader.Create(new System.Buffers.ReadOnlySequence<byte>(Http2TestServices.Big)),
        };
        request.Headers.Add("host", "test");
        var echo = await loop.Client.SendAsync(request);
        Assert.Equal(200, echo.Response!.Status);
        Assert.Equal(SHA256.HashData(Http2TestServices.Big), SHA256.HashData(await ReadAllAsync(echo.Response.Body)));

        var trailers = await loop.Client.SendAsync(Get("/trailers"));
        Assert.Equal("grpc-ish", System.Text.Encoding.ASCII.GetString(await ReadAllAsync(trailers.Response!.Body)));
        Assert.Equal("0", trailers.Response.Trailers?.GetText("grpc-status"));
    }

    [Fact]
    public async Task Cancellation_resets_the_stream_and_the_server_sees_it()
    {
        var serverCancelled = new TaskCompletionSource();
        var started = new TaskCompletionSource();
        await using var loop = new Loopback(Service.FromFunc<HttpRequest, HttpResponse>(async (request, ct) =>
        {
            if (request.Target == "/hello")
            {
                return HttpResponse.Text(200, "hello");
            }

            using var registration = ct.Register(() => serverCancelled.TrySetResult());
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
            return new HttpResponse(204);
        }));
        using var cts = new CancellationTokenSource();
        var send = loop.Client.SendAsync(Get("/"), cts.Token);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send.WaitAsync(TimeSpan.FromSeconds(10)));
        await serverCancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(loop.Client.IsUsable);
        Assert.Equal(200, (await loop.Client.SendAsync(Get("/hello")).WaitAsync(TimeSpan.FromSeconds(10))).Response!.Status);
    }

    [Fact]
    public async Task Peer_max_concurrent_streams_is_honoured()
    {
        var running = 0;
        var peak = 0;
        var gate = new TaskCompletionSource();
        await using var loop = new Loopback(Service.FromFunc<HttpRequest, HttpResponse>(async (_, ct) =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref peak, now);
            await gate.Task.WaitAsync(ct);
            Interlocked.Decrement(ref running);
            return HttpResponse.Text(200, "ok");
        }), new Http2Limits { MaxConcurrentStreams = 3 });
        var sends = Enumerable.Range(0, 12).Select(i => loop.Client.SendAsync(Get("/" + i))).ToList();
        await Eventually.TrueAsync(() => Volatile.Read(ref running) >= 3, TimeSpan.FromSeconds(10), "three streams never ran at once");

        gate.SetResult();
        var results = await Task.WhenAll(sends).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.All(results, r => Assert.Equal(200, r.Response!.Status));
        Assert.Equal(3, peak); // never a REFUSED_STREAM: the client waited for slots
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    [Fact]
    public async Task Goaway_makes_the_connection_unusable_and_new_requests_retryable_while_in_flight_ones_finish()
    {
        var gate = new TaskCompletionSource();
        var started = new TaskCompletionSource();
        await using var loop = new Loopback(Service.FromFunc<HttpRequest, HttpResponse>(async (_, ct) =>
        {
            started.TrySetResult();
            await gate.Task.WaitAsync(ct);
            return HttpResponse.Text(200, "slow done");
        }));
        var inFlight = loop.Client.SendAsync(Get("/slow"));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(loop.Client.IsUsable);
        loop.Drain();
        await Eventually.TrueAsync(() => !loop.Client.IsUsable, TimeSpan.FromSeconds(10), "the GOAWAY did not make the client unusable");

        Assert.False(loop.Client.IsUsable);
        Assert.Equal(0, loop.Client.AvailableStreams);
        var refused = await loop.Client.SendAsync(Get("/hello"));
        Assert.True(refused.IsRetryable);
        gate.SetResult();
        var finished = await inFlight.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("slow done\n", System.Text.Encoding.ASCII.GetString(await ReadAllAsync(finished.Response!.Body)));
        await loop.Client.Completion.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task The_first_goaway_of_a_graceful_shutdown_with_the_largest_stream_id_makes_the_connection_unusable()
    {
        // §6.8: an origin that shuts down gracefully (Kestrel does) first sends GOAWAY with 2^31-1: no stream is refused
        // yet, but no new one may start. The pool must take its next request elsewhere, not to this connection.
        var toServer = new Pipe();
        var toClient = new Pipe();
        var client = Http2ClientConnection.Start(new DuplexPipe(toClient.Reader, toServer.Writer));
        try
        {
            var frames = new ArrayBufferWriter<byte>();
            Http2FrameWriter.WriteSettings(frames, []);
            Http2FrameWriter.WriteSettingsAck(frames); // the client's SETTINGS (sent at start) are taken: nothing times out
            Http2FrameWriter.WriteGoAway(frames, int.MaxValue, Http2ErrorCode.NoError);
            await toClient.Writer.WriteAsync(frames.WrittenMemory);
            await Eventually.TrueAsync(() => !client.IsUsable, TimeSpan.FromSeconds(10), "a GOAWAY with 2^31-1 left the connection usable");

            var refused = await client.SendAsync(Get("/hello")).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(refused.IsRetryable);
            await client.Completion.WaitAsync(TimeSpan.FromSeconds(5)); // nothing in flight: the client closes it
        }
        finally
        {
            await toClient.Writer.CompleteAsync();
            await client.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    [Fact]
    public async Task Abandoned_response_body_resets_the_stream()
    {
        await using var loop = new Loopback(Http2TestServices.Application());
        var result = await loop.Client.SendAsync(Get("/big")).WaitAsync(TimeSpan.FromSeconds(10));
        var read = await result.Response!.Body.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(read.IsCompleted);
        result.Response.Body.AdvanceTo(read.Buffer.Start);
        await result.Response.Body.CompleteAsync(); // 1 MiB does not fit our 768 KiB stream window: only a reset ends the stream now
        await Eventually.TrueAsync(() => loop.Client.ActiveStreams == 0, TimeSpan.FromSeconds(10), "the abandoned stream was not reset");

        Assert.Equal(0, loop.Client.ActiveStreams);
        Assert.True(loop.Client.IsUsable);
        var again = await loop.Client.SendAsync(Get("/hello")).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("hello h2\n", System.Text.Encoding.ASCII.GetString(await ReadAllAsync(again.Response!.Body)));
    }

    [Fact]
    public async Task Extended_connect_from_the_client_tunnels_bytes_both_ways()
    {
        // RFC 8441: the client sends :protocol when the server announced SETTINGS_ENABLE_CONNECT_PROTOCOL.
        await using var loop = new Loopback(Service.FromFunc<HttpRequest, HttpResponse>((request, _) => ValueTask.FromResult(new HttpResponse(200)
        {
            OnUpgrade = async (pipe, ct) =>
            {
                var read = await pipe.Input.ReadAsync(ct);
                var text = System.Text.Encoding.ASCII.GetString(read.Buffer.ToArray());
                pipe.Input.AdvanceTo(read.Buffer.End);
                await pipe.Output.WriteAsync(System.Text.Encoding.ASCII.GetBytes(text.ToUpperInvariant() + " via " + request.Extensions.Get<Http2RequestInfo>()?.Protocol), ct);
            },
        })));
        var body = new Pipe();
        var request = new HttpRequest(HttpMethods.Connect, "/chat", RequestTargetForm.Origin, HttpProtocolVersion.Http2, new HttpHeaders()) { Body = body.Reader };
        request.Headers.Add("host", "test");
        request.Extensions.Set(new Http2RequestInfo(0, "http", "test", "websocket"));
        var sent = loop.Client.SendAsync(request);
        await body.Writer.WriteAsync("hello tunnel"u8.ToArray());
        var result = await sent.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(200, result.Response!.Status);
        var read = await result.Response.Body.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("HELLO TUNNEL via websocket", System.Text.Encoding.ASCII.GetString(read.Buffer.ToArray()));
        result.Response.Body.AdvanceTo(read.Buffer.End);
        await body.Writer.CompleteAsync();
    }

    [Fact]
    public async Task Against_nginx_h2c_a_1_MiB_file_and_50_concurrent_streams_arrive_intact()
    {
        await using var nginx = await NginxH2c.StartAsync(Http2TestServices.Big);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, nginx.Port));
        await using var transport = new SocketConnection(socket);
        transport.Start();
        await using var client = Http2ClientConnection.Start(transport);

        var one = await client.SendAsync(Get("/big.bin", $"127.0.0.1:{nginx.Port}")).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(one.Response is not null, one.ToString());
        Assert.Equal(200, one.Response.Status);
        Assert.Equal(Http2TestServices.Big.Length, one.Response.BodyLength);
        Assert.Equal(SHA256.HashData(Http2TestServices.Big), SHA256.HashData(await ReadAllAsync(one.Response.Body)));

        var many = await Task.WhenAll(Enumerable.Range(0, 50).Select(async _ =>
        {
            var result = await client.SendAsync(Get("/big.bin", $"127.0.0.1:{nginx.Port}"));
            return SHA256.HashData(await ReadAllAsync(result.Response!.Body));
        })).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.All(many, hash => Assert.Equal(SHA256.HashData(Http2TestServices.Big), hash));

        var status = await client.SendAsync(Get("/status", $"127.0.0.1:{nginx.Port}"));
        Assert.Equal(201, status.Response!.Status);
        Assert.Equal("nginx says hi", System.Text.Encoding.ASCII.GetString(await ReadAllAsync(status.Response.Body)));
        Assert.True(client.IsUsable);
        Assert.Equal(128, client.AvailableStreams); // nginx's http2_max_concurrent_streams
    }

    /// <summary>nginx serving h2c (prior knowledge) from a temporary prefix; killed on dispose.</summary>
    private sealed class NginxH2c : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _dir;

        private NginxH2c(Process process, string dir, int port)
        {
            _process = process;
            _dir = dir;
            Port = port;
        }

        public int Port { get; }

        public static async Task<NginxH2c> StartAsync(byte[] file)
        {
            var dir = Directory.CreateTempSubdirectory("rama-nginx-h2-").FullName;
            Directory.CreateDirectory(Path.Combine(dir, "www"));
            await File.WriteAllBytesAsync(Path.Combine(dir, "www", "big.bin"), file);
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            var port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            var conf = Path.Combine(dir, "nginx.conf");
            await File.WriteAllTextAsync(conf, NginxConfig.Text(dir, $$"""
                    server {
                        listen 127.0.0.1:{{port}} http2;
                        root {{dir}}/www;
                        location = /status { return 201 "nginx says hi"; }
                    }
                """, errorLevel: "info"));
            try
            {
                return new NginxH2c(await NginxConfig.StartAsync(dir, conf, port), dir, port);
            }
            catch
            {
                Directory.Delete(dir, recursive: true);
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            _process.Dispose();
            Directory.Delete(_dir, recursive: true);
        }
    }
}
