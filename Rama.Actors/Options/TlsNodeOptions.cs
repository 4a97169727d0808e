using System.Net;
using System.Security.Authentication;
using Rama.Admin.Options;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tls;
using D = Rama.Actors.Options.NodeOptionDeclarations;
using Rama.Proxy.Mitm;

namespace Rama.Actors.Options;

/// <summary>One further certificate and the SNI names it serves (<c>Rama:Tls:Certificates:&lt;n&gt;</c>).</summary>
public sealed record CertificateOptions
{
    /// <summary>SNI names (none: the names in the certificate).</summary>
    public IReadOnlyList<string> Names { get; init; } = [];

    /// <summary>PEM certificate (chain after the leaf allowed) or PFX/P12 file.</summary>
    public string Cert { get; init; } = "";

    /// <summary>PEM private key; none for PFX or a PEM holding both.</summary>
    public string? Key { get; init; }

    /// <summary>PFX password (redacted in <c>config show</c>).</summary>
    public string? Password { get; init; }
}

/// <summary>
/// TLS (section <c>Rama:Tls</c>): the node's certificates, global to the node (they also make proxy listeners HTTPS
/// proxies and echo listeners HTTPS), and the defaults of the tls listeners' upstream keys.
/// </summary>
public sealed record TlsNodeOptions
{
    /// <summary>The default certificate (<c>--cert</c>/<c>--key</c>); first in SNI selection order. Default none.</summary>
    public string? Cert { get; init; }

    public string? Key { get; init; }

    /// <summary>More certificates with their SNI names. Default none.</summary>
    public IReadOnlyList<CertificateOptions> Certificates { get; init; } = [];

    /// <summary>Default <see cref="UnknownServerNamePolicy.UseDefault"/>.</summary>
    public UnknownServerNamePolicy UnknownSni { get; init; } = UnknownServerNamePolicy.UseDefault;

    /// <summary>Default http/1.1 (our HTTP/2 does not exist yet).</summary>
    public IReadOnlyList<string> Alpn { get; init; } = ["http/1.1"];

    public string? ClientCa { get; init; }

    /// <summary>Default <see cref="ClientCertificateMode.None"/>.</summary>
    public ClientCertificateMode ClientCertificates { get; init; } = ClientCertificateMode.None;

    /// <summary>Default 10 s: garbage, truncated hellos and silent clients are closed by then.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Default of the tls listeners' <c>Upstream</c>.</summary>
    public string? Upstream { get; init; }

    /// <summary>Default of the tls listeners' <c>UpstreamMode</c>: tcp.</summary>
    public TerminationMode UpstreamMode { get; init; } = TerminationMode.Tcp;

    /// <summary>Default of the tls listeners' <c>UpstreamTls</c>: off.</summary>
    public bool UpstreamTls { get; init; }

    /// <summary>Extra CA trusted for the tls listeners' upstreams (<c>--tls-upstream-ca</c>).</summary>
    public string? UpstreamCa { get; init; }

    /// <summary>Default of the tls listeners' <c>UpstreamProxyProtocol</c>: none.</summary>
    public ProxyProtocolVersion? UpstreamProxyProtocol { get; init; }

    public bool HasCertificate => !string.IsNullOrEmpty(Cert) || Certificates.Count > 0;

    /// <summary>The server options with the certificates loaded (read, never written); null without a certificate.</summary>
    public TlsServerOptions? ServerOptions { get; init; }

