using Rama.Proxy.Http;
using Rama.Proxy.Net;
using Rama.Testing;

namespace Rama.Proxy.Tests.Http.Http2Upstream;

/// <summary>
/// Trailer fields (RFC 9110 §6.5) through the reverse listener between HTTP/1.1 (a chunked body's trailer section, RFC 9112
/// §7.1.2) and HTTP/2 (a HEADERS frame after the DATA, RFC 9113 §8.1): nginx's <c>add_trailer</c> as the origin over h2c and
/// over HTTP/1.1, curl (HTTP/1.1, <c>--raw</c> shows the chunked framing) and nghttp (h2c) as the clients. Fields a trailer may
/// not carry (Set-Cookie) are dropped.
/// </summary>
public class TrailerForwardingTests
{
    [Fact]
    public async Task H2_origin_trailers_reach_an_http11_client_that_sent_TE_trailers_as_a_chunked_trailer_section()
    {
        await using var origin = await NginxH2Origin.StartAsync(tls: false);
        await using var proxy = H2ReverseHarness.Listener(new UpstreamTarget(OriginProtocol.H2c, new HostPort("127.0.0.1", origin.Port)));

        var accepted = await Cli.CurlAsync("--raw", "-D", "-", "-H", "TE: trailers", proxy.Url("/trailers"));
        Assert.True(accepted.ExitCode == 0, accepted.Stderr);
        var text = accepted.Text;
        Assert.Contains("Transfer-Encoding: chunked\r\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Content-Length", text, StringComparison.OrdinalIgnoreCase); // nginx sent one: dropped so trailers fit
        Assert.True(text.Contains("d\r\ntrailer body\n\r\n0\r\nx-checksum: abc123\r\n\r\n", StringComparison.Ordinal), text);
        Assert.DoesNotContain("x=1", text, StringComparison.Ordinal); // Set-Cookie may not be a trailer (RFC 9110 §6.5.1)

        // Without TE: trailers the origin's length stands, and the trailers have nowhere to go.
        var plain = await Cli.CurlAsync("--raw", "-D", "-", proxy.Url("/trailers"));
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Contains("Content-Length: 13\r\n", plain.Text, StringComparison.OrdinalIgnoreCase);
        Assert.EndsWith("\r\n\r\ntrailer body\n", plain.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http11_chunked_origin_trailers_reach_http11_and_h2_clients()
    {
        await using var origin = await NginxH2Origin.StartAsync(tls: false, http2: false);
        await using var proxy = H2ReverseHarness.Listener(UpstreamTarget.Http1(new HostPort("127.0.0.1", origin.Port)));

        // HTTP/1.1 to HTTP/1.1 (the event-loop relay on Linux) forwards the chunked framing as it is, the trailer section filtered
        // like every trailer Rama writes (EpollTrailerTests: Set-Cookie dropped).
        var h1 = await Cli.CurlAsync("--raw", "-D", "-", proxy.Url("/trailers"));
        Assert.True(h1.ExitCode == 0, h1.Stderr);
        Assert.Contains("Transfer-Encoding: chunked\r\n", h1.Text, StringComparison.Ordinal);
        Assert.True(h1.Text.Contains("trailer body\n\r\n0\r\nX-Checksum: abc123\r\n", StringComparison.Ordinal), h1.Text);

        // nghttp over h2c (prior knowledge) on the same port: the trailers come as a HEADERS frame with END_STREAM after the DATA.
        var h2 = await Cli.RunAsync("nghttp", ["-v", "--no-dep", proxy.Url("/trailers")], TimeSpan.FromSeconds(20));
        Assert.True(h2.ExitCode == 0, h2.Stderr + h2.Text);
        var log = h2.Text;
        var data = log.IndexOf("recv DATA frame", StringComparison.Ordinal);
        var trailer = log.IndexOf(") x-checksum: abc123", StringComparison.Ordinal);
        Assert.True(data > 0 && trailer > data, log);
        Assert.Contains("recv HEADERS frame", log[data..], StringComparison.Ordinal);
        Assert.DoesNotContain("set-cookie", log, StringComparison.Ordinal);
        Assert.Contains("trailer body", log, StringComparison.Ordinal);
    }
}
