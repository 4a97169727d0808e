using System.Diagnostics.CodeAnalysis;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Options;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Options;

/// <summary>
/// Every option of a proxy node, declared once with its configuration key (<c>Rama:...</c>; in the environment
/// <c>Rama__...</c>) and its command-line name. Keys under <c>Rama:Proxy</c> other than the ones declared here are the
/// properties of Rama.Proxy's <c>ForwardProxyOptions</c> (bound and validated as a section).
/// </summary>
public static class NodeOptionDeclarations
{
    public static RamaOption Listen { get; } = new()
    {
        Key = "Rama:Listen", Name = "--listen", Arity = OptionArity.Repeatable, Value = OptionValue.Endpoint,
        Description = "Proxy listener (HTTP proxy + SOCKS5 on one port) at ip:port, repeatable; adds entries listen-0, listen-1, ... (default without any listener: 127.0.0.1:8080; port 0 picks one)",
    };

    public static RamaOption Reverse { get; } = new()
    {
        Key = "Rama:Reverse", Name = "--reverse", Arity = OptionArity.Repeatable, Value = ReverseShorthandValue.Instance,
        Description = "Reverse-proxy listener as ip:port=upstream, repeatable; adds entries reverse-0, reverse-1, ... (every request forwarded to the upstream, no proxy auth); the upstream's scheme says the protocol: host:port or http://host:port (HTTP/1.1), h2c://host:port (HTTP/2, prior knowledge), https://host:port (TLS, h2 when ALPN agrees)",
    };

    public static RamaOption TlsListen { get; } = new()
    {
        Key = "Rama:Tls:Listen", Name = "--tls-listen", Arity = OptionArity.Repeatable, Value = OptionValue.Endpoint,
        Description = "TLS termination listener at ip:port, repeatable; adds entries tls-0, tls-1, ...; forwards to --upstream",
    };

    public static RamaOption EchoListen { get; } = new()
    {
        Key = "Rama:EchoListen", Name = "--echo-listen", Arity = OptionArity.Repeatable, Value = OptionValue.Endpoint,
        Description = "Echo service listener at ip:port, repeatable; adds entries echo-0, echo-1, ...: JSON of each request with its TLS fingerprints",
    };

    public static RamaOption Auth { get; } = new()
    {
        Key = "Rama:Auth", Name = "--auth", Arity = OptionArity.Repeatable, Value = OptionValue.Credential, Secret = true,
        Description = "Proxy user as user:password, repeatable; the default of every proxy listener without its own Auth (none: open proxy, loopback only)",
    };

    public static RamaOption AllowOpenProxy { get; } = new()
    {
        Key = "Rama:AllowOpenProxy", Name = "--allow-open-proxy", Arity = OptionArity.Flag, Value = OptionValue.Boolean, Default = "false",
        Description = "Allow a proxy listener on a non-loopback address without auth",
    };

    public static RamaOption DrainTimeout { get; } = new()
    {
        Key = "Rama:DrainTimeout", Name = "--drain-timeout", Value = OptionValue.Duration(TimeSpan.Zero, TimeSpan.FromHours(1)), Default = "00:00:20",
        Description = "How long shutdown waits for connections in flight, seconds or hh:mm:ss (default 20 s)",
    };

    public static RamaOption ProxyDb { get; } = new()
    {
        Key = "Rama:ProxyDb", Name = "--proxydb", Value = OptionValue.ExistingFile,
        Description = "Proxy database (CSV in rama's column order, or JSON) of upstream proxies; reloaded when the file changes. On a fleet node: seeds the fleet's database when it is empty, read once at start",
    };

    public static RamaOption FleetData { get; } = new()
    {
        Key = "Rama:Fleet:DataDirectory", Name = "--fleet-data", Value = OptionValue.Text,
        Description = "Fleet node: directory where the fleet's proxy database is kept on disk (a file per partition, created when absent; one directory per node), so it survives a restart of every node (default: in memory only)",
    };

    public static RamaOption UpstreamMode { get; } = new()
    {
        Key = "Rama:Proxy:Upstream:Mode", Name = "--upstream-mode", Value = OptionValue.Enum<UpstreamMode>(), Default = "direct",
        Description = "Requests without a filter: direct (default), required (407 / SOCKS5 0x02), fallback (use --upstream-fallback)",
    };

    public static RamaOption UpstreamFallback { get; } = new()
    {
        Key = "Rama:Proxy:Upstream:FallbackFilter", Name = "--upstream-fallback",
        Description = "Filter for requests without one, as username labels (e.g. country-us-residential); implies --upstream-mode fallback unless the mode is set",
    };

    public static RamaOption UpstreamAttempts { get; } = new()
    {
        Key = "Rama:Proxy:Upstream:MaxAttempts", Name = "--upstream-attempts", Value = OptionValue.Integer(1, 100), Default = "3",
        Description = "Upstreams tried per connection before failing (default 3)",
    };