    internal static TlsNodeOptions Read(OptionsReader reader)
    {
        reader.RefuseUnknownKeys("Rama:Tls", ["Listen", "Cert", "Key", "Certificates", "UnknownSni", "Alpn", "ClientCa", "ClientCertificates", "HandshakeTimeout",
            "Upstream", "UpstreamMode", "UpstreamTls", "UpstreamCa", "UpstreamProxyProtocol"], "Rama:Tls");
        var certificates = new List<CertificateOptions>();
        foreach (var entry in reader.Configuration.GetSection("Rama:Tls:Certificates").GetChildren())
        {
            var name = entry.Key;
            reader.RefuseUnknownKeys(entry.Path, ["Names", "Cert", "Key", "Password"], "a certificate entry");
            var cert = reader.Text(D.CertificateCert, D.CertificateCert.KeyFor(name));
            if (cert is null && reader.Configuration[D.CertificateCert.KeyFor(name)] is null)
            {
                reader.AddProblem($"{D.CertificateCert.KeyFor(name)} is missing: allowed {D.CertificateCert.Value.Allowed}");
            }

            certificates.Add(new CertificateOptions
            {
                Names = reader.List(D.CertificateNames, D.CertificateNames.KeyFor(name)),
                Cert = cert ?? "",
                Key = reader.Text(D.CertificateKey, D.CertificateKey.KeyFor(name)),
                Password = reader.Text(D.CertificatePassword, D.CertificatePassword.KeyFor(name)),
            });
        }

        var alpn = reader.List(D.Alpn);
        var options = new TlsNodeOptions
        {
            Cert = reader.Text(D.Cert),
            Key = reader.Text(D.CertKey),
            Certificates = certificates,
            UnknownSni = reader.Text(D.UnknownSni) == "reject" ? UnknownServerNamePolicy.Reject : UnknownServerNamePolicy.UseDefault,
            Alpn = alpn.Count > 0 ? alpn : ["http/1.1"],
            ClientCa = reader.Text(D.ClientCa),
            ClientCertificates = reader.Text(D.ClientCert) switch
            {
                "optional" => ClientCertificateMode.Optional,
                "required" => ClientCertificateMode.Required,
                _ => ClientCertificateMode.None,
            },
            HandshakeTimeout = reader.Duration(D.HandshakeTimeout, TimeSpan.FromSeconds(10)),
            Upstream = reader.Text(D.TlsUpstream),
            UpstreamMode = reader.Text(D.TlsUpstreamMode) == "http" ? TerminationMode.Http : TerminationMode.Tcp,
            UpstreamTls = reader.Flag(D.TlsUpstreamTls),
            UpstreamCa = reader.Text(D.TlsUpstreamCa),
            UpstreamProxyProtocol = ParseVersion(reader.Text(D.TlsUpstreamProxyProtocol)),
        };

        if (options.ClientCertificates != ClientCertificateMode.None && string.IsNullOrEmpty(options.ClientCa))
        {
            reader.AddProblem($"{D.ClientCert.Describe()} is '{options.ClientCertificates.ToString().ToLowerInvariant()}': it needs {D.ClientCa.Describe()} <pem file>");
        }

        if (options.HasCertificate && reader.Problems.Count == 0)
        {
            try
            {
                options = options with { ServerOptions = options.BuildServerOptions() };
            }
            catch (Exception ex) when (ex is ArgumentException or IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
            {
                reader.AddProblem($"cannot load the TLS certificate ({D.Cert.Describe()} / Rama:Tls:Certificates): {ex.Message}");
            }
        }

        return options;
    }

    internal static ProxyProtocolVersion? ParseVersion(string? text) => text switch
    {
        "v1" => ProxyProtocolVersion.V1,
        "v2" => ProxyProtocolVersion.V2,
        _ => null,
    };

    private TlsServerOptions BuildServerOptions()
    {
        var certificates = new ServerCertificates { UnknownServerName = UnknownSni };
        if (!string.IsNullOrEmpty(Cert))
        {
            certificates.AddFiles(Cert, string.IsNullOrEmpty(Key) ? null : Key);
        }

        foreach (var entry in Certificates)
        {
            certificates.AddFiles(entry.Cert, string.IsNullOrEmpty(entry.Key) ? null : entry.Key, entry.Password, [.. entry.Names]);
        }

        var options = new TlsServerOptions
        {
            Certificates = certificates,
            ApplicationProtocols = [.. Alpn],
            ClientCertificates = ClientCertificates,
            ClientCertificateAuthorities = string.IsNullOrEmpty(ClientCa) ? null : TlsFiles.LoadAuthorities(ClientCa),
            EnabledProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            HandshakeTimeout = HandshakeTimeout,
        };
        options.Validate();
        return options;
    }
}

/// <summary>PROXY protocol accept side (section <c>Rama:ProxyProtocol</c>): trusted sources and timeout for every listener; <see cref="Enabled"/> is each listener's default.</summary>
public sealed record ProxyProtocolNodeOptions
{
    /// <summary>The default of every proxy, tls and echo listener's <c>ProxyProtocol</c>. Default off.</summary>
    public bool Enabled { get; init; }

    /// <summary>The accept side's options (trusted sources: default loopback; header timeout: default 5 s).</summary>
    public ProxyProtocolOptions Options { get; init; } = new();

