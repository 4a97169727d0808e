using System.Net;
using Rama.Proxy.Core;
using Rama.Proxy.Limits;
using Rama.Proxy.Net;
using Rama.Proxy.Stacks;
using Rama.Proxy.Tests.Support;
using Rama.Proxy.Upstream;
using Rama.Testing;

namespace Rama.Proxy.Tests.Limits;

/// <summary>
/// Per-user request rates (a token bucket per user) through a whole forward-proxy port with curl: john may make 2
/// requests a minute (his own rate), everyone else 100 a second (the default). Plain requests, CONNECT and SOCKS5
/// CONNECT each take a token; past it: 429 with Retry-After (seconds until a token) and the reason, SOCKS5 reply 0x02.
/// </summary>
public sealed class UserRateTests : IAsyncLifetime
{
    private TestOrigin _origin = null!;
    private IService<ConnectionContext, Unit> _stack = null!;
    private TcpServer _server = null!;

    public Task InitializeAsync()
    {
        _origin = new TestOrigin();
        _stack = ForwardProxyStack.Create(
            new ForwardProxyOptions { Limits = new LimitOptions { UserRate = "100/s", UserRates = ["john=2/m"] } },
            new StaticProxyAuthenticator([new("john", "pw"), new("mary", "pw")]),
            extras: new ForwardProxyExtras { Limiter = new LocalConcurrencyLimiter() });
        _server = TcpServer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _server.Start(_stack);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await ((IAsyncDisposable)_stack).DisposeAsync();
        await _origin.DisposeAsync();
    }

    private string Proxy => $"http://{_server.LocalEndPoint}";

    [Fact]
    public async Task Past_the_users_rate_a_request_gets_429_with_the_seconds_until_a_token_and_socks5_gets_reply_2()
    {
        // Token 1: a plain request; token 2: a SOCKS5 CONNECT.
        var (code, stdout, stderr) = await Curl.RunAsync("-sS", "-f", "-U", "john:pw", "-x", Proxy, _origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hello", stdout);
        (code, stdout, stderr) = await Curl.RunAsync("-sS", "-f", "-x", $"socks5://john:pw@{_server.LocalEndPoint}", _origin.Url("/hello"));
        Assert.True(code == 0, stderr);

        // No token left: 429 for a request, for a CONNECT, and reply 2 for SOCKS5.
        (code, stdout, stderr) = await Curl.RunAsync("-sS", "-i", "-U", "john:pw", "-x", Proxy, _origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.StartsWith("HTTP/1.1 429 Too Many Requests\r\n", stdout, StringComparison.Ordinal);
        var retryAfter = stdout.Split("\r\n").Single(l => l.StartsWith("Retry-After: ", StringComparison.Ordinal));
        Assert.InRange(int.Parse(retryAfter["Retry-After: ".Length..], System.Globalization.CultureInfo.InvariantCulture), 1, 30); // 2/m: a token every 30 s
        Assert.EndsWith("Too Many Requests: user john is over its rate of 2/m new requests", stdout.TrimEnd(), StringComparison.Ordinal);

        (code, _, stderr) = await Curl.RunAsync("-sS", "-p", "-U", "john:pw", "-x", Proxy, _origin.Url("/hello"));
        Assert.Equal(56, code);
        Assert.Contains("429", stderr, StringComparison.Ordinal);

        (code, _, stderr) = await Curl.RunAsync("-sS", "-x", $"socks5://john:pw@{_server.LocalEndPoint}", _origin.Url("/hello"));
        Assert.Equal(97, code);
        Assert.Contains("(2)", stderr, StringComparison.Ordinal);

        // Mary has the default rate and her own bucket.
        (code, stdout, stderr) = await Curl.RunAsync("-sS", "-f", "-U", "mary:pw", "-x", Proxy, _origin.Url("/hello"), _origin.Url("/hello"), _origin.Url("/hello"));
        Assert.True(code == 0, stderr);
        Assert.Equal("hellohellohello", stdout);
        Assert.Equal(5, _origin.Requests.Count); // john's 2 and mary's 3: the refused ones never reached it
    }

    [Fact]
    public void The_users_own_rate_wins_and_concurrency_and_rate_combine()
    {
        var options = new LimitOptions { UserMaxConnections = 5, UserRate = "20/s", UserRates = ["john=5/s"], Users = ["mary=1"] };
        Assert.Equal(new LimitPolicy(5, new LimitRate(5, TimeSpan.FromSeconds(1))), options.ForUser("john"));
        Assert.Equal(new LimitPolicy(1, new LimitRate(20, TimeSpan.FromSeconds(1))), options.ForUser("mary"));
        Assert.Equal(new LimitPolicy(5, new LimitRate(20, TimeSpan.FromSeconds(1))), options.ForUser("anna"));
        Assert.True(options.LimitsUsers);
        Assert.True(new LimitOptions { UserRate = "1/h" }.LimitsUsers);
        Assert.Equal(LimitPolicy.Unlimited, new LimitOptions().ForUser("john"));
    }

    [Theory]
    [InlineData("john=fast", nameof(LimitOptions.UserRates))]
    [InlineData("=5/s", nameof(LimitOptions.UserRates))]
    [InlineData("john=0/s", nameof(LimitOptions.UserRates))]
    public void Bad_user_rates_are_refused_naming_the_entry(string entry, string parameter)
    {
        var ex = Assert.Throws<ArgumentException>(() => new LimitOptions { UserRates = [entry] }.Validate());
        Assert.Equal(parameter, ex.ParamName);
        Assert.Contains(entry, ex.Message, StringComparison.Ordinal);
    }
}
