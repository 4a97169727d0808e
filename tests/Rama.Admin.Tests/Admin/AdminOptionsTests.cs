using System.Net;
using Microsoft.Extensions.Configuration;
using Rama.Admin.Admin;
using Rama.Admin.Options;

namespace Rama.Admin.Tests.Admin;

public sealed class AdminOptionsTests
{
    private static (AdminOptions Options, OptionsReader Reader) Read(params (string Key, string Value)[] values)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();
        var reader = new OptionsReader(configuration, AdminOptions.Declarations);
        return (AdminOptions.Read(reader), reader);
    }

    [Fact]
    public void The_default_is_loopback_9110_without_a_token()
    {
        var (options, reader) = Read();

        Assert.Empty(reader.Problems);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 9110), options.Bind);
        Assert.Null(options.Token);
    }

    [Fact]
    public void A_non_loopback_bind_without_a_token_is_a_problem()
    {
        var (_, reader) = Read(("Rama:Admin:Bind", "0.0.0.0:9110"));

        var problem = Assert.Single(reader.Problems);
        Assert.StartsWith("Rama:Admin:Bind (--admin) is 0.0.0.0:9110, not a loopback address: set Rama:Admin:Token (--admin-token)", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_non_loopback_bind_with_a_token_is_fine_and_the_token_is_redacted()
    {
        var (options, reader) = Read(("Rama:Admin:Bind", "0.0.0.0:9110"), ("Rama:Admin:Token", "s3cret"));

        Assert.Empty(reader.Problems);
        Assert.Equal("s3cret", options.Token);
        Assert.Contains(reader.Effective, e => e.Key == "Rama:Admin:Token" && e.Value == "***");
    }

    [Fact]
    public void A_bad_bind_names_the_key_and_what_is_allowed()
    {
        var (_, reader) = Read(("Rama:Admin:Bind", "localhost"));

        Assert.Contains(reader.Problems, p => p.StartsWith("Rama:Admin:Bind (--admin) is 'localhost': allowed is an ip:port", StringComparison.Ordinal));
    }

    [Fact]
    public void Port_zero_picks_a_port()
    {
        var (options, reader) = Read(("Rama:Admin:Bind", "127.0.0.1:0"));

        Assert.Empty(reader.Problems);
        Assert.Equal(0, options.Bind.Port);
    }
}
