using System.Net;
using System.Net.Sockets;
using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Socks5;
using Rama.Proxy.Stacks;
using Rama.Testing;

namespace Rama.Proxy.Tests.Stacks;

/// <summary>
/// Garbage on the real HTTP+SOCKS5 port: whatever a client sends, and however it leaves (half-close,
/// abort, silence), the node answers or closes within its timeouts, leaks no connection, and keeps
/// serving real clients.
/// </summary>
public sealed class ForwardProxyStackChaosTests
{
    private enum Ending
    {
        HalfClose,
        Abort,
        StaySilent,
    }

    private sealed record Visit(byte[] Bytes, Ending Ending);

    private static readonly byte[][] Prefixes =
    [
        [],
        [0x05],
        [0x05, 0x01, 0x00],
        [0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03],
        "GET "u8.ToArray(),
        "GET http://127.0.0.1:1/ HTTP/1.1\r\n"u8.ToArray(),
        "CONNECT 127.0.0.1:1 HTTP/1.1\r\n"u8.ToArray(),
        "POST http://127.0.0.1:1/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"u8.ToArray(),
        [0x16, 0x03, 0x01],
        [0x04, 0x01],
    ];

    private static Arbitrary<Visit> Visits() =>
        (from prefix in Gen.Elements(Prefixes)
         from tail in Gen.ArrayOf(Gen.Choose(0, 255).Select(i => (byte)i)).Select(a => a.Take(300).ToArray())
         from ending in Gen.Elements(Ending.HalfClose, Ending.Abort, Ending.StaySilent)
         select new Visit([.. prefix, .. tail], ending)).ToArbitrary();

    [Fact]
    public async Task Garbage_is_answered_or_closed_in_time_leaks_nothing_and_the_port_keeps_serving()
    {
        var options = new ForwardProxyOptions
        {
            Http = new HttpProxyOptions { Limits = new HttpLimits { HeaderTimeout = TimeSpan.FromSeconds(1), KeepAliveTimeout = TimeSpan.FromSeconds(1) } },
            Socks5 = new Socks5ServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(1) },
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(1) },
        };
        var stack = ForwardProxyStack.Create(options, StaticProxyAuthenticator.None);
        await using var server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.Start(stack);

        var visits = Gen.Sample(Visits().Generator, 200).ToArray();
        foreach (var batch in visits.Chunk(25))
        {
            await Task.WhenAll(batch.Select(v => VisitAsync(server.LocalEndPoint, v)));
        }

        await Eventually.TrueAsync(() => server.OpenConnections == 0, TimeSpan.FromSeconds(10), $"{server.OpenConnections} connections leaked");

        await using var origin = TinyHttpOrigin.Start("still serving");
        var result = await Cli.CurlAsync("-x", $"http://{server.LocalEndPoint}", $"http://127.0.0.1:{origin.Port}/");
        Assert.Equal("still serving", result.Text);
        await ((IAsyncDisposable)stack).DisposeAsync();
    }

    /// <summary>Sends the bytes, ends the way the visit says, and requires the server to close within 5 s.</summary>
    private static async Task VisitAsync(IPEndPoint endpoint, Visit visit)
    {
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(endpoint);
        try
        {
            if (visit.Bytes.Length > 0)
            {
                await client.SendAsync(visit.Bytes);
            }

            switch (visit.Ending)
            {
                case Ending.Abort:
                    client.LingerState = new LingerOption(true, 0);
                    client.Close();
                    return;
                case Ending.HalfClose:
                    client.Shutdown(SocketShutdown.Send);
                    break;
            }

            // The server must end the connection by itself (answer then close, or close).
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            var buffer = new byte[4096];
            while (await client.ReceiveAsync(buffer, SocketFlags.None, cts.Token) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // reset by the server: also a close
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"the server kept a {visit.Ending} connection open for 5 s after: {Convert.ToHexString(visit.Bytes.AsSpan(0, Math.Min(40, visit.Bytes.Length)))}");
        }
    }
}
