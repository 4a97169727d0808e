using System.Globalization;
using System.Net;
using Rama.Admin.Options;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using D = Rama.Actors.Options.NodeOptionDeclarations;

namespace Rama.Actors.Options;

/// <summary>What a listener serves (<c>Rama:Listeners:&lt;name&gt;:Kind</c>).</summary>
public enum ListenerKind
{
    /// <summary>HTTP forward proxy (absolute-form and CONNECT) and SOCKS5 on one port; HTTPS proxy too with a certificate.</summary>
    Proxy,

    /// <summary>HTTP/1.1 reverse proxy to one upstream, or with Routes and Clusters to the clusters its routes choose.</summary>
    Reverse,

    /// <summary>TLS termination forwarding to an upstream.</summary>
    Tls,

    /// <summary>Echo service: JSON of each request with its TLS fingerprints.</summary>
    Echo,
}

/// <summary>
/// One listener, a named entry <c>Rama:Listeners:&lt;name&gt;</c> (Kestrel's endpoints' shape) or one added by a
/// shorthand (<c>--listen</c> adds <c>listen-0</c>, ...). Keys per kind: every kind has <c>Kind</c> and <c>Bind</c>;
/// proxy has <c>Auth</c> and <c>ProxyProtocol</c>; reverse has <c>Upstream</c>, or <c>Routes</c>, <c>Clusters</c> and
/// <c>ForwardedHeaders</c> (<see cref="ReverseRouteOptions"/>); tls has <c>Upstream</c>,
/// <c>UpstreamTls</c>, <c>UpstreamMode</c>, <c>UpstreamProxyProtocol</c> and <c>ProxyProtocol</c>; echo has
/// <c>ProxyProtocol</c>. A key not set takes the node-wide default (<c>Rama:Auth</c>, <c>Rama:Tls:Upstream</c>, ...).
/// Certificates, MITM, the proxy database, the PROXY protocol's trusted sources and the protocol limits are node-wide.
/// </summary>
public sealed record ListenerOptions
{
    public const string Section = "Rama:Listeners";

    /// <summary>The name: the ListenerSpec's, shown in logs.</summary>
    public required string Name { get; init; }

    public required ListenerKind Kind { get; init; }

    public required IPEndPoint Bind { get; init; }

    /// <summary>proxy: users as <c>user:password</c>; empty = open proxy (loopback only unless AllowOpenProxy).</summary>
    public IReadOnlyList<string> Auth { get; init; } = [];

    /// <summary>proxy, tls, echo: expect a PROXY protocol header first.</summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>reverse, tls: where requests or bytes go.</summary>
    public HostPort? Upstream { get; init; }

    /// <summary>reverse: the protocol spoken to <see cref="Upstream"/>, from its scheme (host:port and http:// HTTP/1.1, h2c://, https://).</summary>
    public Rama.Proxy.Http.OriginProtocol UpstreamProtocol { get; init; }

    /// <summary>reverse: <see cref="Upstream"/> with its protocol.</summary>
    public Rama.Proxy.Http.UpstreamTarget? UpstreamTarget => Upstream is { } upstream ? new(UpstreamProtocol, upstream) : null;

    /// <summary>reverse: routes, clusters and the forwarded-headers policy (instead of <see cref="Upstream"/>); null: one upstream.</summary>
    public Rama.Proxy.Http.Routing.ReverseRoutingOptions? Routing { get; init; }

    /// <summary>tls: re-encrypt to the upstream.</summary>
    public bool UpstreamTls { get; init; }

    /// <summary>tls: forward raw bytes or request by request.</summary>
    public TerminationMode UpstreamMode { get; init; } = TerminationMode.Tcp;

    /// <summary>tls: PROXY header sent upstream first; null: none.</summary>
    public ProxyProtocolVersion? UpstreamProxyProtocol { get; init; }

