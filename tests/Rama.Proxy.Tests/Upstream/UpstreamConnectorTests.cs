using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;
using Rama.Proxy.Socks5;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.Proxy.Tests.Upstream;

/// <summary>The chaining connector against in-process upstreams (our own HTTP and SOCKS5 servers, a TLS front); real peers are in the integration tests.</summary>
public sealed class UpstreamConnectorTests : IAsyncLifetime
{
    private static readonly IProxyAuthenticator UpstreamAuth = new StaticProxyAuthenticator([new("up", "secret")]);
    private readonly List<IAsyncDisposable> _disposables = [];
    private RawOrigin _echo = null!;

    public Task InitializeAsync()
    {
        _echo = RawOrigin.Echo();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        foreach (var d in _disposables)
        {
            await d.DisposeAsync();
        }

        await _echo.DisposeAsync();
    }

    private TcpServer Serve(IService<ConnectionContext, Unit> service)
    {
        var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(service);
        _disposables.Add(server);
        return server;
    }

    private TcpServer HttpUpstream() => Serve(HttpProxy.CreateForwardProxy(new HttpProxyOptions(), new TcpConnector(), UpstreamAuth));

    private TcpServer Socks5Upstream() => Serve(Socks5Server.Create(new Socks5ServerOptions(), new TcpConnector(), UpstreamAuth));

    internal static UpstreamProxy Record(string id, string flags, string address, string? credential = "up:secret", string limits = "") =>
        ProxyDatabaseLoader.ParseCsv($"{id},{flags},{address},,,us,,,,,{credential}{limits}")[0];

    private const string TcpHttp = "1,0,1,0,0,0,1,0,0";
    private const string TcpSocks5 = "1,0,0,0,1,0,1,0,0";
    private const string TcpSocks5h = "1,0,0,0,0,1,1,0,0";
    private const string TcpHttps = "1,0,0,1,0,0,1,0,0";

    private static (UpstreamConnector Connector, ManualTime Time) Connector(IEnumerable<UpstreamProxy> records, int attempts = 3, string? caFile = null,
        Func<TimeProvider, IConcurrencyLimiter>? limiter = null, LimitOptions? limits = null)
    {
        var time = new ManualTime();
        var options = new UpstreamRoutingOptions { MaxAttempts = attempts, TrustedCaFile = caFile };
        var router = new UpstreamRouter(ProxyDatabase.Create(records), options);
        return (new UpstreamConnector(new TcpConnector(), router, new UpstreamFailureCache(options.BackoffInitial, options.BackoffMax, time), time: time,
            limiter: limiter?.Invoke(time), limits: limits), time);
    }

    private static Extensions Wants(string labels)
    {
        var extensions = new Extensions();
        var parsed = ProxyUsername.Parse("u-" + labels);
        extensions.Set(new RequestedProxyFilter(parsed.Filter, "test"));
        if (parsed.Session is not null)
        {
            extensions.Set(new ProxySession(parsed.Session));
        }

        return extensions;
    }

    private static async Task AssertEchoAsync(ConnectResult result)
    {
        Assert.True(result.IsSuccess, $"{result.Error}: {result.Detail}");
        await using var connection = result.Connection!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await connection.Output.WriteAsync("ping through the upstream"u8.ToArray(), cts.Token);
        var back = await Socks5Client.ReadExactAsync(connection.Input, 25, cts.Token);
        Assert.Equal("ping through the upstream", Encoding.ASCII.GetString(back!));
    }