    public static RamaOption UpstreamBackoff { get; } = new()
    {
        Key = "Rama:Proxy:Upstream:BackoffInitial", Name = "--upstream-backoff", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)), Default = "00:00:05",
        Description = "How long a failing upstream is backed off at first, seconds or hh:mm:ss; doubles per failure up to BackoffMax (default 5 s, max 5 min)",
    };

    public static RamaOption UpstreamProxyCa { get; } = new()
    {
        Key = "Rama:Proxy:Upstream:TrustedCaFile", Name = "--upstream-proxy-ca", Value = OptionValue.ExistingFile,
        Description = "PEM file of extra CA certificates trusted for HTTPS upstream proxies of the proxy database (always verified)",
    };

    public static RamaOption UpstreamMaxConnections { get; } = new()
    {
        Key = "Rama:Proxy:Limits:UpstreamMaxConnections", Name = "--upstream-max-connections", Value = OptionValue.Integer(1, 10_000_000),
        Description = "Connections open to one upstream proxy at once, for records without max_connections (fleet-wide on a fleet; an upstream at its limit is passed over, 503 when all are)",
    };

    public static RamaOption UpstreamRate { get; } = new()
    {
        Key = "Rama:Proxy:Limits:UpstreamRate", Name = "--upstream-rate", Value = LimitRateValue.Instance,
        Description = "New connections to one upstream proxy, e.g. 50/s or 600/m, for records without rate (fleet-wide on a fleet)",
    };

    public static RamaOption UserMaxConnections { get; } = new()
    {
        Key = "Rama:Proxy:Limits:UserMaxConnections", Name = "--user-max-connections", Value = OptionValue.Integer(1, 10_000_000),
        Description = "Tunnels and HTTP requests in flight per proxy user at once (fleet-wide on a fleet); over it: 429 with Retry-After, SOCKS5 0x02",
    };

    public static RamaOption UserLimit { get; } = new()
    {
        Key = "Rama:Proxy:Limits:Users", Name = "--user-limit", Arity = OptionArity.Repeatable, Value = UserLimitValue.Instance,
        Description = "One user's concurrency limit as user=connections, repeatable; wins over --user-max-connections",
    };

    public static RamaOption UserRate { get; } = new()
    {
        Key = "Rama:Proxy:Limits:UserRate", Name = "--user-rate", Value = LimitRateValue.Instance,
        Description = "Requests per proxy user, e.g. 20/s or 600/m, a token bucket (each HTTP request, CONNECT and SOCKS5 CONNECT takes a token; fleet-wide on a fleet); over it: 429 with Retry-After, SOCKS5 0x02",
    };

    public static RamaOption UserRateLimit { get; } = new()
    {
        Key = "Rama:Proxy:Limits:UserRates", Name = "--user-rate-limit", Arity = OptionArity.Repeatable, Value = UserRateValue.Instance,
        Description = "One user's request rate as user=rate (john=5/s), repeatable; wins over --user-rate",
    };

    public static RamaOption MaxConnections { get; } = new()
    {
        Key = "Rama:Proxy:Limits:MaxConnections", Name = "--max-connections", Value = OptionValue.Integer(1, 10_000_000), Default = "half the descriptor limit",
        Description = "Connections open at once on each listener (a listener's MaxConnections wins); past it: 503 with Retry-After, SOCKS5 0x01, a TLS internal_error alert (default: half the process's descriptor limit, 10000 under 20000)",
    };

    public static RamaOption MaxConnectionsPerIp { get; } = new()
    {
        Key = "Rama:Proxy:Limits:MaxConnectionsPerIp", Name = "--max-connections-per-ip", Value = OptionValue.Integer(1, 10_000_000),
        Description = "Connections open at once from one client address on each listener (a listener's MaxConnectionsPerIp wins); past it the same answers as --max-connections (default none)",
    };

    public static RamaOption MaxBodySize { get; } = new()
    {
        Key = "Rama:Proxy:Limits:MaxBodySize", Name = "--max-body-size", Value = ByteSizeValue.Instance,
        Description = "Largest request body on proxy and reverse listeners, bytes or 64KiB, 10MiB, 1GiB (a listener's MaxBodySize wins); past it: 413 (default none)",
    };

    public static RamaOption Allow { get; } = new()
    {
        Key = "Rama:Destinations:Allow", Name = "--allow", Arity = OptionArity.Repeatable, Value = DestinationShorthandValue.Instance,
        Description = "Destination rule allowing [user@]destination[:port] (10.1.2.3, *.corp.example:443, [fe80::1]:22, :8000-8100), repeatable; after Rama:Destinations:Rules, before --deny, and before the default denials",
    };

    public static RamaOption Deny { get; } = new()
    {
        Key = "Rama:Destinations:Deny", Name = "--deny", Arity = OptionArity.Repeatable, Value = DestinationShorthandValue.Instance,
        Description = "Destination rule denying [user@]destination[:port] (10.0.0.0/8, :25, *.internal), repeatable; a refused client gets 403 or SOCKS5 0x02 naming the rule",
    };

    public static RamaOption DestinationDefaultsOption { get; } = new()
    {
        Key = "Rama:Destinations:Defaults", Name = "--destination-defaults", Value = OptionValue.Choice(["auto", "on", "off"]), Default = "auto",
        Description = "The default denials (loopback, link-local, the node's admin and cluster ports): auto (on proxy listeners not bound to loopback), on, off",
    };

    public static RamaOption DestinationRuleName { get; } = new()
    {
        Key = "Rama:Destinations:Rules:*:Name", Value = OptionValue.Pattern(@"[^\r\n']{1,100}", "is a name of 1 to 100 characters without quotes"),
        Description = "destination rule: its name, which a refusal names (default: the entry's key)",
    };

    public static RamaOption DestinationRuleAction { get; } = new()
    {
        Key = "Rama:Destinations:Rules:*:Action", Value = OptionValue.Choice(["allow", "deny"]), Default = "deny",
        Description = "destination rule: allow or deny what it matches",
    };

    public static RamaOption DestinationRuleCidrs { get; } = new()
    {
        Key = "Rama:Destinations:Rules:*:Cidrs", Arity = OptionArity.Repeatable, Value = OptionValue.Network,
        Description = "destination rule: address ranges (10.0.0.0/8, fe80::/10) or addresses the resolved address may be in",
    };

    public static RamaOption DestinationRuleHosts { get; } = new()
    {
        Key = "Rama:Destinations:Rules:*:Hosts", Arity = OptionArity.Repeatable, Value = OptionValue.Pattern(@"(\*\.)?[A-Za-z0-9_.-]+\.?", "is a host name or *.domain"),
        Description = "destination rule: host names the client asked for, exact (db.internal) or *.internal for any name under it; case-insensitive",
    };

    public static RamaOption DestinationRulePorts { get; } = new()
    {
        Key = "Rama:Destinations:Rules:*:Ports", Arity = OptionArity.Repeatable, Value = OptionValue.Pattern(@"\d{1,5}(-\d{1,5})?", "is a port or a range (25, 8000-8100)"),
        Description = "destination rule: ports or ranges the target port may be in",
    };

    public static RamaOption DestinationRuleUsers { get; } = new()
    {
        Key = "Rama:Destinations:Rules:*:Users", Arity = OptionArity.Repeatable, Value = OptionValue.Text,
        Description = "destination rule: proxy users it applies to (base users, without username labels); default everyone",
    };

    public static RamaOption Cert { get; } = new()
    {
        Key = "Rama:Tls:Cert", Name = "--cert", Value = OptionValue.ExistingFile,
        Description = "Certificate file (PEM, chain after the leaf; or .pfx/.p12); also makes proxy listeners HTTPS proxies and echo listeners HTTPS",
    };

    public static RamaOption CertKey { get; } = new()
    {
        Key = "Rama:Tls:Key", Name = "--key", Value = OptionValue.ExistingFile,
        Description = "Private key file (PEM) of --cert",
    };

    public static RamaOption CertificateNames { get; } = new()
    {
        Key = "Rama:Tls:Certificates:*:Names", Arity = OptionArity.Repeatable, Description = "SNI names a further certificate serves (none: the names in the certificate)",
    };

    public static RamaOption CertificateCert { get; } = new()
    {
        Key = "Rama:Tls:Certificates:*:Cert", Value = OptionValue.ExistingFile, Description = "A further certificate (PEM or PFX/P12)",
    };

    public static RamaOption CertificateKey { get; } = new()
    {
        Key = "Rama:Tls:Certificates:*:Key", Value = OptionValue.ExistingFile, Description = "Its PEM private key (none for PFX or a PEM holding both)",
    };

    public static RamaOption CertificatePassword { get; } = new()
    {
        Key = "Rama:Tls:Certificates:*:Password", Secret = true, Description = "Password of a PFX/P12 certificate",
    };

    public static RamaOption TlsUpstream { get; } = new()
    {
        Key = "Rama:Tls:Upstream", Name = "--upstream", Value = OptionValue.HostAndPort,
        Description = "Where TLS termination listeners forward (host:port); the default of each tls listener's Upstream",
    };

    public static RamaOption TlsUpstreamTls { get; } = new()
    {
        Key = "Rama:Tls:UpstreamTls", Name = "--upstream-tls", Arity = OptionArity.Flag, Value = OptionValue.Boolean, Default = "false",
        Description = "TLS termination re-encrypts to its upstream (verified)",
    };

    public static RamaOption TlsUpstreamCa { get; } = new()
    {
        Key = "Rama:Tls:UpstreamCa", Name = "--tls-upstream-ca", Value = OptionValue.ExistingFile,
        Description = "Extra CA (PEM) trusted for the upstreams of TLS termination listeners (with --upstream-tls)",
    };

    public static RamaOption TlsUpstreamMode { get; } = new()
    {
        Key = "Rama:Tls:UpstreamMode", Value = OptionValue.Choice(["tcp", "http"]), Default = "tcp",
        Shorthands = [new OptionShorthand("--upstream-http", "http", "TLS termination forwards HTTP/1.1 requests (logged with fingerprints) instead of raw TCP")],
        Description = "How TLS termination forwards: tcp (raw bytes) or http (request by request)",
    };

    public static RamaOption TlsUpstreamProxyProtocol { get; } = new()
    {
        Key = "Rama:Tls:UpstreamProxyProtocol", Name = "--upstream-proxy-protocol", Value = OptionValue.Choice(["v1", "v2"]),
        Description = "TLS termination sends a PROXY protocol header (v1 or v2) to its upstream first",
    };

    public static RamaOption UnknownSni { get; } = new()
    {
        Key = "Rama:Tls:UnknownSni", Name = "--unknown-sni", Value = OptionValue.Choice(["default", "reject"], ("usedefault", "default")), Default = "default",
        Description = "A ClientHello with an unknown SNI: default (serve the default certificate) or reject (handshake failure)",
    };

    public static RamaOption Alpn { get; } = new()
    {
        Key = "Rama:Tls:Alpn", Name = "--alpn", Arity = OptionArity.Repeatable, Default = "http/1.1",
        Description = "ALPN protocol accepted, repeatable (default http/1.1)",
    };

    public static RamaOption ClientCa { get; } = new()
    {
        Key = "Rama:Tls:ClientCa", Name = "--client-ca", Value = OptionValue.ExistingFile,
        Description = "CA file (PEM) client certificates must chain to (mTLS)",
    };

    public static RamaOption ClientCert { get; } = new()
    {
        Key = "Rama:Tls:ClientCertificates", Name = "--client-cert", Value = OptionValue.Choice(["none", "optional", "required"]), Default = "none",
        Description = "Client certificates: none, optional or required (needs --client-ca)",
    };

    public static RamaOption HandshakeTimeout { get; } = new()
    {
        Key = "Rama:Tls:HandshakeTimeout", Name = "--handshake-timeout", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(1), TimeSpan.FromMinutes(10)), Default = "00:00:10",
        Description = "How long a TLS handshake may take, seconds or hh:mm:ss (default 10 s)",
    };

    public static RamaOption ProxyProtocol { get; } = new()
    {
        Key = "Rama:ProxyProtocol:Enabled", Name = "--proxy-protocol", Arity = OptionArity.Flag, Value = OptionValue.Boolean, Default = "false",
        Description = "Expect a PROXY protocol header (v1 or v2) from trusted peers; the default of every proxy, tls and echo listener's ProxyProtocol",
    };

    public static RamaOption ProxyProtocolTrusted { get; } = new()
    {
        Key = "Rama:ProxyProtocol:Trusted", Name = "--proxy-protocol-trusted", Arity = OptionArity.Repeatable, Value = OptionValue.Network, Default = "loopback",
        Description = "Trusted PROXY protocol source (CIDR or address), repeatable (default loopback)",
    };

    public static RamaOption ProxyProtocolHeaderTimeout { get; } = new()
    {
        Key = "Rama:ProxyProtocol:HeaderTimeout", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(1), TimeSpan.FromMinutes(10)), Default = "00:00:05",
        Description = "How long a PROXY protocol header may take to arrive (default 5 s)",
    };

    public static RamaOption Mitm { get; } = new()
    {
        Key = "Rama:Mitm:Enabled", Name = "--mitm", Arity = OptionArity.Flag, Value = OptionValue.Boolean, Default = "false",
        Description = "Decrypt CONNECT tunnels that start with a ClientHello (clients must trust the CA)",
    };

    public static RamaOption MitmCaDir { get; } = new()
    {
        Key = "Rama:Mitm:CaDir", Name = "--mitm-ca-dir", Default = "~/.rama/ca",
        Description = "Directory of the MITM CA (created when the proxy stack is built or by ca export; default ~/.rama/ca)",
    };

    public static RamaOption MitmCaCert { get; } = new()
    {
        Key = "Rama:Mitm:CaCert", Name = "--mitm-ca-cert", Value = OptionValue.ExistingFile,
        Description = "MITM CA certificate (PEM) of your own",
    };

    public static RamaOption MitmCaKey { get; } = new()
    {
        Key = "Rama:Mitm:CaKey", Name = "--mitm-ca-key", Value = OptionValue.ExistingFile,
        Description = "MITM CA key (PEM) of --mitm-ca-cert",
    };

    public static RamaOption MitmUpstreamCa { get; } = new()
    {
        Key = "Rama:Mitm:UpstreamCa", Name = "--mitm-upstream-ca", Value = OptionValue.ExistingFile,
        Description = "Extra CA (PEM) trusted when MITM verifies origins",
    };

    public static RamaOption MitmInsecureUpstream { get; } = new()
    {
        Key = "Rama:Mitm:InsecureUpstream", Name = "--mitm-insecure-upstream", Arity = OptionArity.Flag, Value = OptionValue.Boolean, Default = "false",
        Description = "MITM does not verify origins (debugging only)",
    };

    public static RamaOption AccessLog { get; } = new()
    {
        Key = "Rama:AccessLog:Destination", Name = "--access-log", Default = "stdout",
        Description = "Access log destination: stdout (default), off, or a file path (appended to)",
    };

    public static RamaOption AccessLogFormat { get; } = new()
    {
        Key = "Rama:AccessLog:Format", Name = "--access-log-format", Value = OptionValue.Choice(["text", "json"]), Default = "text",
        Description = "Access log line format: text (default) or json",
    };

    public static RamaOption AccessLogBufferSize { get; } = new()
    {
        Key = "Rama:AccessLog:BufferSize", Value = OptionValue.Integer(1, 1024 * 1024), Default = "16384",
        Description = "Access lines queued for the writer before new ones are dropped and counted (default 16384)",
    };

    // The keys of a listener entry, Rama:Listeners:<name>:<key>.

    public static RamaOption ListenerKind { get; } = new()
    {
        Key = "Rama:Listeners:*:Kind", Value = OptionValue.Choice(["proxy", "reverse", "tls", "echo"]),
        Description = "What the listener serves: proxy (HTTP proxy + SOCKS5 on one port), reverse, tls (termination), echo",
    };

    public static RamaOption ListenerBind { get; } = new()
    {
        Key = "Rama:Listeners:*:Bind", Value = OptionValue.Endpoint, Description = "The listener's ip:port (port 0 picks one)",
    };

    public static RamaOption ListenerAuth { get; } = new()
    {
        Key = "Rama:Listeners:*:Auth", Arity = OptionArity.Repeatable, Value = OptionValue.Credential, Secret = true,
        Description = "proxy: its users as user:password (default Rama:Auth)",
    };

    public static RamaOption ListenerUpstream { get; } = new()
    {
        Key = "Rama:Listeners:*:Upstream", Value = UpstreamTargetValue.Instance,
        Description = "reverse: the one upstream, its scheme saying the protocol: host:port or http:// (HTTP/1.1), h2c:// (HTTP/2, prior knowledge), https:// (TLS, h2 when ALPN agrees) (or Routes and Clusters instead); tls: host:port where it forwards (default Rama:Tls:Upstream)",
    };

    public static RamaOption ListenerProxyProtocol { get; } = new()
    {
        Key = "Rama:Listeners:*:ProxyProtocol", Value = OptionValue.Boolean,
        Description = "proxy, tls, echo: expect a PROXY protocol header from trusted peers (default Rama:ProxyProtocol:Enabled)",
    };

    public static RamaOption ListenerUpstreamTls { get; } = new()
    {
        Key = "Rama:Listeners:*:UpstreamTls", Value = OptionValue.Boolean, Description = "tls: re-encrypt to the upstream (default Rama:Tls:UpstreamTls)",
    };

    public static RamaOption ListenerUpstreamMode { get; } = new()
    {
        Key = "Rama:Listeners:*:UpstreamMode", Value = OptionValue.Choice(["tcp", "http"]), Description = "tls: tcp or http (default Rama:Tls:UpstreamMode)",
    };

    public static RamaOption ListenerUpstreamProxyProtocol { get; } = new()
    {
        Key = "Rama:Listeners:*:UpstreamProxyProtocol", Value = OptionValue.Choice(["v1", "v2", "none"]),
        Description = "tls: send a PROXY header upstream, v1, v2 or none (default Rama:Tls:UpstreamProxyProtocol)",
    };

    public static RamaOption ListenerMaxConnections { get; } = new()
    {
        Key = "Rama:Listeners:*:MaxConnections", Value = OptionValue.Integer(1, 10_000_000),
        Description = "every kind: connections open at once on this listener (default Rama:Proxy:Limits:MaxConnections)",
    };

    public static RamaOption ListenerMaxConnectionsPerIp { get; } = new()
    {
        Key = "Rama:Listeners:*:MaxConnectionsPerIp", Value = OptionValue.Integer(1, 10_000_000),
        Description = "every kind: connections open at once from one client address (default Rama:Proxy:Limits:MaxConnectionsPerIp)",
    };

    public static RamaOption ListenerMaxBodySize { get; } = new()
    {
        Key = "Rama:Listeners:*:MaxBodySize", Value = ByteSizeValue.Instance,
        Description = "proxy, reverse: the largest request body, bytes or 10MiB (default Rama:Proxy:Limits:MaxBodySize)",
    };

    // The keys of a routed reverse listener, Rama:Listeners:<name>:Routes|Clusters|ForwardedHeaders (YARP's shape). Their
    // keys hold two names (the listener's and the route's or cluster's): ReverseRouteOptions composes them, these
    // declarations give the value rules and the descriptions; "*" stands for any name.

    public static RamaOption RouteClusterId { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:ClusterId", Value = OptionValue.Pattern(@"[^\s:]+", "is a cluster id (no spaces, no ':')"),
        Description = "reverse: the cluster this route sends to (required)",
    };

    public static RamaOption RouteOrder { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Order", Value = OptionValue.Integer(-1_000_000, 1_000_000), Default = "0",
        Description = "reverse: lower first; among equal orders the more specific route (exact host, longer path, methods, headers) first",
    };

    public static RamaOption RouteTimeout { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Timeout", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(24)),
        Description = "reverse: time from the request to the response head, seconds or hh:mm:ss; 504 past it (default: Rama:Proxy:Http:UpstreamResponseHeaderTimeout only)",
    };

    public static RamaOption RouteHosts { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Hosts", Arity = OptionArity.Repeatable,
        Value = OptionValue.Pattern(@"(\*\.)?[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?", "is a host name, optionally *.domain and :port (api.example.com, *.example.com)"),
        Description = "reverse: hosts the route matches, exact or *.example.com (any subdomain), case-insensitive",
    };

    public static RamaOption RoutePath { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Path", Value = OptionValue.Pattern(@"/\S*", "is a path starting with '/' (/api or /api/{**catch-all})"),
        Description = "reverse: the path prefix the route matches, /api or YARP's /api/{**catch-all} (segment-wise, case-insensitive)",
    };

    public static RamaOption RouteMethods { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Methods", Arity = OptionArity.Repeatable, Value = OptionValue.Pattern(HttpToken, "is an HTTP method (GET, POST, ...)"),
        Description = "reverse: methods the route matches (default any)",
    };

    public static RamaOption RouteHeaderName { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Headers:*:Name", Value = OptionValue.Pattern(HttpToken, "is a header field name"),
        Description = "reverse: a header the route matches on (required in each Headers entry)",
    };

    public static RamaOption RouteHeaderValues { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Headers:*:Values", Arity = OptionArity.Repeatable, Value = OptionValue.Pattern(HeaderValue, "is a header value (no CR or LF)"),
        Description = "reverse: the values compared by the mode",
    };

    public static RamaOption RouteHeaderMode { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Headers:*:Mode", Value = OptionValue.Choice(["ExactHeader", "HeaderPrefix", "Exists", "Contains", "NotContains", "NotExists"]),
        Default = "ExactHeader", Description = "reverse: how the header is matched (YARP's modes)",
    };

    public static RamaOption RouteHeaderCaseSensitive { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Match:Headers:*:IsCaseSensitive", Value = OptionValue.Boolean, Default = "false",
        Description = "reverse: compare header values case-sensitively",
    };

    public static RamaOption RouteTransformValue { get; } = new()
    {
        Key = "Rama:Listeners:*:Routes:*:Transforms", Arity = OptionArity.Repeatable, Value = OptionValue.Pattern(HeaderValue, "is a value without CR or LF"),
        Description = "reverse: YARP's transforms, each an object: {PathRemovePrefix}, {PathPrefix}, {RequestHeader, Set|Append}, {RequestHeaderRemove}, {ResponseHeader, Set|Append}, {ResponseHeaderRemove}",
    };

    public static RamaOption DestinationAddress { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:Destinations:*:Address", Value = OptionValue.Pattern(@"\S+", "is http://host:port"),
        Description = "reverse: a destination, http://host:port (required)",
    };

    public static RamaOption DestinationHealth { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:Destinations:*:Health", Value = OptionValue.Pattern(@"\S+", "is http://host:port"),
        Description = "reverse: where active probes of this destination go (default its Address)",
    };

    public static RamaOption ClusterLoadBalancing { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:LoadBalancingPolicy",
        Value = OptionValue.Choice(["PowerOfTwoChoices", "RoundRobin", "LeastRequests", "Random", "FirstAlphabetical", "Hash"]), Default = "PowerOfTwoChoices",
        Description = "reverse: how a destination is chosen; Hash: consistent hash of HashOn (sticky)",
    };

    public static RamaOption ClusterHashOn { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HashOn", Value = OptionValue.Pattern(@"(?i:header|cookie):[!#$%&'*+\-.^_`|~0-9A-Za-z]+", "is header:<name> or cookie:<name>"),
        Description = "reverse: the key of the Hash policy, header:X-User or cookie:session (without it in a request: power of two choices)",
    };

    public static RamaOption ClusterMaxAttempts { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:MaxAttempts", Value = OptionValue.Integer(1, 100), Default = "3",
        Description = "reverse: destinations tried per request (retries go to another destination; never more than the destinations)",
    };

    public static RamaOption ActiveEnabled { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:Enabled", Value = OptionValue.Boolean, Default = "false",
        Description = "reverse: probe each destination with an HTTP GET",
    };

    public static RamaOption ActiveInterval { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:Interval", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)), Default = "00:00:15",
        Description = "reverse: time between probes (default 15 s, YARP's)",
    };

    public static RamaOption ActiveTimeout { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:Timeout", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(10), TimeSpan.FromHours(1)), Default = "00:00:10",
        Description = "reverse: a probe without a response head in this time failed (default 10 s, YARP's)",
    };

    public static RamaOption ActivePath { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:Path", Value = OptionValue.Pattern(@"/\S*", "is a path starting with '/'"), Default = "/",
        Description = "reverse: the probed path; a 2xx is healthy",
    };

    public static RamaOption ActivePolicy { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:Policy", Value = OptionValue.Choice(["ConsecutiveFailures"]),
        Description = "reverse: accepted for YARP's configurations; Rama's policy is consecutive failures / successes",
    };

    public static RamaOption ActiveUnhealthyThreshold { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:UnhealthyThreshold", Value = OptionValue.Integer(1, 1000), Default = "3",
        Description = "reverse: consecutive failed probes that take a destination out (default 3, haproxy's fall)",
    };

    public static RamaOption ActiveHealthyThreshold { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Active:HealthyThreshold", Value = OptionValue.Integer(1, 1000), Default = "2",
        Description = "reverse: consecutive passed probes that bring it back (default 2, haproxy's rise)",
    };

    public static RamaOption PassiveEnabled { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Passive:Enabled", Value = OptionValue.Boolean, Default = "false",
        Description = "reverse: eject a destination after forwarding failures (refused or timed-out connects, closed before a response)",
    };

    public static RamaOption PassivePolicy { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Passive:Policy", Value = OptionValue.Choice(["TransportFailureRate"]),
        Description = "reverse: accepted for YARP's configurations; Rama's policy is MaxFailures within Window",
    };

    public static RamaOption PassiveMaxFailures { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Passive:MaxFailures", Value = OptionValue.Integer(1, 1000), Default = "1",
        Description = "reverse: failures within Window that eject (default 1, nginx's max_fails)",
    };

    public static RamaOption PassiveWindow { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Passive:Window", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)), Default = "00:00:10",
        Description = "reverse: the window failures are counted in (default 10 s, nginx's fail_timeout)",
    };

    public static RamaOption PassiveReactivation { get; } = new()
    {
        Key = "Rama:Listeners:*:Clusters:*:HealthCheck:Passive:ReactivationPeriod", Value = OptionValue.Duration(TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1)), Default = "00:00:10",
        Description = "reverse: how long an ejected destination takes no traffic (default 10 s, nginx's fail_timeout)",
    };

    public static RamaOption ForwardedXForwarded { get; } = new()
    {
        Key = "Rama:Listeners:*:ForwardedHeaders:XForwarded", Value = OptionValue.Boolean, Default = "true",
        Description = "reverse (routed): add X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
    };

    public static RamaOption ForwardedRfc7239 { get; } = new()
    {
        Key = "Rama:Listeners:*:ForwardedHeaders:Forwarded", Value = OptionValue.Boolean, Default = "true",
        Description = "reverse (routed): add Forwarded (RFC 7239): for, host, proto",
    };

    public static RamaOption ForwardedTrustedProxies { get; } = new()
    {
        Key = "Rama:Listeners:*:ForwardedHeaders:TrustedProxies", Arity = OptionArity.Repeatable, Value = OptionValue.Network,
        Description = "reverse (routed): peers (CIDR) whose incoming forwarded fields are kept and appended to; from others they are replaced (default none)",
    };

    private const string HttpToken = @"[!#$%&'*+\-.^_`|~0-9A-Za-z]+";

    private const string HeaderValue = @"[^\r\n]*";

    /// <summary>Every option of rama-node, the common ones first.</summary>
    [SuppressMessage("Design", "CA1002", Justification = "A read-only list.")]
    public static IReadOnlyList<RamaOption> All { get; } =
    [
        .. CommonOptions.All,
        .. ClusterOptionDeclarations.All,
        .. AdminOptions.Declarations,
        .. TelemetryOptions.Declarations,
        Listen, Reverse, TlsListen, EchoListen, Auth, AllowOpenProxy, DrainTimeout, ProxyDb, FleetData,
        UpstreamMode, UpstreamFallback, UpstreamAttempts, UpstreamBackoff, UpstreamProxyCa,
        UpstreamMaxConnections, UpstreamRate, UserMaxConnections, UserLimit, UserRate, UserRateLimit, MaxConnections, MaxConnectionsPerIp, MaxBodySize,
        Allow, Deny, DestinationDefaultsOption, DestinationRuleName, DestinationRuleAction, DestinationRuleCidrs, DestinationRuleHosts, DestinationRulePorts, DestinationRuleUsers,
        Cert, CertKey, CertificateNames, CertificateCert, CertificateKey, CertificatePassword,
        TlsUpstream, TlsUpstreamTls, TlsUpstreamCa, TlsUpstreamMode, TlsUpstreamProxyProtocol, UnknownSni, Alpn, ClientCa, ClientCert, HandshakeTimeout,
        ProxyProtocol, ProxyProtocolTrusted, ProxyProtocolHeaderTimeout,
        Mitm, MitmCaDir, MitmCaCert, MitmCaKey, MitmUpstreamCa, MitmInsecureUpstream,
        AccessLog, AccessLogFormat, AccessLogBufferSize,
        ListenerKind, ListenerBind, ListenerAuth, ListenerUpstream, ListenerProxyProtocol, ListenerUpstreamTls, ListenerUpstreamMode, ListenerUpstreamProxyProtocol,
        ListenerMaxConnections, ListenerMaxConnectionsPerIp, ListenerMaxBodySize,
        RouteClusterId, RouteOrder, RouteTimeout, RouteHosts, RoutePath, RouteMethods, RouteHeaderName, RouteHeaderValues, RouteHeaderMode, RouteHeaderCaseSensitive,
        RouteTransformValue, DestinationAddress, DestinationHealth, ClusterLoadBalancing, ClusterHashOn, ClusterMaxAttempts,
        ActiveEnabled, ActiveInterval, ActiveTimeout, ActivePath, ActivePolicy, ActiveUnhealthyThreshold, ActiveHealthyThreshold,
        PassiveEnabled, PassivePolicy, PassiveMaxFailures, PassiveWindow, PassiveReactivation,
        ForwardedXForwarded, ForwardedRfc7239, ForwardedTrustedProxies,
    ];
}

