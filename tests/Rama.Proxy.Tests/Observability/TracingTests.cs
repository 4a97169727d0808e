using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Rama.Proxy.Core;
using System.Text.Json;
using Rama.Proxy.Http;
using Rama.Proxy.Mitm;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.Proxy.Tests.Observability;

/// <summary>
/// Listeners on an <see cref="ActivitySource"/> are process-wide: the tracing tests run alone, so no other test's spans
/// (or traceparent rewriting) mix with theirs, and "tracing off" really has no listener.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TracingCollection
{
    public const string Name = "Tracing (process-wide ActivityListener)";
}

/// <summary>
/// The spans of the <c>Rama.Proxy</c> source (issue 15 item 2) after real requests through the real stacks with curl as the
/// client: one server span per request and per tunnel with its attributes, and W3C traceparent propagation to the origin.
/// </summary>
[Collection(TracingCollection.Name)]
public sealed class TracingTests
{
    private const string ClientTraceId = "0af7651916cd43dd8448eb211c80319c";
    private const string ClientSpanId = "b7ad6b7169203331";
    private const string ClientTraceParent = $"00-{ClientTraceId}-{ClientSpanId}-01";
    private const string ClientTraceState = "vendor=abc,other=1";

    private static readonly ForwardProxyOptions Options = new() { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } };

    private static StaticProxyAuthenticator Alice() => new([new KeyValuePair<string, string>("alice", "pw")]);

    /// <summary>Records every span of Rama.Proxy that ends, sampled and recorded.</summary>
    private sealed class SpanRecorder : IDisposable
    {
        private readonly ActivityListener _listener;

        public SpanRecorder(ActivitySamplingResult sampling = ActivitySamplingResult.AllDataAndRecorded)
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = source => source.Name == ProxyTracing.SourceName,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => sampling,
                ActivityStopped = Stopped.Enqueue,
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public ConcurrentQueue<Activity> Stopped { get; } = new();

        public async Task<Activity> SingleAsync(Func<Activity, bool> match)
        {
            await Eventually.TrueAsync(() => Stopped.Any(match), because: "the span did not end");
            return Assert.Single(Stopped, a => match(a));
        }

        public void Dispose() => _listener.Dispose();
    }

    private static object? Tag(Activity activity, string name) => activity.GetTagItem(name);

    [Fact]
    public async Task A_forward_request_is_a_server_span_with_its_attributes_and_the_origin_sees_rama_as_the_parent()
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ProxyTracing.ForListener("edge", ForwardProxyStack.Create(Options, Alice())));
        var url = origin.Url("/hello?x=1");

        var result = await Cli.CurlAsync("-x", proxy.Url, "-U", "alice:pw", "-A", "curl-tracing", "-H", "traceparent: " + ClientTraceParent,
            "-H", "tracestate: " + ClientTraceState, url);

        Assert.Equal("hello", result.Text);
        var span = await spans.SingleAsync(a => Equals(Tag(a, "url.full"), url));
        Assert.Equal(ActivityKind.Server, span.Kind);
        Assert.Equal("GET", span.DisplayName);
        Assert.Equal(ClientTraceId, span.TraceId.ToHexString());
        Assert.Equal(ClientSpanId, span.ParentSpanId.ToHexString());
        Assert.True(span.HasRemoteParent);
        Assert.Equal(ClientTraceState, span.TraceStateString);
        Assert.Equal("GET", Tag(span, "http.request.method"));
        Assert.Equal("127.0.0.1", Tag(span, "server.address"));
        Assert.Equal(origin.Port, Tag(span, "server.port"));
        Assert.Equal(200, Tag(span, "http.response.status_code"));
        Assert.Equal("1.1", Tag(span, "network.protocol.version"));
        Assert.Equal("127.0.0.1", Tag(span, "client.address"));
        Assert.Equal("alice", Tag(span, "rama.user"));
        Assert.Equal("forward", Tag(span, "rama.kind"));
        Assert.Equal("edge", Tag(span, "rama.listener"));
        Assert.Equal("curl-tracing", Tag(span, "user_agent.original"));
        Assert.Matches("^ge11[cn][rn]\\d{2}[a-z0-9]{4}_[0-9a-f]{12}_", (string)Tag(span, "rama.fingerprint.ja4h")!);
        Assert.Null(Tag(span, "rama.upstream"));
        Assert.Null(Tag(span, "error.type"));
        Assert.Equal(ActivityStatusCode.Unset, span.Status);

        // W3C Trace Context: the origin's parent is Rama's span, in the client's trace, with the client's tracestate.
        var seen = Assert.Single(origin.Requests);
        Assert.Equal($"00-{ClientTraceId}-{span.SpanId.ToHexString()}-01", seen.Header("traceparent"));
        Assert.Single(seen.HeaderLines, l => l.StartsWith("traceparent:", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(ClientTraceState, seen.Header("tracestate"));
        await proxy.AssertNoOpenConnectionsAsync();
    }

    [Fact]
    public async Task A_request_without_traceparent_starts_a_trace_and_the_origin_gets_one()
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));

        Assert.Equal("hello", (await Cli.CurlAsync("-x", proxy.Url, origin.Url("/root"))).Text);

        var span = await spans.SingleAsync(a => Equals(Tag(a, "url.full"), origin.Url("/root")));
        Assert.Equal(default, span.ParentSpanId);
        Assert.Equal($"00-{span.TraceId.ToHexString()}-{span.SpanId.ToHexString()}-01", Assert.Single(origin.Requests).Header("traceparent"));
    }

    [Fact]
    public async Task A_connect_tunnel_is_one_span_that_ends_with_the_tunnel_and_the_tunnelled_bytes_are_untouched()
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice()));

        var result = await Cli.CurlAsync("-p", "-x", proxy.Url, "-U", "alice:pw", "-H", "traceparent: " + ClientTraceParent, origin.Url("/tunnelled"));

        Assert.Equal("hello", result.Text);
        await proxy.AssertNoOpenConnectionsAsync(); // the tunnel is closed: its span has ended
        var span = Assert.Single(spans.Stopped, a => Equals(Tag(a, "rama.kind"), "connect"));
        Assert.Equal((ActivityKind.Server, "CONNECT"), (span.Kind, span.DisplayName));
        Assert.Equal(default, span.ParentSpanId); // curl's CONNECT carries no traceparent: -H goes to the origin, inside the tunnel
        Assert.Equal("CONNECT", Tag(span, "http.request.method"));
        Assert.Equal(("127.0.0.1", origin.Port), (Tag(span, "server.address"), Tag(span, "server.port")));
        Assert.Equal(200, Tag(span, "http.response.status_code"));
        Assert.Equal("alice", Tag(span, "rama.user"));
        Assert.Equal(ClientTraceParent, Assert.Single(origin.Requests).Header("traceparent")); // bytes in a tunnel are the client's
    }

    [Fact]
    public async Task A_socks5_tunnel_is_one_span_with_target_user_and_reply_and_a_refused_one_is_an_error()
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice()));

        Assert.Equal("hello", (await Cli.CurlAsync("--socks5", $"alice:pw@127.0.0.1:{proxy.Port}", origin.Url("/"))).Text);
        await proxy.AssertNoOpenConnectionsAsync();
        var span = Assert.Single(spans.Stopped);
        Assert.Equal((ActivityKind.Server, "SOCKS5 CONNECT", "socks5"), (span.Kind, span.DisplayName, Tag(span, "rama.kind")));
        Assert.Equal(("127.0.0.1", origin.Port, 0), (Tag(span, "server.address"), Tag(span, "server.port"), Tag(span, "rama.socks5.reply")));
        Assert.Equal(("alice", "127.0.0.1"), (Tag(span, "rama.user"), Tag(span, "client.address")));
        Assert.Equal(ActivityStatusCode.Unset, span.Status);

        var refused = Ports.Refused();
        await Cli.CurlAsync("--socks5", $"alice:pw@127.0.0.1:{proxy.Port}", $"http://127.0.0.1:{refused}/");
        var failed = await spans.SingleAsync(a => Equals(Tag(a, "server.port"), refused));
        Assert.Equal((int)Rama.Proxy.Socks5.Socks5Reply.ConnectionRefused, Tag(failed, "rama.socks5.reply"));
        Assert.Equal(ActivityStatusCode.Error, failed.Status);
        Assert.Equal("socks5_reply_5", Tag(failed, "error.type"));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Sockets)]
    [InlineData(ReverseProxyTransport.Auto)] // the epoll loops on Linux x86-64: a traced connection is served by the pipe stack
    public async Task A_reverse_request_continues_the_clients_trace_to_the_origin(ReverseProxyTransport transport)
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ReverseProxyStack.Create(Options with { ReverseTransport = transport }, new HostPort("127.0.0.1", origin.Port)));

        var result = await Cli.CurlAsync("-H", "traceparent: " + ClientTraceParent, "-H", "tracestate: " + ClientTraceState, $"{proxy.Url}/api/items?page=2");

        Assert.Equal("hello", result.Text);
        var span = await spans.SingleAsync(a => Equals(Tag(a, "url.path"), "/api/items"));
        Assert.Equal((ActivityKind.Server, "reverse", "page=2"), (span.Kind, Tag(span, "rama.kind"), Tag(span, "url.query")));
        Assert.Equal(("127.0.0.1", proxy.Port, 200), (Tag(span, "server.address"), Tag(span, "server.port"), Tag(span, "http.response.status_code")));
        Assert.Equal(ClientTraceId, span.TraceId.ToHexString());
        Assert.Equal(ClientSpanId, span.ParentSpanId.ToHexString());

        var traceparent = Assert.Single(origin.Requests).Header("traceparent")!;
        var parts = traceparent.Split('-');
        Assert.Equal(ClientTraceId, parts[1]); // the client's trace
        Assert.Equal(span.SpanId.ToHexString(), parts[2]); // whose parent, for the origin, is Rama's span
        Assert.NotEqual(ClientSpanId, parts[2]);
        Assert.Equal(ClientTraceState, Assert.Single(origin.Requests).Header("tracestate"));
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Sockets)]
    [InlineData(ReverseProxyTransport.Auto)]
    public async Task Without_tracing_the_clients_traceparent_reaches_the_origin_unchanged(ReverseProxyTransport transport)
    {
        Assert.False(ProxyTracing.IsEnabled); // nobody listens: the default
        await using var origin = new TestOrigin();
        await using var reverse = new ProxyHarness(ReverseProxyStack.Create(Options with { ReverseTransport = transport }, new HostPort("127.0.0.1", origin.Port)));
        await using var forward = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));

        Assert.Equal("hello", (await Cli.CurlAsync("-H", "traceparent: " + ClientTraceParent, "-H", "tracestate: " + ClientTraceState, $"{reverse.Url}/r")).Text);
        Assert.Equal("hello", (await Cli.CurlAsync("-x", forward.Url, "-H", "traceparent: " + ClientTraceParent, origin.Url("/f"))).Text);

        Assert.Equal(2, origin.Requests.Count);
        Assert.All(origin.Requests, r => Assert.Equal(ClientTraceParent, r.Header("traceparent")));
        Assert.Equal(ClientTraceState, origin.Requests.First().Header("tracestate"));
    }

    [Fact]
    public async Task A_span_the_sampler_drops_leaves_the_request_untouched()
    {
        using var spans = new SpanRecorder(ActivitySamplingResult.None);
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));

        Assert.Equal("hello", (await Cli.CurlAsync("-x", proxy.Url, "-H", "traceparent: " + ClientTraceParent, origin.Url("/dropped"))).Text);

        Assert.Equal(ClientTraceParent, Assert.Single(origin.Requests).Header("traceparent"));
        Assert.Empty(spans.Stopped);
    }

    [Fact]
    public async Task An_http2_request_is_a_span_with_protocol_2_and_the_akamai_fingerprint()
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ReverseProxyStack.Create(Options with { ReverseTransport = ReverseProxyTransport.Sockets },
            new HostPort("127.0.0.1", origin.Port)));

        var result = await Cli.CurlAsync("--http2-prior-knowledge", "-H", "traceparent: " + ClientTraceParent, $"{proxy.Url}/h2");

        Assert.Equal("hello", result.Text);
        var span = await spans.SingleAsync(a => Equals(Tag(a, "url.path"), "/h2"));
        Assert.Equal("2", Tag(span, "network.protocol.version"));
        Assert.Matches(@"^[0-9:;]+\|\d+\|[^|]*\|[masp,]+$", (string)Tag(span, "rama.fingerprint.akamai")!);
        Assert.Equal(200, Tag(span, "http.response.status_code"));
        Assert.Equal(ClientTraceId, span.TraceId.ToHexString());
        Assert.Equal($"00-{ClientTraceId}-{span.SpanId.ToHexString()}-01", Assert.Single(origin.Requests).Header("traceparent"));
    }

    [Fact]
    public async Task A_request_through_an_upstream_proxy_names_the_upstream_and_the_base_user_and_a_502_is_an_error()
    {
        using var spans = new SpanRecorder();
        await using var origin = new TestOrigin();
        var upstream = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using var upstreamOwner = upstream;
        upstream.Start(HttpProxy.CreateForwardProxy(new HttpProxyOptions(), new TcpConnector(), StaticProxyAuthenticator.None));
        var db = ProxyDatabase.Create([Upstream.UpstreamConnectorTests.Record("up1", "1,0,1,0,0,0,0,1,0", $"127.0.0.1:{upstream.LocalEndPoint.Port}", null)]);
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, Alice(), proxyDatabase: db));

        var result = await Cli.CurlAsync("-x", proxy.Url, "-U", "alice-country-us:pw", origin.Url("/via-upstream"));

        Assert.Equal("hello", result.Text);
        var ours = await spans.SingleAsync(a => Equals(Tag(a, "url.full"), origin.Url("/via-upstream")));
        Assert.Equal(("up1", "alice", 200), (Tag(ours, "rama.upstream"), Tag(ours, "rama.user"), Tag(ours, "http.response.status_code")));
        // Through the upstream too, the origin's parent is Rama's span.
        Assert.Equal($"00-{ours.TraceId.ToHexString()}-{ours.SpanId.ToHexString()}-01", Assert.Single(origin.Requests).Header("traceparent"));

        var refused = Ports.Refused();
        var failed = await Cli.CurlAsync("-x", proxy.Url, "-U", "alice:pw", "-o", "/dev/null", "-w", "%{http_code}", $"http://127.0.0.1:{refused}/");
        Assert.Equal("502", failed.Text);
        var error = await spans.SingleAsync(a => Equals(Tag(a, "server.port"), refused) && Equals(Tag(a, "rama.kind"), "forward"));
        Assert.Equal((502, "502", ActivityStatusCode.Error), (Tag(error, "http.response.status_code"), Tag(error, "error.type"), error.Status));
    }

    [Fact]
    public async Task A_mitm_decrypted_request_is_its_own_span_inside_the_tunnels_and_the_origin_sees_rama_as_the_parent()
    {
        using var pki = new TestPki();
        var (cert, key) = pki.Issue("localhost", false, "localhost", "127.0.0.1");
        using var spans = new SpanRecorder();
        await using var origin = new ProxyHarness(TlsStacks.Echo(new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(cert, key) }));
        using var authority = MitmAuthority.Create();
        var caFile = Path.Combine(pki.Directory, "mitm-ca.pem");
        File.WriteAllText(caFile, authority.ExportCertificatePem());
        var mitm = new MitmTunnel(new MitmOptions { Authority = authority, Upstream = new TlsClientOptions { ExtraTrustedRoots = TlsFiles.LoadAuthorities(pki.CaFile) } });
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Tunnel = mitm }));
        var url = $"https://localhost:{origin.Port}/decrypted?x=1";

        var result = await Cli.CurlAsync("--proxy", proxy.Url, "--cacert", caFile, "--http1.1", "-H", "traceparent: " + ClientTraceParent, url);

        Assert.True(result.ExitCode == 0, result.Stderr);
        await proxy.AssertNoOpenConnectionsAsync();
        var decrypted = await spans.SingleAsync(a => Equals(Tag(a, "rama.kind"), "mitm"));
        Assert.Equal((ActivityKind.Server, "GET", url), (decrypted.Kind, decrypted.DisplayName, Tag(decrypted, "url.full")));
        Assert.Equal(("/decrypted", "https", 200), (Tag(decrypted, "url.path"), Tag(decrypted, "url.scheme"), Tag(decrypted, "http.response.status_code")));
        Assert.Matches("^t1[23]d", (string)Tag(decrypted, "rama.fingerprint.ja4")!); // curl's ClientHello, captured by the MITM's TLS server
        Assert.Equal((ClientTraceId, ClientSpanId), (decrypted.TraceId.ToHexString(), decrypted.ParentSpanId.ToHexString()));
        var tunnel = Assert.Single(spans.Stopped, a => Equals(Tag(a, "rama.kind"), "connect"));
        Assert.Equal(("localhost", origin.Port), (Tag(tunnel, "server.address"), Tag(tunnel, "server.port")));
        Assert.True(tunnel.StartTimeUtc <= decrypted.StartTimeUtc && tunnel.StartTimeUtc + tunnel.Duration >= decrypted.StartTimeUtc + decrypted.Duration,
            "the tunnel's span covers the request decrypted in it");

        using var echoed = JsonDocument.Parse(result.Text);
        var traceparent = echoed.RootElement.GetProperty("headers").EnumerateArray().Single(h => h[0].GetString() == "traceparent")[1].GetString();
        Assert.Equal($"00-{ClientTraceId}-{decrypted.SpanId.ToHexString()}-01", traceparent);
    }

    [Fact]
    public async Task The_listener_name_wrapper_keeps_the_epoll_transport_of_its_stack()
    {
        var plain = Service.FromFunc<ConnectionContext, Unit>((_, _) => ValueTask.FromResult(Unit.Value));
        Assert.IsNotAssignableFrom<ISocketTransportService>(ProxyTracing.ForListener("a", plain));
        var named = ProxyTracing.ForListener("b", ReverseProxyStack.Create(Options with { ReverseTransport = ReverseProxyTransport.Auto }, new HostPort("127.0.0.1", 9)));
        Assert.Equal(Rama.Proxy.Http.EpollReverseProxy.IsSupported, named is ISocketTransportService);
        await ((IAsyncDisposable)named).DisposeAsync(); // and disposes the stack it names
    }
}