    /// <summary>Every kind: connections open at once on this listener; null: <c>Rama:Proxy:Limits:MaxConnections</c>.</summary>
    public int? MaxConnections { get; init; }

    /// <summary>Every kind: connections open at once from one client address; null: <c>Rama:Proxy:Limits:MaxConnectionsPerIp</c>.</summary>
    public int? MaxConnectionsPerIp { get; init; }

    /// <summary>proxy, reverse: the largest request body in bytes; null: <c>Rama:Proxy:Limits:MaxBodySize</c>.</summary>
    public long? MaxBodySize { get; init; }

    /// <summary>The keys an entry of each kind accepts.</summary>
    public static IReadOnlyList<string> KeysOf(ListenerKind kind) => kind switch
    {
        ListenerKind.Proxy => ["Kind", "Bind", "Auth", "ProxyProtocol", "MaxConnections", "MaxConnectionsPerIp", "MaxBodySize"],
        ListenerKind.Reverse => ["Kind", "Bind", "Upstream", "Routes", "Clusters", "ForwardedHeaders", "MaxConnections", "MaxConnectionsPerIp", "MaxBodySize"],
        ListenerKind.Tls => ["Kind", "Bind", "Upstream", "UpstreamTls", "UpstreamMode", "UpstreamProxyProtocol", "ProxyProtocol", "MaxConnections", "MaxConnectionsPerIp"],
        _ => ["Kind", "Bind", "ProxyProtocol", "MaxConnections", "MaxConnectionsPerIp"],
    };

    /// <summary>The embedded default when no listener is configured at all: a proxy on 127.0.0.1:8080.</summary>
    public const string DefaultName = "default";

    public const string DefaultBind = "127.0.0.1:8080";

    /// <summary>
    /// Reads every listener: the shorthands' entries first (listen-*, reverse-*, tls-*, echo-*, in that order), then the
    /// named entries in key order; with none at all, <see cref="DefaultName"/> on <see cref="DefaultBind"/>.
    /// </summary>
    internal static IReadOnlyList<ListenerOptions> ReadAll(OptionsReader reader, IReadOnlyList<string> auth, TlsNodeOptions tls, ProxyProtocolNodeOptions proxyProtocol)
    {
        var listeners = new List<ListenerOptions>();
        ListenerOptions Defaults(string name, ListenerKind kind, IPEndPoint bind) => new()
        {
            Name = name,
            Kind = kind,
            Bind = bind,
            Auth = kind == ListenerKind.Proxy ? auth : [],
            ProxyProtocol = kind != ListenerKind.Reverse && proxyProtocol.Enabled,
            Upstream = kind == ListenerKind.Tls && tls.Upstream is { } up && HostPort.TryParse(up, 0, out var target) ? target : null,
            UpstreamTls = kind == ListenerKind.Tls && tls.UpstreamTls,
            UpstreamMode = tls.UpstreamMode,
            UpstreamProxyProtocol = kind == ListenerKind.Tls ? tls.UpstreamProxyProtocol : null,
        };

        void AddShorthands(RamaOption option, string prefix, ListenerKind kind)
        {
            var values = reader.List(option);
            for (var i = 0; i < values.Count; i++)
            {
                var name = string.Create(CultureInfo.InvariantCulture, $"{prefix}-{i}");
                if (kind == ListenerKind.Reverse)
                {
                    var equals = values[i].IndexOf('=', StringComparison.Ordinal);
                    var parsed = Rama.Proxy.Http.UpstreamTarget.TryParse(values[i][(equals + 1)..], requireScheme: false, out var upstream, out _);
                    listeners.Add(Defaults(name, kind, IPEndPoint.Parse(values[i][..equals])) with
                    {
                        Upstream = parsed ? upstream.Target : null,
                        UpstreamProtocol = upstream.Protocol,
                    });
                }
                else
                {
                    listeners.Add(Defaults(name, kind, IPEndPoint.Parse(values[i])));
                }
            }
        }

        AddShorthands(D.Listen, "listen", ListenerKind.Proxy);
        AddShorthands(D.Reverse, "reverse", ListenerKind.Reverse);
        AddShorthands(D.TlsListen, "tls", ListenerKind.Tls);
        AddShorthands(D.EchoListen, "echo", ListenerKind.Echo);
        foreach (var entry in reader.Configuration.GetSection(Section).GetChildren())
        {
            var name = entry.Key;
            if (listeners.Any(l => l.Name.Equals(name, StringComparison.OrdinalIgnoreCase)))
            {
                reader.AddProblem($"{entry.Path}: the listener name '{name}' is taken by a shorthand's entry (--listen, --reverse, --tls-listen, --echo-listen add listen-N, reverse-N, tls-N, echo-N); choose another name");
                continue;
            }

            if (ReadEntry(reader, name, Defaults) is { } listener)
            {
                listeners.Add(listener);
            }
        }

        if (listeners.Count == 0 && !reader.Configuration.GetSection(Section).GetChildren().Any())
        {
            listeners.Add(Defaults(DefaultName, ListenerKind.Proxy, IPEndPoint.Parse(DefaultBind)));
        }

        foreach (var listener in listeners)
        {
            Show(reader, listener);
        }

        return listeners;
    }

