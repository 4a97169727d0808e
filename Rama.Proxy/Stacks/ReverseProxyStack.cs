using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Observability;

namespace Rama.Proxy.Stacks;

/// <summary>
/// The stack of a reverse-proxy port: HTTP/1.1 only, every request forwarded to one upstream. It
/// shares the forward stack's options (limits, connector, DNS); the idle pool per upstream is
/// raised to <see cref="MinIdleConnections"/> because one upstream takes all the traffic.
/// </summary>
public static class ReverseProxyStack
{
    /// <summary>Idle upstream connections kept at least, even if the forward options ask for fewer (one upstream takes all the traffic).</summary>
    public const int MinIdleConnections = 64;

    /// <summary>Builds the stack; one access entry per request goes to <paramref name="accessLog"/> (null: the lines of before through <paramref name="loggerFactory"/>).</summary>
    public static IService<ConnectionContext, Unit> Create(ForwardProxyOptions options, HostPort upstream, ILoggerFactory? loggerFactory = null, TimeProvider? time = null,
        IAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        accessLog ??= AccessLogs.ToLogger(loggerFactory);
        time ??= TimeProvider.System;
        var dns = new DnsResolver(options.Dns);
        var connector = new TcpConnector(dns, options.Connector, time, loggerFactory.CreateLogger<TcpConnector>());
        var http = options.Http with { MaxIdleConnectionsPerTarget = Math.Max(options.Http.MaxIdleConnectionsPerTarget, MinIdleConnections) };
        var pipes = HttpProxy.CreateReverseProxy(http, upstream, connector, loggerFactory, time, accessLog);
        return options.ReverseTransport.UsesEventLoops(time, "reverse-proxy")
            ? new EpollReverseProxy(pipes, http, Http1ConnectionPool.Key(upstream), options.Connector, dns, loggerFactory, accessLog, time)
            : pipes;
    }
}
