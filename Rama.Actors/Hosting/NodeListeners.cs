using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Rama.Actors.Listeners;
using Rama.Actors.Options;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using Rama.Proxy.Limits;
using Rama.Proxy.Upstream;
using Rama.Proxy.Observability;
using Rama.Proxy.Mitm;

namespace Rama.Actors.Hosting;

/// <summary>The listeners of a proxy node, built from its <see cref="NodeOptions"/>: one <see cref="ListenerSpec"/> per listener entry, named after it.</summary>
public static class NodeListeners
{
    /// <summary>
    /// Builds the stacks (once, at start-up; called by <see cref="RamaAkkaExtensions.AddRama"/>'s listener factory).
    /// Proxy listeners with the same users and PROXY protocol setting share one stack. With MITM on, the CA is loaded
    /// here, and created when absent.
    /// </summary>
    /// <param name="fleetLimits">On a fleet node: the fleet's limits and shared upstream health. Null: limits counted in this process, shared by every listener.</param>
    public static IReadOnlyList<ListenerSpec> Create(NodeOptions options, IServiceProvider services, IProxyDatabase? proxyDatabase = null, FleetLimits? fleetLimits = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(services);
        var loggers = services.GetRequiredService<ILoggerFactory>();
        // The access log (AccessLogHostingExtensions.AddRamaAccessLog); none registered: the stacks' default, the ILogger lines.
        var accessLog = services.GetService<IAccessLog>();
        // The MITM tunnel redials origins through the stack's own connector (and so the selected upstream), it has none of its own.
        ITunnelHandler? tunnel = options.Mitm.Enabled ? new MitmTunnel(options.Mitm.CreateOptions(options.Proxy), loggers, accessLog: accessLog) : null;
        var forwardStacks = new Dictionary<string, IService<ConnectionContext, Unit>>(StringComparer.Ordinal);
        // One count per node (or the fleet's): a user's limit holds across every listener of the node.
        IConcurrencyLimiter limiter = fleetLimits?.Limiter ?? (IConcurrencyLimiter)new LocalConcurrencyLimiter();
        var specs = new List<ListenerSpec>();
        foreach (var listener in options.Listeners)
        {
            var stack = listener.Kind switch
            {
                ListenerKind.Proxy => Forward(listener),
                ListenerKind.Reverse => Reverse(listener),
                ListenerKind.Tls => WithProxyProtocol(listener, TlsStacks.Termination(options.Tls.ServerOptions!, Termination(options, listener), loggers, accessLog: accessLog)),
                _ => WithProxyProtocol(listener, TlsStacks.Echo(options.Tls.ServerOptions, options.Proxy.Http.Limits, loggers, accessLog: accessLog)),
            };
            specs.Add(new ListenerSpec(listener.Name, listener.Bind, ProxyTracing.ForListener(listener.Name, stack)) { ServerOptions = ServerOptions(options, listener) with { Refused = RefusalAccessLog.For(accessLog) } }); // rama.listener on its spans
        }

        return specs;

        IService<ConnectionContext, Unit> Forward(ListenerOptions listener)
        {
            // The destination rules depend on the bind (the default denials apply off loopback): part of the key.
            var destinations = options.Destinations.PolicyFor(listener.Bind, options.Admin, options.Cluster);
            var key = string.Join('\n', listener.Auth) + "\n" + listener.ProxyProtocol + "\n" + (destinations is null ? "open" : destinations.DefaultDenials ? "defaults" : "rules")
                + "\n" + BodyLimit(listener);
            if (!forwardStacks.TryGetValue(key, out var stack))
            {
                IProxyAuthenticator authenticator = listener.Auth.Count == 0
                    ? StaticProxyAuthenticator.None
                    : new StaticProxyAuthenticator(listener.Auth.Select(StaticProxyAuthenticator.ParseCredential));
                var forward = ForwardProxyStack.Create(WithBodyLimit(listener) with { Destinations = destinations }, authenticator, loggers, proxyDatabase: proxyDatabase, extras: new ForwardProxyExtras
                {
                    Https = options.Tls.ServerOptions,
                    Tunnel = tunnel,
                    Limiter = limiter,
                    UpstreamHealth = fleetLimits?.Health.Cache,
                }, accessLog: accessLog);
                stack = WithProxyProtocol(listener, forward);
                forwardStacks.Add(key, stack);
            }

            return stack;
        }

        // One upstream: the stack of before (epoll where available). Routes: the routed stack on pipes, its table registered
        // with the configuration reload when the host has one (rama-node does; an embedding host may not).
        IService<ConnectionContext, Unit> Reverse(ListenerOptions listener)
        {
            if (listener.Routing is null)
            {
                return ReverseProxyStack.Create(WithBodyLimit(listener), listener.UpstreamTarget!.Value, loggers, accessLog: accessLog, upstreamTls: HttpsOrigins(options));
            }

            var stack = ReverseProxyStack.Create(WithBodyLimit(listener), listener.Routing, out var routes, loggers, accessLog: accessLog, upstreamTls: HttpsOrigins(options));
            services.GetService<ReverseRoutesReload>()?.Add(listener.Name, routes);
            return stack;
        }

        long? BodyLimit(ListenerOptions listener) => listener.MaxBodySize ?? options.Proxy.Limits.MaxBodySize;

        // The listener's body limit (its own, else --max-body-size) on the HTTP codec's limits.
        ForwardProxyOptions WithBodyLimit(ListenerOptions listener) => BodyLimit(listener) is { } body
            ? options.Proxy with { Http = options.Proxy.Http with { Limits = options.Proxy.Http.Limits with { MaxRequestBodySize = body } } }
            : options.Proxy;

        IService<ConnectionContext, Unit> WithProxyProtocol(ListenerOptions listener, IService<ConnectionContext, Unit> stack) =>
            listener.ProxyProtocol
                ? Service.Owning(new ProxyProtocolLayer(options.ProxyProtocol.Options, loggers).Layer(stack), stack as IAsyncDisposable)
                : stack;
    }