/// <summary><c>ip:port=upstream-host:port</c>, the value of <c>--reverse</c>.</summary>
internal sealed class ReverseShorthandValue : OptionValue
{
    public static readonly ReverseShorthandValue Instance = new();

    public override string Allowed => "is ip:port=[http://|h2c://|https://]upstream-host:port (e.g. 127.0.0.1:8081=127.0.0.1:8000, 127.0.0.1:8082=h2c://127.0.0.1:50051)";

    public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
    {
        value = null;
        var equals = text.IndexOf('=', StringComparison.Ordinal);
        if (equals > 0 && Endpoint.TryNormalize(text[..equals], out var bind) && UpstreamTargetValue.Instance.TryNormalize(text[(equals + 1)..], out var upstream))
        {
            value = bind + "=" + upstream;
        }

        return value is not null;
    }
}

/// <summary>
/// A reverse listener's upstream: <c>host:port</c> or <c>http://host:port</c> (HTTP/1.1), <c>h2c://host:port</c> (HTTP/2 with
/// prior knowledge), <c>https://host:port</c> (TLS; h2 when ALPN agrees). A bare host:port stays as written.
/// </summary>
internal sealed class UpstreamTargetValue : OptionValue
{
    public static readonly UpstreamTargetValue Instance = new();

    public override string Allowed => "is [http://|h2c://|https://]host:port (127.0.0.1:8000, h2c://127.0.0.1:50051, https://origin.internal:443)";

