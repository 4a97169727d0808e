using System.Collections;
using Rama.Actors.Options;
using Rama.Admin.Options;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.ProxyProtocol;
using Rama.Proxy.Stacks;

namespace Rama.Actors.Tests.Options;

/// <summary>The proxy node's options: listener entries, per-kind keys, refusals, no side effects.</summary>
public sealed class NodeOptionsTests : IDisposable
{
    private readonly NodeOptionsFixture _node = new("rama-node-options");

    public void Dispose() => _node.Dispose();

    private (NodeOptions Options, IReadOnlyList<string> Problems, OptionsReader Reader) Read(string[] args, string? json = null, Hashtable? environment = null) =>
        _node.Read(args, json, environment);

    [Fact]
    public void The_node_command_line_has_no_option_name_or_alias_twice() => Assert.Empty(new NodeCommandLine().CommandLine.DuplicateNames());

    [Fact]
    public void Upstream_proxy_ca_and_tls_upstream_ca_are_two_options_with_two_keys_and_the_ambiguous_name_is_gone()
    {
        var ca = Path.Combine(_node.Directory, "ca.pem");
        File.WriteAllText(ca, "not read by validation");
        var (options, problems, _) = Read(["--upstream-proxy-ca", ca, "--tls-upstream-ca", ca]);
        Assert.Empty(problems);
        Assert.Equal(ca, options.Proxy.Upstream.TrustedCaFile);
        Assert.Equal(ca, options.Tls.UpstreamCa);
        Assert.NotEmpty(new NodeCommandLine().CommandLine.Parse(["--upstream-ca", ca]).Errors);
    }

    [Fact]
    public void Without_any_listener_the_default_is_a_proxy_on_loopback_8080()
    {
        var (options, problems, _) = Read([]);
        Assert.Empty(problems);
        var listener = Assert.Single(options.Listeners);
        Assert.Equal(("default", ListenerKind.Proxy, "127.0.0.1:8080"), (listener.Name, listener.Kind, listener.Bind.ToString()));
    }

    [Fact]
    public void Shorthands_add_entries_named_after_them_in_order()
    {
        var (options, problems, _) = Read(["--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0", "--reverse", "127.0.0.1:0=origin:8000", "--echo-listen", "127.0.0.1:0"]);
        Assert.Empty(problems);
        Assert.Equal(["listen-0", "listen-1", "reverse-0", "echo-0"], options.Listeners.Select(l => l.Name));
        Assert.Equal("origin:8000", options.Listeners[2].Upstream.ToString());
    }

