using FsCheck;
using FsCheck.Fluent;
using Rama.Proxy.Core;
using Rama.Proxy.Upstream;

namespace Rama.Proxy.Tests.Upstream;

public sealed class ProxyUsernameTests
{
    [Fact]
    public void Parses_keys_flags_negations_and_session()
    {
        var parsed = ProxyUsername.Parse("john-country-us-Country-CA-pool-p1-residential-!mobile-asn-AS7922-city-new_york-session-42");
        Assert.Equal("john", parsed.BaseUser);
        Assert.Equal(["us", "ca"], parsed.Filter.Values(ProxyField.Country));
        Assert.Equal(["p1"], parsed.Filter.Values(ProxyField.Pool));
        Assert.Equal(["7922"], parsed.Filter.Values(ProxyField.Asn));
        Assert.Equal(["new_york"], parsed.Filter.Values(ProxyField.City));
        Assert.True(parsed.Filter.Residential);
        Assert.False(parsed.Filter.Mobile);
        Assert.Null(parsed.Filter.Datacenter);
        Assert.Equal("42", parsed.Session);
    }

    [Fact]
    public void A_plain_user_has_no_labels()
    {
        var parsed = ProxyUsername.Parse("john");
        Assert.False(parsed.HasLabels);
        Assert.True(parsed.Filter.IsEmpty);
        Assert.Null(parsed.Session);
    }

    [Theory]
    [InlineData("john-colour-red", "unknown label 'colour'")]
    [InlineData("john-country", "label 'country' needs a value")]
    [InlineData("john-country-", "label 'country' needs a value")]
    [InlineData("john--country-us", "empty label")]
    [InlineData("john-mobile-!mobile", "conflicting labels 'mobile' and '!mobile'")]
    [InlineData("john-session-1-session-2", "'session' given twice")]
    [InlineData("john-asn-x1", "'x1' is not an ASN")]
    [InlineData("-country-us", "empty before its first '-'")]
    public void Bad_labels_are_errors_that_name_them(string username, string message)
    {
        Assert.False(ProxyUsername.TryParse(username, out _, out var error));
        Assert.Contains(message, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Lenient_mode_keeps_unknown_labels_but_ignores_them()
    {
        var parsed = ProxyUsername.Parse("john-colour-country-us", strict: false);
        Assert.Equal(["us"], parsed.Filter.Values(ProxyField.Country));
        Assert.Equal("john-colour-country-us", parsed.ToString());
    }

    [Theory]
    [InlineData("john")]
    [InlineData("john-COUNTRY-Us-residential-!Mobile-session-AbC")]
    [InlineData("a-id-x-pool-y-continent-eu-state-ca-city-z-carrier-att-asn-1-datacenter-session-s")]
    public void A_parsed_username_formats_back_to_the_same_string(string username) =>
        Assert.Equal(username, ProxyUsername.Parse(username).ToString());

    [Fact]
    public void Round_trip_holds_for_generated_label_sequences()
    {
        string[] keys = ["id", "pool", "continent", "country", "state", "city", "carrier", "session"];
        string[] flags = ["datacenter", "residential", "mobile", "!datacenter", "!residential", "!mobile"];
        var value = Gen.Elements("us", "DE", "x1", "p_2", "42", "New_York");
        var label = Gen.OneOf(
            Gen.Elements(keys).SelectMany(k => value, (k, v) => k + "-" + v),
            Gen.Elements(flags),
            Gen.Elements("asn-1", "asn-AS13335"));
        var username = Gen.ListOf(label).Select(labels => "user" + string.Concat(labels.Select(l => "-" + l)));
        Prop.ForAll(username.ToArbitrary(), text =>
        {
            // Only the ones that parse (no conflicting flags, one session) must round-trip.
            return !ProxyUsername.TryParse(text, out var parsed, out _) || parsed.ToString() == text;
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Authenticator_checks_the_password_against_the_base_user_and_records_labels()
    {
        var auth = new UpstreamAuthenticator(new StaticProxyAuthenticator([new("john", "pw")]));
        var extensions = new Extensions();
        var user = auth.Authenticate("john-country-us-session-7", "pw", extensions);
        Assert.Equal("john", user?.Name);
        Assert.Equal(["us"], extensions.Get<RequestedProxyFilter>()!.Filter.Values(ProxyField.Country));
        Assert.Equal("7", extensions.Get<ProxySession>()!.Id);

        Assert.Null(auth.Authenticate("john-country-us", "wrong", new Extensions()));
        var bad = new Extensions();
        Assert.Null(auth.Authenticate("john-colour-red", "pw", bad));
        Assert.Equal("unknown label 'colour'", bad.Get<ProxyAuthFailure>()!.Reason);
    }

    [Fact]
    public void Open_proxy_accepts_any_base_user_but_still_reads_labels()
    {
        var auth = new UpstreamAuthenticator(StaticProxyAuthenticator.None);
        var extensions = new Extensions();
        Assert.Equal("anyone", auth.Authenticate("anyone-pool-a", "", extensions)?.Name);
        Assert.Equal(["a"], extensions.Get<RequestedProxyFilter>()!.Filter.Values(ProxyField.Pool));
    }

    [Theory]
    [InlineData("country=us&country=CA&residential=true&mobile=0&session=42", "country=ca,us;residential;!mobile", "42")]
    [InlineData("pool_id=a+b&datacenter", "pool=a b;datacenter", null)]
    [InlineData("asn=AS13335&city=new%20york", "city=new york;asn=13335", null)]
    public void Filter_header_is_url_form_encoded(string header, string canonical, string? session)
    {
        Assert.True(ProxyFilterHeader.TryParse(header, out var filter, out var parsedSession, out var error), error);
        Assert.Equal(canonical, filter.ToString());
        Assert.Equal(session, parsedSession);
    }

    [Theory]
    [InlineData("colour=red", "unknown key 'colour'")]
    [InlineData("mobile=maybe", "mobile must be true or false")]
    [InlineData("asn=x", "is not an ASN")]
    public void Bad_filter_header_names_the_problem(string header, string message)
    {
        Assert.False(ProxyFilterHeader.TryParse(header, out _, out _, out var error));
        Assert.Contains(message, error, StringComparison.Ordinal);
    }
}
