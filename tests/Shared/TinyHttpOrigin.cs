using System.Net.Sockets;
using System.Text;

namespace Rama.Testing;

/// <summary>A minimal HTTP/1.1 origin on raw sockets: answers each request head with a fixed body and closes.</summary>
internal static class TinyHttpOrigin
{
    public static RawOrigin Start(string body, System.Collections.Concurrent.ConcurrentQueue<string>? requests = null) => new(async socket =>
    {
        var head = await ReadHeadAsync(socket);
        requests?.Enqueue(head);
        var payload = Encoding.UTF8.GetBytes(body);
        var response = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n");
        await socket.SendAsync(response.Concat(payload).ToArray());
        socket.Shutdown(SocketShutdown.Send);
    });

    public static async Task<string> ReadHeadAsync(Socket socket)
    {
        var received = new List<byte>();
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0)
            {
                break;
            }

            received.AddRange(buffer.AsSpan(0, n));
            var text = Encoding.ASCII.GetString([.. received]);
            if (text.Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                return text;
            }
        }

        return Encoding.ASCII.GetString([.. received]);
    }
}
