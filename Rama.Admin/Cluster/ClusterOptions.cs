using System.Globalization;
using System.Net;
using Rama.Admin.Options;

namespace Rama.Admin.Cluster;

/// <summary>Which executable reads the options: the defaults differ (a lighthouse always clusters, on 4053).</summary>
public enum ClusterMemberKind
{
    Node,
    Lighthouse,
}

/// <summary>A host name or IP and a port, as peers dial it.</summary>
public sealed record HostPort(string Host, int Port)
{
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) && !Host.StartsWith('[') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>The split-brain resolver's strategies (Akka.Cluster's SBR).</summary>
public enum SplitBrainStrategy
{
    KeepMajority,
    KeepOldest,
    StaticQuorum,
    DownAll,
}

/// <summary>How members prove they belong to the fleet.</summary>
public enum FleetAuthentication
{
    /// <summary>No TLS: allowed on loopback only (one machine, for development and tests).</summary>
    None,

    /// <summary>Mutual TLS with certificates minted from a CA derived from the shared secret.</summary>
    Secret,

    /// <summary>Mutual TLS with the operator's certificate and CA.</summary>
    Certificates,
}

/// <summary>The fleet (section <c>Rama:Cluster</c>): where this member listens, whom it joins, how it proves it belongs.</summary>
public sealed record ClusterOptions
{
    public const int LighthousePort = 4053;
    public const int NodePort = 4054;
    public const string ProxyRole = "proxy";
    public const string LighthouseRole = "lighthouse";
    public const int MinimumSecretLength = 16;

    /// <summary>False for a node started without seeds and without <c>--cluster</c>: it runs alone, with no remoting.</summary>
    public bool Enabled { get; init; }

    /// <summary>Where this member listens for peers.</summary>
    public IPEndPoint Bind { get; init; } = new(IPAddress.Loopback, NodePort);

    /// <summary>The address peers dial; null when it is <see cref="Bind"/>.</summary>
    public HostPort? Public { get; init; }

    /// <summary>The seeds to join through; empty means this member seeds itself.</summary>
    public IReadOnlyList<HostPort> Seeds { get; init; } = [];

    /// <summary>This member's roles: <c>proxy</c> or <c>lighthouse</c>, then any extra.</summary>
    public IReadOnlyList<string> Roles { get; init; } = [ProxyRole];

    public SplitBrainStrategy Strategy { get; init; } = SplitBrainStrategy.KeepMajority;

    /// <summary>Akka's default: 20 s.</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>static-quorum only.</summary>
    public int? QuorumSize { get; init; }

