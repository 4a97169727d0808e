using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Remote;
using Microsoft.Extensions.Logging;
using Rama.Admin.Cluster;
using Rama.Admin.Cluster.Transport;
using Rama.Admin.Options;
using Rama.Testing;

namespace Rama.Admin.Tests.Cluster;

/// <summary>Two actor systems on loopback over Rama's fleet transport (mutual TLS with fleet certificates, or plain TCP).</summary>
public sealed class FleetTransportTests : IDisposable
{
    private const string Secret = "transport-test-secret-0123456789";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);
    private readonly List<IDisposable> _owned = [];
    private readonly List<ActorSystem> _systems = [];

    public void Dispose()
    {
        Task.WhenAll(_systems.Select(s => s.Terminate())).Wait(TimeSpan.FromSeconds(20));
        foreach (var owned in _owned)
        {
            owned.Dispose();
        }
    }

    private FleetCertificates Certificates(string secret, string member)
    {
        var certificates = FleetCertificates.FromSecret(secret, member);
        _owned.Add(certificates);
        return certificates;
    }

    private ActorSystem System(string name, FleetCertificates? certificates, CapturedLog log, bool member = false, string extra = "")
    {
        var system = TransportSystems.Fleet(name, certificates, log, member, extra);
        _systems.Add(system);
        return system;
    }

    [Theory]
    [InlineData(true, "akka.ssl.tcp")]
    [InlineData(false, "akka.tcp")]
    public async Task Two_members_exchange_messages_on_the_bound_port_with_the_same_scheme_as_DotNetty(bool tls, string scheme)
    {
        var log = new CapturedLog();
        var a = System("rama", tls ? Certificates(Secret, "a") : null, log);
        var b = System("rama", tls ? Certificates(Secret, "b") : null, log);
        var bAddress = TransportSystems.AddressOf(b);
        Assert.Equal(scheme, bAddress.Protocol);
        Assert.Equal("127.0.0.1", bAddress.Host);
        Assert.NotEqual(0, bAddress.Port);
        b.ActorOf(Props.Create(() => new EchoActor()), "echo");

        var echo = await a.ActorSelection($"{bAddress}/user/echo").ResolveOne(Wait);
        Assert.Equal("hello", await echo.Ask<string>("hello", Wait));
        // And back the other way, on the association b accepted.
        Assert.Equal(42, await echo.Ask<int>(42, Wait));
    }

    [Fact]
    public async Task A_message_near_the_2_MB_frame_limit_arrives_whole_and_a_bigger_one_is_refused_without_harm()
    {
        var log = new CapturedLog();
        var a = System("rama", Certificates(Secret, "a"), log);
        var b = System("rama", Certificates(Secret, "b"), log);
        b.ActorOf(Props.Create(() => new EchoActor()), "echo");
        var echo = await a.ActorSelection($"{TransportSystems.AddressOf(b)}/user/echo").ResolveOne(Wait);

        var big = new byte[1_990_000];
        Random.Shared.NextBytes(big);
        var back = await echo.Ask<byte[]>(big, Wait);
        Assert.Equal(big, back);

        // Over the limit: Akka's endpoint writer drops it (OversizedPayloadException), the association stays.
        await Assert.ThrowsAsync<AskTimeoutException>(() => echo.Ask<byte[]>(new byte[2_100_000], TimeSpan.FromSeconds(2)));
        Assert.Equal("still there", await echo.Ask<string>("still there", Wait));
    }

    [Fact]
    public async Task Many_messages_arrive_complete_and_in_order_through_back_pressure()
    {
        var log = new CapturedLog();
        // A small high-water mark: Write answers false often, Akka's endpoint writer backs off and retries.
        const string small = "send-high-water-mark = 65536b\nwrite-batch-size = 16384b";
        var a = System("rama", Certificates(Secret, "a"), log, extra: small);
        var b = System("rama", Certificates(Secret, "b"), log, extra: small);
        b.ActorOf(Props.Create(() => new SequenceActor()), "sequence");
        var sequence = await a.ActorSelection($"{TransportSystems.AddressOf(b)}/user/sequence").ResolveOne(Wait);

        const int count = 50_000;
        for (var i = 0; i < count; i++)
        {
            sequence.Tell(i);
        }

        SequenceCount? last = null;
        await Eventually.TrueAsync(async () =>
        {
            last = await sequence.Ask<SequenceCount>("count?", Wait);
            return last.Received >= count;
        }, TimeSpan.FromSeconds(60), () => $"received {last}");
        Assert.Equal(new SequenceCount(count, true), last);
    }

    [Fact]
    public async Task A_peer_from_another_fleet_CA_is_refused_on_both_sides_and_nothing_is_delivered()
    {
        var log = new CapturedLog();
        var a = System("rama", Certificates(Secret, "a"), log, member: true);
        var b = System("rama", Certificates("another-fleet-secret-0000000", "b"), log, member: true);
        var aAddress = TransportSystems.AddressOf(a);
        var bAddress = TransportSystems.AddressOf(b);
        var aSequence = a.ActorOf(Props.Create(() => new SequenceActor()), "sequence");
        var bSequence = b.ActorOf(Props.Create(() => new SequenceActor()), "sequence");

        // Each dials the other: each refuses the other's certificate, as dialler and as listener.
        a.ActorSelection($"{bAddress}/user/sequence").Tell(0);
        b.ActorSelection($"{aAddress}/user/sequence").Tell(0);
        await Eventually.TrueAsync(() => log.Entries.Count(e => e.Level == LogLevel.Error && e.Message.Contains("Refused cluster peer", StringComparison.Ordinal)) >= 2, Wait, () => string.Join("\n", log.Entries));
        Assert.True(log.Has(LogLevel.Error, $"Refused cluster peer {bAddress}"), string.Join("\n", log.Entries));
        Assert.True(log.Has(LogLevel.Error, $"Refused cluster peer {aAddress}"), string.Join("\n", log.Entries));
        Assert.Contains(log.Entries, e => e.Message.Contains("issued by", StringComparison.Ordinal) && e.Message.Contains("not by this fleet's CA", StringComparison.Ordinal));

        // Both are members here: neither shuts down, nothing crossed.
        Assert.Null(CoordinatedShutdown.Get(a).ShutdownReason);
        Assert.Null(CoordinatedShutdown.Get(b).ShutdownReason);
        Assert.Equal(new SequenceCount(0, true), await aSequence.Ask<SequenceCount>("count?", Wait));
        Assert.Equal(new SequenceCount(0, true), await bSequence.Ask<SequenceCount>("count?", Wait));
    }

    [Fact]
    public async Task A_member_not_yet_in_the_fleet_that_dials_another_fleet_shuts_down_with_exit_code_2()
    {
        var log = new CapturedLog();
        var seed = System("rama", Certificates(Secret, "seed"), log, member: true);
        var joining = System("rama", Certificates("another-fleet-secret-0000000", "joining"), log, member: false);
        joining.ActorSelection($"{TransportSystems.AddressOf(seed)}/user/anything").Tell("join me");

        await joining.WhenTerminated.WaitAsync(Wait);
        Assert.IsType<FleetTrustFailureReason>(CoordinatedShutdown.Get(joining).ShutdownReason);
        var (code, message) = MemberExit.Of(joining);
        Assert.Equal(ExitCodes.BadOptions, code);
        Assert.Contains("could not prove fleet membership", message, StringComparison.Ordinal);
        // The seed refused it too, and stays.
        await Eventually.TrueAsync(() => log.Has(LogLevel.Warning, "Rejected incoming connection") || log.Has(LogLevel.Warning, "Refused cluster peer"), Wait, () => string.Join("\n", log.Entries));
        Assert.Null(CoordinatedShutdown.Get(seed).ShutdownReason);
    }

    [Fact]
    public async Task A_member_whose_certificate_the_peer_refuses_learns_it_from_the_peer_and_shuts_down_before_it_is_a_member()
    {
        // The dialler trusts the seed's CA but holds a certificate from another CA (operator's files mixed up): only the
        // seed can tell, and it answers so over the finished TLS session.
        var log = new CapturedLog();
        var seedCertificates = Certificates(Secret, "seed");
        var foreign = Certificates("another-fleet-secret-0000000", "joining");
        var directory = Directory.CreateTempSubdirectory("rama-transport-");
        try
        {
            var pfx = Path.Combine(directory.FullName, "member.pfx");
            var ca = Path.Combine(directory.FullName, "ca.pem");
            await File.WriteAllBytesAsync(pfx, foreign.Member.Export(X509ContentType.Pkcs12));
            await File.WriteAllTextAsync(ca, seedCertificates.Authority.ExportCertificatePem());
            var mixed = FleetCertificates.FromFiles(pfx, null, ca);
            _owned.Add(mixed);

            var seed = System("rama", seedCertificates, log, member: true);
            var joining = System("rama", mixed, log, member: false);
            joining.ActorSelection($"{TransportSystems.AddressOf(seed)}/user/anything").Tell("join me");

            await joining.WhenTerminated.WaitAsync(Wait);
            Assert.IsType<FleetTrustFailureReason>(CoordinatedShutdown.Get(joining).ShutdownReason);
            Assert.Equal(ExitCodes.BadOptions, MemberExit.Of(joining).Code);
            Assert.True(log.Has(LogLevel.Error, "the peer refused this member's certificate"), string.Join("\n", log.Entries));
            // The seed logs its refusal after answering it, so the joiner may be gone first (seen once in the full suite).
            await Eventually.TrueAsync(() => log.Has(LogLevel.Warning, "Refused cluster peer 127.0.0.1:"), Wait, () => string.Join("\n", log.Entries));
            Assert.Null(CoordinatedShutdown.Get(seed).ShutdownReason);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_member_already_in_the_fleet_logs_a_refusal_by_its_peer_and_stays()
    {
        var log = new CapturedLog();
        var seedCertificates = Certificates(Secret, "seed");
        var foreign = Certificates("another-fleet-secret-0000000", "member");
        var directory = Directory.CreateTempSubdirectory("rama-transport-");
        try
        {
            var pfx = Path.Combine(directory.FullName, "member.pfx");
            var ca = Path.Combine(directory.FullName, "ca.pem");
            await File.WriteAllBytesAsync(pfx, foreign.Member.Export(X509ContentType.Pkcs12));
            await File.WriteAllTextAsync(ca, seedCertificates.Authority.ExportCertificatePem());
            var mixed = FleetCertificates.FromFiles(pfx, null, ca);
            _owned.Add(mixed);

            var seed = System("rama", seedCertificates, log, member: true);
            var member = System("rama", mixed, log, member: true);
            member.ActorSelection($"{TransportSystems.AddressOf(seed)}/user/anything").Tell("hello");
            await Eventually.TrueAsync(() => log.Has(LogLevel.Error, "This member is in the fleet: the association fails, the member stays"), Wait, () => string.Join("\n", log.Entries));
            Assert.Null(CoordinatedShutdown.Get(member).ShutdownReason);
            Assert.False(member.WhenTerminated.IsCompleted);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_peer_that_closes_the_connection_mid_handshake_does_not_shut_the_dialler_down(bool reset)
    {
        // A peer on its way out: it accepts, reads the ClientHello and closes (FIN) or resets (RST) before answering.
        using var peer = new TcpListener(IPAddress.Loopback, 0);
        peer.Start();
        var closed = 0;
        var serving = Task.Run(async () =>
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await peer.AcceptSocketAsync();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                using (socket)
                {
                    var hello = new byte[512];
                    _ = await socket.ReceiveAsync(hello, SocketFlags.None);
                    if (reset)
                    {
                        socket.LingerState = new LingerOption(true, 0);
                    }
                }

                Interlocked.Increment(ref closed);
            }
        });

        var log = new CapturedLog();
        // Not yet a member: the case where a trust failure would shut it down. A closed handshake must not.
        var dialler = System("rama", Certificates(Secret, "dialler"), log, member: false);
        var failures = dialler.ActorOf(Props.Create(() => new AssociationErrors()), "errors");
        dialler.EventStream.Subscribe(failures, typeof(AssociationErrorEvent));
        var port = ((IPEndPoint)peer.LocalEndpoint).Port;
        dialler.ActorSelection($"akka.ssl.tcp://rama@127.0.0.1:{port}/user/anything").Tell("hello");

        await Eventually.TrueAsync(async () => Volatile.Read(ref closed) >= 1 && await failures.Ask<int>("count?", Wait) >= 1, Wait, "the association never failed");
        Assert.Null(CoordinatedShutdown.Get(dialler).ShutdownReason);
        Assert.False(dialler.WhenTerminated.IsCompleted);
        Assert.True(log.Has(LogLevel.Information, $"Connection to cluster peer akka.ssl.tcp://rama@127.0.0.1:{port} failed before it was established"), string.Join("\n", log.Entries));
        Assert.DoesNotContain(log.Entries, e => e.Level >= LogLevel.Error);

        peer.Stop();
        await serving;
    }

    [Fact]
    public async Task A_plain_member_and_a_TLS_member_refuse_each_other_without_shutting_down()
    {
        var log = new CapturedLog();
        var tls = System("rama", Certificates(Secret, "tls"), log, member: false);
        var plain = System("rama", null, log, member: false);
        // The plain one dials the TLS one: the TLS side rejects a connection that is not TLS; the plain side's association fails.
        plain.ActorSelection($"akka.tcp://rama@127.0.0.1:{TransportSystems.AddressOf(tls).Port}/user/anything").Tell("hello");
        await Eventually.TrueAsync(() => log.Has(LogLevel.Warning, "Rejected incoming connection") && log.Has(LogLevel.Information, "failed before it was established"), Wait, () => string.Join("\n", log.Entries));
        Assert.Null(CoordinatedShutdown.Get(plain).ShutdownReason);
        Assert.Null(CoordinatedShutdown.Get(tls).ShutdownReason);
    }
}

/// <summary>Counts Akka.Remote's association failures (published on the event stream).</summary>
internal sealed class AssociationErrors : ReceiveActor
{
    public AssociationErrors()
    {
        var count = 0;
        Receive<AssociationErrorEvent>(_ => count++);
        Receive<string>(_ => Sender.Tell(count));
    }
}
