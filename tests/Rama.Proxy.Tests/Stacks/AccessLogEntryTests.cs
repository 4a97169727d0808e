using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Tests.Stacks;

/// <summary>The access entries of the stacks (issue 11, item 6): one per request and one per tunnel, with their fields.</summary>
public sealed class AccessLogEntryTests
{
    private sealed class RecordingAccessLog : IAccessLog
    {
        public ConcurrentQueue<AccessLogEntry> Entries { get; } = new();

        public bool IsEnabled => true;

        public void Write(in AccessLogEntry entry) => Entries.Enqueue(entry);
    }

    private static readonly ForwardProxyOptions Options = new() { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } };

    private static StaticProxyAuthenticator Alice() => new([new KeyValuePair<string, string>("alice", "pw")]);

    [Fact]
    public async Task An_absolute_form_request_is_one_forward_entry_with_user_client_status_and_bytes()
    {
        var log = new RecordingAccessLog();
        await using var origin = TinyHttpOrigin.Start("hello");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice(), accessLog: log.ForListener("edge")));
        var before = DateTimeOffset.UtcNow;

        var result = await Cli.CurlAsync("-x", proxy.Url, "-U", "alice:pw", "--data-binary", "12345", $"http://127.0.0.1:{origin.Port}/hello?x=1");

        Assert.Equal("hello", result.Text);
        await Eventually.TrueAsync(() => !log.Entries.IsEmpty);
        var entry = Assert.Single(log.Entries);
        Assert.Equal(AccessKind.Forward, entry.Kind);
        Assert.Equal("POST", entry.Method);
        Assert.Equal($"http://127.0.0.1:{origin.Port}/hello?x=1", entry.Target);
        Assert.Equal(200, entry.Status);
        Assert.Equal("alice", entry.User);
        Assert.Equal("edge", entry.Listener);
        Assert.Equal(IPAddress.Loopback, entry.Client!.Address);
        Assert.Equal(5, entry.BytesFromClient);
        Assert.Equal("hello".Length, entry.BytesToClient); // the response body
        Assert.True(entry.ConnectionId > 0);
        Assert.InRange(entry.Time, before, DateTimeOffset.UtcNow);
        Assert.True(entry.Duration > TimeSpan.Zero);
        Assert.Null(entry.Upstream);
    }

    [Fact]
    public async Task A_connect_tunnel_is_one_entry_when_it_ends_with_the_bytes_both_ways()
    {
        var log = new RecordingAccessLog();
        await using var origin = TinyHttpOrigin.Start("through the tunnel");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice(), accessLog: log));

        var result = await Cli.CurlAsync("-p", "-x", proxy.Url, "-U", "alice:pw", $"http://127.0.0.1:{origin.Port}/");

        Assert.Equal("through the tunnel", result.Text);
        await proxy.AssertNoOpenConnectionsAsync();
        var entry = Assert.Single(log.Entries);
        Assert.Equal(AccessKind.Connect, entry.Kind);
        Assert.Equal("CONNECT", entry.Method);
        Assert.Equal($"127.0.0.1:{origin.Port}", entry.Target);
        Assert.Equal(200, entry.Status);
        Assert.Equal("alice", entry.User);
        Assert.True(entry.BytesFromClient > "GET / HTTP/1.1\r\n".Length, $"up: {entry.BytesFromClient}");
        Assert.True(entry.BytesToClient > "through the tunnel".Length, $"down: {entry.BytesToClient}");
    }

    [Fact]
    public async Task A_refused_connect_is_one_entry_with_its_status()
    {
        var log = new RecordingAccessLog();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None, accessLog: log));

        var result = await Cli.CurlAsync("-p", "-x", proxy.Url, "-w", "%{http_connect}", "-o", "/dev/null", $"http://127.0.0.1:{Ports.Refused()}/");

        Assert.Equal("502", result.Text);
        await Eventually.TrueAsync(() => !log.Entries.IsEmpty);
        var entry = Assert.Single(log.Entries);
        Assert.Equal((AccessKind.Connect, 502, (string?)null), (entry.Kind, entry.Status, entry.User));
    }

    [Fact]
    public async Task A_socks5_tunnel_is_one_entry_with_target_reply_and_bytes_and_a_refused_one_carries_its_reply_code()
    {
        var log = new RecordingAccessLog();
        await using var origin = TinyHttpOrigin.Start("socks");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice(), accessLog: log));

        var result = await Cli.CurlAsync("--socks5", $"alice:pw@127.0.0.1:{proxy.Port}", $"http://127.0.0.1:{origin.Port}/");
        Assert.Equal("socks", result.Text);
        await proxy.AssertNoOpenConnectionsAsync();
        var entry = Assert.Single(log.Entries);
        Assert.Equal(AccessKind.Socks5, entry.Kind);
        Assert.Equal("CONNECT", entry.Method);
        Assert.Null(entry.Target);
        Assert.Equal(new HostPort("127.0.0.1", origin.Port), entry.Authority);
        Assert.Equal($"127.0.0.1:{origin.Port}", entry.TargetText);
        Assert.Equal(0, entry.Status);
        Assert.Equal("alice", entry.User);
        Assert.True(entry.BytesFromClient > 0 && entry.BytesToClient > "socks".Length);

        var refused = Ports.Refused();
        await Cli.CurlAsync("--socks5", $"alice:pw@127.0.0.1:{proxy.Port}", $"http://127.0.0.1:{refused}/");
        await Eventually.TrueAsync(() => log.Entries.Count == 2);
        var second = log.Entries.Last();
        Assert.Equal((AccessKind.Socks5, (int)Rama.Proxy.Socks5.Socks5Reply.ConnectionRefused, 0L), (second.Kind, second.Status, second.BytesToClient));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Sockets)]
    [InlineData(ReverseProxyTransport.Auto)] // the epoll loops on Linux x86-64
    public async Task Each_reverse_proxied_request_is_one_reverse_entry(ReverseProxyTransport transport)
    {
        var log = new RecordingAccessLog();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ReverseProxyStack.Create(Options with { ReverseTransport = transport }, new HostPort("127.0.0.1", origin.Port), accessLog: log));

        var result = await Cli.CurlAsync("-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} ", $"{proxy.Url}/one", $"{proxy.Url}/two");

        Assert.Equal("200 200 ", result.Text);
        await Eventually.TrueAsync(() => log.Entries.Count == 2);
        Assert.Equal(["/one", "/two"], log.Entries.Select(e => e.Target));
        Assert.All(log.Entries, e => Assert.Equal((AccessKind.Reverse, "GET", 200), (e.Kind, e.Method, e.Status)));
        Assert.All(log.Entries, e => Assert.Equal(("hello".Length, 0L, true), (e.BytesToClient, e.BytesFromClient, e.Client is not null)));

        // No late entry for those two (e.g. another at connection close): the next request's entry is the third.
        Assert.Equal("200", (await Cli.CurlAsync("-o", "/dev/null", "-w", "%{http_code}", $"{proxy.Url}/three")).Text);
        await Eventually.TrueAsync(() => log.Entries.Count >= 3);
        Assert.Equal(["/one", "/two", "/three"], log.Entries.Select(e => e.Target));
    }

    [Fact]
    public async Task Without_a_sink_the_stacks_write_the_access_lines_of_before_through_the_logger()
    {
        var lines = new ListLoggerProvider();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(lines).SetMinimumLevel(LogLevel.Information));
        await using var origin = TinyHttpOrigin.Start("logged");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice(), loggers));

        await Cli.CurlAsync("-x", proxy.Url, "-U", "alice:pw", $"http://127.0.0.1:{origin.Port}/a");
        await Cli.CurlAsync("--socks5", $"alice:pw@127.0.0.1:{proxy.Port}", $"http://127.0.0.1:{origin.Port}/b");

        await Eventually.TrueAsync(() => lines.Entries.Any(e => e.EventId.Id == 3003));
        var http = Assert.Single(lines.Entries, e => e.EventId.Id == 2001);
        Assert.Equal("Rama.Proxy.Http.AccessLog", http.Category);
        Assert.StartsWith($"GET http://127.0.0.1:{origin.Port}/a 200 ", http.Message, StringComparison.Ordinal);
        Assert.Contains("user=alice", http.Message, StringComparison.Ordinal);
        var socks = Assert.Single(lines.Entries, e => e.EventId.Id == 3003);
        Assert.Contains($"user=alice CONNECT 127.0.0.1:{origin.Port} up=", socks.Message, StringComparison.Ordinal);
    }
}
