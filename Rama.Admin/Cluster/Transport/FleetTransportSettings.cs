using Akka.Configuration;

namespace Rama.Admin.Cluster.Transport;

/// <summary>The settings of Rama's fleet transport, from its HOCON section (<c>akka.remote.rama-fleet</c>, written by <see cref="ClusterHostingExtensions"/>).</summary>
internal sealed record FleetTransportSettings
{
    /// <summary>The section's path, as <c>akka.remote.enabled-transports</c> names it.</summary>
    public const string Path = "akka.remote.rama-fleet";

    /// <summary>Where to listen (an IP address or a name). Default 127.0.0.1.</summary>
    public required string Hostname { get; init; }

    /// <summary>The port to listen on; 0 picks a free one (Listen answers the bound address).</summary>
    public required int Port { get; init; }

    /// <summary>The host peers dial when it differs from <see cref="Hostname"/> (containers, NAT); null: <see cref="Hostname"/>.</summary>
    public string? PublicHostname { get; init; }

    /// <summary>The port peers dial when it differs from the bound one; null: the bound port.</summary>
    public int? PublicPort { get; init; }

    /// <summary>Mutual TLS (scheme <c>ssl.tcp</c>) or plain TCP (<c>tcp</c>, loopback fleets without a secret). Default on.</summary>
    public required bool EnableSsl { get; init; }

    /// <summary>The largest frame either way, bytes. Default 2,000,000 (what the fleet's proxy database needs; Akka's own default is 128 KB).</summary>
    public required int MaximumFrameSize { get; init; }

    /// <summary>How long connecting plus the TLS handshake plus the peer's acceptance may take. Default 10 s.</summary>
    public required TimeSpan HandshakeTimeout { get; init; }

    /// <summary>Queued but unwritten bytes above which <c>Write</c> answers false (Akka's endpoint writer backs off). Default 4,000,000.</summary>
    public required int SendHighWaterMark { get; init; }

    /// <summary>Queued frames are coalesced into one write of up to this many bytes. Default 65,536.</summary>
    public required int WriteBatchSize { get; init; }

    /// <summary>How long a closing association may take to flush what is queued and see the peer close. Default 2 s (Akka's flush-wait-on-shutdown).</summary>
    public required TimeSpan FlushWait { get; init; }

    public static FleetTransportSettings Create(Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var publicHost = config.GetString("public-hostname", "");
        var publicPort = config.GetInt("public-port", 0);
        var settings = new FleetTransportSettings
        {
            Hostname = config.GetString("hostname", "127.0.0.1") is { Length: > 0 } host ? host : "127.0.0.1",
            Port = config.GetInt("port", 0),
            PublicHostname = string.IsNullOrEmpty(publicHost) ? null : publicHost,
            PublicPort = publicPort > 0 ? publicPort : null,
            EnableSsl = config.GetBoolean("enable-ssl", true),
            MaximumFrameSize = checked((int)(config.GetByteSize("maximum-frame-size", null) ?? 2_000_000)),
            HandshakeTimeout = config.GetTimeSpan("handshake-timeout", TimeSpan.FromSeconds(10)),
            SendHighWaterMark = checked((int)(config.GetByteSize("send-high-water-mark", null) ?? 4_000_000)),
            WriteBatchSize = checked((int)(config.GetByteSize("write-batch-size", null) ?? 65_536)),
            FlushWait = config.GetTimeSpan("flush-wait", TimeSpan.FromSeconds(2)),
        };
        if (settings.Port is < 0 or > 65535 || settings.MaximumFrameSize < 1024 || settings.SendHighWaterMark < 1 ||
            settings.WriteBatchSize < 1024 || settings.HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ConfigurationException($"{Path}: port 0-65535, maximum-frame-size >= 1 KB, write-batch-size >= 1 KB, a positive send-high-water-mark and handshake-timeout (got {settings})");
        }

        return settings;
    }
}
