using System.Collections.Concurrent;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http;

/// <summary>A real browser (Debian chromium, headless) opening a WebSocket from a page it loaded through the forward proxy.</summary>
public sealed class WebSocketBrowserTests
{
    [Fact]
    public async Task Chromium_through_the_forward_proxy_loads_a_page_whose_websocket_echoes_into_the_dom()
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync();
        var log = new RecordingAccessLog();
        await using var proxy = new ProxyHarness(ForwardProxyStack.Create(new ForwardProxyOptions
        {
            // Chromium's own background requests (update checks) must not leave this machine: loopback only.
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5), AllowDestination = System.Net.IPAddress.IsLoopback },
        }, StaticProxyAuthenticator.None, accessLog: log));
        var profile = Directory.CreateTempSubdirectory("rama-chromium-ws-");
        try
        {
            var result = await Cli.RunAsync("chromium",
            [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                $"--user-data-dir={profile.FullName}",
                $"--proxy-server=http://127.0.0.1:{proxy.Port}",
                "--proxy-bypass-list=<-loopback>", // chromium skips proxies for loopback targets unless told not to
                "--dump-dom", $"http://{origin.Authority}/page",
            ], TimeSpan.FromSeconds(60));

            Assert.True(result.Text.Contains("echo: hello from chromium", StringComparison.Ordinal),
                $"DOM:\n{result.Text}\norigin:\n{string.Join('\n', origin.Lines)}\nproxy:\n{string.Join('\n', log.Entries.Select(e => $"{e.Method} {e.Target} {e.Status}"))}");
            Assert.StartsWith("CLOSED 1000 done", await origin.WaitForLineAsync("CLOSED"), StringComparison.Ordinal);
            Assert.Contains("\"Upgrade\", \"websocket\"", await origin.WaitForLineAsync("HANDSHAKE"), StringComparison.Ordinal);
            // Both went through the proxy: the page as an absolute-form GET; the WebSocket as chromium sends ws:// through an
            // HTTP proxy, always in a CONNECT tunnel to the origin with the handshake inside it (the absolute-form upgrade
            // is what python3-websockets does in WebSocketUpgradeTests).
            await proxy.AssertNoOpenConnectionsAsync(TimeSpan.FromSeconds(20));
            Assert.Contains(log.Entries, e => e.Method == "GET" && e.Target == $"http://{origin.Authority}/page" && e.Status == 200);
            Assert.Contains(log.Entries, e => e.Method == "CONNECT" && e.Target == origin.Authority && e.Status == 200 && e.BytesFromClient > 0 && e.BytesToClient > 0);
        }
        finally
        {
            profile.Delete(recursive: true);
        }
    }

    private sealed class RecordingAccessLog : IAccessLog
    {
        public ConcurrentQueue<AccessLogEntry> Entries { get; } = new();

        public bool IsEnabled => true;

        public void Write(in AccessLogEntry entry) => Entries.Enqueue(entry);
    }
}
