using System.Net;
using System.Security.Authentication;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;

namespace Rama.Node;

/// <summary>One certificate and the SNI names it serves (none: the names in the certificate).</summary>
public sealed class CertificateOptions
{
    public List<string> Names { get; set; } = [];

    /// <summary>PEM certificate (chain after the leaf allowed) or PFX/P12 file.</summary>
    public string Cert { get; set; } = "";

    /// <summary>PEM private key; empty for PFX or a PEM holding both.</summary>
    public string? Key { get; set; }

    public string? Password { get; set; }
}

/// <summary>
/// TLS options (section <c>Rama:Tls</c>): certificates, termination listeners and their upstream.
/// A certificate also turns every <c>--listen</c> port into an HTTPS proxy and the echo port into HTTPS.
/// </summary>
public sealed class TlsNodeOptions
{
    /// <summary>TLS termination endpoints (<c>--tls-listen</c>).</summary>
    public List<string> Listen { get; set; } = [];

    /// <summary>The default certificate (<c>--cert</c>/<c>--key</c>); first in SNI selection order.</summary>
    public string? Cert { get; set; }

    public string? Key { get; set; }

    /// <summary>More certificates with their SNI names.</summary>
    public List<CertificateOptions> Certificates { get; set; } = [];

    /// <summary><c>default</c> (serve the default certificate) or <c>reject</c> (unrecognized_name alert).</summary>
    public UnknownServerNamePolicy UnknownSni { get; set; } = UnknownServerNamePolicy.UseDefault;

    public List<string> Alpn { get; set; } = [];

    /// <summary>PEM file of the CAs client certificates must chain to (mTLS).</summary>
    public string? ClientCa { get; set; }

    public ClientCertificateMode ClientCertificates { get; set; } = ClientCertificateMode.None;

    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Where termination forwards (<c>--upstream host:port</c>).</summary>
    public string? Upstream { get; set; }

    public TerminationMode UpstreamMode { get; set; } = TerminationMode.Tcp;

    /// <summary>Re-encrypt to the upstream (<c>--upstream-tls</c>); verification on.</summary>
    public bool UpstreamTls { get; set; }

    /// <summary>Extra CA file trusted for the upstream (<c>--upstream-ca</c>).</summary>
    public string? UpstreamCa { get; set; }

    /// <summary>Send a PROXY header upstream (<c>--upstream-proxy-protocol v1|v2</c>).</summary>
    public ProxyProtocolVersion? UpstreamProxyProtocol { get; set; }

    public bool HasCertificate => !string.IsNullOrEmpty(Cert) || Certificates.Count > 0;

    internal IReadOnlyList<IPEndPoint> Endpoints { get; private set; } = [];

    internal HostPort? UpstreamTarget { get; private set; }

    public void Validate(List<string> problems)
    {
        Endpoints = NodeOptions.ParseEndpoints(Listen, "--tls-listen", problems);
        if (Endpoints.Count > 0 && !HasCertificate)
        {
            problems.Add("--tls-listen needs a certificate: --cert <file> --key <file> (or Rama:Tls:Certificates)");
        }

        if (Endpoints.Count > 0)
        {
            if (Upstream is null || !HostPort.TryParse(Upstream, 0, out var target) || target.Value.Port == 0)
            {
                problems.Add($"--tls-listen needs --upstream host:port (was '{Upstream}')");
            }
            else
            {
                UpstreamTarget = target;
            }
        }

        if (ClientCertificates != ClientCertificateMode.None && string.IsNullOrEmpty(ClientCa))
        {
            problems.Add("--client-cert needs --client-ca <pem file>");
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            problems.Add("--handshake-timeout must be positive");
        }

        if (HasCertificate)
        {
            try
            {
                _server = BuildServerOptions();
            }
            catch (Exception ex) when (ex is ArgumentException or IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
            {
                problems.Add("cannot load the TLS certificate: " + ex.Message);
            }
        }
    }

    private TlsServerOptions? _server;

    /// <summary>The server options (certificates loaded once at start-up); null without a certificate.</summary>
    public TlsServerOptions? ServerOptions => _server;

    private TlsServerOptions BuildServerOptions()
    {
        var certificates = new ServerCertificates { UnknownServerName = UnknownSni };
        if (!string.IsNullOrEmpty(Cert))
        {
            certificates.AddFiles(Cert, string.IsNullOrEmpty(Key) ? null : Key);
        }

        foreach (var entry in Certificates)
        {
            certificates.AddFiles(entry.Cert, string.IsNullOrEmpty(entry.Key) ? null : entry.Key, entry.Password, entry.Names);
        }

        var options = new TlsServerOptions
        {
            Certificates = certificates,
            ApplicationProtocols = Alpn.Count > 0 ? Alpn : ["http/1.1"],
            ClientCertificates = ClientCertificates,
            ClientCertificateAuthorities = string.IsNullOrEmpty(ClientCa) ? null : TlsFiles.LoadAuthorities(ClientCa),
            EnabledProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            HandshakeTimeout = HandshakeTimeout,
        };
        options.Validate();
        return options;
    }

    public TlsTerminationOptions TerminationOptions(ForwardProxyOptions proxy) => new()
    {
        Upstream = UpstreamTarget!.Value,
        Mode = UpstreamMode,
        UpstreamTls = UpstreamTls ? new TlsClientOptions { ExtraTrustedRoots = string.IsNullOrEmpty(UpstreamCa) ? null : TlsFiles.LoadAuthorities(UpstreamCa) } : null,
        SendProxyProtocol = UpstreamProxyProtocol,
        Limits = proxy.Http.Limits,
        Connector = proxy.Connector,
    };
}

/// <summary>PROXY protocol accept side on every listener (section <c>Rama:ProxyProtocol</c>).</summary>
public sealed class ProxyProtocolNodeOptions
{
    /// <summary><c>--proxy-protocol</c>: expect a header from trusted peers on every listener.</summary>
    public bool Enabled { get; set; }

