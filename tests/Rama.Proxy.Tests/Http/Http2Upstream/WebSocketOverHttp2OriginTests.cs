using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Http.Http2;
using Rama.Proxy.Net;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// WebSockets to an HTTP/2 origin (RFC 8441): the reverse listener speaks extended CONNECT to an <c>h2c://</c> upstream. No
/// real RFC 8441 origin is installed here (nginx and python websockets do not serve WebSockets over HTTP/2), so the origin is
/// our <see cref="Http2Server"/> with .NET's own WebSocket framing (<see cref="WebSocket.CreateFromStream(Stream, WebSocketCreationOptions)"/>)
/// on the stream; the clients are real: python3-websockets (HTTP/1.1 upgrade, it checks Sec-WebSocket-Accept), curl, and an
/// h2 client sending extended CONNECT.
/// </summary>
public class WebSocketOverHttp2OriginTests
{
    [Fact]
    public async Task Python_websocket_client_reaches_an_h2c_origin_by_extended_connect()
    {
        var origin = new EchoOrigin();
        await using var server = origin.Start();
        await using (var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", server.LocalEndPoint.Port))))
        {
            var client = await WebSocketPeers.RunClientAsync($"ws://127.0.0.1:{proxy.Port}/ws/chat?room=1");
            Assert.True(client.ExitCode == 0, client.Stderr + client.Text);
            Assert.Contains("OK handshake 1.1 rama", client.Text, StringComparison.Ordinal);
            Assert.Contains("OK binary 1MiB", client.Text, StringComparison.Ordinal);
            Assert.Contains("OK 1000 messages", client.Text, StringComparison.Ordinal);
            Assert.Contains("OK close 1000 bye", client.Text, StringComparison.Ordinal);
            await Eventually.TrueAsync(() => origin.Closed.Contains("1000 bye"), TimeSpan.FromSeconds(10), "the origin did not see the close");
        }

        // The extended CONNECT the origin saw (RFC 8441 §4, §5): :protocol websocket, the path, no Sec-WebSocket-Key, no Upgrade.
        var head = Assert.Single(origin.Heads);
        Assert.Equal(HttpMethods.Connect, head.Method);
        Assert.Equal("/ws/chat?room=1", head.Target);
        Assert.Equal("websocket", head.Protocol);
        Assert.Equal("http", head.Scheme);
        Assert.Equal("13", head.Headers.GetText("sec-websocket-version"));
        Assert.Null(head.Headers.GetText("sec-websocket-key"));
        Assert.Null(head.Headers.GetText("upgrade"));
        Assert.Equal("1.1 rama", head.Headers.GetText("via"));
    }

    [Fact]
    public async Task H2_client_extended_connect_reaches_an_h2c_origin_by_extended_connect()
    {
        var origin = new EchoOrigin();
        await using var server = origin.Start();
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", server.LocalEndPoint.Port)));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.Port));
        await using var connection = new SocketConnection(socket);
        connection.Start();
        await using (var client = Http2ClientConnection.Start(connection))
        {
            var up = new Pipe();
            var request = new HttpRequest(HttpMethods.Connect, "/ws/h2", RequestTargetForm.Origin, HttpProtocolVersion.Http2, new HttpHeaders()) { Body = up.Reader };
            request.Headers.Add("sec-websocket-version", "13");
            request.Extensions.Set(new Http2RequestInfo(0, "http", $"127.0.0.1:{proxy.Port}", "websocket"));
            var result = await client.SendAsync(request).WaitAsync(TimeSpan.FromSeconds(10));
            Assert.True(result.Response is not null, result.ToString());
            Assert.Equal(200, result.Response.Status);

            using var ws = WebSocket.CreateFromStream(new DuplexPipeStream(result.Response.Body, up.Writer), new WebSocketCreationOptions { IsServer = false });
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await ws.SendAsync("h2 both ways"u8.ToArray(), WebSocketMessageType.Text, true, timeout.Token);
            var buffer = new byte[64];
            var got = await ws.ReceiveAsync(buffer, timeout.Token);
            Assert.Equal("h2 both ways", Encoding.UTF8.GetString(buffer, 0, got.Count));
            await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
            await up.Writer.CompleteAsync();
            await Eventually.TrueAsync(() => origin.Closed.Contains("1000 done"), TimeSpan.FromSeconds(10), "the origin did not see the close");
        }

        Assert.Equal("/ws/h2", Assert.Single(origin.Heads).Target);
    }

    [Fact]
    public async Task An_h2c_origin_without_SETTINGS_ENABLE_CONNECT_PROTOCOL_gets_no_websocket_and_the_client_a_502()
    {
        var origin = new EchoOrigin();
        await using var server = origin.Start(new Http2Limits { EnableConnectProtocol = false });
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", server.LocalEndPoint.Port)));
        var answer = await Cli.CurlAsync("-i", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
            "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", proxy.Url("/ws"));
        Assert.True(answer.ExitCode == 0, answer.Stderr);
        Assert.StartsWith("HTTP/1.1 502 ", answer.Text, StringComparison.Ordinal);
        Assert.Empty(origin.Heads); // no stream was opened

        // Plain requests to the same origin still go over HTTP/2.
        var plain = await Cli.CurlAsync(proxy.Url("/plain"));
        Assert.Equal("plain over h2\n", plain.Text);
    }

    /// <summary>
    /// An h2c origin: extended CONNECT with :protocol websocket gets a 200 and .NET's server-side WebSocket echoes every message;
    /// other requests get "plain over h2". Records the heads and each close.
    /// </summary>
    private sealed class EchoOrigin
    {
        public ConcurrentQueue<(string Method, string Target, string? Protocol, string? Scheme, HttpHeaders Headers)> Heads { get; } = new();

        public ConcurrentQueue<string> Closed { get; } = new();

        public TcpServer Start(Http2Limits? limits = null)
        {
            var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            server.Start(Http2Server.Create(Service.FromFunc<HttpRequest, HttpResponse>(Serve), limits));
            return server;
        }

        private ValueTask<HttpResponse> Serve(HttpRequest request, CancellationToken cancellationToken)
        {
            var info = request.Extensions.Get<Http2RequestInfo>();
            if (!request.IsConnect)
            {
                return ValueTask.FromResult(HttpResponse.Text(200, "plain over h2"));
            }

            Heads.Enqueue((request.Method, request.Target, info?.Protocol, info?.Scheme, request.Headers));
            return ValueTask.FromResult(new HttpResponse(200) { OnUpgrade = EchoAsync });
        }

        private async Task EchoAsync(IDuplexPipe stream, CancellationToken cancellationToken)
        {
            using var ws = WebSocket.CreateFromStream(new DuplexPipeStream(stream.Input, stream.Output), new WebSocketCreationOptions { IsServer = true });
            var buffer = new byte[64 * 1024];
            var message = new MemoryStream();
            while (true)
            {
                var got = await ws.ReceiveAsync(buffer, cancellationToken);
                if (got.MessageType == WebSocketMessageType.Close)
                {
                    Closed.Enqueue($"{(int?)ws.CloseStatus} {ws.CloseStatusDescription}");
                    await ws.CloseOutputAsync(ws.CloseStatus ?? WebSocketCloseStatus.NormalClosure, ws.CloseStatusDescription, cancellationToken);
                    return;
                }

                message.Write(buffer, 0, got.Count);
                if (got.EndOfMessage)
                {
                    await ws.SendAsync(message.ToArray(), got.MessageType, true, cancellationToken);
                    message.SetLength(0);
                }
            }
        }
    }

    /// <summary>A stream over a pipe pair (reads from <c>input</c>, writes and flushes to <c>output</c>) for .NET's WebSocket framing.</summary>
    private sealed class DuplexPipeStream(PipeReader input, PipeWriter output) : Stream
    {
        private readonly Stream _read = input.AsStream();
        private readonly Stream _write = output.AsStream();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _read.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _read.ReadAsync(buffer, offset, count, cancellationToken);

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await _write.WriteAsync(buffer, cancellationToken);
            await _write.FlushAsync(cancellationToken);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task FlushAsync(CancellationToken cancellationToken) => _write.FlushAsync(cancellationToken);

        public override void Flush() => _write.Flush();

        public override int Read(byte[] buffer, int offset, int count) => _read.Read(buffer, offset, count);

        public override void Write(byte[] buffer, int offset, int count) => _write.Write(buffer, offset, count);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _read.Dispose();
                _write.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
