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
    // python3-websockets 10.4 echo origin on a free port: prints "PORT n" and, per closed WebSocket, "CLOSED code".
    private const string OriginScript = """
        import asyncio, websockets
        async def echo(ws, path):
            try:
                async for m in ws:
                    await ws.send(m)
            finally:
                print("CLOSED", ws.close_code, flush=True)
        async def main():
            async with websockets.serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
                print("PORT", server.sockets[0].getsockname()[1], flush=True)
                await asyncio.Future()
        asyncio.run(main())
        """;

    [Fact]
    public async Task A_websocket_through_the_node_keeps_working_while_it_drains_and_is_closed_at_the_drain_timeout()
    {
        await using var origin = await PythonOrigin.StartAsync(OriginScript);
        await using var node = await NodeProcess.StartAsync(["--listen", "127.0.0.1:0", "--drain-timeout", "2"]);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await raw.ConnectAsync(node.Endpoint, cts.Token);
        var stream = new NetworkStream(raw);
        var target = $"127.0.0.1:{origin.Port}";
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET http://{target}/chat HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            + $"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {Convert.ToBase64String(Guid.NewGuid().ToByteArray())}\r\n\r\n"), cts.Token);
        var head = await ReadHeadAsync(stream, cts.Token);
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        Assert.Contains("\r\nVia: 1.1 rama\r\n", head, StringComparison.Ordinal);
        using var ws = WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero });
        Assert.Equal("before", await EchoAsync(ws, "before", cts.Token));

        // SIGTERM: the node unbinds and drains; the upgraded connection is a connection in flight, so it keeps working...
        var signalled = Stopwatch.StartNew();
        node.Terminate();
        await Eventually.TrueAsync(() => Sockets.IsRefused(node.Endpoint), TimeSpan.FromSeconds(5), "the node kept accepting after SIGTERM");
        Assert.Equal("while draining", await EchoAsync(ws, "while draining", cts.Token));

        // ...until the drain timeout closes it, as a CONNECT tunnel; the node exits 0 and the origin's side is closed too.
        Assert.Equal(0, await node.Exited.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.True(signalled.Elapsed < TimeSpan.FromSeconds(8), $"exit took {signalled.Elapsed}");
        Assert.Contains("closed 1 connections after the drain timeout", node.Output, StringComparison.Ordinal);
        await Assert.ThrowsAnyAsync<Exception>(async () => await ws.ReceiveAsync(new byte[64], cts.Token));
        Assert.Equal("CLOSED 1006", await origin.WaitForLineAsync("CLOSED", TimeSpan.FromSeconds(10)));
        // One access-log line for the upgraded exchange, status 101, with the bytes of both messages each way.
        Assert.Contains($"forward GET http://{target}/chat 101 ", node.Output, StringComparison.Ordinal);
    }

    private static async Task<string> EchoAsync(WebSocket ws, string text, CancellationToken cancellationToken)
    {
        await ws.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cancellationToken);
        var buffer = new byte[1024];
        var received = await ws.ReceiveAsync(buffer, cancellationToken);
        return Encoding.UTF8.GetString(buffer, 0, received.Count);
    }

    private static async Task<string> ReadHeadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await stream.ReadAsync(one, cancellationToken) == 0)
            {
                throw new IOException("closed inside the response head: " + head);
            }

            head.Append((char)one[0]);
        }

        return head.ToString();
    }

    /// <summary>A python3 script as a process that prints "PORT n" first; killed and reaped on disposal.</summary>
    private sealed class PythonOrigin : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _script;
        private readonly List<string> _lines = [];

        private PythonOrigin(string script)
        {
            _script = Path.Combine(Path.GetTempPath(), $"rama-ws-origin-{Guid.NewGuid():N}.py");
            File.WriteAllText(_script, script);
            var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(_script);
            _process = Process.Start(psi)!;
            _process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (_lines)
                    {
                        _lines.Add(e.Data);
                    }
                }
            };
            _process.ErrorDataReceived += (_, _) => { };
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public int Port { get; private set; }

        public static async Task<PythonOrigin> StartAsync(string script)
        {
            var origin = new PythonOrigin(script);
            try
            {
                var line = await origin.WaitForLineAsync("PORT ", TimeSpan.FromSeconds(20));
                origin.Port = int.Parse(line[5..], System.Globalization.CultureInfo.InvariantCulture);
                return origin;
            }
            catch
            {
                await origin.DisposeAsync();
                throw;
            }
        }

        public async Task<string> WaitForLineAsync(string prefix, TimeSpan within)
        {
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < within)
            {
                lock (_lines)
                {
                    var line = _lines.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
                    if (line is not null)
                    {
                        return line;
                    }
                }

                await Task.Delay(20);
            }

            throw new TimeoutException($"no '{prefix}' line from the python origin");
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill(entireProcessTree: true);
                }

                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            finally
            {
                _process.Dispose();
                File.Delete(_script);
            }
        }
    }
}
