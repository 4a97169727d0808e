using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Mitm;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Http;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Tls;
using Rama.Testing;

namespace Rama.Proxy.Tests.Tls;

/// <summary>
/// MITM relays the WebSockets it decrypts: a client CONNECTs, speaks TLS to the MITM's leaf, and upgrades inside; the MITM
/// forwards the upgrade to a wss:// python websockets origin over its own TLS, relays the 101, and then the frames both ways.
/// </summary>
public class MitmWebSocketTests
{
    [Fact]
    public async Task A_decrypted_websocket_is_relayed_to_a_tls_origin()
    {
        using var pki = new TestPki();
        await using var origin = await PythonWebSocketOrigin.StartAsync(pki.Issue("ws-origin", false, "localhost"));
        using var authority = MitmAuthority.Create();
        var mitm = new MitmTunnel(new MitmOptions { Authority = authority, Upstream = new TlsClientOptions { ExtraTrustedRoots = [pki.Ca] } });
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(
            new ForwardProxyOptions { Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) } },
            StaticProxyAuthenticator.None, extras: new ForwardProxyExtras { Tunnel = mitm }));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var target = $"localhost:{origin.Port}";

        var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await raw.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port), timeout.Token);
        await using var tunnel = new NetworkStream(raw, ownsSocket: true);
        await tunnel.WriteAsync(Encoding.ASCII.GetBytes($"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"), timeout.Token);
        Assert.StartsWith("HTTP/1.1 200", await WebSocketPeers.ReadHeadAsync(tunnel, timeout.Token), StringComparison.Ordinal);

        // TLS to the MITM: its leaf for "localhost", issued by the MITM's authority (trusted here as the only root).
        await using var tls = new SslStream(tunnel);
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            ApplicationProtocols = [SslApplicationProtocol.Http11],
            RemoteCertificateValidationCallback = (_, certificate, _, _) => IssuedBy(certificate, authority.Certificate),
        }, timeout.Token);

        var (socket, head) = await WebSocketPeers.UpgradeAsync(tls, "/ws", target, timeout.Token);
        Assert.Contains("Upgrade: websocket", head, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("through mitm", await WebSocketPeers.EchoAsync(socket, "through mitm", timeout.Token));
        var blob = new string('x', 200_000);
        await socket.SendAsync(Encoding.UTF8.GetBytes(blob), WebSocketMessageType.Text, true, timeout.Token);
        var received = new MemoryStream();
        var buffer = new byte[16384];
        WebSocketReceiveResult part;
        do
        {
            part = await socket.ReceiveAsync(buffer, timeout.Token);
            received.Write(buffer, 0, part.Count);
        }
        while (!part.EndOfMessage);
        Assert.Equal(blob, Encoding.UTF8.GetString(received.ToArray()));

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", timeout.Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        // The origin saw the handshake the MITM decrypted and forwarded, and the close handshake.
        await origin.WaitForLineAsync("HANDSHAKE");
        Assert.Contains("CLOSED 1000 bye", await origin.WaitForLineAsync("CLOSED"), StringComparison.Ordinal);
    }

    private static bool IssuedBy(X509Certificate? certificate, X509Certificate2 root)
    {
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var leaf = new X509Certificate2(certificate);
        return chain.Build(leaf);
    }
}
