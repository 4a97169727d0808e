using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Upstream;
using Rama.Testing;
using Rama.Proxy.Mitm;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// MITM behind a proxy database: every origin connection of a decrypted tunnel leaves through the
/// upstream the tunnel was routed to, the redials after the origin closed included (they used to go
/// direct, from the node's own address).
/// </summary>
public sealed class MitmUpstreamTests : IAsyncLifetime
{
    private readonly TestPki _pki = new();
    private readonly ConcurrentQueue<string> _originRequests = new();
    private X509Certificate2 _originCertificate = null!;
    private RawOrigin _origin = null!;
    private TcpServer _upstream = null!;
    private int _upstreamConnects;
    private TcpServer _node = null!;
    private MitmAuthority _authority = null!;
    private string _mitmCaFile = null!;

    public Task InitializeAsync()
    {
        var (cert, key) = _pki.Issue("localhost", false, "localhost", "127.0.0.1");
        using (var pem = X509Certificate2.CreateFromPemFile(cert, key))
        {
            _originCertificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }

        _origin = new RawOrigin(ServeOneRequestAndCloseAsync);

        // The only upstream: a plain HTTP forward proxy that counts the CONNECTs it is sent.
        var counting = Service.Layer<HttpRequest, HttpResponse>(inner => Service.FromFunc<HttpRequest, HttpResponse>((request, token) =>
        {
            if (request.IsConnect)
            {
                Interlocked.Increment(ref _upstreamConnects);
            }

            return inner.ServeAsync(request, token);
        }));
        _upstream = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _upstream.Start(HttpProxy.CreateForwardProxy(new HttpProxyOptions(), new TcpConnector(), StaticProxyAuthenticator.None, requestLayer: counting));

        _authority = MitmAuthority.Create();
        _mitmCaFile = Path.Combine(_pki.Directory, "mitm-ca.pem");
        File.WriteAllText(_mitmCaFile, _authority.ExportCertificatePem());
        var options = new ForwardProxyOptions { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } };
        var mitm = new MitmTunnel(new MitmOptions
        {
            Authority = _authority,
            Upstream = new TlsClientOptions { ExtraTrustedRoots = TlsFiles.LoadAuthorities(_pki.CaFile) },
        });
        var db = ProxyDatabase.Create([Upstream.UpstreamConnectorTests.Record("up1", "1,0,1,0,0,0,0,1,0", $"127.0.0.1:{_upstream.LocalEndPoint.Port}", null)]);
        _node = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _node.Start(ForwardProxyStack.Create(options, new StaticProxyAuthenticator([new("john", "pw")]), proxyDatabase: db,
            extras: new ForwardProxyExtras { Tunnel = mitm }));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await Eventually.TrueAsync(() => _node.OpenConnections == 0, TimeSpan.FromSeconds(10), "node connections still open");
        await _node.DisposeAsync();
        await _upstream.DisposeAsync();
        await _origin.DisposeAsync();
        _authority.Dispose();
        _originCertificate.Dispose();
        _pki.Dispose();
    }

    /// <summary>A TLS origin that answers one request per connection, with <c>Connection: close</c> (RFC 9112 §9.6), then closes.</summary>
    private async Task ServeOneRequestAndCloseAsync(Socket socket)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false));
            await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificate = _originCertificate,
                ApplicationProtocols = [SslApplicationProtocol.Http11],
            }, cts.Token);
            var head = new StringBuilder();
            var buffer = new byte[4096];
            while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await ssl.ReadAsync(buffer, cts.Token);
                if (n == 0)
                {
                    return;
                }

                head.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }

            var requestLine = head.ToString()[..head.ToString().IndexOf("\r\n", StringComparison.Ordinal)];
            _originRequests.Enqueue(requestLine);
            var body = Encoding.UTF8.GetBytes($"origin saw {requestLine.Split(' ')[1]}\n");
            await ssl.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n").Concat(body).ToArray(), cts.Token);
            await ssl.ShutdownAsync();
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
        {
            // The test's assertions say what went wrong; a torn connection here is not the finding.
        }
    }

    [Theory]
    [InlineData("http")]
    [InlineData("socks5")]
    public async Task Mitm_redials_the_origin_through_the_selected_upstream(string via)
    {
        var port = _node.LocalEndPoint.Port;
        string[] proxy = via == "http"
            ? ["--proxy", $"http://127.0.0.1:{port}", "-U", "john-country-us-session-1:pw"]
            : ["--proxy", $"socks5h://john-country-us-session-1:pw@127.0.0.1:{port}"];
        var origin = $"https://localhost:{_origin.Port}";

        // Two URLs in one curl run share one tunnel; the origin closes after each answer, so the second request needs a new origin connection.
        var result = await Cli.CurlAsync([.. proxy, "--cacert", _mitmCaFile, $"{origin}/first", $"{origin}/second"]);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal("origin saw /first\norigin saw /second\n", result.Text);
        Assert.Equal(1, _node.AcceptedConnections); // one client tunnel
        Assert.Equal(2, _origin.Accepted); // two origin connections inside it
        Assert.Equal(2, Volatile.Read(ref _upstreamConnects)); // and both went through the upstream, none direct
    }
}