    internal static ProxyProtocolNodeOptions Read(OptionsReader reader)
    {
        reader.RefuseUnknownKeys("Rama:ProxyProtocol", ["Enabled", "Trusted", "HeaderTimeout"], "Rama:ProxyProtocol");
        var enabled = reader.Flag(D.ProxyProtocol);
        var networks = reader.List(D.ProxyProtocolTrusted).Select(text => IPNetwork.TryParse(text, out var network)
            ? network
            : new IPNetwork(IPAddress.Parse(text), IPAddress.Parse(text).AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128)).ToList();
        var options = new ProxyProtocolOptions { HeaderTimeout = reader.Duration(D.ProxyProtocolHeaderTimeout, TimeSpan.FromSeconds(5)) };
        options = networks.Count > 0 ? options with { TrustedSources = networks } : options;
        try
        {
            options.Validate();
        }
        catch (ArgumentException ex)
        {
            reader.AddProblem("Rama:ProxyProtocol: " + ex.Message);
        }

        return new ProxyProtocolNodeOptions { Enabled = enabled, Options = options };
    }
}

/// <summary>MITM (section <c>Rama:Mitm</c>): decrypt CONNECT tunnels whose first bytes are a ClientHello. Off unless enabled.</summary>
public sealed record MitmNodeOptions
{
    public bool Enabled { get; init; }

    /// <summary>Directory holding (or receiving, when the stack is built) <c>rama-ca.pem</c> and <c>rama-ca.key</c>. Default <c>~/.rama/ca</c>.</summary>
    public string? CaDir { get; init; }

    /// <summary>A CA of your own (PEM certificate + key) instead of the directory.</summary>
    public string? CaCert { get; init; }

    public string? CaKey { get; init; }

    /// <summary>Extra CA file trusted when verifying origins (a test origin, a private PKI).</summary>
    public string? UpstreamCa { get; init; }

    /// <summary>Skip origin verification (debugging only). Default off.</summary>
    public bool InsecureUpstream { get; init; }

    public static string DefaultCaDir => Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".rama", "ca");

    public string EffectiveCaDir => string.IsNullOrEmpty(CaDir) ? DefaultCaDir : CaDir;

    /// <summary>The certificate file clients must trust.</summary>
    public string CaCertificateFile => string.IsNullOrEmpty(CaCert) ? Path.Combine(EffectiveCaDir, MitmAuthority.CertificateFile) : CaCert;

    /// <summary>Loads the CA, creating it in <see cref="EffectiveCaDir"/> when absent: called when the stack is built (or by <c>ca export</c>), never by validation.</summary>
    public MitmAuthority LoadAuthority() =>
        !string.IsNullOrEmpty(CaCert) ? MitmAuthority.Load(CaCert, CaKey ?? CaCert) : MitmAuthority.LoadOrCreate(EffectiveCaDir);

    internal static MitmNodeOptions Read(OptionsReader reader)
    {
        reader.RefuseUnknownKeys("Rama:Mitm", ["Enabled", "CaDir", "CaCert", "CaKey", "UpstreamCa", "InsecureUpstream"], "Rama:Mitm");
        var options = new MitmNodeOptions
        {
            Enabled = reader.Flag(D.Mitm),
            CaDir = reader.Text(D.MitmCaDir),
            CaCert = reader.Text(D.MitmCaCert),
            CaKey = reader.Text(D.MitmCaKey),
            UpstreamCa = reader.Text(D.MitmUpstreamCa),
            InsecureUpstream = reader.Flag(D.MitmInsecureUpstream),
        };
        if (options.CaKey is not null && options.CaCert is null)
        {
            reader.AddProblem($"{D.MitmCaKey.Describe()} needs {D.MitmCaCert.Describe()}");
        }

        if (options.CaDir is not null && File.Exists(options.CaDir))
        {
            reader.AddProblem($"{D.MitmCaDir.Describe()} is '{options.CaDir}': allowed is a directory (it is a file)");
        }

        return options;
    }

    /// <summary>The MITM tunnel's options; loads (or creates) the CA.</summary>
    public MitmOptions CreateOptions(ForwardProxyOptions proxy)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        return new MitmOptions
        {
            Authority = LoadAuthority(),
            Upstream = new TlsClientOptions
            {
                ExtraTrustedRoots = string.IsNullOrEmpty(UpstreamCa) ? null : TlsFiles.LoadAuthorities(UpstreamCa),
                SkipVerification = InsecureUpstream,
            },
            Limits = proxy.Http.Limits,
        };
    }
}
