using System.Net;
using D = Rama.Actors.Options.NodeOptionDeclarations;
using Rama.Actors.AccessLog;
using Rama.Admin.Admin;
using Rama.Admin.Cluster;
using Rama.Admin.Options;
using Rama.Proxy.Stacks;
using Rama.Proxy.Upstream;

namespace Rama.Actors.Options;

/// <summary>
/// A proxy node's options, read from the merged configuration (appsettings.json &lt; <c>--config</c> file &lt;
/// environment &lt; command line) by <see cref="Read"/>, every value validated against its declaration in
/// <see cref="NodeOptionDeclarations"/>. Reading has no side effects (certificates are read to check them; the MITM CA
/// is created only when the stack is built).
/// </summary>
public sealed record NodeOptions
{
    /// <summary>The actor system (<c>Rama:System</c>).</summary>
    public SystemOptions System { get; init; } = new();

    /// <summary>The fleet (<c>Rama:Cluster</c>); not <see cref="ClusterOptions.Enabled"/> when the node runs alone.</summary>
    public ClusterOptions Cluster { get; init; } = new();

    /// <summary>The admin endpoint <c>pbm</c> talks to (<c>Rama:Admin</c>).</summary>
    public AdminOptions Admin { get; init; } = new();

    /// <summary>Every listener, named (<c>Rama:Listeners:&lt;name&gt;</c> or a shorthand's <c>listen-0</c>, ...).</summary>
    public IReadOnlyList<ListenerOptions> Listeners { get; init; } = [];

    /// <summary>Allow a proxy listener on a non-loopback address without auth. Default off.</summary>
    public bool AllowOpenProxy { get; init; }

    /// <summary>How long shutdown waits for connections in flight before closing them. Default 20 s: with the other shutdown phases it fits a 30 s SIGKILL grace period (docker stop's default is 10 s: set --drain-timeout 5 there).</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Proxy database file (CSV or JSON) for routing through upstream proxies; reloaded when it changes. Null: no upstreams.</summary>
    public string? ProxyDb { get; init; }

    /// <summary>
    /// Where a fleet node keeps the fleet's proxy database on disk (<c>Rama:Fleet:DataDirectory</c>, a file per partition; one directory
    /// per node). Null: in memory only (the records live as long as one proxy node runs).
    /// </summary>
    public string? FleetDataDirectory { get; init; }

    /// <summary>
    /// True on a fleet member with the <c>proxy</c> role: its upstream routing selects from its replica of the fleet's
    /// proxy database (cluster-sharded, Rama.Actors.Upstreams), and <see cref="ProxyDb"/> only seeds that database.
    /// </summary>
    public bool UsesFleetProxyDb => Cluster.Enabled && Cluster.Roles.Contains(ClusterOptions.ProxyRole);

    /// <summary>Protocol limits and timeouts of the proxy stacks, upstream routing under <c>Rama:Proxy:Upstream</c> (Rama.Proxy's record, bound as a section).</summary>
    public ForwardProxyOptions Proxy { get; init; } = new();

    public TlsNodeOptions Tls { get; init; } = new();

    public MitmNodeOptions Mitm { get; init; } = new();

    public ProxyProtocolNodeOptions ProxyProtocol { get; init; } = new();

    /// <summary>The destination rules of the proxy listeners (<c>Rama:Destinations</c>).</summary>
    public DestinationNodeOptions Destinations { get; init; } = new();

    /// <summary>The access log (<c>Rama:AccessLog</c>).</summary>
    public AccessLogOptions AccessLog { get; init; } = new();

    /// <summary>The keys directly under <c>Rama</c>; anything else is refused.</summary>
    public static IReadOnlyList<string> TopLevelKeys { get; } =
        ["System", "Cluster", "Admin", "Listeners", "Listen", "Reverse", "EchoListen", "Auth", "AllowOpenProxy", "DrainTimeout", "ProxyDb", "Fleet", "Proxy", "Tls", "Mitm", "ProxyProtocol", "AccessLog", "Destinations", "Telemetry"];

    /// <summary>Reads and validates every option; the problems are in <paramref name="reader"/>.</summary>
    public static NodeOptions Read(OptionsReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        reader.RefuseUnknownKeys("Rama", TopLevelKeys, "Rama");
        var system = SystemOptions.Read(reader);
        reader.RefuseUnknownKeys("Rama:System", ["Name"], "Rama:System");
        var cluster = ClusterOptions.Read(reader, ClusterMemberKind.Node);
        var admin = AdminOptions.Read(reader);
        var auth = reader.List(D.Auth);
        var allowOpen = reader.Flag(D.AllowOpenProxy);
        var drain = reader.Duration(D.DrainTimeout, TimeSpan.FromSeconds(20));
        var proxyDb = reader.Text(D.ProxyDb);
        reader.RefuseUnknownKeys("Rama:Fleet", ["DataDirectory"], "Rama:Fleet");
        var fleetData = reader.Text(D.FleetData);
        var proxy = ReadProxy(reader);
        var tls = TlsNodeOptions.Read(reader);
        var proxyProtocol = ProxyProtocolNodeOptions.Read(reader);
        var mitm = MitmNodeOptions.Read(reader);
        var accessLog = ReadAccessLog(reader);
        var destinations = DestinationNodeOptions.Read(reader);
        var listeners = ListenerOptions.ReadAll(reader, auth, tls, proxyProtocol);
        var options = new NodeOptions
        {
            System = system,
            Cluster = cluster,
            Admin = admin,
            Listeners = listeners,
            AllowOpenProxy = allowOpen,
            DrainTimeout = drain,
            ProxyDb = proxyDb,
            FleetDataDirectory = fleetData,
            Proxy = proxy,
            Tls = tls,
            ProxyProtocol = proxyProtocol,
            Mitm = mitm,
            AccessLog = accessLog,
            Destinations = destinations,
        };
        options.CheckTogether(reader);
        return options;
    }

