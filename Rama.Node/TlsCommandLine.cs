using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;

namespace Rama.Node;

/// <summary>A listener of the node: its name, endpoint and the stack built for it from the host's services.</summary>
internal sealed record NodeListener(string Name, IPEndPoint Endpoint, Func<IServiceProvider, IService<ConnectionContext, Unit>> Stack);

/// <summary>The TLS, echo, PROXY protocol and MITM options of the command line, and the stacks they build (issue 5).</summary>
internal sealed class TlsCommandLine
{
    private readonly Option<string[]> _tlsListen = Many("--tls-listen", "TLS termination endpoint (ip:port, repeatable); forwards to --upstream");
    private readonly Option<string?> _cert = new("--cert") { Description = "Certificate file (PEM, chain after the leaf; or .pfx/.p12); also makes --listen ports HTTPS proxies and --echo-listen HTTPS" };
    private readonly Option<string?> _key = new("--key") { Description = "Private key file (PEM) of --cert" };
    private readonly Option<string?> _upstream = new("--upstream") { Description = "Where TLS termination forwards (host:port)" };
    private readonly Option<bool> _upstreamTls = new("--upstream-tls") { Description = "Re-encrypt to the upstream (verified)" };
    private readonly Option<string?> _upstreamCa = new("--upstream-ca") { Description = "Extra CA (PEM) trusted for the upstream" };
    private readonly Option<bool> _upstreamHttp = new("--upstream-http") { Description = "Forward terminated traffic as HTTP/1.1 requests (logged with fingerprints) instead of raw TCP" };
    private readonly Option<string?> _upstreamProxyProtocol = new("--upstream-proxy-protocol") { Description = "Send a PROXY header upstream: v1 or v2" };
    private readonly Option<string?> _unknownSni = new("--unknown-sni") { Description = "Unknown SNI: default (serve the default certificate) or reject (handshake failure)" };
    private readonly Option<string[]> _alpn = Many("--alpn", "ALPN protocol accepted (repeatable; default http/1.1)");
    private readonly Option<string?> _clientCa = new("--client-ca") { Description = "CA file (PEM) client certificates must chain to (mTLS)" };
    private readonly Option<string?> _clientCert = new("--client-cert") { Description = "Client certificates: none, optional or required" };
    private readonly Option<double?> _handshakeTimeout = new("--handshake-timeout") { Description = "Seconds a TLS handshake may take (default 10)" };
    private readonly Option<string[]> _echoListen = Many("--echo-listen", "Echo service endpoint (ip:port, repeatable): JSON of each request with TLS fingerprints");
    private readonly Option<bool> _proxyProtocol = new("--proxy-protocol") { Description = "Expect a PROXY protocol header (v1 or v2) from trusted peers on every listener" };
    private readonly Option<string[]> _proxyProtocolTrusted = Many("--proxy-protocol-trusted", "Trusted PROXY source (CIDR or address, repeatable; default loopback)");
    private readonly Option<bool> _mitm = new("--mitm") { Description = "Decrypt CONNECT tunnels that start with a ClientHello (clients must trust the CA)" };
    private readonly Option<string?> _mitmCaDir = new("--mitm-ca-dir") { Description = "Directory of the MITM CA (created on first run; default ~/.rama/ca)" };
    private readonly Option<string?> _mitmCaCert = new("--mitm-ca-cert") { Description = "MITM CA certificate (PEM) of your own" };
    private readonly Option<string?> _mitmCaKey = new("--mitm-ca-key") { Description = "MITM CA key (PEM)" };
    private readonly Option<string?> _mitmUpstreamCa = new("--mitm-upstream-ca") { Description = "Extra CA (PEM) trusted when verifying origins" };
    private readonly Option<bool> _mitmInsecure = new("--mitm-insecure-upstream") { Description = "Do not verify origins (debugging only)" };
    private Command? _ca;

    private static Option<string[]> Many(string name, string description) =>
        new(name) { Description = description, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };

