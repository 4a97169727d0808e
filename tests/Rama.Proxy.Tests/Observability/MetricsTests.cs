using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using Rama.Proxy.Core;
using Rama.Proxy.Mitm;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;
using Rama.Testing;

namespace Rama.Proxy.Tests.Observability;

/// <summary>Runs alone: meter Rama.Proxy is process-wide, so requests of tests running beside these would be counted too.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MetricsCollection
{
    public const string Name = "metrics (alone)";
}

/// <summary>
/// The instruments of meter Rama.Proxy, collected with a <see cref="MeterListener"/> after real proxied traffic through
/// real stacks on loopback (curl and openssl as clients): a forward request, a CONNECT tunnel, a refused connection,
/// a TLS handshake failure.
/// </summary>
[Collection(MetricsCollection.Name)]
public sealed class MetricsTests : IDisposable
{
    private static readonly ForwardProxyOptions Options = new() { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } };
    private readonly Recorder _recorder = new();

    public void Dispose() => _recorder.Dispose();

    [Fact]
    public async Task A_forward_request_counts_the_connection_the_request_its_duration_and_its_bytes()
    {
        await using var origin = TinyHttpOrigin.Start("hello");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));
        var listener = $"127.0.0.1:{proxy.Port}";

        var result = await Cli.CurlAsync("-x", proxy.Url, "--data-binary", "12345", $"http://127.0.0.1:{origin.Port}/hello");

        Assert.Equal("hello", result.Text);
        await proxy.AssertNoOpenConnectionsAsync();
        await Eventually.TrueAsync(() => _recorder.Recorded("rama.listener.connection.duration", ("rama.listener", listener)) == 1, because: "no connection duration");
        Assert.Equal(1, _recorder.Sum("rama.listener.accepted_connections", ("rama.listener", listener), ("server.address", "127.0.0.1"), ("server.port", proxy.Port)));
        Assert.Equal(0, _recorder.Sum("rama.listener.active_connections", ("rama.listener", listener))); // +1 then -1
        Assert.Equal(1, _recorder.Count("rama.listener.active_connections", ("rama.listener", listener), value: 1));
        Assert.Equal(1, _recorder.Sum("rama.proxy.requests", ("rama.proxy.kind", "forward"), ("rama.http.status_class", "2xx"), ("network.protocol.version", "1.1")));
        var duration = Assert.Single(_recorder.Of("http.server.request.duration"));
        Assert.Equal((object?)"POST", duration.Tags["http.request.method"]);
        Assert.Equal((object?)200, duration.Tags["http.response.status_code"]);
        Assert.Equal((object?)"1.1", duration.Tags["network.protocol.version"]);
        Assert.InRange(duration.Value, 0, 10);
        Assert.Equal(5, _recorder.Sum("rama.proxy.io", ("network.io.direction", "receive"), ("rama.proxy.kind", "forward")));
        Assert.Equal("hello".Length, _recorder.Sum("rama.proxy.io", ("network.io.direction", "transmit"), ("rama.proxy.kind", "forward")));
    }

    [Fact]
    public async Task A_connect_tunnel_is_open_while_it_runs_and_counted_with_its_duration_when_it_ends()
    {
        await using var origin = TinyHttpOrigin.Start("through the tunnel");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));

        var result = await Cli.CurlAsync("-p", "-x", proxy.Url, $"http://127.0.0.1:{origin.Port}/");

        Assert.Equal("through the tunnel", result.Text);
        await proxy.AssertNoOpenConnectionsAsync();
        await Eventually.TrueAsync(() => _recorder.Sum("rama.proxy.requests", ("rama.proxy.kind", "connect")) == 1, because: "the CONNECT was not counted");
        Assert.Equal(1, _recorder.Count("rama.proxy.active_tunnels", ("rama.proxy.kind", "connect"), value: 1));
        Assert.Equal(0, _recorder.Sum("rama.proxy.active_tunnels", ("rama.proxy.kind", "connect")));
        Assert.Single(_recorder.Of("rama.proxy.tunnel.duration"), m => Equals(m.Tags["rama.proxy.kind"], "connect"));
        Assert.Equal(1, _recorder.Sum("rama.proxy.requests", ("rama.proxy.kind", "connect"), ("rama.http.status_class", "2xx")));
        // A tunnel's length is not a request duration.
        Assert.DoesNotContain(_recorder.Of("http.server.request.duration"), m => Equals(m.Tags["http.request.method"], "CONNECT"));
        Assert.True(_recorder.Sum("rama.proxy.io", ("network.io.direction", "transmit"), ("rama.proxy.kind", "connect")) > "through the tunnel".Length);
    }

    [Fact]
    public async Task A_connection_refused_for_its_proxy_header_is_a_rejected_connection_of_its_listener()
    {
        var options = new ProxyProtocolOptions { TrustedSources = [IPNetwork.Parse("127.0.0.0/8")], HeaderTimeout = TimeSpan.FromSeconds(5) };
        var inner = Service.FromFunc<ConnectionContext, Unit>((_, _) => ValueTask.FromResult(Unit.Value));
        await using var server = new ProxyHarness(new ProxyProtocolLayer(options).Layer(inner));
        var listener = $"127.0.0.1:{server.Port}";

        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Port), timeout.Token);
            await socket.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray(), timeout.Token); // a trusted source must send a PROXY header first
            try
            {
                Assert.Equal(0, await socket.ReceiveAsync(new byte[64], timeout.Token));
            }
            catch (SocketException)
            {
                // closed with a reset: refused either way
            }
        }

        await server.AssertNoOpenConnectionsAsync();
        await Eventually.TrueAsync(() => _recorder.Sum("rama.listener.rejected_connections", ("rama.listener", listener)) == 1, because: "no rejected connection");
        Assert.Equal(1, _recorder.Sum("rama.listener.rejected_connections", ("rama.listener", listener), ("error.type", "proxy_protocol")));
        Assert.Equal(1, _recorder.Sum("rama.listener.accepted_connections", ("rama.listener", listener)));
    }

    [Fact]
    public async Task A_tls_handshake_refused_for_its_server_name_is_a_failure_and_a_good_one_a_handshake()
    {
        using var pki = new TestPki();
        var cert = pki.Issue("a", false, "a.test");
        var tls = new TlsServerOptions
        {
            Certificates = new ServerCertificates { UnknownServerName = UnknownServerNamePolicy.Reject }.AddFiles(cert.Cert, cert.Key),
            ApplicationProtocols = ["http/1.1"],
            HandshakeTimeout = TimeSpan.FromSeconds(10),
        };
        await using var origin = RawOrigin.Echo();
        await using var server = new ProxyHarness(TlsStacks.Termination(tls, new TlsTerminationOptions { Upstream = new HostPort("127.0.0.1", origin.Port) }));

        var refused = await SClientAsync(server.Port, "unknown.test");
        var good = await SClientAsync(server.Port, "a.test");

        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("subject=CN = a.test", good.Text, StringComparison.Ordinal);
        await server.AssertNoOpenConnectionsAsync();
        Assert.Equal(1, _recorder.Sum("rama.tls.handshake_failures", ("error.type", nameof(TlsRejectReason.UnknownServerName))));
        Assert.Equal(1, _recorder.Sum("rama.tls.handshakes", ("tls.protocol.version", "1.3")));
    }

    // ---- rama.listener on request metrics: every server path carries the listener of its connection ------------------------

    /// <summary>The request count and durations of <paramref name="kind"/> carry <c>rama.listener</c> of <paramref name="port"/>'s listener: <paramref name="expected"/> of each.</summary>
    private async Task AssertRequestsOfListenerAsync(string kind, int port, string version, int expected)
    {
        var listener = $"127.0.0.1:{port}";
        await Eventually.TrueAsync(() => _recorder.Sum("rama.proxy.requests", ("rama.proxy.kind", kind), ("network.protocol.version", version)) >= expected, because: $"no {kind} request counted");
        Assert.Equal(expected, _recorder.Sum("rama.proxy.requests", ("rama.proxy.kind", kind), ("network.protocol.version", version), ("rama.listener", listener)));
        Assert.Equal(expected, _recorder.Recorded("http.server.request.duration", ("rama.proxy.kind", kind), ("network.protocol.version", version), ("rama.listener", listener)));
        Assert.DoesNotContain(_recorder.Of("rama.proxy.requests"), m => Equals(m.Tags["rama.proxy.kind"], kind) && !m.Tags.ContainsKey("rama.listener"));
    }

    [Fact]
    public async Task Forward_requests_carry_their_listener()
    {
        await using var origin = TinyHttpOrigin.Start("hello");
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None));

        for (var i = 0; i < 2; i++)
        {
            Assert.Equal("hello", (await Cli.CurlAsync("-x", proxy.Url, $"http://127.0.0.1:{origin.Port}/hello")).Text);
        }

        await AssertRequestsOfListenerAsync("forward", proxy.Port, "1.1", 2);
    }

    [Theory]
    [InlineData(ReverseProxyTransport.Sockets)]
    [InlineData(ReverseProxyTransport.Auto)] // the epoll loops on Linux x86-64
    public async Task Reverse_requests_carry_their_listener_on_either_transport(ReverseProxyTransport transport)
    {
        await using var origin = new TestOrigin();
        await using var proxy = new ProxyHarness(ReverseProxyStack.Create(Options with { ReverseTransport = transport }, new HostPort("127.0.0.1", origin.Port)));

        Assert.Equal("hello", (await Cli.CurlAsync($"{proxy.Url}/hello")).Text);

        await AssertRequestsOfListenerAsync("reverse", proxy.Port, "1.1", 1);
    }

    [Theory]
    [InlineData("--http1.1", "1.1")]
    [InlineData("--http2", "2")]
    public async Task Tls_terminated_requests_carry_their_listener_over_h1_and_h2(string curlVersion, string version)
    {
        using var pki = new TestPki();
        var localhost = pki.Issue("localhost", false, "localhost");
        await using var origin = new TestOrigin();
        var tls = new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(localhost.Cert, localhost.Key), ApplicationProtocols = ["http/1.1"] };
        await using var proxy = new ProxyHarness(TlsStacks.Termination(tls,
            new TlsTerminationOptions { Upstream = new HostPort("127.0.0.1", origin.Port), Mode = TerminationMode.Http }));

        var result = await Cli.CurlAsync(curlVersion, "--cacert", pki.CaFile, $"https://localhost:{proxy.Port}/hello");

        Assert.True(result.ExitCode == 0, result.Stderr);
        await AssertRequestsOfListenerAsync("tls", proxy.Port, version, 1);
    }

    [Theory]
    [InlineData("--http1.1", "1.1")]
    [InlineData("--http2", "2")]
    public async Task Mitm_decrypted_requests_carry_the_listener_of_their_tunnel(string curlVersion, string version)
    {
        using var pki = new TestPki();
        var localhost = pki.Issue("localhost", false, "localhost");
        var tls = new TlsServerOptions { Certificates = new ServerCertificates().AddFiles(localhost.Cert, localhost.Key), ApplicationProtocols = ["http/1.1"] };
        await using var origin = new ProxyHarness(TlsStacks.Echo(tls));
        using var authority = MitmAuthority.Create();
        var caFile = Path.Combine(pki.Directory, "mitm-ca.pem");
        File.WriteAllText(caFile, authority.ExportCertificatePem());
        var mitm = new MitmTunnel(new MitmOptions
        {
            Authority = authority,
            Upstream = new TlsClientOptions { ExtraTrustedRoots = TlsFiles.LoadAuthorities(pki.CaFile) },
        });
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(Options, StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Tunnel = mitm }));

        var result = await Cli.CurlAsync(curlVersion, "--proxy", proxy.Url, "--cacert", caFile, $"https://localhost:{origin.Port}/decrypted");

        Assert.True(result.ExitCode == 0, result.Stderr);
        await AssertRequestsOfListenerAsync("mitm", proxy.Port, version, 1);
    }

    private static Task<Cli.Result> SClientAsync(int port, string serverName) =>
        Cli.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-servername", serverName], TimeSpan.FromSeconds(20), stdin: []);

    /// <summary>Every measurement of meter Rama.Proxy while the test runs, with its tags.</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<Measured> _measurements = new();

        public Recorder()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == ProxyMetrics.MeterName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
            _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Add(instrument, value, tags));
            _listener.Start();
        }

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var copy = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            _measurements.Enqueue(new Measured(instrument.Name, value, copy));
        }

        public IReadOnlyList<Measured> Of(string name) => [.. _measurements.Where(m => m.Name == name)];

        private IEnumerable<Measured> Matching(string name, (string Key, object Value)[] tags) =>
            Of(name).Where(m => tags.All(t => m.Tags.TryGetValue(t.Key, out var v) && Equals(v, t.Value)));

        public double Sum(string name, params (string Key, object Value)[] tags) => Matching(name, tags).Sum(m => m.Value);

        public int Recorded(string name, params (string Key, object Value)[] tags) => Matching(name, tags).Count();

        public int Count(string name, (string Key, object Value) tag, double value) => Matching(name, [tag]).Count(m => m.Value == value);

        public void Dispose() => _listener.Dispose();
    }

    private sealed record Measured(string Name, double Value, Dictionary<string, object?> Tags);
}
