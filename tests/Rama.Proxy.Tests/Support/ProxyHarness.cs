using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tests.Support;

/// <summary>A forward proxy on 127.0.0.1:0; disposal asserts every connection closed within a deadline.</summary>
public sealed class ProxyHarness : IAsyncDisposable
{
    private readonly IService<ConnectionContext, Unit> _service;

    public ProxyHarness(HttpProxyOptions? options = null, IProxyAuthenticator? authenticator = null, TcpConnectorOptions? connectorOptions = null)
    {
        var connector = new TcpConnector(new DnsResolver(), connectorOptions ?? new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) });
        _service = HttpProxy.CreateForwardProxy(options ?? new HttpProxyOptions(), connector, authenticator ?? StaticProxyAuthenticator.None);
        Server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Server.Start(_service);
    }

    /// <summary>Any connection stack (TLS, echo, PROXY protocol, ...) on 127.0.0.1:0, with the same disposal check.</summary>
    public ProxyHarness(IService<ConnectionContext, Unit> stack)
    {
        _service = stack;
        Server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Server.Start(_service);
    }

    public TcpServer Server { get; }

    public int Port => Server.LocalEndPoint.Port;

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Polls until no proxy connection is open, with a deadline.</summary>
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

    public async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, Port), cts.Token);
        return socket;
    }

    /// <summary>Sends <paramref name="request"/> on a new connection and reads until the proxy closes it.</summary>
    public async Task<string> SendAndReadToCloseAsync(string request, TimeSpan? timeout = null)
    {
        using var socket = await ConnectAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        await socket.SendAsync(Encoding.Latin1.GetBytes(request), cts.Token);
        return await ReadToCloseAsync(socket, cts.Token);
    }

    public static async Task<string> ReadToCloseAsync(Socket socket, CancellationToken cancellationToken)
    {
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            int read;
            try
            {
                read = await socket.ReceiveAsync(buffer, cancellationToken);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                received.Write("<RST>"u8);
                break;
            }

            if (read == 0)
            {
                break;
            }

            received.Write(buffer, 0, read);
        }

        return Encoding.Latin1.GetString(received.ToArray());
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
            if (_service is IAsyncDisposable disposable)
            {
                await disposable.DisposeAsync();
            }
        }
    }
}

/// <summary>Runs the real curl.</summary>
public static class Curl
{
    public static async Task<(int ExitCode, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        var start = new ProcessStartInfo("curl")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in (string[])["-sS", "--max-time", "30", "--noproxy", "", .. args])
        {
            start.ArgumentList.Add(a);
        }

        start.Environment.Remove("http_proxy");
        start.Environment.Remove("https_proxy");
        start.Environment.Remove("HTTP_PROXY");
        start.Environment.Remove("ALL_PROXY");
        using var process = Process.Start(start)!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(40));
        var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = process.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
