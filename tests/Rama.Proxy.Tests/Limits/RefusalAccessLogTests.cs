using System.Net;
using System.Net.Sockets;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;
using Rama.Testing;
using RecordingAccessLog = Rama.Proxy.Tests.Limits.Http2LimitTests.RecordingAccessLog;

namespace Rama.Proxy.Tests.Limits;

/// <summary>
/// Every refusal by a limit is an access-log entry with its status and its reason, like any other answer: a listener's
/// connection limit (HTTP 503, HTTP/2 503, SOCKS5 reply 1, the TLS alert as 503), the per-address limit, a user's rate
/// (429, SOCKS5 reply 2) and the body limit (413), each driven by curl.
/// </summary>
public sealed class RefusalAccessLogTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static async Task<AccessLogEntry> EntryAsync(RecordingAccessLog log, Func<AccessLogEntry, bool> match)
    {
        await Eventually.TrueAsync(() => log.Entries.Any(match), Bound);
        return log.Entries.Single(match);
    }

    [Fact]
    public async Task Connection_limit_refusals_are_logged_with_their_answer_and_the_limit()
    {
        using var pki = new TestPki();
        var leaf = pki.Issue("localhost", false, "localhost", "127.0.0.1");
        var log = new RecordingAccessLog();
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None,
            extras: new ForwardProxyExtras { Https = new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(leaf.Cert, leaf.Key) } });
        await using var ownedStack = (IAsyncDisposable)stack;
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0), new TcpServerOptions { Name = "edge", MaxConnections = 1, Refused = RefusalAccessLog.For(log) });
        server.Start(stack);
        using var held = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await held.ConnectAsync(server.LocalEndPoint);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);
        const string reason = "listener 'edge' is at its limit of 1 connections";

        var http = await Curl.RunAsync("-sS", "-x", $"http://{server.LocalEndPoint}", "http://127.0.0.1:9/");
        var entry = await EntryAsync(log, e => e.Kind == AccessKind.Http && e.Protocol is null);
        Assert.Equal((503, reason, (string?)null), (entry.Status, entry.Reason, entry.Method));
        Assert.Equal(IPAddress.Loopback, entry.Client?.Address);

        await Curl.RunAsync("-sS", "--http2-prior-knowledge", $"http://{server.LocalEndPoint}/");
        entry = await EntryAsync(log, e => e.Protocol == "HTTP/2");
        Assert.Equal((AccessKind.Http, 503, reason), (entry.Kind, entry.Status, entry.Reason));

        var (socksCode, _, socksError) = await Curl.RunAsync("-sS", "--socks5", server.LocalEndPoint.ToString(), "http://127.0.0.1:9/");
        Assert.True(socksCode == 97, socksError);
        entry = await EntryAsync(log, e => e.Kind == AccessKind.Socks5);
        Assert.Equal((1, reason), (entry.Status, entry.Reason));

        var (tlsCode, _, tlsError) = await Curl.RunAsync("-sS", "-k", $"https://127.0.0.1:{server.LocalEndPoint.Port}/");
        Assert.True(tlsCode == 35, tlsError);
        entry = await EntryAsync(log, e => e.Kind == AccessKind.Tls);
        Assert.Equal((503, reason), (entry.Status, entry.Reason));
        Assert.Equal(4, log.Entries.Count);
        Assert.True(http.ExitCode == 0, http.Stderr);
    }

    [Fact]
    public async Task Per_address_refusal_is_logged_with_the_address_limit()
    {
        var log = new RecordingAccessLog();
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions(), StaticProxyAuthenticator.None);
        await using var ownedStack = (IAsyncDisposable)stack;
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0), new TcpServerOptions { Name = "edge", MaxConnectionsPerIp = 1, Refused = RefusalAccessLog.For(log) });
        server.Start(stack);
        using var held = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await held.ConnectAsync(server.LocalEndPoint);
        await Eventually.TrueAsync(() => server.OpenConnections == 1, Bound);

        var (code, stdout, stderr) = await Curl.RunAsync("-sS", "-i", "-x", $"http://{server.LocalEndPoint}", "http://127.0.0.1:9/");

        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 503", stdout, StringComparison.Ordinal);
        var entry = await EntryAsync(log, _ => true);
        Assert.Equal((AccessKind.Http, 503, "client 127.0.0.1 is at its limit of 1 connections on listener 'edge'"), (entry.Kind, entry.Status, entry.Reason));
    }

    [Fact]
    public async Task User_rate_refusals_are_logged_as_429_and_socks5_reply_2_with_the_rate()
    {
        await using var origin = new TestOrigin();
        var log = new RecordingAccessLog();
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions { Limits = new LimitOptions { UserRates = ["john=1/m"] } },
            new StaticProxyAuthenticator([new("john", "pw")]), extras: new ForwardProxyExtras { Limiter = new LocalConcurrencyLimiter() }, accessLog: log);
        await using var ownedStack = (IAsyncDisposable)stack;
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(stack);
        const string reason = "user john is over its rate of 1/m new requests";

        var (code, _, stderr) = await Curl.RunAsync("-sS", "-f", "-U", "john:pw", "-x", $"http://{server.LocalEndPoint}", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        (code, var stdout, stderr) = await Curl.RunAsync("-sS", "-i", "-U", "john:pw", "-x", $"http://{server.LocalEndPoint}", origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 429", stdout, StringComparison.Ordinal);
        (code, _, _) = await Curl.RunAsync("-sS", "-x", $"socks5://john:pw@{server.LocalEndPoint}", origin.Url("/hello"));
        Assert.Equal(97, code);

        var ok = await EntryAsync(log, e => e.Status == 200);
        Assert.Null(ok.Reason); // an ordinary answer has none
        var http = await EntryAsync(log, e => e.Status == 429);
        Assert.Equal((AccessKind.Forward, "john", reason), (http.Kind, http.User, http.Reason));
        var socks = await EntryAsync(log, e => e.Kind == AccessKind.Socks5);
        Assert.Equal((2, "john", reason), (socks.Status, socks.User, socks.Reason));
    }

    [Fact]
    public async Task Body_limit_refusal_over_http1_is_logged_as_413_with_the_sizes()
    {
        await using var origin = new TestOrigin();
        var log = new RecordingAccessLog();
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions { Http = new HttpProxyOptions { Limits = new HttpLimits { MaxRequestBodySize = 1024 } } },
            StaticProxyAuthenticator.None, accessLog: log);
        await using var ownedStack = (IAsyncDisposable)stack;
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(stack);

        var body = Path.Combine(Path.GetTempPath(), $"rama-413-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(body, new byte[5000]);
        (int Code, string Stdout, string Stderr) result;
        try
        {
            result = await Curl.RunAsync("-sS", "-i", "-x", $"http://{server.LocalEndPoint}", "--data-binary", "@" + body, origin.Url("/upload"));
        }
        finally
        {
            File.Delete(body);
        }

        var entry = await EntryAsync(log, _ => true);
        Assert.True(result.Code == 0, result.Stderr);
        Assert.StartsWith("HTTP/1.1 413", result.Stdout, StringComparison.Ordinal);
        Assert.Equal((AccessKind.Forward, "POST", origin.Url("/upload"), 413), (entry.Kind, entry.Method, entry.Target, entry.Status));
        Assert.Equal("Content Too Large: the request body of 5000 bytes is larger than the limit of 1024 bytes", entry.Reason);
        Assert.Empty(origin.Requests);
    }
}