    public void AddTo(RootCommand root)
    {
        foreach (var option in new Option[] { _tlsListen, _cert, _key, _upstream, _upstreamTls, _upstreamCa, _upstreamHttp, _upstreamProxyProtocol, _unknownSni, _alpn,
                     _clientCa, _clientCert, _handshakeTimeout, _echoListen, _proxyProtocol, _proxyProtocolTrusted, _mitm, _mitmCaDir, _mitmCaCert, _mitmCaKey, _mitmUpstreamCa, _mitmInsecure })
        {
            root.Options.Add(option);
        }

        // rama-node ca export [--mitm-ca-dir DIR]: prints the MITM CA certificate (PEM), creating the CA on first use.
        var dir = new Option<string?>("--mitm-ca-dir") { Description = "Directory of the MITM CA (default ~/.rama/ca)" };
        var export = new Command("export", "Print the MITM CA certificate (PEM) for clients to trust; creates the CA when absent") { dir };
        export.SetAction(parse =>
        {
            using var authority = new MitmNodeOptions { CaDir = parse.GetValue(dir) }.LoadAuthority();
            Console.Write(authority.ExportCertificatePem());
            return 0;
        });
        _ca = new Command("ca", "MITM certificate authority") { export };
        root.Subcommands.Add(_ca);
    }

    public bool IsSubcommand(ParseResult parsed) => parsed.CommandResult.Command != parsed.RootCommandResult.Command;

    public void Apply(ParseResult parsed, NodeOptions options)
    {
        var tls = options.Tls;
        if (parsed.GetValue(_tlsListen) is { Length: > 0 } tlsListen)
        {
            tls.Listen = [.. tlsListen];
        }

        tls.Cert = parsed.GetValue(_cert) ?? tls.Cert;
        tls.Key = parsed.GetValue(_key) ?? tls.Key;
        tls.Upstream = parsed.GetValue(_upstream) ?? tls.Upstream;
        tls.UpstreamTls |= parsed.GetValue(_upstreamTls);
        tls.UpstreamCa = parsed.GetValue(_upstreamCa) ?? tls.UpstreamCa;
        if (parsed.GetValue(_upstreamHttp))
        {
            tls.UpstreamMode = TerminationMode.Http;
        }

        if (parsed.GetValue(_upstreamProxyProtocol) is { } pp)
        {
            tls.UpstreamProxyProtocol = pp.Equals("v1", StringComparison.OrdinalIgnoreCase) ? ProxyProtocolVersion.V1 : ProxyProtocolVersion.V2;
        }

        if (parsed.GetValue(_unknownSni) is { } unknown)
        {
            tls.UnknownSni = unknown.Equals("reject", StringComparison.OrdinalIgnoreCase) ? UnknownServerNamePolicy.Reject : UnknownServerNamePolicy.UseDefault;
        }

        if (parsed.GetValue(_alpn) is { Length: > 0 } alpn)
        {
            tls.Alpn = [.. alpn];
        }

        tls.ClientCa = parsed.GetValue(_clientCa) ?? tls.ClientCa;
        if (parsed.GetValue(_clientCert) is { } mode && Enum.TryParse<ClientCertificateMode>(mode, ignoreCase: true, out var clientMode))
        {
            tls.ClientCertificates = clientMode;
        }

        if (parsed.GetValue(_handshakeTimeout) is { } seconds)
        {
            tls.HandshakeTimeout = TimeSpan.FromSeconds(seconds);
        }

        if (parsed.GetValue(_echoListen) is { Length: > 0 } echo)
        {
            options.EchoListen = [.. echo];
        }

        options.ProxyProtocol.Enabled |= parsed.GetValue(_proxyProtocol);
        if (parsed.GetValue(_proxyProtocolTrusted) is { Length: > 0 } trusted)
        {
            options.ProxyProtocol.Trusted = [.. trusted];
        }

        var mitm = options.Mitm;
        mitm.Enabled |= parsed.GetValue(_mitm);
        mitm.CaDir = parsed.GetValue(_mitmCaDir) ?? mitm.CaDir;
        mitm.CaCert = parsed.GetValue(_mitmCaCert) ?? mitm.CaCert;
        mitm.CaKey = parsed.GetValue(_mitmCaKey) ?? mitm.CaKey;
        mitm.UpstreamCa = parsed.GetValue(_mitmUpstreamCa) ?? mitm.UpstreamCa;
        mitm.InsecureUpstream |= parsed.GetValue(_mitmInsecure);
    }

