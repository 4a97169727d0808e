using System.Net;
using System.Net.Sockets;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tests.Net;

/// <summary>
/// Closing a connection whose input nobody reads (found by benchmarks/soak: a forward-proxy client that vanished
/// mid-download left the origin connection's dispose waiting forever, so the client connection's task, its listener's
/// open-connection count and the drain never finished).
/// </summary>
public sealed class SocketConnectionDisposeTests
{
    [Fact]
    public async Task Dispose_finishes_while_the_receive_loop_waits_on_a_full_input_pipe()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accepting = listener.AcceptAsync();
        await peer.ConnectAsync(listener.LocalEndPoint!);
        var connection = new SocketConnection(await accepting, new SocketConnectionOptions { MaxBufferedBytes = 64 * 1024 });
        connection.Start();

        // The peer sends more than the input pipe holds and nobody reads Input: the receive loop parks in its flush.
        var chunk = new byte[64 * 1024];
        peer.Blocking = false;
        long sent = 0;
        var stalled = 0;
        while (stalled < 20)
        {
            try
            {
                sent += peer.Send(chunk);
                stalled = 0;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                stalled++;
                await Task.Delay(25);
            }
        }

        Assert.True(sent > 64 * 1024, $"only {sent} bytes went out before the peer stalled");
        await connection.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
    }
}
