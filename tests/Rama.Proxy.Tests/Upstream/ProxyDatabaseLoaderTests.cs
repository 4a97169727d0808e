using Rama.Proxy.Upstream;

namespace Rama.Proxy.Tests.Upstream;

public sealed class ProxyDatabaseLoaderTests
{
    private const string Header = "id,tcp,udp,http,https,socks5,socks5h,datacenter,residential,mobile,address,pool_id,continent,country,state,city,carrier,asn";

    [Fact]
    public void Csv_in_ramas_column_order_with_header_credentials_and_wildcards()
    {
        var records = ProxyDatabaseLoader.ParseCsv(
            Header + ",credential\n" +
            "# a comment\n" +
            "\n" +
            "a1,true,false,true,,false,,true,false,false,127.0.0.1:3128,PoolA,europe,BE,,Brussels,,AS13335,john:secret\n" +
            "b2,1,0,0,0,1,1,0,1,1,socks5h://u:p@proxy.example:1080,,*,US,*,*,att,0,\n" +
            "\"c3\",true,,false,false,true,false,0,1,0,[::1]:1080,b,,de,,,,7922,Basic dXNlcjpwYXNz\r\n");
        Assert.Equal(3, records.Count);
        var a = records[0];
        Assert.Equal("a1", a.Id);
        Assert.True(a.Tcp && a.Http && a.Datacenter && !a.Udp && !a.Socks5);
        Assert.Equal("poola", a.Pool);
        Assert.Equal("be", a.Country);
        Assert.Equal("brussels", a.City);
        Assert.Equal("13335", a.Asn);
        Assert.Equal(new UpstreamCredential("john", "secret"), a.Address.Credential);
        Assert.Equal(UpstreamProtocol.Http, a.PreferredProtocol);
        var b = records[1];
        Assert.Equal(UpstreamProtocol.Socks5h, b.Address.Scheme);
        Assert.Equal(new UpstreamCredential("u", "p"), b.Address.Credential);
        Assert.Equal("*", b.Continent);
        Assert.Equal("0", b.Asn);
        Assert.Equal(UpstreamProtocol.Socks5h, b.PreferredProtocol);
        var c = records[2];
        Assert.Equal("::1", c.Address.Endpoint.Host);
        Assert.Equal(new UpstreamCredential("user", "pass"), c.Address.Credential);
        Assert.Equal(UpstreamProtocol.Socks5, c.PreferredProtocol);
    }