    [Fact]
    public async Task Http_upstream_connect_tunnel_with_credentials()
    {
        var upstream = HttpUpstream();
        var (connector, _) = Connector([Record("h", TcpHttp, $"127.0.0.1:{upstream.LocalEndPoint.Port}")]);
        var extensions = Wants("country-us");
        await AssertEchoAsync(await connector.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), extensions, default));
        Assert.Equal("h", extensions.Get<SelectedUpstream>()!.Id);
        Assert.Equal(UpstreamProtocol.Http, extensions.Get<SelectedUpstream>()!.Protocol);
        Assert.Equal(1, upstream.AcceptedConnections);
    }

    [Theory]
    [InlineData(TcpSocks5)]
    [InlineData(TcpSocks5h)]
    public async Task Socks5_upstreams_with_rfc1929_credentials_reach_a_named_target(string flags)
    {
        var upstream = Socks5Upstream();
        var (connector, _) = Connector([Record("s", flags, $"127.0.0.1:{upstream.LocalEndPoint.Port}")]);
        await AssertEchoAsync(await connector.ConnectAsync(new HostPort("localhost", _echo.Port), Wants("country-us"), default));
        Assert.Equal(1, upstream.AcceptedConnections);
    }

    [Fact]
    public async Task Wrong_upstream_credentials_fail_over_to_the_next_candidate()
    {
        var bad = Socks5Upstream();
        var good = HttpUpstream();
        var (connector, _) = Connector([
            Record("bad", TcpSocks5h, $"127.0.0.1:{bad.LocalEndPoint.Port}", "up:wrong"),
            Record("good", TcpHttp, $"127.0.0.1:{good.LocalEndPoint.Port}"),
        ]);
        var extensions = Wants("id-bad-id-good-session-" + SessionPreferring(connector, "bad", "id-bad-id-good"));
        await AssertEchoAsync(await connector.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), extensions, default));
        Assert.Equal("good", extensions.Get<SelectedUpstream>()!.Id);
        Assert.True(connector.Failures.IsBackedOff("bad"));
    }

    [Fact]
    public async Task Refused_upstream_is_skipped_backed_off_and_probed_again_after_the_backoff()
    {
        var good = HttpUpstream();
        var deadPort = Ports.Refused();
        var (connector, time) = Connector([
            Record("dead", TcpHttp, $"127.0.0.1:{deadPort}"),
            Record("good", TcpHttp, $"127.0.0.1:{good.LocalEndPoint.Port}"),
        ]);
        var session = SessionPreferring(connector, "dead", "country-us");
        var target = new HostPort("127.0.0.1", _echo.Port);

        var first = Wants("country-us-session-" + session);
        await AssertEchoAsync(await connector.ConnectAsync(target, first, default));
        Assert.Equal("good", first.Get<SelectedUpstream>()!.Id);
        Assert.True(connector.Failures.IsBackedOff("dead"));

        // While backed off, "dead" is not the first try: with one attempt, the request still succeeds.
        var (single, _) = (connector, time);
        var second = Wants("country-us-session-" + session);
        await AssertEchoAsync(await single.ConnectAsync(target, second, default));
        Assert.Equal("good", second.Get<SelectedUpstream>()!.Id);

        // It comes back: after the back-off the session's own upstream is used again.
        await using var revived = RevivedHttpUpstream(deadPort);
        time.Advance(TimeSpan.FromSeconds(6));
        var third = Wants("country-us-session-" + session);
        await AssertEchoAsync(await connector.ConnectAsync(target, third, default));
        Assert.Equal("dead", third.Get<SelectedUpstream>()!.Id);
        Assert.False(connector.Failures.IsBackedOff("dead"));
    }

    private static TcpServer RevivedHttpUpstream(int port)
    {
        var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, port));
        server.Start(HttpProxy.CreateForwardProxy(new HttpProxyOptions(), new TcpConnector(), UpstreamAuth));
        return server;
    }

    [Fact]
    public async Task A_target_failure_reported_by_the_upstream_is_final_and_does_not_back_it_off()
    {
        var upstream = HttpUpstream();
        var other = HttpUpstream();
        var (connector, _) = Connector([
            Record("a", TcpHttp, $"127.0.0.1:{upstream.LocalEndPoint.Port}"),
            Record("b", TcpHttp, $"127.0.0.1:{other.LocalEndPoint.Port}"),
        ]);
        var result = await connector.ConnectAsync(new HostPort("127.0.0.1", Ports.Refused()), Wants("country-us-session-x"), default);
        Assert.False(result.IsSuccess);
        Assert.Equal(ConnectError.Failed, result.Error);
        Assert.Contains("502", result.Detail, StringComparison.Ordinal);
        Assert.Equal(1, upstream.AcceptedConnections + other.AcceptedConnections);
        Assert.Equal(0, connector.Failures.BackedOffCount);
    }

    [Fact]
    public async Task All_candidates_failing_is_one_failure_naming_each()
    {
        var (connector, _) = Connector([Record("x", TcpHttp, $"127.0.0.1:{Ports.Refused()}"), Record("y", TcpSocks5, $"127.0.0.1:{Ports.Refused()}")]);
        var result = await connector.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), Wants("country-us"), default);
        Assert.False(result.IsSuccess);
        Assert.Contains("x: ", result.Detail, StringComparison.Ordinal);
        Assert.Contains("y: ", result.Detail, StringComparison.Ordinal);
        Assert.Equal(2, connector.Failures.BackedOffCount);
    }

    [Fact]
    public async Task No_match_and_required_are_refusals_without_a_dial()
    {
        var (connector, _) = Connector([Record("x", TcpHttp, "127.0.0.1:1")]);
        var none = await connector.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), Wants("country-fr"), default);
        Assert.Equal(ConnectError.Failed, none.Error);
        Assert.Contains("no upstream proxy matches", none.Detail, StringComparison.Ordinal);

        var router = new UpstreamRouter(ProxyDatabase.Create([Record("x", TcpHttp, "127.0.0.1:1")]), new UpstreamRoutingOptions { Mode = UpstreamMode.Required });
        var required = new UpstreamConnector(new TcpConnector(), router, new UpstreamFailureCache(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)));
        var refused = await required.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), new Extensions(), default);
        Assert.Equal(ConnectError.NotAllowed, refused.Error); // SOCKS5 0x02
    }

    [Fact]
    public async Task Https_upstream_is_verified_against_the_trusted_ca_file()
    {
        var inner = HttpUpstream();
        using var certificate = SelfSignedLocalhost();
        var caFile = Path.GetTempFileName();
        await File.WriteAllTextAsync(caFile, certificate.ExportCertificatePem());
        try
        {
            await using var front = new TlsFront(certificate, inner.LocalEndPoint.Port);
            var record = Record("tls", TcpHttps, $"localhost:{front.Port}");

            var (trusting, _) = Connector([record], caFile: caFile);
            var extensions = Wants("country-us");
            await AssertEchoAsync(await trusting.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), extensions, default));
            Assert.Equal(UpstreamProtocol.Https, extensions.Get<SelectedUpstream>()!.Protocol);

            // Default: the system store only; a self-signed upstream is refused (and backed off), never used unverified.
            var (strict, _) = Connector([record]);
            var result = await strict.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), Wants("country-us"), default);
            Assert.False(result.IsSuccess);
            Assert.Contains("handshake failed", result.Detail, StringComparison.Ordinal);
            Assert.True(strict.Failures.IsBackedOff("tls"));
        }
        finally
        {
            File.Delete(caFile);
        }
    }

    [Fact]
    public async Task With_one_attempt_a_busy_first_choice_does_not_take_the_place_of_a_free_upstream()
    {
        var limited = HttpUpstream();
        var spare = HttpUpstream();
        var (connector, _) = Connector([
            Record("first", TcpHttp, $"127.0.0.1:{limited.LocalEndPoint.Port}", limits: ",1"),
            Record("second", TcpHttp, $"127.0.0.1:{spare.LocalEndPoint.Port}"),
        ], attempts: 1, limiter: time => new LocalConcurrencyLimiter(time));
        var session = SessionPreferring(connector, "first", "country-us");
        var target = new HostPort("127.0.0.1", _echo.Port);

        var first = await connector.ConnectAsync(target, Wants("country-us-session-" + session), default);
        Assert.True(first.IsSuccess, $"{first.Error}: {first.Detail}");
        var secondWants = Wants("country-us-session-" + session);
        await AssertEchoAsync(await connector.ConnectAsync(target, secondWants, default));
        Assert.Equal("second", secondWants.Get<SelectedUpstream>()!.Id);
        await AssertEchoAsync(first);
    }

    [Fact]
    public async Task An_upstream_at_its_connection_limit_is_passed_over_for_the_next_candidate_until_its_connection_closes()
    {
        var limited = HttpUpstream();
        var spare = HttpUpstream();
        LocalConcurrencyLimiter limiter = null!;
        var (connector, _) = Connector([
            Record("first", TcpHttp, $"127.0.0.1:{limited.LocalEndPoint.Port}", limits: ",1"),
            Record("second", TcpHttp, $"127.0.0.1:{spare.LocalEndPoint.Port}"),
        ], limiter: time => limiter = new LocalConcurrencyLimiter(time));
        var session = SessionPreferring(connector, "first", "country-us");
        var target = new HostPort("127.0.0.1", _echo.Port);

        var firstWants = Wants("country-us-session-" + session);
        var first = await connector.ConnectAsync(target, firstWants, default);
        Assert.True(first.IsSuccess, $"{first.Error}: {first.Detail}");
        Assert.Equal("first", firstWants.Get<SelectedUpstream>()!.Id);
        Assert.Equal(1, limiter.Held(LimitScope.Upstream, "first"));

        var secondWants = Wants("country-us-session-" + session);
        await AssertEchoAsync(await connector.ConnectAsync(target, secondWants, default));
        Assert.Equal("second", secondWants.Get<SelectedUpstream>()!.Id);
        Assert.Equal(1, limited.AcceptedConnections);
        Assert.False(connector.Failures.IsBackedOff("first"));

        await AssertEchoAsync(first);
        Assert.Equal(0, limiter.Held(LimitScope.Upstream, "first"));
        var thirdWants = Wants("country-us-session-" + session);
        await AssertEchoAsync(await connector.ConnectAsync(target, thirdWants, default));
        Assert.Equal("first", thirdWants.Get<SelectedUpstream>()!.Id);
        Assert.Equal(2, limited.AcceptedConnections);
    }

    [Fact]
    public async Task A_single_candidate_at_its_limit_is_busy_naming_it_and_is_not_backed_off()
    {
        var upstream = HttpUpstream();
        var (connector, _) = Connector([Record("only", TcpHttp, $"127.0.0.1:{upstream.LocalEndPoint.Port}", limits: ",1")],
            limiter: time => new LocalConcurrencyLimiter(time));
        var target = new HostPort("127.0.0.1", _echo.Port);
        var held = await connector.ConnectAsync(target, Wants("country-us"), default);
        Assert.True(held.IsSuccess, $"{held.Error}: {held.Detail}");
        await using var open = held.Connection!;

        var busy = await connector.ConnectAsync(target, Wants("country-us"), default);
        Assert.False(busy.IsSuccess);
        Assert.Equal(ConnectError.Busy, busy.Error);
        Assert.Contains("upstream only", busy.Detail, StringComparison.Ordinal);
        Assert.Contains("limit of 1", busy.Detail, StringComparison.Ordinal);
        Assert.False(connector.Failures.IsBackedOff("only"));
        Assert.Equal(0, connector.Failures.FailuresOf("only"));
        Assert.Equal(1, upstream.AcceptedConnections);
    }

    [Fact]
    public async Task An_aborted_upstream_connection_releases_its_lease()
    {
        var upstream = HttpUpstream();
        LocalConcurrencyLimiter limiter = null!;
        var (connector, _) = Connector([Record("only", TcpHttp, $"127.0.0.1:{upstream.LocalEndPoint.Port}", limits: ",1")],
            limiter: time => limiter = new LocalConcurrencyLimiter(time));
        var target = new HostPort("127.0.0.1", _echo.Port);
        var held = await connector.ConnectAsync(target, Wants("country-us"), default);
        Assert.True(held.IsSuccess, $"{held.Error}: {held.Detail}");
        held.Connection!.Abort("test");
        Assert.Equal(0, limiter.Held(LimitScope.Upstream, "only"));
        await using var _ = held.Connection;
        await AssertEchoAsync(await connector.ConnectAsync(target, Wants("country-us"), default));
    }

    [Fact]
    public async Task A_failed_dial_releases_the_lease_it_took()
    {
        LocalConcurrencyLimiter limiter = null!;
        var (connector, _) = Connector([Record("dead", TcpHttp, $"127.0.0.1:{Ports.Refused()}", limits: ",1")],
            limiter: time => limiter = new LocalConcurrencyLimiter(time));
        var result = await connector.ConnectAsync(new HostPort("127.0.0.1", _echo.Port), Wants("country-us"), default);
        Assert.False(result.IsSuccess);
        Assert.NotEqual(ConnectError.Busy, result.Error);
        Assert.Equal(0, limiter.Held(LimitScope.Upstream, "dead"));
        Assert.True(connector.Failures.IsBackedOff("dead"));
    }

    [Fact]
    public async Task The_default_upstream_rate_applies_to_records_without_their_own_and_refills_with_time()
    {
        var upstream = HttpUpstream();
        var (connector, time) = Connector([Record("r", TcpHttp, $"127.0.0.1:{upstream.LocalEndPoint.Port}")],
            limiter: t => new LocalConcurrencyLimiter(t), limits: new LimitOptions { UpstreamRate = "1/s" });
        var target = new HostPort("127.0.0.1", _echo.Port);
        await AssertEchoAsync(await connector.ConnectAsync(target, Wants("country-us"), default));

        var busy = await connector.ConnectAsync(target, Wants("country-us"), default);
        Assert.Equal(ConnectError.Busy, busy.Error);
        Assert.Contains("upstream r is over its rate of 1/s", busy.Detail, StringComparison.Ordinal);

        time.Advance(TimeSpan.FromSeconds(1));
        await AssertEchoAsync(await connector.ConnectAsync(target, Wants("country-us"), default));
        Assert.Equal(2, upstream.AcceptedConnections);
    }

    /// <summary>A session id whose first choice (under <paramref name="labels"/>) is <paramref name="id"/>.</summary>
    internal static string SessionPreferring(UpstreamConnector connector, string id, string labels)
    {
        var filter = ProxyUsername.Parse("u-" + labels).Filter;
        return Enumerable.Range(0, 1000).Select(i => $"s{i}").First(s => connector.Router.Database.Select(filter, s, 1)[0].Id == id);
    }

    internal static X509Certificate2 SelfSignedLocalhost()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>Terminates TLS on 127.0.0.1:0 and pipes the plaintext to a local port (an HTTPS proxy in front of an HTTP one).</summary>
    private sealed class TlsFront : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly Task _loop;
        private readonly List<Task> _connections = [];

        public TlsFront(X509Certificate2 certificate, int innerPort)
        {
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            _loop = Task.Run(async () =>
            {
                while (true)
                {
                    TcpClient client;
                    try
                    {
                        client = await _listener.AcceptTcpClientAsync();
                    }
                    catch (Exception)
                    {
                        return;
                    }

                    lock (_connections)
                    {
                        _connections.Add(ServeAsync(client, certificate, innerPort));
                    }
                }
            });
        }

        public int Port { get; }

        private static async Task ServeAsync(TcpClient client, X509Certificate2 certificate, int innerPort)
        {
            using (client)
            {
                try
                {
                    await using var ssl = new SslStream(client.GetStream());
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                    await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }, cts.Token);
                    using var inner = new TcpClient();
                    await inner.ConnectAsync(IPAddress.Loopback, innerPort, cts.Token);
                    var innerStream = inner.GetStream();
                    var up = ssl.CopyToAsync(innerStream);
                    var down = innerStream.CopyToAsync(ssl);
                    await Task.WhenAny(up, down);
                }
                catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException or SocketException)
                {
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _loop;
            Task[] all;
            lock (_connections)
            {
                all = [.. _connections];
            }

            await Task.WhenAny(Task.WhenAll(all), Task.Delay(5000));
        }
    }
}