    [Fact]
    public void Upstream_scheme_says_the_protocol_in_the_shorthand_and_the_upstream_key()
    {
        const string json = """
            { "Rama": { "Listeners": {
                "grpc": { "Kind": "reverse", "Bind": "127.0.0.1:0", "Upstream": "h2c://127.0.0.1:50051" },
                "secure": { "Kind": "reverse", "Bind": "127.0.0.1:0", "Upstream": "https://origin.internal" } } } }
            """;
        var (options, problems, _) = Read(["--reverse", "127.0.0.1:0=h2c://127.0.0.1:50051", "--reverse", "127.0.0.1:0=http://origin:8000",
            "--reverse", "127.0.0.1:0=origin:8001"], json);
        Assert.Empty(problems);
        var byName = options.Listeners.ToDictionary(l => l.Name);
        Assert.Equal(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", 50051)), byName["reverse-0"].UpstreamTarget);
        Assert.Equal(new UpstreamTarget(OriginProtocol.Http1, new HostPort("origin", 8000)), byName["reverse-1"].UpstreamTarget);
        Assert.Equal(new UpstreamTarget(OriginProtocol.Http1, new HostPort("origin", 8001)), byName["reverse-2"].UpstreamTarget);
        Assert.Equal(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", 50051)), byName["grpc"].UpstreamTarget);
        Assert.Equal(new UpstreamTarget(OriginProtocol.Https, new HostPort("origin.internal", 443)), byName["secure"].UpstreamTarget);
    }

    [Fact]
    public void Unknown_upstream_schemes_are_refused()
    {
        var (_, problems, _) = Read(["--reverse", "127.0.0.1:0=ftp://origin:21"]);
        Assert.Contains(problems, p => p.Contains("--reverse", StringComparison.Ordinal) && p.Contains("h2c://", StringComparison.Ordinal));
    }

    [Fact]
    public void Named_entries_take_their_kinds_keys_and_the_node_wide_defaults_for_the_rest()
    {
        const string json = """
            { "Rama": { "Auth": [ "all:pw" ], "ProxyProtocol": { "Enabled": true }, "Tls": { "Upstream": "origin:443", "UpstreamMode": "http" },
              "Listeners": {
                "edge": { "Kind": "proxy", "Bind": "127.0.0.1:0", "Auth": [ "edge:pw" ], "ProxyProtocol": false },
                "inner": { "Kind": "Proxy", "Bind": "127.0.0.1:0" },
                "site": { "Kind": "reverse", "Bind": "127.0.0.1:0", "Upstream": "127.0.0.1:8000" },
                "term": { "Kind": "tls", "Bind": "127.0.0.1:0", "UpstreamProxyProtocol": "v2" } } } }
            """;
        var (options, problems, _) = Read([], json);
        Assert.Equal(["Rama:Listeners:term (tls) needs a certificate: --cert <file> --key <file> (Rama:Tls:Cert, Rama:Tls:Key) or Rama:Tls:Certificates"], problems);
        var byName = options.Listeners.ToDictionary(l => l.Name);
        Assert.Equal(["edge:pw"], byName["edge"].Auth);
        Assert.False(byName["edge"].ProxyProtocol);
        Assert.Equal(["all:pw"], byName["inner"].Auth);
        Assert.True(byName["inner"].ProxyProtocol);
        Assert.False(byName["site"].ProxyProtocol);
        Assert.Equal("origin:443", byName["term"].Upstream.ToString());
        Assert.Equal(TerminationMode.Http, byName["term"].UpstreamMode);
        Assert.Equal(ProxyProtocolVersion.V2, byName["term"].UpstreamProxyProtocol);
    }

    [Fact]
    public void An_environment_variable_overrides_one_key_of_one_entry()
    {
        const string json = """{ "Rama": { "Listeners": { "edge": { "Kind": "proxy", "Bind": "127.0.0.1:8080" }, "other": { "Kind": "echo", "Bind": "127.0.0.1:9001" } } } }""";
        var (options, problems, _) = Read([], json, new Hashtable { ["Rama__Listeners__edge__Bind"] = "127.0.0.1:9000" });
        Assert.Empty(problems);
        Assert.Equal(["edge 127.0.0.1:9000", "other 127.0.0.1:9001"], options.Listeners.Select(l => $"{l.Name} {l.Bind}"));
    }

    [Theory]
    [InlineData("""{ "Kind": "socks4", "Bind": "127.0.0.1:0" }""", "Rama:Listeners:x:Kind is 'socks4': allowed are proxy, reverse, tls, echo")]
    [InlineData("""{ "Bind": "127.0.0.1:0" }""", "Rama:Listeners:x:Kind is missing")]
    [InlineData("""{ "Kind": "proxy" }""", "Rama:Listeners:x:Bind is missing")]
    [InlineData("""{ "Kind": "proxy", "Bind": "localhost" }""", "Rama:Listeners:x:Bind is 'localhost': allowed is an ip:port")]
    [InlineData("""{ "Kind": "proxy", "Bind": "127.0.0.1:0", "Auht": [ "a:b" ] }""", "Rama:Listeners:x:Auht is not a key of a proxy listener: allowed are Kind, Bind, Auth, ProxyProtocol")]
    [InlineData("""{ "Kind": "reverse", "Bind": "127.0.0.1:0", "Auth": [ "a:b" ] }""", "Rama:Listeners:x:Auth is not a key of a reverse listener")]
    [InlineData("""{ "Kind": "reverse", "Bind": "127.0.0.1:0" }""", "Rama:Listeners:x:Upstream is missing")]
    [InlineData("""{ "Kind": "tls", "Bind": "127.0.0.1:0", "UpstreamMode": "udp" }""", "Rama:Listeners:x:UpstreamMode is 'udp': allowed are tcp, http")]
    [InlineData("""{ "Kind": "proxy", "Bind": "127.0.0.1:0", "Auth": [ "nocolon" ] }""", "Rama:Listeners:x:Auth:0 is '***': allowed is user:password")]
    public void A_bad_listener_entry_is_refused_naming_the_key(string entry, string expected)
    {
        var (_, problems, _) = Read([], $$"""{ "Rama": { "Listeners": { "x": {{entry}} } } }""");
        Assert.Contains(problems, p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("--upstream-proxy-protocol", "v3", "Rama:Tls:UpstreamProxyProtocol (--upstream-proxy-protocol) is 'v3': allowed are v1, v2")]
    [InlineData("--unknown-sni", "foo", "Rama:Tls:UnknownSni (--unknown-sni) is 'foo': allowed are default, reject")]
    [InlineData("--client-cert", "bogus", "Rama:Tls:ClientCertificates (--client-cert) is 'bogus': allowed are none, optional, required")]
    [InlineData("--upstream-mode", "sideways", "Rama:Proxy:Upstream:Mode (--upstream-mode) is 'sideways': allowed are direct, required, fallback")]
    [InlineData("--access-log-format", "xml", "Rama:AccessLog:Format (--access-log-format) is 'xml': allowed are text, json")]
    [InlineData("--drain-timeout", "-1", "Rama:DrainTimeout (--drain-timeout) is '-1': allowed is a duration from 0 to 3600 s")]
    [InlineData("--upstream-attempts", "0", "Rama:Proxy:Upstream:MaxAttempts (--upstream-attempts) is '0': allowed is a whole number from 1 to 100")]
    [InlineData("--system-name", "a b", "Rama:System:Name (--system-name) is 'a b'")]
    [InlineData("--upstream-rate", "5/w", "Rama:Proxy:Limits:UpstreamRate (--upstream-rate) is '5/w': allowed is a count per s, m or h (e.g. 50/s, 600/m)")]
    [InlineData("--user-limit", "john", "Rama:Proxy: user limit 'john' is not user=connections (a user name and a whole number, at least 1)")]
    [InlineData("--user-max-connections", "0", "Rama:Proxy:Limits:UserMaxConnections (--user-max-connections) is '0': allowed is a whole number from 1 to 10000000")]
    public void A_bad_choice_on_the_command_line_is_refused_with_key_value_and_allowed_values(string option, string value, string expected)
    {
        var (_, problems, _) = Read([option, value]);
        Assert.Contains(problems, p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Every_proxy_entry_on_a_public_address_without_auth_is_refused_unless_open_proxies_are_allowed()
    {
        const string json = """{ "Rama": { "Listeners": { "pub": { "Kind": "proxy", "Bind": "0.0.0.0:0" }, "authed": { "Kind": "proxy", "Bind": "0.0.0.0:0", "Auth": [ "a:b" ] }, "rev": { "Kind": "reverse", "Bind": "0.0.0.0:0", "Upstream": "o:80" } } } }""";
        var (_, problems, _) = Read([], json);
        Assert.Contains("without auth", Assert.Single(problems), StringComparison.Ordinal);
        Assert.Contains("Rama:Listeners:pub", problems[0], StringComparison.Ordinal);
        Assert.Empty(Read(["--allow-open-proxy"], json).Problems);
    }

    [Fact]
    public void An_unknown_key_anywhere_under_Rama_is_refused()
    {
        var (_, problems, _) = Read([], """{ "Rama": { "DrianTimeout": "5", "Proxy": { "Htp": { "Limits": "1" } }, "Mitm": { "CaDri": "x" } } }""");
        Assert.Contains(problems, p => p.StartsWith("Rama:DrianTimeout is not a key of Rama", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Rama:Proxy:Htp is not a key", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Rama:Mitm:CaDri is not a key of Rama:Mitm", StringComparison.Ordinal));
    }

    [Fact]
    public void Validating_mitm_options_creates_no_ca_on_disk()
    {
        var caDir = Path.Combine(_node.Directory, "ca");
        var (options, problems, _) = Read(["--mitm", "--mitm-ca-dir", caDir]);
        Assert.Empty(problems);
        Assert.True(options.Mitm.Enabled);
        Assert.False(Directory.Exists(caDir));
        using var authority = options.Mitm.LoadAuthority();
        Assert.True(Directory.Exists(caDir));
    }

    [Fact]
    public void Config_show_lists_every_listener_and_redacts_passwords()
    {
        var (_, problems, reader) = Read(["--listen", "127.0.0.1:0", "--auth", "john:s3cret"], """{ "Rama": { "Tls": { "Certificates": [ { "Cert": "/nonexistent.pem", "Password": "pfxpass" } ] } } }""");
        Assert.Contains(problems, p => p.Contains("Rama:Tls:Certificates:0:Cert", StringComparison.Ordinal));
        var shown = string.Join('\n', reader.Effective.Select(e => $"{e.Key} = {e.Value}"));
        Assert.Contains("Rama:Listeners:listen-0:Kind = proxy", shown, StringComparison.Ordinal);
        Assert.Contains("Rama:Listeners:listen-0:Auth:0 = john:***", shown, StringComparison.Ordinal);
        Assert.Contains("Rama:Tls:Certificates:0:Password = ***", shown, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", shown, StringComparison.Ordinal);
        Assert.DoesNotContain("pfxpass", shown, StringComparison.Ordinal);
    }

    [Fact]
    public void Limits_from_the_command_line_reach_the_proxy_options_and_a_users_own_limit_wins()
    {
        var (options, problems, _) = Read(["--upstream-max-connections", "100", "--upstream-rate", "600/m", "--user-max-connections", "50",
            "--user-limit", "john=5", "--user-limit", "mary=7"]);
        Assert.Empty(problems);
        var limits = options.Proxy.Limits;
        Assert.Equal(new Rama.Proxy.Limits.LimitPolicy(100, new Rama.Proxy.Limits.LimitRate(600, TimeSpan.FromMinutes(1))), limits.ForUpstream(null, null));
        Assert.Equal(new Rama.Proxy.Limits.LimitPolicy(3, new Rama.Proxy.Limits.LimitRate(600, TimeSpan.FromMinutes(1))), limits.ForUpstream(3, null));
        Assert.Equal(5, limits.ForUser("john").MaxConcurrent);
        Assert.Equal(7, limits.ForUser("mary").MaxConcurrent);
        Assert.Equal(50, limits.ForUser("anyone").MaxConcurrent);
    }

    [Fact]
    public void Upstream_fallback_implies_the_fallback_mode_unless_a_mode_is_set()
    {
        var db = Path.Combine(_node.Directory, "db.csv");
        File.WriteAllText(db, "");
        Assert.Equal(Rama.Proxy.Upstream.UpstreamMode.Fallback, Read(["--proxydb", db, "--upstream-fallback", "country-us"]).Options.Proxy.Upstream.Mode);
        Assert.Equal(Rama.Proxy.Upstream.UpstreamMode.Required, Read(["--proxydb", db, "--upstream-fallback", "country-us", "--upstream-mode", "required"]).Options.Proxy.Upstream.Mode);
    }
}
