using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;

namespace Rama.Testing;

/// <summary>
/// python3-websockets (10.4, /usr/bin/python3) as a real WebSocket peer, for every test project (linked from tests/Shared): an echo origin that also serves a page whose
/// script opens a WebSocket, and a client that runs a fixed exchange, directly or through a forward proxy (absolute-form
/// request line: websockets 10.4 has no proxy support, so its request line is rewritten in one overridden method).
/// </summary>
internal static class WebSocketPeers
{
    public const string Python = "/usr/bin/python3";

    // One script, two roles. The origin prints "PORT n", one "HANDSHAKE {json headers}" per WebSocket handshake and one
    // "CLOSED code reason" per closed WebSocket. The client prints "OK" lines and exits 0 only when every step passed.
    public const string Script = """
        import asyncio, http, json, os, ssl, sys, websockets
        from websockets.legacy.client import WebSocketClientProtocol

        PAGE = b'''<!doctype html><html><body><p id="out">waiting</p><script>
        const ws = new WebSocket("ws://" + location.host + "/ws");
        ws.onopen = () => ws.send("hello from chromium");
        ws.onmessage = (e) => { document.getElementById("out").textContent = "echo: " + e.data; ws.close(1000, "done"); };
        ws.onerror = () => { document.getElementById("out").textContent = "websocket error"; };
        </script><script src="/after-echo"></script></body></html>'''

        def say(*parts):
            print(*parts, flush=True)

        async def origin():
            echoed = asyncio.Event()
            async def process_request(path, headers):
                if path.startswith("/ws"):
                    say("HANDSHAKE", json.dumps([[k, v] for k, v in headers.raw_items()]))
                    return None
                if path == "/after-echo":
                    # A parser-blocking script: answered once the page closed its WebSocket (which its onmessage does after
                    # writing the echo into the DOM), so the load event (and chromium's --dump-dom) comes after the DOM
                    # changed, or after 20 s. Answering once the echo was sent raced: the script could arrive before the
                    # message did (they travel on different connections).
                    try:
                        await asyncio.wait_for(echoed.wait(), 20)
                    except asyncio.TimeoutError:
                        pass
                    return (http.HTTPStatus.OK, [("Content-Type", "application/javascript")], b"// after echo\n")
                return (http.HTTPStatus.OK, [("Content-Type", "text/html")], PAGE)
            async def echo(ws, path):
                try:
                    async for message in ws:
                        await ws.send(message)
                finally:
                    say("CLOSED", ws.close_code, ws.close_reason)
                    echoed.set()
            tls = None
            if os.environ.get("RAMA_WS_CERT"):
                # wss: an origin behind TLS (the MITM tests), with the certificate and key the test issued.
                tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                tls.load_cert_chain(os.environ["RAMA_WS_CERT"], os.environ["RAMA_WS_KEY"])
            async with websockets.serve(echo, "127.0.0.1", 0, process_request=process_request, max_size=None, ping_interval=None, ssl=tls) as server:
                say("PORT", server.sockets[0].getsockname()[1])
                await asyncio.Future()

        class AbsoluteForm(WebSocketClientProtocol):
            # A request to a forward proxy names the whole target (RFC 9112 §3.2.2).
            prefix = ""
            def write_http_request(self, path, headers):
                super().write_http_request(self.prefix + path, headers)

        async def client(uri, proxy):
            kwargs = dict(max_size=None, ping_interval=None, open_timeout=10, close_timeout=10)
            if proxy:
                host, port = proxy.rsplit(":", 1)
                AbsoluteForm.prefix = "http://" + uri[len("ws://"):].split("/", 1)[0]
                kwargs.update(host=host, port=int(port), create_protocol=AbsoluteForm)
            async with websockets.connect(uri, **kwargs) as ws:
                say("OK handshake", ws.response_headers.get("Via", "-"))
                await ws.send("hello")
                assert await ws.recv() == "hello"
                say("OK text")
                blob = os.urandom(1024 * 1024)
                await ws.send(blob)
                assert await ws.recv() == blob
                say("OK binary 1MiB")
                for i in range(1000):
                    await ws.send(f"m{i}")
                for i in range(1000):
                    assert await ws.recv() == f"m{i}"
                say("OK 1000 messages")
                await ws.close(1000, "bye")
                say("OK close", ws.close_code, ws.close_reason)

        if sys.argv[1] == "origin":
            asyncio.run(origin())
        else:
            asyncio.run(client(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
        """;

    private static readonly Lazy<string> s_scriptPath = new(() =>
    {
        var path = Path.Combine(Path.GetTempPath(), $"rama-ws-peers-{Environment.ProcessId}.py");
        File.WriteAllText(path, Script);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => File.Delete(path);
        return path;
    });

    public static string ScriptPath => s_scriptPath.Value;