    [Theory]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,", 2, "", "expected 18 to 21 columns, found 17")]
    [InlineData("a,yes,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,", 2, "tcp", "'yes' is not a boolean")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,ASX", 2, "asn", "'ASX' is not an ASN")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,4294967296", 2, "asn", "is not an ASN")]
    [InlineData("a,true,false,false,false,false,false,true,false,false,127.0.0.1:1,,,,,,,", 2, "", "unusable: tcp needs one of http")]
    [InlineData("a,false,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,", 2, "", "unusable: no transport")]
    [InlineData("a,true,false,true,false,false,false,false,false,false,127.0.0.1:1,,,,,,,", 2, "", "unusable: set at least one of datacenter")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,socks5://127.0.0.1:1,,,,,,,", 2, "", "the address says socks5")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,not a host,,,,,,,", 2, "address", "is not a host:port")]
    [InlineData(",true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,", 2, "id", "missing")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,nocolon", 2, "credential", "user:password")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,0", 2, "max_connections", "'0' is not a connection limit")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,abc", 2, "max_connections", "'abc' is not a connection limit")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,-2,", 2, "max_connections", "'-2' is not a connection limit")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,,5/w", 2, "rate", "'5/w' is not a rate")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,,0/s", 2, "rate", "'0/s' is not a rate")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,3,abc", 2, "rate", "'abc' is not a rate")]
    [InlineData("a,true,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,,,,,", 2, "", "expected 18 to 21 columns, found 22")]
    public void Csv_errors_name_the_line_and_the_field(string row, int line, string field, string message)
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.ParseCsv("# upstreams\n" + row + "\n", "db.csv"));
        var error = Assert.Single(ex.Errors);
        Assert.Equal(line, error.Line);
        Assert.Equal(field, error.Field);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.Contains($"line {line}", ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("db.csv: ", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Duplicate_ids_are_rejected_case_insensitively_with_both_lines()
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.ParseCsv(
            Row("dup", "127.0.0.1:1") + "\n" + Row("other", "127.0.0.1:2") + "\n" + Row("DUP", "127.0.0.1:3") + "\n"));
        var error = Assert.Single(ex.Errors);
        Assert.Equal(3, error.Line);
        Assert.Equal("id", error.Field);
        Assert.Contains("first on line 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_bad_row_is_reported_not_only_the_first()
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.ParseCsv(
            Row("ok", "127.0.0.1:1") + "\nbad,maybe,false,true,false,false,false,true,false,false,127.0.0.1:1,,,,,,,\n" + "short,row\n"));
        Assert.Equal([2, 3], ex.Errors.Select(e => e.Line));
    }

    [Fact]
    public void A_header_in_another_order_is_an_error()
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.ParseCsv(Header.Replace("tcp,udp", "udp,tcp", StringComparison.Ordinal) + "\n"));
        Assert.Equal(1, Assert.Single(ex.Errors).Line);
    }

    [Fact]
    public void Json_records_with_the_csv_field_names()
    {
        var records = ProxyDatabaseLoader.Parse("""
            {"proxies": [
              {"id": "j1", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8080", "country": "US", "asn": 7922, "credential": "a:b"},
              {"id": "j2", "tcp": true, "socks5h": true, "mobile": true, "address": "127.0.0.1:1080", "pool_id": "p"}
            ]}
            """);
        Assert.Equal(["j1", "j2"], records.Select(r => r.Id));
        Assert.Equal("7922", records[0].Asn);
        Assert.Equal("us", records[0].Country);
        Assert.Equal(new UpstreamCredential("a", "b"), records[0].Address.Credential);
        Assert.Equal("p", records[1].Pool);
    }

    [Fact]
    public void Json_errors_name_the_line_and_the_field()
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.Parse("""
            [
              {"id": "j1", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8080"},
              {"id": "j2", "tcp": "yes", "http": true, "residential": true,
               "address": "127.0.0.1:8081", "asn": "nope", "colour": "red"},
              {"id": "j1", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8082"}
            ]
            """));
        Assert.Contains(ex.Errors, e => e.Line == 3 && e.Field == "tcp");
        Assert.Contains(ex.Errors, e => e.Line == 4 && e.Field == "asn");
        Assert.Contains(ex.Errors, e => e.Line == 4 && e.Field == "colour");
        Assert.Contains(ex.Errors, e => e.Line == 5 && e.Field == "id" && e.Message.Contains("duplicate", StringComparison.Ordinal));
    }

    [Fact]
    public void Csv_limit_columns_give_a_records_max_connections_and_rate()
    {
        var records = ProxyDatabaseLoader.ParseCsv(
            Header + ",credential,max_connections,rate\n" +
            Row("both", "127.0.0.1:1", rest: ",,,,,,,,up:pw,5,10/s") + "\n" +
            Row("max", "127.0.0.1:2", rest: ",,,,,,,,,3") + "\n" +
            Row("rate", "127.0.0.1:3", rest: ",,,,,,,,,,600/m") + "\n" +
            Row("none", "127.0.0.1:4", rest: ",,,,,,,,,,") + "\n" +
            Row("old", "127.0.0.1:5") + "\n");
        Assert.Equal(["both", "max", "rate", "none", "old"], records.Select(r => r.Id));
        Assert.Equal(5, records[0].MaxConnections);
        Assert.Equal(new Rama.Proxy.Limits.LimitRate(10, TimeSpan.FromSeconds(1)), records[0].Rate);
        Assert.Equal(new UpstreamCredential("up", "pw"), records[0].Address.Credential);
        Assert.Equal(3, records[1].MaxConnections);
        Assert.Null(records[1].Rate);
        Assert.Null(records[2].MaxConnections);
        Assert.Equal(new Rama.Proxy.Limits.LimitRate(600, TimeSpan.FromMinutes(1)), records[2].Rate);
        Assert.All(records.Skip(3), r => Assert.True(r.MaxConnections is null && r.Rate is null));
    }

    [Fact]
    public void Json_limit_fields_give_a_records_max_connections_and_rate()
    {
        var records = ProxyDatabaseLoader.Parse("""
            [
              {"id": "j1", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8080", "max_connections": 5, "rate": "10/s"},
              {"id": "j2", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8081", "max_connections": "2", "rate": null}
            ]
            """);
        Assert.Equal(5, records[0].MaxConnections);
        Assert.Equal(Rama.Proxy.Limits.LimitRate.Parse("10/s"), records[0].Rate);
        Assert.Equal(2, records[1].MaxConnections);
        Assert.Null(records[1].Rate);
    }

    [Fact]
    public void Json_bad_limits_name_the_line_and_the_field()
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.Parse("""
            [
              {"id": "j1", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8080",
               "max_connections": 0},
              {"id": "j2", "tcp": true, "http": true, "residential": true, "address": "127.0.0.1:8081",
               "rate": "5/w"}
            ]
            """));
        Assert.Contains(ex.Errors, e => e.Line == 3 && e.Field == "max_connections");
        Assert.Contains(ex.Errors, e => e.Line == 5 && e.Field == "rate" && e.Message.Contains("'5/w' is not a rate", StringComparison.Ordinal));
    }

    [Fact]
    public void Limits_change_the_database_version_and_empty_limit_columns_keep_the_version_of_before()
    {
        static string VersionOf(string csv) => ProxyDatabase.Create(ProxyDatabaseLoader.ParseCsv(csv)).Version;
        var eighteen = Row("a", "127.0.0.1:1") + "\n" + Row("b", "127.0.0.1:2") + "\n";
        var withEmptyLimits = Row("a", "127.0.0.1:1", rest: ",,,,,,,,,") + "\n" + Row("b", "127.0.0.1:2", rest: ",,,,,,,,,,") + "\n";
        Assert.Equal("6790056b29f3fa56", VersionOf(eighteen)); // what these records hashed to before the limit columns existed
        Assert.Equal(VersionOf(eighteen), VersionOf(withEmptyLimits));

        var max5 = VersionOf(Row("a", "127.0.0.1:1", rest: ",,,,,,,,,5") + "\n" + Row("b", "127.0.0.1:2") + "\n");
        var max6 = VersionOf(Row("a", "127.0.0.1:1", rest: ",,,,,,,,,6") + "\n" + Row("b", "127.0.0.1:2") + "\n");
        var rate = VersionOf(Row("a", "127.0.0.1:1", rest: ",,,,,,,,,5,10/s") + "\n" + Row("b", "127.0.0.1:2") + "\n");
        var sameRate = VersionOf(Row("a", "127.0.0.1:1", rest: ",,,,,,,,,5,10/sec") + "\n" + Row("b", "127.0.0.1:2") + "\n");
        Assert.Equal(4, new[] { VersionOf(eighteen), max5, max6, rate }.Distinct().Count());
        Assert.Equal(rate, sameRate);
    }

    [Fact]
    public void Broken_json_is_reported_with_a_line()
    {
        var ex = Assert.Throws<ProxyDatabaseException>(() => ProxyDatabaseLoader.Parse("[\n {\"id\": \"x\",\n"));
        Assert.Contains("invalid JSON", Assert.Single(ex.Errors).Message, StringComparison.Ordinal);
    }

    internal static string Row(string id, string address, string flags = "true,false,true,false,false,false,true,false,false", string rest = ",,,,,,,") =>
        $"{id},{flags},{address}{rest}";
}
