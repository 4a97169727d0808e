using System.IO.Pipelines;
using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Upstream;

/// <summary>
/// HTTPS upstreams: TLS to the proxy (certificate verified against the system store, plus an optional
/// CA file; the name must match the upstream's host), then CONNECT inside TLS. The tunnel is handed to
/// callers as a <see cref="SocketConnection"/> over one end of a Unix socket pair, whose other end is
/// relayed to the TLS stream: callers keep one connection type, and the socket transport stays as it is.
/// </summary>
internal sealed partial class UpstreamTls
{
    private readonly X509Certificate2Collection? _extraRoots;

    public UpstreamTls(string? trustedCaFile)
    {
        if (trustedCaFile is not null)
        {
            _extraRoots = [];
            _extraRoots.ImportFromPemFile(trustedCaFile);
        }
    }

    public async ValueTask<(ConnectResult Result, bool UpstreamFault)> ConnectAsync(SocketConnection raw, string upstreamHost, HostPort target,
        UpstreamCredential? credential, CancellationToken cancellationToken)
    {
        var ssl = new SslStream(new DuplexPipeStream(raw), leaveInnerStreamOpen: true);
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = upstreamHost,
                RemoteCertificateValidationCallback = Validate,
            }, cancellationToken).ConfigureAwait(false);
            var tls = new Pipe(ssl);
            var handshake = await HttpConnectClient.ConnectAsync(tls, target, credential?.User, credential?.Password, cancellationToken).ConfigureAwait(false);
            if (!handshake.Succeeded)
            {
                await DisposeAsync(ssl, raw).ConfigureAwait(false);
                return (ConnectResult.Failure(handshake.Error, handshake.Detail), handshake.UpstreamFault);
            }

            var (ours, theirs) = SocketPair.Create();
            var bridge = new SocketConnection(ours);
            bridge.Start();
            var tunnel = new SocketConnection(theirs);
            tunnel.Start();
            _ = RelayAsync(bridge, tls, ssl, raw);
            return (new ConnectResult(tunnel, ConnectError.None, null), false);
        }
        catch
        {
            await DisposeAsync(ssl, raw).ConfigureAwait(false);
            throw;
        }
    }

    private static async Task RelayAsync(SocketConnection bridge, Pipe tls, SslStream ssl, SocketConnection raw)
    {
        try
        {
            await Relay.RunAsync(bridge, tls, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            // a peer went away: normal end of a tunnel
        }
        finally
        {
            await bridge.DisposeAsync().ConfigureAwait(false);
            await DisposeAsync(ssl, raw).ConfigureAwait(false);
        }
    }

    private static async ValueTask DisposeAsync(SslStream ssl, SocketConnection raw)
    {
        await ssl.DisposeAsync().ConfigureAwait(false);
        await raw.DisposeAsync().ConfigureAwait(false);
    }

    private bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (errors == SslPolicyErrors.None)
        {
            return true;
        }

        // Only an untrusted chain can be rescued, and only by the configured CA file; a name mismatch never.
        if (errors != SslPolicyErrors.RemoteCertificateChainErrors || _extraRoots is null || certificate is null)
        {
            return false;
        }

        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(_extraRoots);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
        {
            foreach (var element in chain.ChainElements.Skip(1))
            {
                custom.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        using var leaf = new X509Certificate2(certificate);
        return custom.Build(leaf);
    }

    /// <summary>The TLS stream as a duplex pipe (the CONNECT handshake and the relay read and write it).</summary>
    private sealed class Pipe(SslStream ssl) : IDuplexPipe
    {
        public PipeReader Input { get; } = PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true));

        public PipeWriter Output { get; } = PipeWriter.Create(ssl, new StreamPipeWriterOptions(leaveOpen: true));
    }

    /// <summary>socketpair(2): two connected Unix stream sockets, no listener, nothing another process can reach.</summary>
    private static partial class SocketPair
    {
        private const int AfUnix = 1;
        private const int SockStream = 1;
        private const int SockCloexec = 0x80000; // Linux

        public static (Socket, Socket) Create()
        {
            if (OperatingSystem.IsWindows())
            {
                throw new PlatformNotSupportedException("HTTPS upstreams need socketpair(2) (Linux, macOS)");
            }

            var fds = new int[2];
            var type = OperatingSystem.IsLinux() ? SockStream | SockCloexec : SockStream;
            if (socketpair(AfUnix, type, 0, fds) != 0)
            {
                throw new IOException($"socketpair failed: errno {Marshal.GetLastPInvokeError()}");
            }

            return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new Socket(new SafeSocketHandle(fds[1], ownsHandle: true)));
        }

        [DllImport("libc", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        private static extern int socketpair(int domain, int type, int protocol, [Out] int[] sv);
    }
}