    private static ForwardProxyOptions ReadProxy(OptionsReader reader)
    {
        var proxy = reader.Section("Rama:Proxy", new ForwardProxyOptions());
        var upstream = proxy.Upstream;
        if (!string.IsNullOrEmpty(upstream.FallbackFilter) && reader.Configuration[D.UpstreamMode.Key!] is null)
        {
            // --upstream-fallback implies the fallback mode unless a mode is given.
            upstream = upstream with { Mode = UpstreamMode.Fallback };
        }

        if (upstream.BackoffInitial > upstream.BackoffMax && reader.Configuration["Rama:Proxy:Upstream:BackoffMax"] is null)
        {
            upstream = upstream with { BackoffMax = upstream.BackoffInitial };
        }

        proxy = proxy with { Upstream = upstream };
        try
        {
            proxy.Validate();
        }
        catch (ArgumentException ex)
        {
            reader.AddProblem("Rama:Proxy: " + ex.Message);
        }

        return proxy;
    }

    private static AccessLogOptions ReadAccessLog(OptionsReader reader)
    {
        reader.RefuseUnknownKeys("Rama:AccessLog", ["Destination", "Format", "BufferSize"], "Rama:AccessLog");
        var options = new AccessLogOptions
        {
            Destination = reader.Text(D.AccessLog) ?? AccessLogOptions.Stdout,
            Format = reader.Text(D.AccessLogFormat) == "json" ? AccessLogFormat.Json : AccessLogFormat.Text,
            BufferSize = (int)reader.Integer(D.AccessLogBufferSize, 16 * 1024),
        };
        foreach (var problem in options.Validate())
        {
            reader.AddProblem(problem);
        }

        return options;
    }

    private void CheckTogether(OptionsReader reader)
    {
        foreach (var listener in Listeners)
        {
            var at = $"{ListenerOptions.Section}:{listener.Name}";
            switch (listener.Kind)
            {
                case ListenerKind.Proxy when listener.Auth.Count == 0 && !AllowOpenProxy && !IPAddress.IsLoopback(listener.Bind.Address):
                    reader.AddProblem($"refusing to listen on {listener.Bind} ({at}) without auth: that would be an open proxy reachable from the network. " +
                                      $"Add --auth user:password (or {at}:Auth), or pass --allow-open-proxy if you really mean it.");
                    break;
                case ListenerKind.Reverse when listener.Upstream is null && listener.Routing is null:
                    reader.AddProblem($"{at}:Upstream is missing: a reverse listener needs its upstream host:port (e.g. 127.0.0.1:8000), or Routes and Clusters");
                    break;
                case ListenerKind.Reverse when listener.Upstream is not null && listener.Routing is not null:
                    reader.AddProblem($"{at}: Upstream and Routes/Clusters exclude each other: one upstream for every request, or routes to clusters");
                    break;
                case ListenerKind.Tls:
                    if (!Tls.HasCertificate)
                    {
                        reader.AddProblem($"{at} (tls) needs a certificate: --cert <file> --key <file> (Rama:Tls:Cert, Rama:Tls:Key) or Rama:Tls:Certificates");
                    }

                    if (listener.Upstream is null)
                    {
                        reader.AddProblem($"{at} (tls) needs an upstream: --upstream host:port (Rama:Tls:Upstream) or {at}:Upstream");
                    }
                    else if (listener.UpstreamProtocol != Rama.Proxy.Http.OriginProtocol.Http1)
                    {
                        reader.AddProblem($"{at}:Upstream of a tls listener is host:port (re-encryption is UpstreamTls), not {listener.UpstreamTarget}");
                    }

                    break;
            }
        }

        if (FleetDataDirectory is not null && !UsesFleetProxyDb)
        {
            reader.AddProblem($"{D.FleetData.Describe()} is for a fleet node (--cluster or --seeds, role proxy)");
        }

        if (ProxyDb is not null || UsesFleetProxyDb)
        {
            foreach (var user in Listeners.SelectMany(l => l.Auth).Select(c => c[..c.IndexOf(':', StringComparison.Ordinal)]).Distinct().Where(u => u.Contains('-', StringComparison.Ordinal)))
            {
                reader.AddProblem($"auth user '{user}' contains '-': with {(ProxyDb is null ? "the fleet's proxy database" : D.ProxyDb.Describe())} a username is <user>-<labels>, so base users cannot contain '-'");
            }
        }
        else if (Proxy.Upstream.Mode != UpstreamMode.Direct)
        {
            reader.AddProblem($"{D.UpstreamMode.Describe()} is '{Proxy.Upstream.Mode.ToString().ToLowerInvariant()}': it needs {D.ProxyDb.Describe()}");
        }
    }
}