    /// <summary>The failure detector's acceptable heartbeat pause (Akka's default 3 s).</summary>
    public TimeSpan HeartbeatPause { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>How often members heartbeat each other (<c>--heartbeat-interval</c>; Akka's default 1 s).</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How members prove they belong: certificates when <see cref="CertificateFile"/> is set, else the secret when set, else none (loopback only).</summary>
    public FleetAuthentication Authentication =>
        CertificateFile is not null ? FleetAuthentication.Certificates : Secret is not null ? FleetAuthentication.Secret : FleetAuthentication.None;

    public string? Secret { get; init; }

    public string? CertificateFile { get; init; }

    public string? KeyFile { get; init; }

    public string? CaFile { get; init; }

    /// <summary>Tests only: Akka's throttler adapter on the transport, driven by the <c>fault</c> admin palette.</summary>
    public bool FaultInjection { get; init; }

    /// <summary>The address peers dial: <see cref="Public"/>, else <see cref="Bind"/>.</summary>
    public HostPort Advertised => Public ?? new HostPort(Bind.Address.ToString(), Bind.Port);

    /// <summary>The Akka transport scheme: <c>akka.tcp</c>, <c>akka.ssl.tcp</c>, with <c>trttl.</c> when faults can be injected.</summary>
    public string Scheme => "akka." + (FaultInjection ? "trttl." : "") + (Authentication == FleetAuthentication.None ? "tcp" : "ssl.tcp");

    /// <summary>The full Akka address of a member at <paramref name="at"/> in the system <paramref name="systemName"/>.</summary>
    public string AddressOf(string systemName, HostPort at) => $"{Scheme}://{systemName}@{at}";

    /// <summary>Reads and validates the options; a problem is recorded for every bad value.</summary>
    public static ClusterOptions Read(OptionsReader reader, ClusterMemberKind kind)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var explicitBind = reader.Text(ClusterOptionDeclarations.Bind);
        var publicText = reader.Text(ClusterOptionDeclarations.Public);
        var publicHost = reader.Text(ClusterOptionDeclarations.PublicHost);
        var portText = reader.Text(ClusterOptionDeclarations.Port);
        var seeds = ReadSeeds(reader);
        var roles = reader.List(ClusterOptionDeclarations.Roles);
        var strategy = reader.Text(ClusterOptionDeclarations.Strategy) switch
        {
            "keep-oldest" => SplitBrainStrategy.KeepOldest,
            "static-quorum" => SplitBrainStrategy.StaticQuorum,
            "down-all" => SplitBrainStrategy.DownAll,
            _ => SplitBrainStrategy.KeepMajority,
        };
        var stableAfter = reader.Duration(ClusterOptionDeclarations.StableAfter, TimeSpan.FromSeconds(20));
        var quorum = reader.Text(ClusterOptionDeclarations.QuorumSize) is { } q ? int.Parse(q, CultureInfo.InvariantCulture) : (int?)null;
        var pause = reader.Duration(ClusterOptionDeclarations.HeartbeatPause, TimeSpan.FromSeconds(3));
        var interval = reader.Duration(ClusterOptionDeclarations.HeartbeatInterval, TimeSpan.FromSeconds(1));
        var secret = reader.Text(ClusterOptionDeclarations.Secret);
        var certificate = reader.Text(ClusterOptionDeclarations.Certificate);
        var key = reader.Text(ClusterOptionDeclarations.Key);
        var ca = reader.Text(ClusterOptionDeclarations.Ca);
        var faults = reader.Flag(ClusterOptionDeclarations.FaultInjection);

        var port = portText is null ? (kind == ClusterMemberKind.Lighthouse ? LighthousePort : NodePort) : int.Parse(portText, CultureInfo.InvariantCulture);
        IPEndPoint bind;
        if (explicitBind is not null)
        {
            bind = IPEndPoint.Parse(explicitBind);
        }
        else if (publicHost is not null)
        {
            // Lighthouse's CLUSTER_IP: an IP is bound as is; a name (a container's) means "every interface, dialled by that name".
            bind = new IPEndPoint(IPAddress.TryParse(publicHost, out var ip) ? ip : IPAddress.Any, port);
        }
        else
        {
            bind = new IPEndPoint(IPAddress.Loopback, port);
        }

        HostPort? advertised = null;
        if (publicText is not null)
        {
            var colon = publicText.LastIndexOf(':');
            advertised = new HostPort(publicText[..colon].Trim('[', ']'), int.Parse(publicText[(colon + 1)..], CultureInfo.InvariantCulture));
        }
        else if (publicHost is not null)
        {
            advertised = new HostPort(publicHost, bind.Port);
        }

        var enabled = kind == ClusterMemberKind.Lighthouse || explicitBind is not null || seeds.Count > 0 || publicHost is not null;
        if (enabled && advertised is null && (bind.Address.Equals(IPAddress.Any) || bind.Address.Equals(IPAddress.IPv6Any)))
        {
            reader.AddProblem($"{ClusterOptionDeclarations.Bind.Describe()} is {bind}: peers cannot dial a wildcard address; set {ClusterOptionDeclarations.Public.Describe()} (or CLUSTER_IP) to the name or IP they dial");
        }

        if (advertised is not null && advertised.Port == 0)
        {
            reader.AddProblem($"{ClusterOptionDeclarations.Public.Describe()} needs the port peers dial, not 0");
        }

        var authentication = FleetAuthentication.None;
        if (certificate is not null || key is not null || ca is not null)
        {
            authentication = FleetAuthentication.Certificates;
            if (certificate is null || ca is null)
            {
                reader.AddProblem($"{ClusterOptionDeclarations.Certificate.Describe()} and {ClusterOptionDeclarations.Ca.Describe()} go together (and {ClusterOptionDeclarations.Key.Describe()} when the certificate file holds no key)");
            }

            if (secret is not null)
            {
                reader.AddProblem($"give either {ClusterOptionDeclarations.Secret.Describe()} or {ClusterOptionDeclarations.Certificate.Describe()}, not both");
            }
        }
        else if (secret is not null)
        {
            authentication = FleetAuthentication.Secret;
            if (secret.Length < MinimumSecretLength)
            {
                reader.AddProblem($"{ClusterOptionDeclarations.Secret.Describe()} is too short: at least {MinimumSecretLength} characters (e.g. openssl rand -base64 24)");
            }
        }

        if (enabled && authentication == FleetAuthentication.None && !IPAddress.IsLoopback(bind.Address))
        {
            reader.AddProblem($"{ClusterOptionDeclarations.Bind.Describe()} is {bind}, not a loopback address: the fleet must authenticate its members there. " +
                $"Set {ClusterOptionDeclarations.Secret.Describe()} (or CLUSTER_SECRET), or {ClusterOptionDeclarations.Certificate.Describe()} with {ClusterOptionDeclarations.Ca.Describe()}");
        }

        if (strategy == SplitBrainStrategy.StaticQuorum && quorum is null)
        {
            reader.AddProblem($"{ClusterOptionDeclarations.Strategy.Describe()} static-quorum needs {ClusterOptionDeclarations.QuorumSize.Describe()}");
        }

        var ownRole = kind == ClusterMemberKind.Lighthouse ? LighthouseRole : ProxyRole;
        return new ClusterOptions
        {
            Enabled = enabled,
            Bind = bind,
            Public = advertised,
            Seeds = seeds,
            Roles = [ownRole, .. roles.Where(r => r != ownRole).Distinct(StringComparer.Ordinal)],
            Strategy = strategy,
            StableAfter = stableAfter,
            QuorumSize = quorum,
            HeartbeatPause = pause,
            HeartbeatInterval = interval,
            Secret = secret,
            CertificateFile = certificate,
            KeyFile = key,
            CaFile = ca,
            FaultInjection = faults,
        };
    }

    /// <summary>Seeds: <c>host:port</c> or an Akka address (<c>akka.tcp://rama@host:port</c>), comma-separated or repeated.</summary>
    private static List<HostPort> ReadSeeds(OptionsReader reader)
    {
        var seeds = new List<HostPort>();
        foreach (var item in reader.List(ClusterOptionDeclarations.Seeds))
        {
            foreach (var part in item.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var text = part;
                var at = text.IndexOf('@', StringComparison.Ordinal);
                if (text.Contains("://", StringComparison.Ordinal) && at > 0)
                {
                    text = text[(at + 1)..].TrimEnd('/');
                }

                if (OptionValue.HostAndPort.TryNormalize(text, out var hostPort))
                {
                    var colon = hostPort.LastIndexOf(':');
                    seeds.Add(new HostPort(hostPort[..colon].Trim('[', ']'), int.Parse(hostPort[(colon + 1)..], CultureInfo.InvariantCulture)));
                }
                else
                {
                    reader.AddProblem($"{ClusterOptionDeclarations.Seeds.Describe()} has '{part}': allowed host:port (lighthouse:4053) or an Akka address (akka.ssl.tcp://rama@lighthouse:4053)");
                }
            }
        }

        return seeds;
    }
}