    public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
    {
        text = text.Trim();
        value = null;
        if (!Rama.Proxy.Http.UpstreamTarget.TryParse(text, requireScheme: false, out var target, out _))
        {
            return false;
        }

        var bare = !text.Contains("://", StringComparison.Ordinal);
        if (!HostAndPort.TryNormalize(target.Target.Host.Contains(':') ? $"[{target.Target.Host}]:{target.Target.Port}" : target.Target.ToString(), out var hostPort))
        {
            return false; // the same host rules as a bare host:port
        }

        value = bare ? hostPort : target.Scheme + "://" + hostPort;
        return true;
    }
}

/// <summary>A rate such as <c>50/s</c>, <c>600/m</c> or <c>3600/h</c>, the value of <c>--upstream-rate</c>.</summary>
internal sealed class LimitRateValue : OptionValue
{
    public static readonly LimitRateValue Instance = new();

    public override string Allowed => "is a count per s, m or h (e.g. 50/s, 600/m)";

    public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
    {
        value = Rama.Proxy.Limits.LimitRate.TryParse(text, out var rate, out _) ? rate.ToString() : null;
        return value is not null;
    }
}

/// <summary><c>user=connections</c>, the value of <c>--user-limit</c>.</summary>
internal sealed class UserLimitValue : OptionValue
{
    public static readonly UserLimitValue Instance = new();

