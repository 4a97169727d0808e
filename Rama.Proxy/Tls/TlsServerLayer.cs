using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using Rama.Proxy.Core;
using Rama.Proxy.Metrics;
using Rama.Proxy.Net;

namespace Rama.Proxy.Tls;

/// <summary>
/// TLS termination as a connection layer: reads the ClientHello from the connection's first bytes
/// without consuming them (into <see cref="TlsClientHello"/> in the extensions bag), picks the
/// certificate by SNI, runs the handshake on <see cref="SslStream"/> over the connection's pipe
/// within <see cref="TlsServerOptions.HandshakeTimeout"/>, then swaps <see cref="ConnectionContext.Transport"/>
/// for the plaintext pipe and calls the inner service. Garbage, a truncated hello or a silent
/// client end the connection at the timeout; nothing reaches the inner service.
/// </summary>
public sealed class TlsServerLayer(TlsServerOptions options, ILoggerFactory? loggerFactory = null, TimeProvider? time = null) : ILayer<ConnectionContext, Unit>
{
    public IService<ConnectionContext, Unit> Layer(IService<ConnectionContext, Unit> inner)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new TlsServerService(inner, options, (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Rama.Proxy.Tls.TlsServer"), time ?? TimeProvider.System);
    }
}

internal sealed partial class TlsServerService(IService<ConnectionContext, Unit> inner, TlsServerOptions options, ILogger logger, TimeProvider time)
    : IService<ConnectionContext, Unit>
{
    private readonly List<SslApplicationProtocol> _alpn = [.. options.ApplicationProtocols.Select(p => new SslApplicationProtocol(p))];

    public async ValueTask<Unit> ServeAsync(ConnectionContext connection, CancellationToken cancellationToken)
    {
        var wire = connection.Transport;
        SslDuplexPipe? plain;
        using (var timeout = new CancellationTokenSource(options.HandshakeTimeout, time))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
        {
            try
            {
                plain = await HandshakeAsync(connection, wire, linked.Token).ConfigureAwait(false);
            }
            catch (TlsHandshakeException ex)
            {
                await RefuseAsync(connection, wire, ex.Reason, ex.Message).ConfigureAwait(false);
                return Unit.Value;
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                await RefuseAsync(connection, wire, TlsRejectReason.HandshakeTimeout, $"no handshake within {options.HandshakeTimeout.TotalSeconds:0.#} s").ConfigureAwait(false);
                return Unit.Value;
            }
            catch (Exception ex) when (ex is AuthenticationException or IOException or System.ComponentModel.Win32Exception)
            {
                await RefuseAsync(connection, wire, TlsRejectReason.HandshakeFailed, ex.Message).ConfigureAwait(false);
                return Unit.Value;
            }
        }

        if (plain is null)
        {
            return Unit.Value; // closed before a full hello
        }

        await using (plain.ConfigureAwait(false))
        {
            connection.Transport = plain;
            try
            {
                return await inner.ServeAsync(connection, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                connection.Transport = wire;
            }
        }
    }

    private async ValueTask<SslDuplexPipe?> HandshakeAsync(ConnectionContext connection, IDuplexPipe wire, CancellationToken cancellationToken)
    {
        var hello = await ReadClientHelloAsync(wire.Input, options.MaxClientHelloBytes, cancellationToken).ConfigureAwait(false);
        if (hello is null)
        {
            connection.TrySetCloseReason("closed before a complete ClientHello");
            return null;
        }

        connection.Extensions.Set(hello);
        connection.Extensions.Set(new Fingerprint.TlsFingerprints(Fingerprint.Ja3.From(hello), Fingerprint.Ja4.From(hello)));
        var certificate = await options.Certificates.SelectAsync(hello, cancellationToken).ConfigureAwait(false)
            ?? throw new TlsHandshakeException(TlsRejectReason.UnknownServerName, $"no certificate for '{hello.ServerName ?? "(no SNI)"}'");

        var ssl = new SslStream(new DuplexPipeStream(wire), leaveInnerStreamOpen: false);
        try
        {
            var authentication = new SslServerAuthenticationOptions
            {
                ServerCertificateContext = certificate,
                ApplicationProtocols = _alpn.Count == 0 ? null : _alpn,
                EnabledSslProtocols = options.EnabledProtocols,
                ClientCertificateRequired = options.ClientCertificates != ClientCertificateMode.None,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = options.ClientCertificates == ClientCertificateMode.None ? null : ValidateClientCertificate,
            };
            await ssl.AuthenticateAsServerAsync(authentication, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var alpn = ssl.NegotiatedApplicationProtocol.Protocol.IsEmpty ? null : ssl.NegotiatedApplicationProtocol.ToString();
        var info = new TlsConnectionInfo(ssl.SslProtocol, ssl.NegotiatedCipherSuite, alpn, hello.ServerName,
            ssl.RemoteCertificate as X509Certificate2 ?? (ssl.RemoteCertificate is null ? null : X509CertificateLoader.LoadCertificate(ssl.RemoteCertificate.GetRawCertData())));
        connection.Extensions.Set(info);
        ProxyInstruments.TlsHandshake(ssl.SslProtocol);
        LogHandshake(logger, connection.Id, info.ProtocolText, info.CipherSuite.ToString(), hello.ServerName ?? "-", alpn ?? "-");
        return new SslDuplexPipe(ssl, wire);
    }

    /// <summary>Peeks until the ClientHello is complete; null when the client closed first. Consumes nothing.</summary>
    internal static async ValueTask<TlsClientHello?> ReadClientHelloAsync(PipeReader input, int maxBytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            bool parsed;
            TlsClientHello? hello;
            try
            {
                parsed = ClientHelloParser.TryParse(buffer, maxBytes, out hello);
            }
            catch (TlsHandshakeException)
            {
                input.AdvanceTo(buffer.Start, buffer.End);
                throw;
            }

            if (parsed)
            {
                input.AdvanceTo(buffer.Start); // SslStream reads the same bytes again
                return hello;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted || result.IsCanceled)
            {
                return null;
            }
        }
    }

    private bool ValidateClientCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (certificate is null)
        {
            return options.ClientCertificates == ClientCertificateMode.Optional;
        }

        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(options.ClientCertificateAuthorities!);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        custom.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")); // id-kp-clientAuth
        if (chain is not null)
        {
            custom.ChainPolicy.ExtraStore.AddRange(chain.ChainPolicy.ExtraStore);
        }

        using var leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return custom.Build(leaf);
    }

    private async ValueTask RefuseAsync(ConnectionContext connection, IDuplexPipe wire, TlsRejectReason reason, string detail)
    {
        LogRefused(logger, connection.Id, reason, detail);
        ProxyInstruments.TlsHandshakeFailed(reason);
        connection.TrySetCloseReason($"tls: {reason}");
        if (ClientHelloParser.AlertFor(reason) is { } alert)
        {
            try
            {
                await wire.Output.WriteAsync(ClientHelloParser.FatalAlert(alert)).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or InvalidOperationException or OperationCanceledException)
            {
            }
        }
    }

    [LoggerMessage(EventId = 7000, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: TLS {Protocol} {Cipher} sni={ServerName} alpn={Alpn}")]
    private static partial void LogHandshake(ILogger logger, long connectionId, string protocol, string cipher, string serverName, string alpn);

    [LoggerMessage(EventId = 7001, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: TLS handshake refused ({Reason}): {Detail}")]
    private static partial void LogRefused(ILogger logger, long connectionId, TlsRejectReason reason, string detail);
}