    private static ListenerOptions? ReadEntry(OptionsReader reader, string name, Func<string, ListenerKind, IPEndPoint, ListenerOptions> defaults)
    {
        var kindKey = D.ListenerKind.KeyFor(name);
        var bindKey = D.ListenerBind.KeyFor(name);
        var kindText = reader.Configuration[kindKey];
        var bindText = reader.Configuration[bindKey];
        if (kindText is null)
        {
            reader.AddProblem($"{kindKey} is missing: allowed {D.ListenerKind.Value.Allowed}");
            return null;
        }

        if (!D.ListenerKind.Value.TryNormalize(kindText, out var kindName))
        {
            reader.Refuse(D.ListenerKind, kindKey, kindText);
            return null;
        }

        var kind = Enum.Parse<ListenerKind>(kindName, ignoreCase: true);
        reader.RefuseUnknownKeys(D.ListenerKind.KeyFor(name)[..^":Kind".Length], KeysOf(kind).ToList(), $"a {kindName} listener");
        IPEndPoint? bind = null;
        if (bindText is null)
        {
            reader.AddProblem($"{bindKey} is missing: allowed {D.ListenerBind.Value.Allowed}");
        }
        else if (!OptionValue.TryParseEndpoint(bindText.Trim(), out bind))
        {
            reader.Refuse(D.ListenerBind, bindKey, bindText);
        }

        if (bind is null)
        {
            return null;
        }

        var listener = defaults(name, kind, bind);
        var keys = KeysOf(kind);
        string? Get(RamaOption option) => keys.Contains(option.LeafName) && reader.Configuration[option.KeyFor(name)] is { } raw
            ? option.Value.TryNormalize(raw, out var value) ? value : Refused(option, raw)
            : null;
        string? Refused(RamaOption option, string raw)
        {
            reader.Refuse(option, option.KeyFor(name), raw);
            return null;
        }

        if (kind == ListenerKind.Proxy && reader.IsSet(D.ListenerAuth.KeyFor(name)))
        {
            // Read quietly: Show prints the listener's effective keys (this list redacted).
            var probe = new OptionsReader(reader.Configuration, []);
            var users = probe.List(D.ListenerAuth, D.ListenerAuth.KeyFor(name));
            foreach (var problem in probe.Problems)
            {
                reader.AddProblem(problem);
            }

            listener = listener with { Auth = users };
        }

        if (Get(D.ListenerProxyProtocol) is { } pp)
        {
            listener = listener with { ProxyProtocol = bool.Parse(pp) };
        }

        if (Get(D.ListenerUpstream) is { } upstream && Rama.Proxy.Http.UpstreamTarget.TryParse(upstream, requireScheme: false, out var target, out _))
        {
            listener = listener with { Upstream = target.Target, UpstreamProtocol = target.Protocol };
        }

        if (kind == ListenerKind.Reverse && ReverseRouteOptions.IsRouted(reader.Configuration, name))
        {
            listener = listener with { Routing = ReverseRouteOptions.Read(reader, name) };
        }

        if (Get(D.ListenerUpstreamTls) is { } upstreamTls)
        {
            listener = listener with { UpstreamTls = bool.Parse(upstreamTls) };
        }

        if (Get(D.ListenerUpstreamMode) is { } mode)
        {
            listener = listener with { UpstreamMode = mode == "http" ? TerminationMode.Http : TerminationMode.Tcp };
        }

        if (Get(D.ListenerUpstreamProxyProtocol) is { } version)
        {
            listener = listener with { UpstreamProxyProtocol = TlsNodeOptions.ParseVersion(version) };
        }

        if (Get(D.ListenerMaxConnections) is { } maxConnections)
        {
            listener = listener with { MaxConnections = int.Parse(maxConnections, CultureInfo.InvariantCulture) };
        }

        if (Get(D.ListenerMaxConnectionsPerIp) is { } perIp)
        {
            listener = listener with { MaxConnectionsPerIp = int.Parse(perIp, CultureInfo.InvariantCulture) };
        }

        if (Get(D.ListenerMaxBodySize) is { } bodySize)
        {
            listener = listener with { MaxBodySize = long.Parse(bodySize, CultureInfo.InvariantCulture) };
        }

        return listener;
    }

