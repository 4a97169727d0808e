using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Rama.Admin.Cluster.Transport;

/// <summary>Why a connection never became an association; the failure policy (<see cref="FleetTransport"/>) acts on it.</summary>
internal enum HandshakeFailure
{
    /// <summary>The peer closed or reset the connection, it timed out, or the socket failed: the association fails, Akka retries.</summary>
    Transport,

    /// <summary>The peer's certificate is not from this fleet's CA (or it presented none).</summary>
    Untrusted,

    /// <summary>The peer refused this member's certificate with a TLS alert.</summary>
    RejectedByPeer,

    /// <summary>Something that is not a fleet peer of the same kind (plain TCP against TLS, another protocol).</summary>
    NotAPeer,
}

internal sealed class FleetHandshakeException(HandshakeFailure failure, string message, Exception? inner = null) : Exception(message, inner)
{
    public HandshakeFailure Failure { get; } = failure;
}

/// <summary>
/// How a connection becomes an association. With TLS: a TLS 1.2/1.3 handshake with a client certificate required on both
/// sides, each checked against the fleet CA (<see cref="FleetCertificates.Check"/>). Then the accepting side sends one byte,
/// <see cref="Accepted"/>, and the dialler waits for it: under TLS 1.3 the server checks the client's certificate after
/// the client's handshake has already completed, so only that byte (or the server's alert instead of it) tells the
/// dialler whether it was admitted: the accepting side checks the dialler's certificate during the handshake and answers
/// <see cref="Refused"/> instead when it is not from the fleet CA. Without TLS (loopback fleets) the dialler opens with <see cref="PlainHello"/> first,
/// so a TLS member refuses a plain one at once (it is not a ClientHello) and the other way round.
/// </summary>
internal static class FleetHandshake
{
    public const byte Accepted = 0x01;

    /// <summary>The accepting side's answer to a dialler whose certificate is not from its fleet CA (sent over the finished TLS session).</summary>
    public const byte Refused = 0x02;

    // Longer than a TLS record header (5 bytes) and not one (0x52 is no TLS content type): a TLS member refuses it at once.
    public static ReadOnlySpan<byte> PlainHello => "RAMA/1\r\n"u8;

    private const SslProtocols Protocols = SslProtocols.Tls12 | SslProtocols.Tls13;

    /// <summary>Dials side: the stream of an admitted association, or a <see cref="FleetHandshakeException"/> saying why not.</summary>
    public static async Task<Stream> DialAsync(Socket socket, string targetHost, FleetCertificates? certificates, SslStreamCertificateContext? context, CancellationToken cancellationToken)
    {
        Stream stream = new NetworkStream(socket, ownsSocket: true);
        string? untrusted = null;
        try
        {
            if (certificates is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = targetHost,
                    ClientCertificateContext = context,
                    EnabledSslProtocols = Protocols,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    // The CA, not the name, says who belongs: members are dialled by IP, container name or public name alike.
                    RemoteCertificateValidationCallback = (_, certificate, _, _) => (untrusted = certificates.Check(certificate as X509Certificate2)) is null,
                }, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await stream.WriteAsync(PlainHello.ToArray(), cancellationToken).ConfigureAwait(false);
            }

            var answer = new byte[1];
            if (await stream.ReadAsync(answer, cancellationToken).ConfigureAwait(false) == 0)
            {
                throw new FleetHandshakeException(HandshakeFailure.Transport, "the peer closed the connection before admitting this member");
            }

            if (answer[0] == Refused)
            {
                throw new FleetHandshakeException(HandshakeFailure.RejectedByPeer, "the peer refused this member's certificate: it is not from the peer's fleet CA (another --cluster-secret or CA?)");
            }

            if (answer[0] != Accepted)
            {
                throw new FleetHandshakeException(HandshakeFailure.NotAPeer, $"the peer answered 0x{answer[0]:x2}, not a fleet transport's acceptance");
            }

            return stream;
        }
        catch (Exception ex)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw Classify(ex, untrusted, cancellationToken);
        }
    }

    /// <summary>Accepting side: the stream of an admitted association, or a <see cref="FleetHandshakeException"/> saying why not.</summary>
    public static async Task<Stream> AcceptAsync(Socket socket, FleetCertificates? certificates, SslStreamCertificateContext? context, CancellationToken cancellationToken)
    {
        Stream stream = new NetworkStream(socket, ownsSocket: true);
        string? untrusted = null;
        try
        {
            if (certificates is not null)
            {
                var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = ssl;
                await ssl.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = context,
                    ClientCertificateRequired = true,
                    EnabledSslProtocols = Protocols,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    // Checked here, answered after the handshake: over the finished session the refusal reaches the dialler for
                    // sure (Refused), where a failed handshake would leave it a bare close under TLS 1.3. No certificate at all:
                    // not a fleet member's client, refused in the handshake.
                    RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                    {
                        untrusted = certificates.Check(certificate as X509Certificate2);
                        return certificate is not null;
                    },
                }, cancellationToken).ConfigureAwait(false);
                if (untrusted is not null)
                {
                    await stream.WriteAsync(new[] { Refused }, cancellationToken).ConfigureAwait(false);
                    throw new FleetHandshakeException(HandshakeFailure.Untrusted, untrusted);
                }
            }
            else
            {
                var hello = new byte[PlainHello.Length];
                await stream.ReadExactlyAsync(hello, cancellationToken).ConfigureAwait(false);
                if (!PlainHello.SequenceEqual(hello))
                {
                    throw new FleetHandshakeException(HandshakeFailure.NotAPeer, "it did not open with the fleet transport's hello (a member with TLS, or not a fleet member)");
                }
            }

            await stream.WriteAsync(new[] { Accepted }, cancellationToken).ConfigureAwait(false);
            return stream;
        }
        catch (Exception ex)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw Classify(ex, untrusted, cancellationToken);
        }
    }

    /// <summary>Trust failures need evidence (our validator refused, or the peer sent an alert); anything else is the network's doing.</summary>
    internal static FleetHandshakeException Classify(Exception ex, string? untrusted, CancellationToken cancellationToken)
    {
        if (ex is FleetHandshakeException known)
        {
            return known;
        }

        if (untrusted is not null)
        {
            return new FleetHandshakeException(HandshakeFailure.Untrusted, untrusted, ex);
        }

        if (ex is OperationCanceledException)
        {
            return new FleetHandshakeException(HandshakeFailure.Transport, cancellationToken.IsCancellationRequested ? "the handshake timed out (or the transport is shutting down)" : "cancelled", ex);
        }

        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e.Message.Contains("alert", StringComparison.OrdinalIgnoreCase))
            {
                return new FleetHandshakeException(HandshakeFailure.RejectedByPeer, $"the peer refused this member's certificate ({e.Message.Trim()})", ex);
            }
        }

        if (ex is AuthenticationException && ex.InnerException is null or not (IOException or SocketException))
        {
            // A TLS failure with no alert and no socket error: the peer spoke something else than TLS, or closed mid-handshake
            // ("the remote party has closed the transport stream"), which is the network's doing, not a refusal.
            var closed = ex.Message.Contains("closed", StringComparison.OrdinalIgnoreCase) || ex.Message.Contains("EOF", StringComparison.OrdinalIgnoreCase);
            return new FleetHandshakeException(closed ? HandshakeFailure.Transport : HandshakeFailure.NotAPeer, ex.Message, ex);
        }

        return new FleetHandshakeException(HandshakeFailure.Transport, ex.GetBaseException().Message, ex);
    }
}
