using System.Diagnostics;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tests.Tls;

/// <summary>A connection stack on 127.0.0.1:0; disposal asserts every connection closed within a deadline.</summary>
internal sealed class StackServer : IAsyncDisposable
{
    private readonly IService<ConnectionContext, Unit> _stack;

    public StackServer(IService<ConnectionContext, Unit> stack)
    {
        _stack = stack;
        Server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Server.Start(stack);
    }

    public TcpServer Server { get; }

    public int Port => Server.LocalEndPoint.Port;

    public async Task AssertNoOpenConnectionsAsync(TimeSpan? within = null)
    {
        var deadline = Stopwatch.StartNew();
        var limit = within ?? TimeSpan.FromSeconds(10);
        while (Server.OpenConnections != 0 && deadline.Elapsed < limit)
        {
            await Task.Delay(20);
        }

        Assert.Equal(0, Server.OpenConnections);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await AssertNoOpenConnectionsAsync();
        }
        finally
        {
            await Server.DisposeAsync();
            if (_stack is IAsyncDisposable owned)
            {
                await owned.DisposeAsync();
            }
        }
    }
}
