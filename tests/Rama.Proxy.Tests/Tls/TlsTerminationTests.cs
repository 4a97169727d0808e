using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>TLS termination against real peers: openssl s_client and curl, two SNI names, ALPN, mTLS, and the handshake timeout.</summary>
public sealed class TlsTerminationTests : IDisposable
{
    private readonly TestPki _pki = new();
    private readonly (string Cert, string Key) _a;
    private readonly (string Cert, string Key) _b;

    public TlsTerminationTests()
    {
        _a = _pki.Issue("a", false, "a.test");
        _b = _pki.Issue("b", false, "b.test");
    }

    public void Dispose() => _pki.Dispose();

    private TlsServerOptions Options(UnknownServerNamePolicy unknown = UnknownServerNamePolicy.UseDefault, TimeSpan? handshakeTimeout = null) => new()
    {
        Certificates = new ServerCertificates { UnknownServerName = unknown }.AddFiles(_a.Cert, _a.Key).AddFiles(_b.Cert, _b.Key),
        ApplicationProtocols = ["http/1.1"],
        HandshakeTimeout = handshakeTimeout ?? TimeSpan.FromSeconds(10),
    };

    private static ProxyHarness Termination(TlsServerOptions tls, int upstreamPort, TerminationMode mode = TerminationMode.Tcp) =>
        new(TlsStacks.Termination(tls, new TlsTerminationOptions { Upstream = new HostPort("127.0.0.1", upstreamPort), Mode = mode }));

    private static Task<Cli.Result> SClientAsync(int port, string? serverName) =>
        Cli.RunAsync("openssl", ["s_client", "-connect", $"127.0.0.1:{port}", "-alpn", "h2,http/1.1", .. serverName is null ? new[] { "-noservername" } : ["-servername", serverName]],
            TimeSpan.FromSeconds(20), stdin: []);

    [Fact]
    public async Task Openssl_gets_the_certificate_of_each_sni_name_and_alpn()
    {
        await using var origin = RawOrigin.Echo();
        await using var server = Termination(Options(), origin.Port);
        foreach (var name in new[] { "a.test", "b.test" })
        {
            var result = await SClientAsync(server.Port, name);
            Assert.Contains($"subject=CN = {name}", result.Text, StringComparison.Ordinal);
            Assert.Contains("ALPN protocol: http/1.1", result.Text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Unknown_sni_gets_the_default_certificate_or_a_handshake_failure_as_configured()
    {
        await using var origin = RawOrigin.Echo();
        await using (var lenient = Termination(Options(), origin.Port))
        {
            var result = await SClientAsync(lenient.Port, "unknown.test");
            Assert.Contains("subject=CN = a.test", result.Text, StringComparison.Ordinal);
        }

        var before = origin.Accepted;
        await using var strict = Termination(Options(UnknownServerNamePolicy.Reject), origin.Port);
        var refused = await SClientAsync(strict.Port, "unknown.test");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("unrecognized name", refused.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, origin.Accepted);
        Assert.Contains("subject=CN = b.test", (await SClientAsync(strict.Port, "b.test")).Text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(TerminationMode.Tcp)]
    [InlineData(TerminationMode.Http)]
    public async Task Curl_reaches_the_upstream_through_termination_with_each_name(TerminationMode mode)
    {
        await using var origin = TinyHttpOrigin.Start("hello behind tls");
        await using var server = Termination(Options(), origin.Port, mode);
        foreach (var name in new[] { "a.test", "b.test" })
        {
            var result = await Cli.CurlAsync("-v", "--cacert", _pki.CaFile, "--resolve", $"{name}:{server.Port}:127.0.0.1", $"https://{name}:{server.Port}/x");
            Assert.True(result.ExitCode == 0, result.Stderr);
            Assert.Equal("hello behind tls", result.Text);
            Assert.Contains($"subject: CN={name}", result.Stderr, StringComparison.Ordinal);
            // HTTP mode serves h2 too and curl offers it first; TCP mode relays bytes and offers only what it was given.
            Assert.Contains(mode == TerminationMode.Http ? "ALPN: server accepted h2" : "ALPN: server accepted http/1.1", result.Stderr, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Mutual_tls_lets_in_a_client_with_a_certificate_and_refuses_one_without()
    {
        var client = _pki.Issue("client", true, "client.test");
        var options = Options() with
        {
            ClientCertificates = ClientCertificateMode.Required,
            ClientCertificateAuthorities = TlsFiles.LoadAuthorities(_pki.CaFile),
        };
        await using var origin = TinyHttpOrigin.Start("mtls ok");
        await using var server = Termination(options, origin.Port, TerminationMode.Http);
        var url = $"https://a.test:{server.Port}/";
        var resolve = $"a.test:{server.Port}:127.0.0.1";
        var with = await Cli.CurlAsync("--cacert", _pki.CaFile, "--resolve", resolve, "--cert", client.Cert, "--key", client.Key, url);
        Assert.Equal("mtls ok", with.Text);
        var without = await Cli.CurlAsync("--cacert", _pki.CaFile, "--resolve", resolve, url);
        Assert.NotEqual(0, without.ExitCode);
        Assert.Equal(1, origin.Accepted);
    }

    public static TheoryData<string, byte[]> Stalls() => new()
    {
        { "garbage", "\x16\x03\x01\x00\x05\x01\x00\x00\x01"u8.ToArray().Concat(new byte[] { 0xFF }).ToArray() },
        { "truncated hello", ClientHelloBuilder.Ja4SpecExample().Build()[..60] },
        { "silent client", [] },
        { "hello then silence", ClientHelloBuilder.Ja4SpecExample().Build() },
        { "not tls at all", "GET / HTTP/1.1\r\n\r\n"u8.ToArray() },
    };

    [Theory]
    [MemberData(nameof(Stalls))]
    public async Task Handshake_garbage_truncation_and_silence_are_cut_off_within_the_timeout(string name, byte[] bytes)
    {
        var timeout = TimeSpan.FromSeconds(1);
        await using var origin = RawOrigin.Echo();
        await using var server = Termination(Options(handshakeTimeout: timeout), origin.Port);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Port)).WaitAsync(TimeSpan.FromSeconds(5));
        var clock = Stopwatch.StartNew();
        if (bytes.Length > 0)
        {
            await socket.SendAsync(bytes);
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[4096];
        try
        {
            while (await socket.ReceiveAsync(buffer, cts.Token) > 0)
            {
                // an alert or a ServerHello: read on until the server closes
            }
        }
        catch (SocketException)
        {
            // reset: closed too
        }

        Assert.True(clock.Elapsed < timeout + TimeSpan.FromSeconds(2), $"{name}: closed after {clock.Elapsed}");
        await server.AssertNoOpenConnectionsAsync(TimeSpan.FromSeconds(3));
        Assert.Equal(0, origin.Accepted);
    }
}
