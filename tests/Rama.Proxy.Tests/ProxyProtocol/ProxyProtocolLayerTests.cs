using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Tls;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.ProxyProtocol;

/// <summary>The accept side behind a real haproxy (send-proxy, send-proxy-v2), and the refusals.</summary>
public sealed class ProxyProtocolLayerTests
{
    private static IService<ConnectionContext, Unit> Echo(ProxyProtocolOptions options) =>
        new ProxyProtocolLayer(options).Layer(TlsStacks.Echo(tls: null));

    [Theory]
    [InlineData("send-proxy", 1)]
    [InlineData("send-proxy-v2", 2)]
    public async Task Haproxy_in_front_the_echo_reports_the_original_client(string sendProxy, int version)
    {
        await using var rama = new ProxyHarness(Echo(new ProxyProtocolOptions()));
        var haproxyPort = Ports.Refused();
        var config = Path.Combine(Path.GetTempPath(), $"rama-haproxy-{Guid.NewGuid():N}.cfg");
        await File.WriteAllTextAsync(config, $"""
            global
                log stderr format raw local0 err
            defaults
                mode tcp
                timeout connect 5s
                timeout client 30s
                timeout server 30s
            frontend in
                bind 127.0.0.1:{haproxyPort}
                default_backend rama
            backend rama
                server rama 127.0.0.1:{rama.Port} {sendProxy}

            """);
        using var haproxy = Process.Start(new ProcessStartInfo("haproxy", ["-f", config, "-db"]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        try
        {
            // Poll until haproxy listens (never a bare sleep).
            Cli.Result? result = null;
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < TimeSpan.FromSeconds(15))
            {
                result = await Cli.CurlAsync("-w", "\n%{local_ip}:%{local_port}", $"http://127.0.0.1:{haproxyPort}/pp");
                if (result.ExitCode == 0)
                {
                    break;
                }

                await Task.Delay(100);
            }

            Assert.True(result is { ExitCode: 0 }, result?.Stderr + (haproxy.HasExited ? " haproxy: " + await haproxy.StandardError.ReadToEndAsync() : ""));
            var text = result!.Text;
            var curlEndpoint = text[(text.LastIndexOf('\n') + 1)..];
            using var json = JsonDocument.Parse(text[..text.LastIndexOf('\n')]);
            Assert.Equal(curlEndpoint, json.RootElement.GetProperty("client").GetString());
            Assert.Equal(version, json.RootElement.GetProperty("proxy_protocol").GetProperty("version").GetInt32());
            Assert.Equal($"127.0.0.1:{haproxyPort}", json.RootElement.GetProperty("proxy_protocol").GetProperty("destination").GetString());
        }
        finally
        {
            haproxy.Kill();
            await haproxy.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            File.Delete(config);
        }
    }

    public static TheoryData<string, byte[], bool> Refusals() => new()
    {
        // name, bytes, trusted
        { "header from an untrusted source", Encoding.ASCII.GetBytes("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), false },
        { "v2 header from an untrusted source", [.. ProxyProtocolCodec.WriteV2(IPEndPoint.Parse("192.0.2.1:1"), IPEndPoint.Parse("192.0.2.2:2")), .. "GET / HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray()], false },
        { "malformed header", Encoding.ASCII.GetBytes("PROXY TCP4 192.0.2.1 nonsense 1 2\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), true },
        { "no header from a trusted source", Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), true },
        { "header that never completes", Encoding.ASCII.GetBytes("PROXY TCP4 192.0.2.1 "), true },
        { "v2 header that never completes", ProxyProtocolCodec.WriteV2(IPEndPoint.Parse("192.0.2.1:1"), IPEndPoint.Parse("192.0.2.2:2"))[..20], true },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public async Task Bad_headers_are_refused_before_the_inner_service(string name, byte[] bytes, bool trusted)
    {
        var reached = 0;
        var inner = Service.FromFunc<ConnectionContext, Unit>((_, _) =>
        {
            Interlocked.Increment(ref reached);
            return ValueTask.FromResult(Unit.Value);
        });
        var options = new ProxyProtocolOptions
        {
            TrustedSources = trusted ? [IPNetwork.Parse("127.0.0.0/8")] : [IPNetwork.Parse("10.0.0.0/8")],
            HeaderTimeout = TimeSpan.FromSeconds(1),
        };
        await using var server = new ProxyHarness(new ProxyProtocolLayer(options).Layer(inner));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.Port)).WaitAsync(TimeSpan.FromSeconds(5));
        var clock = Stopwatch.StartNew();
        await socket.SendAsync(bytes);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[256];
        try
        {
            Assert.Equal(0, await socket.ReceiveAsync(buffer, cts.Token));
        }
        catch (SocketException)
        {
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"{name}: closed after {clock.Elapsed}");
        await server.AssertNoOpenConnectionsAsync();
        Assert.True(reached == 0, name);
    }

    [Fact]
    public async Task An_untrusted_direct_client_without_a_header_is_served_as_it_is()
    {
        var options = new ProxyProtocolOptions { TrustedSources = [IPNetwork.Parse("10.0.0.0/8")] };
        await using var server = new ProxyHarness(Echo(options));
        var result = await Cli.CurlAsync("-w", "\n%{local_ip}:%{local_port}", $"http://127.0.0.1:{server.Port}/direct");
        var text = result.Text;
        using var json = JsonDocument.Parse(text[..text.LastIndexOf('\n')]);
        Assert.Equal(text[(text.LastIndexOf('\n') + 1)..], json.RootElement.GetProperty("client").GetString());
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("proxy_protocol").ValueKind);
    }

    [Fact]
    public async Task The_send_side_writes_the_clients_addresses_upstream()
    {
        // termination -> (PROXY v2) -> echo behind a PROXY layer: the echo sees the TLS client's address.
        using var pki = new TestPki();
        var leaf = pki.Issue("localhost", false, "localhost");
        await using var echo = new ProxyHarness(Echo(new ProxyProtocolOptions()));
        var tls = new Rama.Proxy.Tls.TlsServerOptions { Certificates = new Rama.Proxy.Tls.ServerCertificates().AddFiles(leaf.Cert, leaf.Key) };
        await using var front = new ProxyHarness(TlsStacks.Termination(tls, new TlsTerminationOptions
        {
            Upstream = new HostPort("127.0.0.1", echo.Port),
            SendProxyProtocol = ProxyProtocolVersion.V2,
        }));
        var result = await Cli.CurlAsync("--cacert", pki.CaFile, "-w", "\n%{local_ip}:%{local_port}", $"https://localhost:{front.Port}/sent");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var text = result.Text;
        using var json = JsonDocument.Parse(text[..text.LastIndexOf('\n')]);
        Assert.Equal(text[(text.LastIndexOf('\n') + 1)..], json.RootElement.GetProperty("client").GetString());
        Assert.Equal($"127.0.0.1:{front.Port}", json.RootElement.GetProperty("proxy_protocol").GetProperty("destination").GetString());
    }
}