    /// <summary><c>--proxy-protocol-trusted CIDR</c> (repeatable). Default loopback.</summary>
    public List<string> Trusted { get; set; } = [];

    public TimeSpan HeaderTimeout { get; set; } = TimeSpan.FromSeconds(5);

    public ProxyProtocolOptions? Options { get; private set; }

    public void Validate(List<string> problems)
    {
        if (!Enabled)
        {
            return;
        }

        var networks = new List<IPNetwork>();
        foreach (var text in Trusted)
        {
            if (IPNetwork.TryParse(text, out var network))
            {
                networks.Add(network);
            }
            else if (IPAddress.TryParse(text, out var address))
            {
                networks.Add(new IPNetwork(address, address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128));
            }
            else
            {
                problems.Add($"--proxy-protocol-trusted '{text}' is not a CIDR (10.0.0.0/8) or an address");
            }
        }

        var options = new ProxyProtocolOptions { HeaderTimeout = HeaderTimeout };
        Options = networks.Count > 0 ? options with { TrustedSources = networks } : options;
        try
        {
            Options.Validate();
        }
        catch (ArgumentException ex)
        {
            problems.Add(ex.Message);
        }
    }
}

/// <summary>MITM (section <c>Rama:Mitm</c>): decrypt CONNECT tunnels whose first bytes are a ClientHello. Off unless enabled.</summary>
public sealed class MitmNodeOptions
{
    public bool Enabled { get; set; }

    /// <summary>Directory holding (or receiving, on first run) <c>rama-ca.pem</c> and <c>rama-ca.key</c>. Default <c>~/.rama/ca</c>.</summary>
    public string? CaDir { get; set; }

    /// <summary>A CA of your own (PEM certificate + key) instead of the directory.</summary>
    public string? CaCert { get; set; }

    public string? CaKey { get; set; }

    /// <summary>Extra CA file trusted when verifying origins (a test origin, a private PKI).</summary>
    public string? UpstreamCa { get; set; }

    /// <summary>Skip origin verification (debugging only). Default off.</summary>
    public bool InsecureUpstream { get; set; }

    public static string DefaultCaDir => Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".rama", "ca");

    public string EffectiveCaDir => string.IsNullOrEmpty(CaDir) ? DefaultCaDir : CaDir;

    public MitmAuthority? Authority { get; private set; }

    /// <summary>Loads (or creates) the CA.</summary>
    public MitmAuthority LoadAuthority() =>
        !string.IsNullOrEmpty(CaCert) ? MitmAuthority.Load(CaCert, CaKey ?? CaCert) : MitmAuthority.LoadOrCreate(EffectiveCaDir);

    public void Validate(List<string> problems)
    {
        if (!Enabled)
        {
            return;
        }

        try
        {
            Authority = LoadAuthority();
            if (!string.IsNullOrEmpty(UpstreamCa))
            {
                _ = TlsFiles.LoadAuthorities(UpstreamCa);
            }
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            problems.Add("cannot load the MITM CA: " + ex.Message);
        }
    }

    public MitmOptions Options(ForwardProxyOptions proxy) => new()
    {
        Authority = Authority!,
        Upstream = new TlsClientOptions
        {
            ExtraTrustedRoots = string.IsNullOrEmpty(UpstreamCa) ? null : TlsFiles.LoadAuthorities(UpstreamCa),
            SkipVerification = InsecureUpstream,
        },
        Limits = proxy.Http.Limits,
    };
}
