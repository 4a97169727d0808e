using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Rama.Actors.AccessLog;
using Rama.Actors.Hosting;
using Rama.Actors.Listeners;
using Rama.Proxy.Core;
using Rama.Proxy.Observability;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Testing;

namespace Rama.Actors.Tests.AccessLog;

/// <summary>The access log's stream (issue 11, item 6): lines in files as text and JSON, drops counted and logged, flushed at shutdown.</summary>
public sealed class AccessLogStreamTests : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private static readonly ForwardProxyOptions ProxyOptions = new() { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } };
    private readonly string _directory = Directory.CreateTempSubdirectory("rama-access-log-").FullName;
    private readonly ListLogger _log = new();

    void IDisposable.Dispose()
    {
        Directory.Delete(_directory, recursive: true);
        Dispose();
    }

    private string PathOf(string name) => Path.Combine(_directory, name);

    private static StaticProxyAuthenticator Alice() => new([new KeyValuePair<string, string>("alice", "pw")]);

    private static TcpServer Serve(IAccessLog accessLog)
    {
        var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(ForwardProxyStack.Create(ProxyOptions, Alice(), accessLog: accessLog));
        return server;
    }

    private async Task RequestAndTunnelAsync(TcpServer proxy, int origin)
    {
        var forward = await Cli.CurlAsync("-x", $"http://127.0.0.1:{proxy.LocalEndPoint.Port}", "-U", "alice:pw", "--data-binary", "12345", $"http://127.0.0.1:{origin}/p?q=1");
        Assert.Equal("hello", forward.Text);
        var socks = await Cli.CurlAsync("--socks5", $"alice:pw@127.0.0.1:{proxy.LocalEndPoint.Port}", $"http://127.0.0.1:{origin}/s");
        Assert.Equal("hello", socks.Text);
    }

    [Fact]
    public async Task Text_lines_of_a_real_request_and_tunnel_reach_the_file_with_every_field()
    {
        var path = PathOf("access.log");
        var stream = new AccessLogStream(new AccessLogOptions { Destination = path });
        AccessLogHostingExtensions.Start(Sys, stream, _log);
        await using var origin = TinyHttpOrigin.Start("hello");
        await using var proxy = Serve(stream.ForListener("edge"));

        await RequestAndTunnelAsync(proxy, origin.Port);

        await AwaitAssertAsync(() => Assert.Equal(2, stream.Written), TimeSpan.FromSeconds(10));
        var lines = await File.ReadAllLinesAsync(path);
        Assert.Equal(2, lines.Length);
        const string Time = @"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z";
        Assert.Matches(new Regex($@"^{Time} 127\.0\.0\.1:\d+ forward POST http://127\.0\.0\.1:{origin.Port}/p\?q=1 200 up=5 down=5 ms=\d+(\.\d+)? user=alice upstream=- conn=\d+ listener=edge$"), lines[0]);
        Assert.Matches(new Regex($@"^{Time} 127\.0\.0\.1:\d+ socks5 CONNECT 127\.0\.0\.1:{origin.Port} 0 up=[1-9]\d* down=[1-9]\d* ms=\d+(\.\d+)? user=alice upstream=- conn=\d+ listener=edge$"), lines[1]);
        Assert.Equal(0, stream.Dropped);
    }

    [Fact]
    public async Task Json_lines_of_a_real_request_and_tunnel_reach_the_file_with_every_field()
    {
        var path = PathOf("access.jsonl");
        var stream = new AccessLogStream(new AccessLogOptions { Destination = path, Format = AccessLogFormat.Json });
        AccessLogHostingExtensions.Start(Sys, stream, _log);
        await using var origin = TinyHttpOrigin.Start("hello");
        await using var proxy = Serve(stream.ForListener("edge"));
        var before = DateTime.UtcNow;

        await RequestAndTunnelAsync(proxy, origin.Port);

        await AwaitAssertAsync(() => Assert.Equal(2, stream.Written), TimeSpan.FromSeconds(10));
        var lines = await File.ReadAllLinesAsync(path);
        Assert.Equal(2, lines.Length);
        using var forward = JsonDocument.Parse(lines[0]);
        var f = forward.RootElement;
        Assert.Equal(
            ["time", "kind", "client", "user", "method", "target", "status", "bytes_up", "bytes_down", "duration_ms", "upstream", "listener", "connection"],
            f.EnumerateObject().Select(p => p.Name));
        Assert.InRange(f.GetProperty("time").GetDateTime().ToUniversalTime(), before.AddSeconds(-1), DateTime.UtcNow);
        Assert.Equal("forward", f.GetProperty("kind").GetString());
        Assert.StartsWith("127.0.0.1:", f.GetProperty("client").GetString(), StringComparison.Ordinal);
        Assert.Equal("alice", f.GetProperty("user").GetString());
        Assert.Equal("POST", f.GetProperty("method").GetString());
        Assert.Equal($"http://127.0.0.1:{origin.Port}/p?q=1", f.GetProperty("target").GetString());
        Assert.Equal(200, f.GetProperty("status").GetInt32());
        Assert.Equal(5, f.GetProperty("bytes_up").GetInt64());
        Assert.Equal(5, f.GetProperty("bytes_down").GetInt64());
        Assert.True(f.GetProperty("duration_ms").GetDouble() > 0);
        Assert.Equal(JsonValueKind.Null, f.GetProperty("upstream").ValueKind);
        Assert.Equal("edge", f.GetProperty("listener").GetString());
        Assert.True(f.GetProperty("connection").GetInt64() > 0);

        using var tunnel = JsonDocument.Parse(lines[1]);
        var t = tunnel.RootElement;
        Assert.Equal("socks5", t.GetProperty("kind").GetString());
        Assert.Equal("CONNECT", t.GetProperty("method").GetString());
        Assert.Equal($"127.0.0.1:{origin.Port}", t.GetProperty("target").GetString());
        Assert.Equal($"127.0.0.1:{origin.Port}", t.GetProperty("authority").GetString());
        Assert.Equal(0, t.GetProperty("status").GetInt32());
        Assert.True(t.GetProperty("bytes_up").GetInt64() > 0 && t.GetProperty("bytes_down").GetInt64() > 0);
    }

    [Fact]
    public void A_user_name_or_target_with_quotes_controls_and_newlines_stays_one_line_and_round_trips_in_json()
    {
        var entry = new AccessLogEntry
        {
            Time = DateTimeOffset.UnixEpoch,
            Kind = AccessKind.Socks5,
            User = "evil\"\n user=root\\\u0001 é",
            Method = "CONNECT",
            Authority = new HostPort("::1", 443),
            ConnectionId = 7,
        };

        var text = AccessLogFormatter.FormatText(entry);
        Assert.Equal("1970-01-01T00:00:00.000Z - socks5 CONNECT [::1]:443 0 up=0 down=0 ms=0.0 user=evil\\x22\\x0A\\x20user=root\\x5C\\x01\\x20é upstream=- conn=7\n", text);

        using var json = new AccessLogFormatter(AccessLogFormat.Json);
        json.Append(entry);
        json.Append(entry);
        var lines = System.Text.Encoding.UTF8.GetString(json.Written.Span).Split('\n');
        Assert.Equal(3, lines.Length); // two lines and the empty rest after the last \n
        using var parsed = JsonDocument.Parse(lines[0]);
        Assert.Equal(entry.User, parsed.RootElement.GetProperty("user").GetString());
        Assert.Equal("[::1]:443", parsed.RootElement.GetProperty("target").GetString());
    }

    [Fact]
    public void A_refusal_carries_its_reason_last_in_text_and_as_a_json_field_and_other_lines_have_none()
    {
        var refused = new AccessLogEntry
        {
            Time = DateTimeOffset.UnixEpoch,
            Kind = AccessKind.Http,
            Client = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 50312),
            Status = 503,
            Reason = "listener 'edge' is at its limit of 2 connections",
        };

        Assert.Equal("1970-01-01T00:00:00.000Z 127.0.0.1:50312 http - - 503 up=0 down=0 ms=0.0 user=- upstream=- conn=0 " +
            "reason=listener\\x20'edge'\\x20is\\x20at\\x20its\\x20limit\\x20of\\x202\\x20connections\n", AccessLogFormatter.FormatText(refused));
        Assert.DoesNotContain("reason=", AccessLogFormatter.FormatText(refused with { Reason = null }), StringComparison.Ordinal);

        using var json = new AccessLogFormatter(AccessLogFormat.Json);
        json.Append(refused);
        json.Append(refused with { Reason = null });
        var lines = System.Text.Encoding.UTF8.GetString(json.Written.Span).Split('\n');
        using var first = JsonDocument.Parse(lines[0]);
        Assert.Equal(refused.Reason, first.RootElement.GetProperty("reason").GetString());
        using var second = JsonDocument.Parse(lines[1]);
        Assert.False(second.RootElement.TryGetProperty("reason", out _));
    }

    [Fact]
    public async Task A_blocked_writer_makes_lines_drop_and_count_while_connections_are_served_and_the_count_is_logged()
    {
        var destination = new BlockedStream();
        var stream = new AccessLogStream(new AccessLogOptions { Destination = PathOf("never-written.log"), BufferSize = 8 }, () => destination)
        {
            MaxBatch = 4,
            FlushInterval = TimeSpan.FromMilliseconds(10),
            DropReportInterval = TimeSpan.FromMilliseconds(200),
            CloseTimeout = TimeSpan.FromMilliseconds(500),
        };
        AccessLogHostingExtensions.Start(Sys, stream, _log);
        await using var origin = new RawOrigin(async socket =>
        {
            var buffer = new byte[4096];
            while (await socket.ReceiveAsync(buffer) > 0)
            {
                await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray());
            }
        });
        await using var proxy = Serve(stream);
        const int Requests = 40;

        // One curl, 40 requests on one kept-alive connection: every one answered while the writer takes nothing.
        var urls = Enumerable.Range(0, Requests).Select(i => $"http://127.0.0.1:{origin.Port}/{i}").ToArray();
        var result = await Cli.CurlAsync(["-x", $"http://127.0.0.1:{proxy.LocalEndPoint.Port}", "-U", "alice:pw", .. urls]);

        Assert.Equal(string.Concat(Enumerable.Repeat("ok", Requests)), result.Text);
        await destination.FirstWrite.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, stream.Written);
        // At most the queue (8), a group taken from it (4) and the group in the stuck write (4) are held; the rest dropped.
        Assert.InRange(stream.Dropped, Requests - 8 - 4 - 4, Requests);
        await AwaitAssertAsync(() => Assert.Contains(_log.Entries, e => e.EventId == 5101 && e.Message.Contains($"({stream.Dropped} in all)", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(5));

        await stream.CloseAsync().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(Requests, stream.Dropped); // the held lines are lost too, and counted
        Assert.Contains(_log.Entries, e => e.EventId == 5102 && e.Message.Contains($"0 lines written, {Requests} dropped", StringComparison.Ordinal));
        stream.Write(new AccessLogEntry());
        Assert.Equal(Requests + 1, stream.Dropped); // after the close, a write is dropped, not blocked
    }

    [Fact]
    public async Task Coordinated_shutdown_writes_lines_that_were_still_waiting_for_their_group()
    {
        var path = PathOf("flushed.log");
        var system = ActorSystem.Create("access-log-flush");
        var stream = new AccessLogStream(new AccessLogOptions { Destination = path }) { FlushInterval = TimeSpan.FromHours(1) };
        AccessLogHostingExtensions.Start(system, stream, _log);
        for (var i = 0; i < 3; i++)
        {
            stream.Write(new AccessLogEntry { Kind = AccessKind.Reverse, Method = "GET", Target = $"/last-{i}", Status = 200, ConnectionId = i + 1 });
        }

        // With an hour between ticks the three lines still wait in the queue, untaken and unwritten.
        Assert.Equal(3, stream.Queued);
        Assert.Equal(0, stream.Written);

        await CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance).WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(3, stream.Written);
        Assert.Equal(["/last-0", "/last-1", "/last-2"], (await File.ReadAllLinesAsync(path)).Select(l => l.Split(' ')[4]));
        Assert.Contains(_log.Entries, e => e.EventId == 5102 && e.Message.Contains("3 lines written, 0 dropped", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_node_host_writes_the_line_of_a_request_still_draining_when_it_stops()
    {
        var path = PathOf("host.log");
        var gate = new TaskCompletionSource();
        await using var origin = new RawOrigin(async socket =>
        {
            await TinyHttpOrigin.ReadHeadAsync(socket);
            await gate.Task;
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlater"u8.ToArray());
        });
        var builder = Host.CreateApplicationBuilder();
        builder.Services.AddRamaAccessLog(new AccessLogOptions { Destination = path, Format = AccessLogFormat.Json });
        builder.Services.AddAkka("access-log-host", akka => akka
            .AddRamaAccessLog()
            .AddRama(new RamaSettings
            {
                DrainTimeout = TimeSpan.FromSeconds(10),
                Listeners = sp => [new ListenerSpec("edge", new IPEndPoint(IPAddress.Loopback, 0),
                    ForwardProxyStack.Create(ProxyOptions, StaticProxyAuthenticator.None, accessLog: sp.GetRequiredService<IAccessLog>().ForListener("edge")))],
            }));
        using var host = builder.Build();
        await host.StartAsync();
        var listeners = await host.Services.GetRequiredService<IRequiredActor<ProxyListeners>>().GetAsync();
        var endpoint = (await listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5))).Listeners.Single().Endpoint;

        var request = Cli.CurlAsync("-x", $"http://{endpoint}", $"http://127.0.0.1:{origin.Port}/draining");
        await AwaitAssertAsync(() => Assert.Equal(1, origin.Accepted), TimeSpan.FromSeconds(10));
        using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stop = host.StopAsync(stopping.Token);
        // The drain has begun (status answers at once while it waits for the request) before the request completes.
        await AwaitAssertAsync(async () => Assert.True((await listeners.Ask<ListenersStatus>(GetListenerStatus.Instance, TimeSpan.FromSeconds(5))).Draining),
            TimeSpan.FromSeconds(10));
        gate.SetResult();
        Assert.Equal("later", (await request).Text);
        await stop;

        var line = Assert.Single(await File.ReadAllLinesAsync(path));
        using var json = JsonDocument.Parse(line);
        Assert.Equal($"http://127.0.0.1:{origin.Port}/draining", json.RootElement.GetProperty("target").GetString());
        Assert.Equal("edge", json.RootElement.GetProperty("listener").GetString());
    }

    [Fact]
    public void Options_refuse_bad_values_naming_the_key_the_value_and_what_is_allowed()
    {
        Assert.Empty(new AccessLogOptions().Validate());
        Assert.Empty(new AccessLogOptions { Destination = "off" }.Validate());
        var problems = new AccessLogOptions { Destination = " ", Format = (AccessLogFormat)7, BufferSize = 0 }.Validate();
        Assert.Equal(3, problems.Count);
        Assert.Contains("Rama:AccessLog:Destination is ' ': allowed are 'stdout', 'off' or a file path", problems);
        Assert.Contains("Rama:AccessLog:Format is '7': allowed are 'Text' or 'Json'", problems);
        Assert.Contains("Rama:AccessLog:BufferSize is '0': allowed is a number of lines from 1 to 1048576", problems);
        var services = new ServiceCollection().AddRamaAccessLog(new AccessLogOptions { Destination = "OFF" }).BuildServiceProvider();
        Assert.Same(AccessLogs.Off, services.GetRequiredService<IAccessLog>());
    }

    /// <summary>A destination whose writes never complete.</summary>
    private sealed class BlockedStream : Stream
    {
        private readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task FirstWrite => _first.Task;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            _first.TrySetResult();
            return new ValueTask(new TaskCompletionSource().Task);
        }

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a blocked destination is written asynchronously");

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private sealed class ListLogger : ILogger
    {
        public sealed record Entry(int EventId, LogLevel Level, string Message);

        public ConcurrentQueue<Entry> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue(new Entry(eventId.Id, logLevel, formatter(state, exception)));
    }
}
