using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;

namespace Rama.Node;

/// <summary>
/// The node's options, bound from the "Rama" configuration section (appsettings.json, the
/// <c>--config</c> file, environment variables such as <c>Rama__Listen__0</c>) and then from the
/// command line, which wins.
/// </summary>
public sealed class NodeOptions
{
    public const string Section = "Rama";

    /// <summary>The embedded default endpoint: loopback only.</summary>
    public const string DefaultListen = "127.0.0.1:8080";

    /// <summary>Endpoints serving HTTP proxy and SOCKS5 on the same port (<c>ip:port</c>, port 0 = pick one).</summary>
    public List<string> Listen { get; set; } = [];

    /// <summary>Reverse-proxy listeners as <c>ip:port=upstream-host:port</c>: each serves HTTP/1.1 and forwards every request to its upstream.</summary>
    public List<string> Reverse { get; set; } = [];

    /// <summary>Proxy users as <c>user:password</c>; empty means no auth (allowed on loopback only).</summary>
    public List<string> Auth { get; set; } = [];

    /// <summary>Allow listening on a non-loopback address without auth.</summary>
    public bool AllowOpenProxy { get; set; }

    /// <summary>How long shutdown waits for connections in flight before closing them. Default 20 s: with the other shutdown phases it fits a 30 s SIGKILL grace period (docker stop's default is 10 s: set --drain-timeout 5 there).</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>Proxy database file (CSV or JSON) for routing through upstream proxies; reloaded when it changes. Null: no upstreams.</summary>
    public string? ProxyDb { get; set; }

    /// <summary>Protocol limits and timeouts of the proxy stack (upstream routing under <c>Proxy:Upstream</c>).</summary>
    public ForwardProxyOptions Proxy { get; set; } = new();

    /// <summary>TLS: certificates (which also make the proxy ports HTTPS proxies), termination listeners and their upstream.</summary>
    public TlsNodeOptions Tls { get; set; } = new();

    /// <summary>MITM of CONNECT tunnels (off unless enabled).</summary>
    public MitmNodeOptions Mitm { get; set; } = new();

    /// <summary>PROXY protocol accept side on every listener.</summary>
    public ProxyProtocolNodeOptions ProxyProtocol { get; set; } = new();

    /// <summary>Echo service endpoints (<c>--echo-listen</c>): JSON of each request with its TLS fingerprints; HTTPS too when a certificate is configured.</summary>
    public List<string> EchoListen { get; set; } = [];

    public IReadOnlyList<IPEndPoint> EchoEndpoints { get; private set; } = [];

    /// <summary>The parsed endpoints.</summary>
    public IReadOnlyList<IPEndPoint> Endpoints { get; private set; } = [];

    /// <summary>The parsed reverse-proxy listeners.</summary>
    public IReadOnlyList<(IPEndPoint Endpoint, HostPort Upstream)> ReverseListeners { get; private set; } = [];

    /// <summary>Checks everything and returns the problems, one sentence each (empty = valid).</summary>
    public List<string> Validate()
    {
        var problems = new List<string>();
        if (Listen.Count == 0 && Reverse.Count == 0)
        {
            Listen.Add(DefaultListen);
        }

        var endpoints = ParseEndpoints(Listen, "--listen", problems);
        EchoEndpoints = ParseEndpoints(EchoListen, "--echo-listen", problems);
        Tls.Validate(problems);
        ProxyProtocol.Validate(problems);
        Mitm.Validate(problems);

        var reverse = new List<(IPEndPoint, HostPort)>();
        foreach (var text in Reverse)
        {
            // The open-proxy refusal does not apply: a reverse listener only reaches its one upstream.
            var equals = text.IndexOf('=', StringComparison.Ordinal);
            if (equals > 0 && TryParseEndpoint(text[..equals], out var endpoint) && HostPort.TryParse(text.AsSpan(equals + 1), 0, out var upstream))
            {
                reverse.Add((endpoint, upstream.Value));
            }
            else
            {
                problems.Add($"--reverse '{text}' is not ip:port=upstream-host:port (e.g. 127.0.0.1:8081=127.0.0.1:8000)");
            }
        }

        ReverseListeners = reverse;

        foreach (var credential in Auth)
        {
            if (credential.IndexOf(':', StringComparison.Ordinal) <= 0)
            {
                problems.Add($"--auth '{credential}' must be user:password");
            }
        }

        if (ProxyDb is not null)
        {
            if (!File.Exists(ProxyDb))
            {
                problems.Add($"--proxydb file '{ProxyDb}' does not exist");
            }

            foreach (var credential in Auth.Where(c => c.IndexOf(':', StringComparison.Ordinal) is var colon && colon > 0 && c[..colon].Contains('-', StringComparison.Ordinal)))
            {
                problems.Add($"--auth user '{credential[..credential.IndexOf(':', StringComparison.Ordinal)]}' contains '-': with --proxydb a username is <user>-<labels>, so base users cannot contain '-'");
            }
        }
        else if (Proxy.Upstream.Mode != Rama.Proxy.Upstream.UpstreamMode.Direct)
        {
            problems.Add($"--upstream-mode {Proxy.Upstream.Mode.ToString().ToLowerInvariant()} needs --proxydb");
        }

        if (DrainTimeout < TimeSpan.Zero || DrainTimeout > TimeSpan.FromHours(1))
        {
            problems.Add($"--drain-timeout {DrainTimeout.TotalSeconds} s is outside 0..3600 s");
        }

        try
        {
            Proxy.Validate();
        }
        catch (ArgumentException ex)
        {
            problems.Add(ex.Message);
        }

        if (Auth.Count == 0 && !AllowOpenProxy)
        {
            foreach (var endpoint in endpoints.Where(e => !IPAddress.IsLoopback(e.Address)))
            {
                problems.Add($"refusing to listen on {endpoint} without --auth: that would be an open proxy reachable from the network. " +
                             "Add --auth user:password, or pass --allow-open-proxy if you really mean it.");
            }
        }

        Endpoints = endpoints;
        return problems;
    }

    private static bool TryParseEndpoint(string text, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPEndPoint? endpoint)
    {
        // An explicit port is required (0 picks one); IPEndPoint alone would read "127.0.0.1" as port 0.
        endpoint = null;
        var colon = text.LastIndexOf(':');
        var hasPort = colon > 0 && colon < text.Length - 1 && text[(colon + 1)..].All(char.IsAsciiDigit) && (text[0] != '[' || text[colon - 1] == ']');
        return hasPort && IPEndPoint.TryParse(text, out endpoint);
    }

    /// <summary>Parses <c>ip:port</c> texts (an explicit port is required; 0 picks one).</summary>
    internal static List<IPEndPoint> ParseEndpoints(IEnumerable<string> texts, string option, List<string> problems)
    {
        var endpoints = new List<IPEndPoint>();
        foreach (var text in texts)
        {
            if (TryParseEndpoint(text, out var endpoint))
            {
                endpoints.Add(endpoint);
            }
            else
            {
                problems.Add($"{option} '{text}' is not an ip:port (use 127.0.0.1:8080, [::1]:8080; port 0 picks a free port)");
            }
        }

        return endpoints;
    }

    public IProxyAuthenticator CreateAuthenticator() =>
        Auth.Count == 0 ? StaticProxyAuthenticator.None : new StaticProxyAuthenticator(Auth.Select(StaticProxyAuthenticator.ParseCredential));
}
