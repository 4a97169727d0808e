using System.Buffers;
using Rama.Proxy.Fingerprint;
using Rama.Proxy.Http;
using Rama.Proxy.Tests.Tls;
using Rama.Proxy.Tls;

namespace Rama.Proxy.Tests.Fingerprint;

/// <summary>JA3 / JA4 / JA4H against the published examples of their specifications.</summary>
public class FingerprintTests
{
    private static TlsClientHello Parse(ClientHelloBuilder builder)
    {
        Assert.True(ClientHelloParser.TryParse(new ReadOnlySequence<byte>(builder.Build()), 65536, out var hello));
        return hello;
    }

    [Fact]
    public void Ja3_matches_the_salesforce_readme_example()
    {
        // github.com/salesforce/ja3 README: 769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0
        var builder = new ClientHelloBuilder { LegacyVersion = 769, Ciphers = [0x2a2a, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4] };
        builder.Sni("example.com").U16List(10, 0x1a1a, 23, 24, 25).PointFormats(0).Ext(0xfafa, []);
        var ja3 = Ja3.From(Parse(builder));
        Assert.Equal("769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0", ja3.Text);
        Assert.Equal("ada70206e40642a3e4461f35503241d5", ja3.Hash);
    }

    [Fact]
    public void Ja3_of_a_hello_without_curves_or_extensions_has_empty_fields()
    {
        var builder = new ClientHelloBuilder { LegacyVersion = 0x0303, Ciphers = [0x002f] };
        Assert.Equal("771,47,,,", Ja3.From(Parse(builder)).Text);
    }

    [Fact]
    public void Ja4_matches_the_spec_example()
    {
        var ja4 = Ja4.From(Parse(ClientHelloBuilder.Ja4SpecExample()));
        Assert.Equal("t13d1516h2_8daaf6152771_e5627efa2ab1", ja4.Fingerprint);
        Assert.Equal("t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601", ja4.Raw);
    }

