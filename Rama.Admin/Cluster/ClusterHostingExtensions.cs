using System.Globalization;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Rama.Admin.Admin;
using Rama.Admin.Cluster.Transport;
using AkkaClusterOptions = Akka.Cluster.Hosting.ClusterOptions;

namespace Rama.Admin.Cluster;

/// <summary>Akka.Remote + Akka.Cluster for a Rama fleet member, through Akka.Hosting's own options.</summary>
public static class ClusterHostingExtensions
{
    /// <summary>
    /// Makes this actor system a fleet member when <paramref name="options"/> is <see cref="ClusterOptions.Enabled"/>
    /// (otherwise nothing: the process runs alone): remoting on <see cref="ClusterOptions.Bind"/> (TLS with mutual
    /// authentication unless the fleet is on loopback without a secret), the cluster with its roles and seeds (itself
    /// when it has none) over Rama's fleet transport (<see cref="FleetTransport"/>), Akka's split-brain resolver, and graceful leave in coordinated shutdown (Akka.Cluster's own
    /// <c>cluster-leave</c> phase, after Rama's listeners have unbound and drained).
    /// </summary>
    /// <param name="certificates">The member's certificates (<see cref="FleetCertificates"/>), required unless the fleet runs without TLS.</param>
    public static AkkaConfigurationBuilder WithRamaCluster(this AkkaConfigurationBuilder builder, string systemName, ClusterOptions options, FleetCertificates? certificates)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Enabled)
        {
            return builder;
        }

        if (options.Authentication == FleetAuthentication.None && !System.Net.IPAddress.IsLoopback(options.Bind.Address))
        {
            // The same refusal as the options' (an embedding app may build ClusterOptions in code).
            throw new ArgumentException($"cluster address {options.Bind} is not a loopback address: the fleet must authenticate its members there (set Secret, or CertificateFile and CaFile)", nameof(options));
        }

        if (options.Authentication != FleetAuthentication.None && certificates is null)
        {
            throw new ArgumentException("a fleet with TLS needs the member's certificates", nameof(certificates));
        }

        // Akka.Remote.Hosting writes Akka's own settings (the provider, the dot-netty section); the fleet's transport replaces
        // DotNetty through enabled-transports (Hocon below) and takes the member's certificates from the actor system's setup.
        var remote = new RemoteOptions
        {
            HostName = options.Bind.Address.ToString(),
            Port = options.Bind.Port,
            PublicHostName = options.Public?.Host,
            PublicPort = options.Public?.Port,
        };
        builder.AddSetup(new FleetTransportSetup(certificates));

        var seeds = options.Seeds.Count > 0 ? options.Seeds : [options.Advertised];
        SplitBrainResolverOption strategy = options.Strategy switch
        {
            SplitBrainStrategy.KeepOldest => new KeepOldestOption(),
            SplitBrainStrategy.StaticQuorum => new StaticQuorumOption { QuorumSize = options.QuorumSize },
            _ => new KeepMajorityOption(),
        };

        builder
            .WithRemoting(remote)
            .WithClustering(new AkkaClusterOptions
            {
                Roles = [.. options.Roles],
                SeedNodes = [.. seeds.Select(s => options.AddressOf(systemName, s))],
                SplitBrainResolver = strategy,
                FailureDetector = new PhiAccrualFailureDetectorOptions { AcceptableHeartbeatPause = options.HeartbeatPause, HeartbeatInterval = options.HeartbeatInterval },
                LogInfo = true,
            })
            .AddHocon(Hocon(options), HoconAddMode.Prepend);
        return builder;
    }

    /// <summary>What Akka.Cluster.Hosting has no option for.</summary>
    internal static string Hocon(ClusterOptions options)
    {
        var lines = new List<string>
        {
            string.Create(CultureInfo.InvariantCulture, $"akka.cluster.split-brain-resolver.stable-after = {(long)options.StableAfter.TotalMilliseconds}ms"),
            // A downed member's coordinated shutdown ends the process (Akka's default, stated because the exit code depends on it).
            "akka.cluster.run-coordinated-shutdown-when-down = on",
        };
        // Measured better than Akka's 1 s (benchmarks/fleet.py, 2026-12-06): a node joining a running fleet of three is Up
        // in 3.5-4.0 s instead of 5.0 s, and a dead member is removed about a second sooner. Gossip stays tiny at this size.
        lines.Add("akka.cluster.gossip-interval = 500ms");
        lines.Add("akka.cluster.leader-actions-interval = 500ms");
        lines.Add("akka.cluster.unreachable-nodes-reaper-interval = 500ms");
        // A write reaches the replicas its writer knows (WriteAll); a member that writer has not yet seen Up gets it from
        // DistributedData's gossip: at Akka's 2 s a record added just after a node joined took over a second to reach
        // it (CI, 2026-12-06). Gossip carries digests only while the replicas agree.
        lines.Add("akka.cluster.distributed-data.gossip-interval = 500ms");
        // Rama's fleet transport instead of DotNetty (see FleetTransport: DotNetty shuts a healthy member down when a peer
        // closes a TLS handshake), with the same scheme (akka.ssl.tcp, or akka.tcp on a loopback fleet without TLS).
        lines.Add($"akka.remote.enabled-transports = [\"{FleetTransportSettings.Path}\"]");
        lines.Add($"{FleetTransportSettings.Path}.transport-class = \"{typeof(FleetTransport).FullName}, {typeof(FleetTransport).Assembly.GetName().Name}\"");
        lines.Add($"{FleetTransportSettings.Path}.hostname = \"{options.Bind.Address}\"");
        lines.Add(string.Create(CultureInfo.InvariantCulture, $"{FleetTransportSettings.Path}.port = {options.Bind.Port}"));
        if (options.Public is { } advertised)
        {
            lines.Add($"{FleetTransportSettings.Path}.public-hostname = \"{advertised.Host}\"");
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"{FleetTransportSettings.Path}.public-port = {advertised.Port}"));
        }

        lines.Add($"{FleetTransportSettings.Path}.enable-ssl = {(options.Authentication == FleetAuthentication.None ? "off" : "on")}");
        // A partition of the fleet's proxy database travels whole when replicas differ (and a load's share of it in one
        // message): Akka.Remote's 128 KB default frame dropped those of a 100,000-record database (OversizedPayloadException).
        // 2 MB with 256 partitions holds millions of records.
        lines.Add($"{FleetTransportSettings.Path}.maximum-frame-size = 2000000b");
        if (options.Strategy == SplitBrainStrategy.DownAll)
        {
            lines.Add("akka.cluster.split-brain-resolver.active-strategy = down-all");
        }

        if (options.FaultInjection)
        {
            // Akka.Remote's throttler (what MultiNode tests use to blackhole links), driven by the fault palette.
            lines.Add($"{FleetTransportSettings.Path}.applied-adapters = [trttl]");
        }

        return string.Join('\n', lines);
    }

    /// <summary>Registers the member's <see cref="FleetCertificates"/> (made here from the secret or read from the files) for disposal with the host.</summary>
    public static FleetCertificates? CreateCertificates(ClusterOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Authentication switch
        {
            FleetAuthentication.Secret => FleetCertificates.FromSecret(options.Secret!, options.Advertised.ToString()),
            FleetAuthentication.Certificates => FleetCertificates.FromFiles(options.CertificateFile!, options.KeyFile, options.CaFile!),
            _ => null,
        };
    }

    /// <summary>
    /// Adds the fleet's options to DI (the admin palettes and embedding apps read them) and, when
    /// <see cref="ClusterOptions.FaultInjection"/> is on (tests only), the <c>fault</c> admin palette.
    /// </summary>
    public static IServiceCollection AddRamaClusterOptions(this IServiceCollection services, ClusterOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.AddSingleton(options);
        if (options.Enabled && options.FaultInjection)
        {
            services.AddSingleton<IAdminPalette>(sp => new FaultPalette(sp.GetRequiredService<ActorSystem>(), options));
        }

        return services;
    }
}
