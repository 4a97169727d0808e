using System.Collections.Concurrent;
using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.Proxy.Tests.Upstream;

/// <summary>The forward-proxy stack with a proxy database, driven by curl: labels, the filter header, modes, errors.</summary>
public sealed class UpstreamStackTests : IAsyncLifetime
{
    private readonly ConcurrentQueue<string> _originRequests = new();
    private RawOrigin _origin = null!;
    private TcpServer _upstream = null!;
    private TcpServer? _node;

    public Task InitializeAsync()
    {
        _origin = TinyHttpOrigin.Start("hello from origin", _originRequests);
        _upstream = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _upstream.Start(HttpProxy.CreateForwardProxy(new HttpProxyOptions(), new TcpConnector(), StaticProxyAuthenticator.None));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_node is not null)
        {
            await Eventually.TrueAsync(() => _node.OpenConnections == 0, TimeSpan.FromSeconds(10), "node connections still open");
            await _node.DisposeAsync();
        }

        await _upstream.DisposeAsync();
        await _origin.DisposeAsync();
    }

    private string Node(UpstreamRoutingOptions? routing = null)
    {
        var db = ProxyDatabase.Create([UpstreamConnectorTests.Record("up1", "1,0,1,0,0,0,0,1,0", $"127.0.0.1:{_upstream.LocalEndPoint.Port}", null)]);
        var stack = ForwardProxyStack.Create(new ForwardProxyOptions { Upstream = routing ?? new UpstreamRoutingOptions() },
            new StaticProxyAuthenticator([new("john", "pw")]), proxyDatabase: db);
        _node = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _node.Start(stack);
        return $"http://127.0.0.1:{_node.LocalEndPoint.Port}";
    }

    private string OriginUrl => $"http://127.0.0.1:{_origin.Port}/";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Labels_route_absolute_form_and_connect_through_the_upstream(bool connect)
    {
        var proxy = Node();
        var result = await Cli.CurlAsync([.. connect ? ["-p"] : Array.Empty<string>(), "-U", "john-country-us-residential-session-1:pw", "-x", proxy, OriginUrl]);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("hello from origin", result.Text);
        Assert.Equal(1, _upstream.AcceptedConnections);
    }

    [Fact]
    public async Task A_plain_user_goes_direct_by_default()
    {
        var proxy = Node();
        var result = await Cli.CurlAsync("-U", "john:pw", "-x", proxy, OriginUrl);
        Assert.Equal("hello from origin", result.Text);
        Assert.Equal(0, _upstream.AcceptedConnections);
    }

    [Fact]
    public async Task Unknown_label_is_407_naming_it_and_the_password_is_checked_against_the_base_user()
    {
        var proxy = Node();
        var unknown = await Cli.CurlAsync("-i", "-U", "john-country-us-colour-red:pw", "-x", proxy, OriginUrl);
        Assert.StartsWith("HTTP/1.1 407", unknown.Text, StringComparison.Ordinal);
        Assert.Contains("Proxy-Authenticate: Basic", unknown.Text, StringComparison.Ordinal);
        Assert.Contains("unknown label 'colour'", unknown.Text, StringComparison.Ordinal);
        var wrong = await Cli.CurlAsync("-i", "-U", "john-country-us:nope", "-x", proxy, OriginUrl);
        Assert.StartsWith("HTTP/1.1 407", wrong.Text, StringComparison.Ordinal);
        Assert.Empty(_originRequests);
    }

    [Fact]
    public async Task A_filter_that_matches_nothing_is_503_with_the_reason_never_direct()
    {
        var proxy = Node();
        var result = await Cli.CurlAsync("-i", "-U", "john-country-fr:pw", "-x", proxy, OriginUrl);
        Assert.StartsWith("HTTP/1.1 503", result.Text, StringComparison.Ordinal);
        Assert.Contains("no upstream proxy matches filter 'country=fr'", result.Text, StringComparison.Ordinal);
        Assert.Empty(_originRequests);
    }

    [Fact]
    public async Task Filter_header_routes_and_is_not_forwarded()
    {
        var proxy = Node();
        var result = await Cli.CurlAsync("-U", "john:pw", "-H", "x-rama-proxy-filter: country=us&residential=true", "-x", proxy, OriginUrl);
        Assert.Equal("hello from origin", result.Text);
        Assert.Equal(1, _upstream.AcceptedConnections);
        Assert.DoesNotContain("x-rama-proxy-filter", Assert.Single(_originRequests), StringComparison.OrdinalIgnoreCase);
        var bad = await Cli.CurlAsync("-i", "-U", "john:pw", "-H", "x-rama-proxy-filter: colour=red", "-x", proxy, OriginUrl);
        Assert.StartsWith("HTTP/1.1 400", bad.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Required_mode_answers_407_without_a_filter_and_socks5_gets_0x02()
    {
        var proxy = Node(new UpstreamRoutingOptions { Mode = UpstreamMode.Required });
        var http = await Cli.CurlAsync("-i", "-U", "john:pw", "-x", proxy, OriginUrl);
        Assert.StartsWith("HTTP/1.1 407", http.Text, StringComparison.Ordinal);
        Assert.Contains("requires an upstream filter", http.Text, StringComparison.Ordinal);
        var socks = await Cli.CurlAsync("--socks5", $"john:pw@127.0.0.1:{_node!.LocalEndPoint.Port}", OriginUrl);
        Assert.NotEqual(0, socks.ExitCode);
        Assert.Contains("(2)", socks.Stderr, StringComparison.Ordinal);
        var routed = await Cli.CurlAsync("--socks5", $"john-pool-*:pw@127.0.0.1:{_node.LocalEndPoint.Port}", OriginUrl);
        Assert.Equal("hello from origin", routed.Text);
    }

    [Fact]
    public async Task Fallback_mode_routes_plain_users_through_the_fallback_filter()
    {
        var proxy = Node(new UpstreamRoutingOptions { Mode = UpstreamMode.Fallback, FallbackFilter = "country-us" });
        var result = await Cli.CurlAsync("-U", "john:pw", "-x", proxy, OriginUrl);
        Assert.Equal("hello from origin", result.Text);
        Assert.Equal(1, _upstream.AcceptedConnections);
    }

    [Fact]
    public async Task Socks5_labels_route_and_no_match_answers_general_failure()
    {
        Node();
        var port = _node!.LocalEndPoint.Port;
        var ok = await Cli.CurlAsync("--socks5", $"john-country-us-session-7:pw@127.0.0.1:{port}", OriginUrl);
        Assert.Equal("hello from origin", ok.Text);
        Assert.Equal(1, _upstream.AcceptedConnections);
        var none = await Cli.CurlAsync("--socks5", $"john-country-fr:pw@127.0.0.1:{port}", OriginUrl);
        Assert.NotEqual(0, none.ExitCode);
        Assert.Contains("(1)", none.Stderr, StringComparison.Ordinal);
        var unknown = await Cli.CurlAsync("--socks5", $"john-colour-red:pw@127.0.0.1:{port}", OriginUrl);
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Contains("rejected", unknown.Stderr, StringComparison.OrdinalIgnoreCase);
    }
}
