using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Rama.Testing;

namespace Rama.IntegrationTests;

/// <summary>A WebSocket through a node's forward proxy (absolute-form upgrade) with python3-websockets as the origin: it works, drains as a tunnel.</summary>
public sealed class WebSocketNodeTests
{
    [Fact]
    public async Task A_websocket_through_the_node_keeps_working_while_it_drains_and_is_closed_at_the_drain_timeout()
    {
        await using var origin = await PythonWebSocketOrigin.StartAsync(); // prints "CLOSED code reason" per closed WebSocket
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--drain-timeout", "2"]);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await raw.ConnectAsync(node.Endpoint, cts.Token);
        var stream = new NetworkStream(raw);
        var target = $"127.0.0.1:{origin.Port}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET http://{target}/ws/chat HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            + $"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {Convert.ToBase64String(Guid.NewGuid().ToByteArray())}\r\n\r\n"), cts.Token);
        var head = await WebSocketPeers.ReadHeadAsync(stream, cts.Token);
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        Assert.Contains("\r\nVia: 1.1 rama\r\n", head, StringComparison.Ordinal);
        using var ws = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });
        Assert.Equal("before", await WebSocketPeers.EchoAsync(ws, "before", cts.Token));

        // SIGTERM: the node unbinds and drains; the upgraded connection is a connection in flight, so it keeps working...
        var signalled = Stopwatch.StartNew();
        node.Terminate();
        await Eventually.TrueAsync(() => Sockets.IsRefused(node.Endpoint), TimeSpan.FromSeconds(5), "the node kept accepting after SIGTERM");
        Assert.Equal("while draining", await WebSocketPeers.EchoAsync(ws, "while draining", cts.Token));

        // ...until the drain timeout closes it, as a CONNECT tunnel; the node exits 0 and the origin's side is closed too.
        Assert.Equal(0, await node.Exited.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.True(signalled.Elapsed < TimeSpan.FromSeconds(8), $"exit took {signalled.Elapsed}");
        Assert.Contains("closed 1 connections after the drain timeout", node.Output, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<Exception>(async () => await ws.ReceiveAsync(new byte[64], cts.Token));
        Assert.Equal("CLOSED 1006", (await origin.WaitForLineAsync("CLOSED", TimeSpan.FromSeconds(10))).TrimEnd()); // no close reason
        // One access-log line for the upgraded exchange, status 101, with the bytes of both messages each way.
        Assert.Contains($"forward GET http://{target}/ws/chat 101 ", node.Output, StringComparison.Ordinal);
    }
}