    /// <summary>The forward-proxy stack: HTTPS too with a certificate, MITM when enabled, PROXY protocol in front when enabled.</summary>
    public static IService<ConnectionContext, Unit> ForwardProxy(NodeOptions options, ILoggerFactory loggerFactory, Rama.Proxy.Upstream.IProxyDatabase? proxyDatabase = null)
    {
        // The MITM tunnel redials origins through the stack's own connector (and so the selected upstream), it has none of its own.
        ITunnelHandler? tunnel = options.Mitm.Enabled ? new MitmTunnel(options.Mitm.Options(options.Proxy), loggerFactory) : null;

        var stack = ForwardProxyStack.Create(options.Proxy, options.CreateAuthenticator(), loggerFactory, proxyDatabase: proxyDatabase, extras: new ForwardProxyExtras
        {
            Https = options.Tls.ServerOptions,
            Tunnel = tunnel,
        });
        return WithProxyProtocol(options, stack, loggerFactory);
    }

    public static IReadOnlyList<NodeListener> ExtraListeners(NodeOptions options)
    {
        // Order (and so the order Describe reads): reverse proxies, TLS termination, echo.
        var extra = new List<NodeListener>();
        foreach (var reverse in options.ReverseListeners)
        {
            extra.Add(new($"reverse-{extra.Count}", reverse.Endpoint, services => ReverseProxyStack.Create(options.Proxy, reverse.Upstream, services.GetRequiredService<ILoggerFactory>())));
        }

        foreach (var endpoint in options.Tls.Endpoints)
        {
            extra.Add(new($"tls-{extra.Count}", endpoint, services =>
            {
                var loggers = services.GetRequiredService<ILoggerFactory>();
                return WithProxyProtocol(options, TlsStacks.Termination(options.Tls.ServerOptions!, options.Tls.TerminationOptions(options.Proxy), loggers), loggers);
            }));
        }

        foreach (var endpoint in options.EchoEndpoints)
        {
            extra.Add(new($"echo-{extra.Count}", endpoint, services =>
            {
                var loggers = services.GetRequiredService<ILoggerFactory>();
                return WithProxyProtocol(options, TlsStacks.Echo(options.Tls.ServerOptions, options.Proxy.Http.Limits, loggers), loggers);
            }));
        }

        return extra;
    }

    private static IService<ConnectionContext, Unit> WithProxyProtocol(NodeOptions options, IService<ConnectionContext, Unit> stack, ILoggerFactory loggerFactory) =>
        options.ProxyProtocol.Options is { } pp && options.ProxyProtocol.Enabled
            ? Service.Owning(new ProxyProtocolLayer(pp, loggerFactory).Layer(stack), stack as IAsyncDisposable)
            : stack;

    /// <summary>What listener <paramref name="index"/> serves, for the start-up lines.</summary>
    public static string Describe(NodeOptions options, int index, string authText)
    {
        var pp = options.ProxyProtocol.Enabled ? ", PROXY protocol" : "";
        if (index < options.Endpoints.Count)
        {
            var https = options.Tls.ServerOptions is null ? "" : " + HTTPS proxy";
            var mitm = options.Mitm.Enabled ? ", MITM" : "";
            return $"HTTP proxy + SOCKS5{https}, auth: {authText}{mitm}{pp}";
        }

        index -= options.Endpoints.Count;
        if (index < options.ReverseListeners.Count)
        {
            return $"HTTP reverse proxy to {options.ReverseListeners[index].Upstream}";
        }

        index -= options.ReverseListeners.Count;
        if (index < options.Tls.Endpoints.Count)
        {
            var tlsUp = options.Tls.UpstreamTls ? "tls" : "tcp";
            return $"TLS termination -> {options.Tls.Upstream} ({tlsUp}, {options.Tls.UpstreamMode.ToString().ToLowerInvariant()}){pp}";
        }

        return $"echo{(options.Tls.ServerOptions is null ? "" : " (HTTP + HTTPS)")}{pp}";
    }
}
