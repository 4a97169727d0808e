using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Testing;

namespace Rama.Proxy.Tests.Support;

/// <summary>
/// A reverse proxy stack on 127.0.0.1:0 in front of 127.0.0.1:upstreamPort on the transport asked (explicitly, not Auto:
/// epoll by default), logging at Debug into <see cref="Log"/>; disposal is bounded and checks every connection closed.
/// </summary>
internal sealed class LoggedReverseProxy : IAsyncDisposable
{
    private readonly ILoggerFactory _loggers;
    private readonly ReverseProxyTransport _transport;

    private LoggedReverseProxy(ProxyHarness harness, ILoggerFactory loggers, ListLoggerProvider log, ReverseProxyTransport transport)
    {
        Harness = harness;
        _loggers = loggers;
        Log = log;
        _transport = transport;
    }

    public ProxyHarness Harness { get; }

    public ListLoggerProvider Log { get; }

    public static LoggedReverseProxy Start(int upstreamPort, HttpLimits? limits = null, TimeSpan? upstreamResponseHeaderTimeout = null,
        ReverseProxyTransport transport = ReverseProxyTransport.Epoll)
    {
        var log = new ListLoggerProvider();
        var loggers = LoggerFactory.Create(b => b.AddProvider(log).SetMinimumLevel(LogLevel.Debug));
        var options = new ForwardProxyOptions
        {
            ReverseTransport = transport,
            Connector = new TcpConnectorOptions { ConnectTimeout = TimeSpan.FromSeconds(5) },
            Http = new HttpProxyOptions
            {
                Limits = limits ?? new HttpLimits(),
                UpstreamResponseHeaderTimeout = upstreamResponseHeaderTimeout ?? TimeSpan.FromSeconds(10),
            },
        };
        IService<ConnectionContext, Unit> stack = ReverseProxyStack.Create(options, new HostPort("127.0.0.1", upstreamPort), loggers);
        return new LoggedReverseProxy(new ProxyHarness(stack), loggers, log, transport);
    }

    public string Url(string path) => $"{Harness.Url}{path}";

    public async ValueTask DisposeAsync()
    {
        try
        {
            // Bounded: closing a socket still registered with a stuck event loop spins in Socket.Dispose, which no
            // token can cancel; a test then fails with a TimeoutException here instead of hanging the run.
            await Task.Run(async () => await Harness.DisposeAsync()).WaitAsync(TimeSpan.FromSeconds(40));
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException(
                $"the reverse proxy ({_transport}) did not shut down ({Harness.Server.OpenConnections} connections open): a connection never closed, or an event-loop thread is stuck", ex);
        }
        finally
        {
            _loggers.Dispose();
        }
    }
}
