using Rama.Admin.Options;

namespace Rama.Admin.Cluster;

/// <summary>
/// The fleet's options (section <c>Rama:Cluster</c>), shared by nodes and lighthouses. Lighthouse's container variables
/// map onto them (<see cref="RamaConfiguration.FromEnvironment"/>): <c>CLUSTER_IP</c> -> <c>Rama:Cluster:PublicHost</c>,
/// <c>CLUSTER_PORT</c> -> <c>Rama:Cluster:Port</c>, <c>CLUSTER_SEEDS</c> -> <c>Rama:Cluster:Seeds</c>,
/// <c>CLUSTER_SECRET</c> -> <c>Rama:Cluster:Secret</c>.
/// </summary>
public static class ClusterOptionDeclarations
{
    public static RamaOption Bind { get; } = new()
    {
        Key = "Rama:Cluster:Bind", Name = "--cluster", Value = OptionValue.Endpoint,
        Description = "Where this process listens for its fleet peers (ip:port; lighthouse default 127.0.0.1:4053, node 127.0.0.1:4054 when it has seeds). A node with --cluster and no --seeds is a seed for itself",
    };

    public static RamaOption Public { get; } = new()
    {
        Key = "Rama:Cluster:Public", Name = "--cluster-public", Value = OptionValue.HostAndPort,
        Description = "The address peers dial when it differs from --cluster (host:port; e.g. a container's name)",
    };

    public static RamaOption PublicHost { get; } = new()
    {
        Key = "Rama:Cluster:PublicHost", Value = OptionValue.Text,
        Description = "Lighthouse's CLUSTER_IP: the host name or IP peers dial; a name binds 0.0.0.0 (a container), an IP binds that IP",
    };

    public static RamaOption Port { get; } = new()
    {
        Key = "Rama:Cluster:Port", Value = OptionValue.Integer(0, 65535),
        Description = "Lighthouse's CLUSTER_PORT: the cluster port, for binding and for peers",
    };

    public static RamaOption Seeds { get; } = new()
    {
        Key = "Rama:Cluster:Seeds", Name = "--seeds", Arity = OptionArity.Repeatable, Value = OptionValue.Text,
        Description = "Seed nodes to join through (host:port, comma-separated or repeated; Akka addresses accepted). Without seeds and without --cluster a node runs alone",
    };

    public static RamaOption Roles { get; } = new()
    {
        Key = "Rama:Cluster:Roles", Name = "--role", Arity = OptionArity.Repeatable,
        Value = OptionValue.Pattern("[A-Za-z0-9][A-Za-z0-9_-]*", "is a role name of letters, digits, '-' and '_'"),
        Description = "Extra cluster roles, besides 'proxy' (nodes) or 'lighthouse' (seeds)",
    };

    public static RamaOption Strategy { get; } = new()
    {
        Key = "Rama:Cluster:SplitBrainResolver:Strategy", Name = "--split-brain-resolver",
        Value = OptionValue.Choice(["keep-majority", "keep-oldest", "static-quorum", "down-all"]), Default = "keep-majority",
        Description = "Akka's split-brain resolver strategy: keep-majority (default), keep-oldest, static-quorum (with --quorum-size), down-all",
    };

    public static RamaOption StableAfter { get; } = new()
    {
        Key = "Rama:Cluster:SplitBrainResolver:StableAfter", Name = "--stable-after",
        Value = OptionValue.Duration(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10)), Default = "00:00:20",
        Description = "How long membership must be stable before the split-brain resolver downs unreachable members (Akka's default 20 s)",
    };

    public static RamaOption QuorumSize { get; } = new()
    {
        Key = "Rama:Cluster:SplitBrainResolver:QuorumSize", Name = "--quorum-size", Value = OptionValue.Integer(1, 10_000),
        Description = "static-quorum only: the smallest side that stays up",
    };

    public static RamaOption HeartbeatPause { get; } = new()
    {
        Key = "Rama:Cluster:FailureDetector:AcceptablePause", Name = "--heartbeat-pause",
        Value = OptionValue.Duration(TimeSpan.FromMilliseconds(500), TimeSpan.FromMinutes(5)), Default = "00:00:03",
        Description = "Failure detector: the heartbeat pause a peer may take before it is suspected (Akka's default 3 s)",
    };

    public static RamaOption HeartbeatInterval { get; } = new()
    {
        Key = "Rama:Cluster:FailureDetector:HeartbeatInterval", Name = "--heartbeat-interval",
        Value = OptionValue.Duration(TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1)), Default = "00:00:01",
        Description = "Failure detector: how often members heartbeat each other (Akka's default 1 s; 0.5 with --heartbeat-pause 1.5 and --stable-after 2 removes a dead member within about 7 s)",
    };

    public static RamaOption Secret { get; } = new()
    {
        Key = "Rama:Cluster:Secret", Name = "--cluster-secret", Secret = true,
        Description = "The fleet's shared secret (at least 16 characters; CLUSTER_SECRET): every member derives the fleet's CA from it and proves membership with mutual TLS. Required on a non-loopback cluster address unless --cluster-cert is given",
    };

    public static RamaOption Certificate { get; } = new()
    {
        Key = "Rama:Cluster:Certificate", Name = "--cluster-cert", Value = OptionValue.ExistingFile,
        Description = "This member's TLS certificate for the fleet (PEM, or PKCS#12 with its key); needs --cluster-ca",
    };

    public static RamaOption Key { get; } = new()
    {
        Key = "Rama:Cluster:Key", Name = "--cluster-key", Value = OptionValue.ExistingFile,
        Description = "The PEM private key of --cluster-cert (when the certificate file does not hold it)",
    };

    public static RamaOption Ca { get; } = new()
    {
        Key = "Rama:Cluster:Ca", Name = "--cluster-ca", Value = OptionValue.ExistingFile,
        Description = "The CA (PEM) that issued every member's certificate: only peers it issued are admitted",
    };

    /// <summary>Test only: Akka's throttler adapter and the <c>fault</c> admin palette (blackhole a peer). Never in production.</summary>
    public static RamaOption FaultInjection { get; } = new()
    {
        Key = "Rama:Cluster:FaultInjection", Value = OptionValue.Boolean, Default = "false",
        Description = "Tests only: enables network fault injection between members (Akka's throttler; pbm fault palette)",
    };

    public static IReadOnlyList<RamaOption> All { get; } =
        [Bind, Public, PublicHost, Port, Seeds, Roles, Strategy, StableAfter, QuorumSize, HeartbeatPause, HeartbeatInterval, Secret, Certificate, Key, Ca, FaultInjection];
}