    /// <summary>
    /// A listener's accept-side limits: its own MaxConnections and MaxConnectionsPerIp, else the node's
    /// (<c>Rama:Proxy:Limits</c>); MaxConnections defaults to half the descriptor limit.
    /// </summary>
    internal static TcpServerOptions ServerOptions(NodeOptions options, ListenerOptions listener) => new()
    {
        Name = listener.Name,
        MaxConnections = listener.MaxConnections ?? options.Proxy.Limits.MaxConnections ?? DescriptorLimit.DefaultMaxConnections(),
        MaxConnectionsPerIp = listener.MaxConnectionsPerIp ?? options.Proxy.Limits.MaxConnectionsPerIp,
    };

    // https:// upstreams of reverse listeners: verified against the system's roots and Rama:Tls:UpstreamCa.
    private static TlsClientOptions HttpsOrigins(NodeOptions options) =>
        new() { ExtraTrustedRoots = string.IsNullOrEmpty(options.Tls.UpstreamCa) ? null : TlsFiles.LoadAuthorities(options.Tls.UpstreamCa) };

    private static TlsTerminationOptions Termination(NodeOptions options, ListenerOptions listener) => new()
    {
        Upstream = listener.Upstream!.Value,
        Mode = listener.UpstreamMode,
        UpstreamTls = listener.UpstreamTls
            ? new TlsClientOptions { ExtraTrustedRoots = string.IsNullOrEmpty(options.Tls.UpstreamCa) ? null : TlsFiles.LoadAuthorities(options.Tls.UpstreamCa) }
            : null,
        SendProxyProtocol = listener.UpstreamProxyProtocol,
        Limits = options.Proxy.Http.Limits,
        Connector = options.Proxy.Connector,
    };

    /// <summary>What a listener serves, for the start-up lines.</summary>
    public static string Describe(NodeOptions options, ListenerOptions listener)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(listener);
        var pp = listener.ProxyProtocol ? ", PROXY protocol" : "";
        switch (listener.Kind)
        {
            case ListenerKind.Proxy:
                var https = options.Tls.ServerOptions is null ? "" : " + HTTPS proxy";
                var mitm = options.Mitm.Enabled ? ", MITM" : "";
                var auth = listener.Auth.Count == 0 ? "none" : $"{listener.Auth.Count} user(s)";
                var rules = options.Destinations.PolicyFor(listener.Bind, options.Admin, options.Cluster) is { } policy
                    ? $", destinations: {policy.RuleNames.Count} rule(s){(policy.DefaultDenials ? " + default denials" : "")}"
                    : "";
                return $"HTTP proxy + SOCKS5{https}, auth: {auth}{mitm}{rules}{pp}";
            case ListenerKind.Reverse when listener.Routing is { } routing:
                return $"HTTP reverse proxy, {routing.Routes.Count} route(s) to {routing.Clusters.Count} cluster(s) of {routing.Clusters.Sum(c => c.Destinations.Count)} destination(s)";
            case ListenerKind.Reverse:
                return listener.UpstreamProtocol == Rama.Proxy.Http.OriginProtocol.Http1
                    ? $"HTTP reverse proxy to {listener.Upstream}"
                    : $"HTTP reverse proxy to {listener.UpstreamTarget}";
            case ListenerKind.Tls:
                var tlsUp = listener.UpstreamTls ? "tls" : "tcp";
                return $"TLS termination -> {listener.Upstream} ({tlsUp}, {listener.UpstreamMode.ToString().ToLowerInvariant()}){pp}";
            default:
                return $"echo{(options.Tls.ServerOptions is null ? "" : " (HTTP + HTTPS)")}{pp}";
        }
    }
}