    private static void Show(OptionsReader reader, ListenerOptions listener)
    {
        var prefix = $"{Section}:{listener.Name}:";
        reader.Show(prefix + "Kind", listener.Kind.ToString().ToLowerInvariant());
        reader.Show(prefix + "Bind", listener.Bind.ToString());
        var keys = KeysOf(listener.Kind);
        if (keys.Contains("Auth"))
        {
            if (listener.Auth.Count == 0)
            {
                reader.Show(prefix + "Auth", "(none)");
            }

            for (var i = 0; i < listener.Auth.Count; i++)
            {
                reader.Show(string.Create(CultureInfo.InvariantCulture, $"{prefix}Auth:{i}"), RamaOption.Redact(listener.Auth[i]));
            }
        }

        if (keys.Contains("Upstream") && listener.Routing is null)
        {
            reader.Show(prefix + "Upstream", listener.Upstream is null ? "(none)"
                : listener.UpstreamProtocol == Rama.Proxy.Http.OriginProtocol.Http1 ? listener.Upstream.ToString()! : listener.UpstreamTarget.ToString()!);
        }

        if (keys.Contains("UpstreamTls"))
        {
            reader.Show(prefix + "UpstreamTls", listener.UpstreamTls ? "true" : "false");
            reader.Show(prefix + "UpstreamMode", listener.UpstreamMode.ToString().ToLowerInvariant());
            reader.Show(prefix + "UpstreamProxyProtocol", listener.UpstreamProxyProtocol?.ToString().ToLowerInvariant() ?? "none");
        }

        if (keys.Contains("ProxyProtocol"))
        {
            reader.Show(prefix + "ProxyProtocol", listener.ProxyProtocol ? "true" : "false");
        }

        if (listener.MaxConnections is { } max)
        {
            reader.Show(prefix + "MaxConnections", max.ToString(CultureInfo.InvariantCulture));
        }

        if (listener.MaxConnectionsPerIp is { } perIp)
        {
            reader.Show(prefix + "MaxConnectionsPerIp", perIp.ToString(CultureInfo.InvariantCulture));
        }

        if (listener.MaxBodySize is { } body)
        {
            reader.Show(prefix + "MaxBodySize", body.ToString(CultureInfo.InvariantCulture));
        }
    }
}
