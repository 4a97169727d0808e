using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.Hosting.Logging;
using Akka.Remote.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using AkkaTransport = Akka.Remote.Transport.Transport;

namespace Rama.Admin.Cluster.Transport;

/// <summary>
/// Rama's Akka.Remote transport for the fleet: TCP with mutual TLS (<c>ssl.tcp</c>) or plain TCP on loopback (<c>tcp</c>),
/// over Akka.Remote's public transport SPI, enabled with <c>akka.remote.enabled-transports = ["akka.remote.rama-fleet"]</c>.
/// <para>
/// It exists for its failure policy. Akka.Remote 1.5.75's DotNetty transport runs a coordinated shutdown of the whole
/// member (exit code 79) on ANY failed TLS handshake of an outbound connection, with no setting to turn it off: a peer
/// that exits (downed, leaving, killed) and closes a connection mid-handshake shut down a healthy member. Here a handshake
/// that fails because the peer closed or reset, timed out, or the socket failed is a transport failure (the association
/// fails, Akka gates and retries). A trust failure (the peer's certificate is not from the fleet CA, or the peer refused
/// ours with an alert) shuts this member down with <see cref="FleetTrustFailureReason"/> (exit code 2) only while it is
/// not yet a cluster member; once it is, the failure is logged and the association fails.
/// </para>
/// <para>Logging goes to the host's <see cref="ILoggerFactory"/> (Akka.Hosting's <see cref="LoggerFactorySetup"/>): Akka creates transports by reflection, outside DI.</para>
/// </summary>
internal sealed class FleetTransport : AkkaTransport, IDisposable
{
    private readonly FleetTransportSettings _settings;
    private readonly FleetTransportSetup? _setup;
    private readonly SslStreamCertificateContext? _certificateContext;
    private readonly ILogger _logger;
    private readonly TaskCompletionSource<IAssociationEventListener> _associationListener = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<FleetAssociation, byte> _associations = new();
    private readonly ConcurrentDictionary<Socket, byte> _handshakes = new();
    private readonly CancellationTokenSource _shutdown = new();
    private Socket? _listener;
    private Address? _localAddress;
    private Task _acceptLoop = Task.CompletedTask;

    public FleetTransport(ActorSystem system, Config config)
    {
        ArgumentNullException.ThrowIfNull(system);
        System = system;
        Config = config;
        _settings = FleetTransportSettings.Create(config);
        _setup = system.Settings.Setup.Get<FleetTransportSetup>().GetOrElse(null!);
        if (_settings.EnableSsl && _setup?.Certificates is null)
        {
            throw new ConfigurationException($"{FleetTransportSettings.Path}: enable-ssl is on but the actor system has no {nameof(FleetTransportSetup)} with the member's certificates");
        }

        var certificates = _settings.EnableSsl ? _setup!.Certificates : null;
        _certificateContext = certificates is null ? null : SslStreamCertificateContext.Create(certificates.Member, additionalCertificates: null, offline: true);
        var loggers = system.Settings.Setup.Get<LoggerFactorySetup>().GetOrElse(null!)?.LoggerFactory ?? NullLoggerFactory.Instance;
        _logger = loggers.CreateLogger("Rama.Admin.Cluster.Transport");
        SchemeIdentifier = _settings.EnableSsl ? "ssl.tcp" : "tcp";
        MaximumPayloadBytes = _settings.MaximumFrameSize;
    }

    private FleetCertificates? Certificates => _settings.EnableSsl ? _setup!.Certificates : null;

    public override bool IsResponsibleFor(Address remote) => true;

    public override async Task<(Address, TaskCompletionSource<IAssociationEventListener>)> Listen()
    {
        var ip = IPAddress.TryParse(_settings.Hostname, out var parsed)
            ? parsed
            : (await Dns.GetHostAddressesAsync(_settings.Hostname, _shutdown.Token).ConfigureAwait(false))[0];
        var listener = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.Bind(new IPEndPoint(ip, _settings.Port));
            listener.Listen(512);
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new Akka.Remote.RemoteTransportException($"Failed to bind to {ip}:{_settings.Port}: {ex.Message}", ex);
        }

