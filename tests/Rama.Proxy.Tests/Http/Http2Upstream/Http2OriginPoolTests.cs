using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>The HTTP/2 origin pool behind the forwarder: idle connections closed after the idle timeout, a GOAWAY'd request sent again on a new connection, all closed on dispose.</summary>
public class Http2OriginPoolTests
{
    private static HttpRequest Get(string path)
    {
        var headers = new HttpHeaders();
        headers.Add("Host", "origin.test");
        return new HttpRequest("GET", path, RequestTargetForm.Origin, HttpProtocolVersion.Http11, headers);
    }

    private static async Task<string> ReadAllAsync(HttpResponse response)
    {
        var text = new System.Text.StringBuilder();
        while (true)
        {
            var read = await response.Body.ReadAsync();
            text.Append(System.Text.Encoding.UTF8.GetString(read.Buffer.ToArray()));
            response.Body.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                await response.Body.CompleteAsync();
                return text.ToString().TrimEnd();
            }
        }
    }

    private static Task WaitForAsync(Func<bool> condition, string what) => Eventually.TrueAsync(condition, TimeSpan.FromSeconds(10), what);

    [Fact]
    public async Task Idle_origin_connection_is_closed_after_the_idle_timeout_and_reused_before()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var origin = Http2.Http2TestServices.StartServer();
        var upstream = new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port));
        var http = new HttpProxyOptions { PooledConnectionIdleTimeout = TimeSpan.FromSeconds(10) };
        var (forwarder, pools) = ReverseProxyStack.Forwarder(http, new TcpConnector(), NullLoggerFactory.Instance, time, null);
        await using (pools)
        {
            Assert.Equal("hello h2", await ReadAllAsync(await forwarder.ForwardAsync(Get("/"), upstream, null, "/", CancellationToken.None)));
            time.Advance(TimeSpan.FromSeconds(6)); // under the timeout (the sweep marks it idle)
            Assert.Equal("hello h2", await ReadAllAsync(await forwarder.ForwardAsync(Get("/"), upstream, null, "/", CancellationToken.None)));
            Assert.Equal(1, origin.AcceptedConnections); // reused
            Assert.Equal(1, origin.OpenConnections);

            for (var i = 0; i < 5; i++)
            {
                time.Advance(TimeSpan.FromSeconds(5)); // sweeps every 5 s: idle since one sweep, closed 10 s later
            }

            await WaitForAsync(() => origin.OpenConnections == 0, "the idle HTTP/2 origin connection was not closed");
        }
    }

    [Fact]
    public async Task Disposing_the_pool_closes_its_connections()
    {
        await using var origin = Http2.Http2TestServices.StartServer();
        var upstream = new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port));
        var (forwarder, pools) = ReverseProxyStack.Forwarder(new HttpProxyOptions(), new TcpConnector(), NullLoggerFactory.Instance, TimeProvider.System, null);
        await ReadAllAsync(await forwarder.ForwardAsync(Get("/"), upstream, null, "/", CancellationToken.None));
        Assert.Equal(1, origin.OpenConnections);
        await pools.DisposeAsync();
        await WaitForAsync(() => origin.OpenConnections == 0, "the pool's connection outlived the pool");
    }

    [Fact]
    public async Task Request_refused_by_goaway_is_sent_again_on_a_new_connection()
    {
        // The first connection answers the first HEADERS with GOAWAY(last stream 0): the request was not processed (RFC 9113 §6.8);
        // later connections are served by our Http2Server.
        var connections = 0;
        var goAwaySent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var served = Http2Server.Create(Http2.Http2TestServices.Application());
        var origin = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        origin.Start(Service.FromFunc<ConnectionContext, Unit>(async (connection, ct) =>
        {
            if (Interlocked.Increment(ref connections) > 1)
            {
                return await served.ServeAsync(connection, ct);
            }

            await RefuseWithGoAwayAsync(connection.Transport, ct);
            goAwaySent.TrySetResult();
            return Unit.Value;
        }));
        await using (origin)
        {
            var upstream = new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.LocalEndPoint.Port));
            var (forwarder, pools) = ReverseProxyStack.Forwarder(new HttpProxyOptions(), new TcpConnector(), NullLoggerFactory.Instance, TimeProvider.System, null);
            await using (pools)
            {
                var response = await forwarder.ForwardAsync(Get("/"), upstream, null, "/", CancellationToken.None);
                Assert.Equal(200, response.Status);
                Assert.Equal("hello h2", await ReadAllAsync(response));
                // The first connection's handler marks its GOAWAY after writing it; the retry may finish before that line runs.
                await goAwaySent.Task.WaitAsync(TimeSpan.FromSeconds(5));
                Assert.Equal(2, origin.AcceptedConnections);
            }
        }
    }

    [Fact]
    public async Task Health_probe_of_an_h2c_destination_speaks_http2()
    {
        var (app, seen) = (Http2.Http2TestServices.Application(), 0);
        var counting = Service.FromFunc<HttpRequest, HttpResponse>(async (request, ct) =>
        {
            Interlocked.Increment(ref seen);
            return request.Target == "/healthz" && request.Version == HttpProtocolVersion.Http2
                ? await app.ServeAsync(request, ct)
                : HttpResponse.Text(503, "not this");
        });
        await using var origin = Http2.Http2TestServices.StartServer(counting);
        var (forwarder, pools) = ReverseProxyStack.Forwarder(new HttpProxyOptions(), new TcpConnector(), NullLoggerFactory.Instance, TimeProvider.System, null);
        await using (pools)
        {
            Assert.True(Rama.Proxy.Http.Routing.DestinationAddress.TryParse($"h2c://127.0.0.1:{origin.LocalEndPoint.Port}", out var address, out _));
            var destination = new Rama.Proxy.Http.Routing.DestinationState("a", address, address);
            Assert.True(await Rama.Proxy.Http.Routing.ActiveHealthChecker.ForwarderProbeAsync(forwarder, destination, "/healthz", CancellationToken.None));
            Assert.False(await Rama.Proxy.Http.Routing.ActiveHealthChecker.ForwarderProbeAsync(forwarder, destination, "/other", CancellationToken.None));
            Assert.True(Rama.Proxy.Http.Routing.DestinationAddress.TryParse($"h2c://127.0.0.1:{Rama.Testing.Ports.Refused()}", out var refused, out _));
            Assert.False(await Rama.Proxy.Http.Routing.ActiveHealthChecker.ForwarderProbeAsync(forwarder, new Rama.Proxy.Http.Routing.DestinationState("b", refused, refused), "/healthz", CancellationToken.None));
            Assert.Equal(2, seen);
        }
    }

    // Reads the preface and frames until a HEADERS, then answers SETTINGS and GOAWAY(0, NO_ERROR) and ends the connection.
    private static async Task RefuseWithGoAwayAsync(IDuplexPipe transport, CancellationToken ct)
    {
        var output = transport.Output;
        Http2FrameWriter.WriteSettings(output, []);
        await output.FlushAsync(ct);
        var input = transport.Input;
        var skippedPreface = false;
        while (true)
        {
            var read = await input.ReadAsync(ct);
            var buffer = read.Buffer;
            if (!skippedPreface && buffer.Length >= 24)
            {
                buffer = buffer.Slice(24);
                skippedPreface = true;
            }

            var sawHeaders = false;
            while (skippedPreface && buffer.Length >= 9)
            {
                var header = buffer.Slice(0, 9).ToArray();
                var length = (header[0] << 16) | (header[1] << 8) | header[2];
                if (buffer.Length < 9 + length)
                {
                    break;
                }

                sawHeaders |= header[3] == 1;
                if (header[3] == 4 && (header[4] & 1) == 0)
                {
                    Http2FrameWriter.WriteSettingsAck(output);
                }

                buffer = buffer.Slice(9 + length);
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (sawHeaders)
            {
                Http2FrameWriter.WriteGoAway(output, 0, Http2ErrorCode.NoError);
                await output.FlushAsync(ct);
                await output.CompleteAsync();
                return;
            }

            await output.FlushAsync(ct);
            if (read.IsCompleted)
            {
                return;
            }
        }
    }
}