    public override string Allowed => "is user=connections (e.g. john=10)";

    public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
    {
        value = null;
        var eq = text.LastIndexOf('=');
        if (eq <= 0 || text[..eq].Trim().Length == 0
            || !int.TryParse(text.AsSpan(eq + 1).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var max) || max < 1)
        {
            return false;
        }

        value = text[..eq].Trim() + "=" + max.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return true;
    }
}

/// <summary><c>user=rate</c> (<c>john=5/s</c>), the value of <c>--user-rate-limit</c>.</summary>
internal sealed class UserRateValue : OptionValue
{
    public static readonly UserRateValue Instance = new();

    public override string Allowed => "is user=rate (e.g. john=5/s, mary=600/m)";

    public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
    {
        value = null;
        var eq = text.LastIndexOf('=');
        if (eq > 0 && text[..eq].Trim().Length > 0 && Rama.Proxy.Limits.LimitRate.TryParse(text[(eq + 1)..], out var rate, out _))
        {
            value = text[..eq].Trim() + "=" + rate;
        }

        return value is not null;
    }
}

/// <summary>A size in bytes: <c>1048576</c>, or with a unit, <c>64KiB</c>, <c>10MiB</c>, <c>1GiB</c> (K, M, G are binary too; KB, MB, GB decimal).</summary>
internal sealed class ByteSizeValue : OptionValue
{
    public static readonly ByteSizeValue Instance = new();

    public override string Allowed => "is a size in bytes, or with a unit: 64KiB, 10MiB, 1GiB (KB, MB, GB are powers of 1000)";

    public override bool TryNormalize(string text, [NotNullWhen(true)] out string? value)
    {
        value = Parse(text) is { } bytes ? bytes.ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
        return value is not null;
    }

    public static long? Parse(string text)
    {
        text = text.Trim();
        var digits = 0;
        while (digits < text.Length && char.IsAsciiDigit(text[digits]))
        {
            digits++;
        }

        long multiplier = text[digits..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "K" or "KIB" => 1L << 10,
            "M" or "MIB" => 1L << 20,
            "G" or "GIB" => 1L << 30,
            "KB" => 1000,
            "MB" => 1000_000,
            "GB" => 1000_000_000,
            _ => 0,
        };
        if (digits == 0 || multiplier == 0 || !long.TryParse(text.AsSpan(0, digits), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var count)
            || count > long.MaxValue / multiplier)
        {
            return null;
        }

        return count * multiplier;
    }
}