    [Fact]
    public void Ja4_without_signature_algorithms_hashes_the_extensions_alone()
    {
        var builder = ClientHelloBuilder.Ja4SpecExample();
        builder.Extensions.RemoveAll(e => e.Type == 13);
        builder.Ext(13, [0, 0]); // present but empty list is malformed? no: keep the extension, no algorithms
        var ja4 = Ja4.From(Parse(builder));
        Assert.EndsWith("_6d807ffa2a79", ja4.Fingerprint, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("h2", "h2")]
    [InlineData("http/1.1", "h1")]
    [InlineData("x", "xx")]
    public void Ja4_alpn_uses_first_and_last_characters(string alpn, string code) =>
        Assert.Equal(code, Ja4.AlpnCode([System.Text.Encoding.ASCII.GetBytes(alpn)]));

    [Fact]
    public void Ja4_alpn_rules_for_non_alphanumeric_values_and_absence()
    {
        Assert.Equal("00", Ja4.AlpnCode([]));
        Assert.Equal("ab", Ja4.AlpnCode([[0xAB]]));
        Assert.Equal("ad", Ja4.AlpnCode([[0xAB, 0xCD]]));
        Assert.Equal("3b", Ja4.AlpnCode([[0x30, 0xAB]]));
        Assert.Equal("3d", Ja4.AlpnCode([[0x30, 0x31, 0xAB, 0xCD]]));
        Assert.Equal("01", Ja4.AlpnCode([[0x30, 0xAB, 0xCD, 0x31]]));
    }

    [Fact]
    public void Ja4_without_sni_or_alpn_and_tls12()
    {
        var builder = new ClientHelloBuilder { Ciphers = [0xc02f, 0x0a0a] };
        builder.U16List(10, 29);
        Assert.StartsWith("t12i010100_", Ja4.From(Parse(builder)).Fingerprint, StringComparison.Ordinal);
    }

    private static HttpHeaders Headers(params (string Name, string Value)[] fields)
    {
        var headers = new HttpHeaders();
        foreach (var (name, value) in fields)
        {
            headers.Add(name, value);
        }

        return headers;
    }

    [Fact]
    public void Ja4h_matches_the_spec_post_example()
    {
        var headers = Headers(("Host", "192.168.1.1"), ("Content-Length", "664"), ("Accept", "application/json, text/javascript, */*; q=0.01"),
            ("X-Requested-With", "XMLHttpRequest"), ("User-Agent", "Mozilla/5.0"), ("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8"),
            ("Origin", "http://192.168.1.1"), ("Referer", "http://192.168.1.1/Main"), ("Accept-Encoding", "gzip, deflate"),
            ("Accept-Language", "en-US,en;q=0.9"), ("Cookie", "example=d7df2dd0937ec27; ud_reload=UD_reload"), ("Connection", "close"));
        var ja4h = Ja4H.From("POST", "11", headers);
        Assert.StartsWith("po11cr10enus_47d05ed57293_", ja4h.Fingerprint, StringComparison.Ordinal);
    }

    [Fact]
    public void Ja4h_cookie_hashes_match_the_spec_cookie_example()
    {
        var headers = Headers(("Host", "www.google.com"), ("Cookie",
            "1P_JAR=2023-06-07-17; AEC=AUEFqZdaLLwaXJHyxA8-Cu0i0N4klp_vV3XOuyEYeiWlp4QaeIvSv6t4XKM; OGPC=19027681-1:; " +
            "NID=511=rRELE2o91XNLo6eayqEN7Lf2ue7EcSHVkew3oxf4jzyF8vix2BzxTRvda8MYBFEkLyC1xjTcqSIjbC-wV2r120jr2HFau_dHvMxUm9fk6W2J2mddtlMpGMA8qGuAZWt1DSpCFFwHZSKBryGnvRJUeXkc-jw4sXdWhgCKxeu3f01Na4YsBYGf; " +
            "DV=A84BtBIPqhgmIDlq9acmfs7ik-duiZjdmUPDG3eW3QIAAAA"));
        var ja4h = Ja4H.From("GET", "11", headers);
        Assert.EndsWith("_21864220ae3d_e97928733c74", ja4h.Fingerprint, StringComparison.Ordinal);
    }

    [Fact]
    public void Ja4h_header_hash_matches_the_spec_http2_example()
    {
        // The spec's CNN example: its header list hashes to 974ebe531c03 as published. (Its cookie hashes
        // do not match the cookie list printed beside them, so only the header part is checked here.)
        var headers = Headers(("Host", "www.cnn.com"), ("Cookie", "sato=1"), ("Sec-Ch-Ua", ""), ("Sec-Ch-Ua-Mobile", "?0"), ("User-Agent", "Mozilla/5.0"),
            ("Sec-Ch-Ua-Platform", "\"\""), ("Accept", "*/*"), ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty"),
            ("Referer", "https://www.cnn.com/"), ("Accept-Encoding", "gzip, deflate"), ("Accept-Language", "en-US,en;q=0.9"));
        var ja4h = Ja4H.From("GET", "20", headers);
        Assert.StartsWith("ge20cr11enus_974ebe531c03_", ja4h.Fingerprint, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ja4h_cached_on_a_connection_equals_the_computed_one_for_every_request_and_is_reused_for_a_repeat()
    {
        // One connection, requests whose JA4H inputs differ one at a time (and then repeat): the connection's cache must
        // never hand one request another's fingerprint, and a request that repeats the last inputs takes the same object.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(System.Net.IPAddress.Loopback, ((System.Net.IPEndPoint)listener.LocalEndpoint).Port);
        using var accepted = await listener.AcceptSocketAsync();
        await using var socket = new Rama.Proxy.Net.SocketConnection(accepted);
        var connection = new Rama.Proxy.Net.ConnectionContext(1, socket, CancellationToken.None);

        HttpRequest Request(string method, HttpProtocolVersion version, params (string Name, string Value)[] fields)
        {
            var request = new HttpRequest(method, "/", RequestTargetForm.Origin, version, Headers(fields), connection.Extensions) { Connection = connection };
            if (version == HttpProtocolVersion.Http2)
            {
                request.Extensions.Set(new Rama.Proxy.Http.Http2.Http2RequestInfo(1, "https", "a.example", null));
            }

            return request;
        }

        (string, string)[] browser = [("Host", "a.example"), ("User-Agent", "u"), ("Accept", "*/*"), ("Accept-Language", "en-US,en"), ("Cookie", "b=2; a=1")];
        HttpRequest Base() => Request("GET", HttpProtocolVersion.Http11, browser);
        // Each differs from the base in one input; each follows a base request, so the cache holds the base's entry.
        var variants = new[]
        {
            Request("POST", HttpProtocolVersion.Http11, browser),
            Request("GET", HttpProtocolVersion.Http10, browser),
            Request("GET", HttpProtocolVersion.Http11, [.. browser[..4], ("Cookie", "b=2; a=3")]), // a cookie value
            Request("GET", HttpProtocolVersion.Http11, [.. browser[..4], ("Cookie", "b=2; c=1")]), // a cookie name
            Request("GET", HttpProtocolVersion.Http11, [.. browser[..3], ("Accept-Language", "da"), browser[4]]),
            Request("GET", HttpProtocolVersion.Http11, [browser[0], browser[2], browser[1], .. browser[3..]]), // the order
            Request("GET", HttpProtocolVersion.Http11, [.. browser, ("Referer", "https://a.example/")]),
            Request("GET", HttpProtocolVersion.Http11, [("host", "a.example"), .. browser[1..]]), // the name's case
            Request("GET", HttpProtocolVersion.Http2, browser), // Host from :authority: not sent by the client, skipped
            Request("GET", HttpProtocolVersion.Http2, [("Host", "b.example"), .. browser[1..]]), // a Host of its own: counted
        };

        var first = Ja4H.Cached(Base());
        Assert.Same(first, Ja4H.Cached(Base())); // a repeat is not computed again
        foreach (var variant in variants)
        {
            Assert.Equal(first, Ja4H.Cached(Base()));
            var expected = Ja4H.From(variant);
            Assert.NotEqual(first, expected);
            Assert.Equal(expected, Ja4H.Cached(variant));
        }

        // Two h2 requests with the same names: one Host came from :authority (skipped), the other was the client's own.
        var fromAuthority = Request("GET", HttpProtocolVersion.Http2, browser);
        Assert.Equal(Ja4H.From(fromAuthority), Ja4H.Cached(fromAuthority)); // after the last variant: its own Host
        var own = Request("GET", HttpProtocolVersion.Http2, [("Host", "b.example"), .. browser[1..]]);
        Assert.Equal(Ja4H.From(own), Ja4H.Cached(own));

        // Only the presence of a Referer counts: a request that differs in its value alone takes the last one's.
        var referer = Ja4H.Cached(Request("GET", HttpProtocolVersion.Http11, [.. browser, ("Referer", "https://a.example/")]));
        Assert.Same(referer, Ja4H.Cached(Request("GET", HttpProtocolVersion.Http11, [.. browser, ("Referer", "https://b.example/")])));
    }

    [Fact]
    public void Ja4h_without_cookie_or_language()
    {
        var ja4h = Ja4H.From("GET", "11", Headers(("Host", "a"), ("Accept-Language", "da, en-GB;q=0.8")));
        Assert.StartsWith("ge11nn02da00_", ja4h.Fingerprint, StringComparison.Ordinal);
        Assert.EndsWith("_000000000000_000000000000", ja4h.Fingerprint, StringComparison.Ordinal);
        Assert.StartsWith("ge11nn010000_", Ja4H.From("GET", "11", Headers(("Host", "a"))).Fingerprint, StringComparison.Ordinal);
    }
}
