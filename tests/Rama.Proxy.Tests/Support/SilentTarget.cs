using System.Net;
using System.Net.Sockets;

namespace Rama.Proxy.Tests.Support;

/// <summary>
/// A loopback port that neither accepts nor refuses: a listener with backlog 1 that never accepts,
/// whose accept queue is pre-filled until new SYNs are dropped (Linux drops a SYN when the accept
/// queue is full), so a connect to it hangs until the connector's timeout.
/// </summary>
public sealed class SilentTarget : IDisposable
{
    private readonly Socket _listener;
    private readonly List<Socket> _fillers = [];

    private SilentTarget(Socket listener) => _listener = listener;

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    /// <summary>The target, or null when this kernel still completes connects to a full queue.</summary>
    public static async Task<SilentTarget?> CreateAsync()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var target = new SilentTarget(listener);
        for (var i = 0; i < 16; i++)
        {
            var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await filler.ConnectAsync(new IPEndPoint(IPAddress.Loopback, target.Port), cts.Token);
                target._fillers.Add(filler);
            }
            catch (OperationCanceledException)
            {
                filler.Dispose();
                return target; // this SYN was dropped: the port is silent now
            }
        }

        target.Dispose();
        return null;
    }

    public void Dispose()
    {
        foreach (var f in _fillers)
        {
            f.Dispose();
        }

        _listener.Dispose();
    }
}