    /// <summary>Runs the python client's exchange against <paramref name="uri"/> (through <paramref name="proxy"/> host:port when given).</summary>
    public static Task<Rama.Testing.Cli.Result> RunClientAsync(string uri, string? proxy = null) =>
        Rama.Testing.Cli.RunAsync(Python, proxy is null ? [ScriptPath, "client", uri] : [ScriptPath, "client", uri, proxy], TimeSpan.FromSeconds(60));

    /// <summary>
    /// Opens a WebSocket over a raw socket to <paramref name="endPoint"/> with the request line <c>GET {requestTarget}</c>,
    /// checks the 101, and hands the rest to .NET's own framing (<see cref="WebSocket.CreateFromStream(Stream, WebSocketCreationOptions)"/>).
    /// </summary>
    public static async Task<(WebSocket Socket, string Head, Socket Raw)> ConnectRawAsync(IPEndPoint endPoint, string requestTarget, string host,
        CancellationToken cancellationToken)
    {
        var raw = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await raw.ConnectAsync(endPoint, cancellationToken);
        var stream = new NetworkStream(raw, ownsSocket: true);
        var (socket, head) = await UpgradeAsync(stream, requestTarget, host, cancellationToken);
        return (socket, head, raw);
    }

    /// <summary>The WebSocket handshake (<c>GET {requestTarget}</c>) over an open <paramref name="stream"/> (a socket, or TLS inside a tunnel): the 101 checked, then .NET's framing.</summary>
    public static async Task<(WebSocket Socket, string Head)> UpgradeAsync(Stream stream, string requestTarget, string host, CancellationToken cancellationToken)
    {
        var key = Convert.ToBase64String(Guid.NewGuid().ToByteArray());
        await stream.WriteAsync(Encoding.ASCII.GetBytes(
            $"GET {requestTarget} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"),
            cancellationToken);
        await stream.FlushAsync(cancellationToken);
        var head = await ReadHeadAsync(stream, cancellationToken);
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        return (WebSocket.CreateFromStream(stream, new WebSocketCreationOptions { IsServer = false, KeepAliveInterval = TimeSpan.Zero }), head);
    }

    /// <summary>Reads a response head byte by byte (so nothing after it is taken from the stream).</summary>
    public static async Task<string> ReadHeadAsync(Stream stream, CancellationToken cancellationToken)
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

    public static async Task<string> EchoAsync(WebSocket socket, string text, CancellationToken cancellationToken)
    {
        await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, cancellationToken);
        var buffer = new byte[4096];
        var received = await socket.ReceiveAsync(buffer, cancellationToken);
        Assert.True(received.EndOfMessage);
        return Encoding.UTF8.GetString(buffer, 0, received.Count);
    }
}

/// <summary>The python echo origin as a process on 127.0.0.1: a free port; killed and reaped on disposal.</summary>
internal sealed class PythonWebSocketOrigin : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly TaskCompletionSource<int> _port = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private PythonWebSocketOrigin((string Cert, string Key)? tls)
    {
        var psi = new ProcessStartInfo(WebSocketPeers.Python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (tls is { } pem)
        {
            psi.Environment["RAMA_WS_CERT"] = pem.Cert;
            psi.Environment["RAMA_WS_KEY"] = pem.Key;
        }

        psi.ArgumentList.Add(WebSocketPeers.ScriptPath);
        psi.ArgumentList.Add("origin");
        _process = Process.Start(psi)!;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                _port.TrySetException(new IOException("the python origin exited"));
                return;
            }

            lock (_lines)
            {
                _lines.Add(e.Data);
            }

            if (e.Data.StartsWith("PORT ", StringComparison.Ordinal))
            {
                _port.TrySetResult(int.Parse(e.Data[5..], System.Globalization.CultureInfo.InvariantCulture));
            }
        };
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (_lines)
                {
                    _lines.Add("stderr: " + e.Data);
                }
            }
        };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Port { get; private set; }

    public IPEndPoint EndPoint => new(IPAddress.Loopback, Port);

    public string Authority => $"127.0.0.1:{Port}";

    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>Starts the origin: plain ws://, or wss:// with the PEM certificate and key in <paramref name="tls"/>.</summary>
    public static async Task<PythonWebSocketOrigin> StartAsync((string Cert, string Key)? tls = null)
    {
        var origin = new PythonWebSocketOrigin(tls);
        try
        {
            origin.Port = await origin._port.Task.WaitAsync(TimeSpan.FromSeconds(20));
        }
        catch
        {
            await origin.DisposeAsync();
            throw;
        }

        return origin;
    }

    /// <summary>Waits (with a deadline) for an output line that starts with <paramref name="prefix"/> and returns it.</summary>
    public async Task<string> WaitForLineAsync(string prefix, TimeSpan? within = null)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < (within ?? TimeSpan.FromSeconds(10)))
        {
            var line = Lines.FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
            if (line is not null)
            {
                return line;
            }

            await Task.Delay(20);
        }

        throw new TimeoutException($"no line '{prefix}...' from the python origin; it wrote:\n{string.Join('\n', Lines)}");
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
        }
    }
}