        _listener = listener;
        var bound = (IPEndPoint)listener.LocalEndPoint!;
        _localAddress = new Address(SchemeIdentifier, System.Name, HostOf(_settings.PublicHostname ?? _settings.Hostname), _settings.PublicPort ?? bound.Port);
        FleetTransportLog.Listening(_logger, bound.ToString(), Describe(_localAddress), _settings.EnableSsl ? "mutual TLS" : "plain TCP");
        // Connections wait in the backlog until Akka registers its listener for them.
        _acceptLoop = _associationListener.Task.ContinueWith(t => AcceptLoopAsync(listener, t.Result), CancellationToken.None,
            TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default).Unwrap();
        return (_localAddress, _associationListener);
    }

    public override async Task<AssociationHandle> Associate(Address remoteAddress)
    {
        ArgumentNullException.ThrowIfNull(remoteAddress);
        if (_localAddress is null || _shutdown.IsCancellationRequested)
        {
            throw new InvalidAssociationException($"the fleet transport is not listening: cannot associate with {remoteAddress}");
        }

        if (remoteAddress.Host is null || remoteAddress.Port is not { } port)
        {
            throw new InvalidAssociationException($"{remoteAddress} has no host and port");
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
        timeout.CancelAfter(_settings.HandshakeTimeout);
        Socket? socket = null;
        Stream stream;
        try
        {
            var host = remoteAddress.Host.Trim('[', ']');
            var ip = IPAddress.TryParse(host, out var parsed) ? parsed : (await Dns.GetHostAddressesAsync(host, timeout.Token).ConfigureAwait(false))[0];
            if (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any))
            {
                ip = ip.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
            }

            socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            _handshakes.TryAdd(socket, 0);
            await socket.ConnectAsync(new IPEndPoint(ip, port), timeout.Token).ConfigureAwait(false);
            stream = await FleetHandshake.DialAsync(socket, host, Certificates, _certificateContext, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (socket is not null)
            {
                _handshakes.TryRemove(socket, out _);
                socket.Dispose();
            }

            var failure = FleetHandshake.Classify(ex, untrusted: null, timeout.Token);
            throw OnOutboundFailure(remoteAddress, failure);
        }

        _handshakes.TryRemove(socket, out _);
        return Open(_localAddress, remoteAddress, socket, stream);
    }

    /// <summary>Rama's failure policy for a dial that did not become an association (see the class summary).</summary>
    private InvalidAssociationException OnOutboundFailure(Address remote, FleetHandshakeException failure)
    {
        var peer = Describe(remote);
        if (failure.Failure is HandshakeFailure.Untrusted or HandshakeFailure.RejectedByPeer)
        {
            if (IsFleetMember())
            {
                FleetTransportLog.UntrustedWhileMember(_logger, peer, failure.Message);
            }
            else
            {
                FleetTransportLog.UntrustedWhileJoining(_logger, peer, failure.Message);
                _ = CoordinatedShutdown.Get(System).Run(new FleetTrustFailureReason($"could not prove fleet membership to {peer}: {failure.Message}"));
            }
        }
        else
        {
            FleetTransportLog.OutboundTransportFailure(_logger, peer, failure.Message);
        }

        // Akka.Remote's endpoint manager gates the address for retry-gate-closed-for, then dials again (as for a refused connection).
        return new InvalidAssociationException($"Association with {remote} failed: {failure.Message}", failure);
    }

    private bool IsFleetMember()
    {
        if (_setup?.IsFleetMember is { } isMember)
        {
            return isMember(System);
        }

        if (System is not ExtendedActorSystem { Provider: ClusterActorRefProvider })
        {
            return false;
        }

        return Akka.Cluster.Cluster.Get(System).SelfMember.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Leaving or MemberStatus.Exiting;
    }

    private async Task AcceptLoopAsync(Socket listener, IAssociationEventListener associations)
    {
        while (!_shutdown.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_shutdown.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException || _shutdown.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                // ECONNABORTED and the like: one connection failed before it was accepted; the listener goes on.
                FleetTransportLog.AcceptFailed(_logger, ex, listener.LocalEndPoint?.ToString() ?? "?");
                continue;
            }

            socket.NoDelay = true;
            _ = AcceptOneAsync(socket, associations);
        }
    }

    private async Task AcceptOneAsync(Socket socket, IAssociationEventListener associations)
    {
        var remote = (IPEndPoint)socket.RemoteEndPoint!;
        var peer = remote.ToString();
        _handshakes.TryAdd(socket, 0);
        Stream stream;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token);
            timeout.CancelAfter(_settings.HandshakeTimeout);
            stream = await FleetHandshake.AcceptAsync(socket, Certificates, _certificateContext, timeout.Token).ConfigureAwait(false);
        }
        catch (FleetHandshakeException ex)
        {
            _handshakes.TryRemove(socket, out _);
            socket.Dispose();
            switch (ex.Failure)
            {
                case HandshakeFailure.Untrusted:
                    FleetTransportLog.InboundUntrusted(_logger, peer, ex.Message);
                    break;
                case HandshakeFailure.Transport:
                    FleetTransportLog.InboundTransportFailure(_logger, peer, ex.Message);
                    break;
                default:
                    FleetTransportLog.InboundHandshakeFailed(_logger, peer, ex.Message);
                    break;
            }

            return;
        }

        _handshakes.TryRemove(socket, out _);
        var remoteAddress = new Address(SchemeIdentifier, System.Name, HostOf(remote.Address.ToString()), remote.Port);
        var association = Open(_localAddress!, remoteAddress, socket, stream);
        associations.Notify(new InboundAssociation(association));
    }

    private FleetAssociation Open(Address local, Address remote, Socket socket, Stream stream)
    {
        var association = new FleetAssociation(local, remote, socket, stream, _settings, _logger, a => _associations.TryRemove(a, out _));
        _associations.TryAdd(association, 0);
        association.Start();
        if (_shutdown.IsCancellationRequested)
        {
            association.Abort("the transport is shutting down");
        }

        return association;
    }

    public override async Task<bool> Shutdown()
    {
        await _shutdown.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        foreach (var socket in _handshakes.Keys)
        {
            socket.Dispose();
        }

        var open = _associations.Keys.ToList();
        foreach (var association in open)
        {
#pragma warning disable CS0618 // the SPI's parameterless Disassociate is the one a transport implements and calls
            association.Disassociate();
#pragma warning restore CS0618
        }

        try
        {
            await Task.WhenAll(open.Select(a => a.Closed)).WaitAsync(_settings.FlushWait + TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            foreach (var association in open)
            {
                association.Abort("the transport shut down");
            }
        }

        try
        {
            await _acceptLoop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Akka never registered its listener: the accept loop never started.
        }

        return true;
    }

    /// <summary>Akka calls <see cref="Shutdown"/>, never this; tests that make a transport by hand dispose it.</summary>
    public void Dispose()
    {
        _listener?.Dispose();
        _shutdown.Dispose();
    }

    /// <summary>An address as operators and Akka's own logs write it (<c>akka.ssl.tcp://...</c>); the SPI's addresses have no <c>akka.</c>.</summary>
    internal static string Describe(Address address) => address.Protocol.StartsWith("akka", StringComparison.Ordinal) ? address.ToString() : "akka." + address;

    private static string HostOf(string host) =>
        IPAddress.TryParse(host, out var ip) && ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip}]" : host;
}
