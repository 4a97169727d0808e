using Rama.Proxy.Limits;

namespace Rama.Proxy.Tests.Limits;

public sealed class LimitOptionsTests
{
    [Theory]
    [InlineData("50/s", 50, 1, "50/s")]
    [InlineData("600/m", 600, 60, "600/m")]
    [InlineData("3600/h", 3600, 3600, "3600/h")]
    [InlineData("7", 7, 1, "7/s")]
    [InlineData(" 10 / min ", 10, 60, "10/m")]
    [InlineData("2/hour", 2, 3600, "2/h")]
    public void Rates_parse_and_format_back_to_their_short_form(string text, int count, int seconds, string formatted)
    {
        Assert.True(LimitRate.TryParse(text, out var rate, out var error), error);
        Assert.Equal(new LimitRate(count, TimeSpan.FromSeconds(seconds)), rate);
        Assert.Equal(formatted, rate.ToString());
        Assert.Equal(rate, LimitRate.Parse(rate.ToString()));
    }

    [Theory]
    [InlineData("0/s")]
    [InlineData("x")]
    [InlineData("5/w")]
    [InlineData("-1/s")]
    [InlineData("1.5/s")]
    [InlineData("")]
    [InlineData(null)]
    public void Rates_that_are_not_a_positive_count_per_s_m_or_h_are_refused_naming_the_text(string? text)
    {
        Assert.False(LimitRate.TryParse(text, out _, out var error));
        Assert.Contains($"'{text}' is not a rate", error, StringComparison.Ordinal);
        if (text is not null)
        {
            Assert.Throws<FormatException>(() => LimitRate.Parse(text));
        }
    }

    [Fact]
    public void Rate_per_second_spreads_the_count_over_the_period()
    {
        Assert.Equal(10.0, LimitRate.Parse("600/m").PerSecond, 6);
        Assert.Equal(1.0, LimitRate.Parse("3600/h").PerSecond, 6);
    }

    public static TheoryData<LimitOptions, string, string> BadOptions => new()
    {
        { new LimitOptions { UpstreamMaxConnections = 0 }, nameof(LimitOptions.UpstreamMaxConnections), "at least 1, was 0" },
        { new LimitOptions { UpstreamRate = "5/w" }, nameof(LimitOptions.UpstreamRate), "'5/w' is not a rate" },
        { new LimitOptions { UserMaxConnections = -1 }, nameof(LimitOptions.UserMaxConnections), "at least 1, was -1" },
        { new LimitOptions { Users = ["john"] }, nameof(LimitOptions.Users), "'john' is not user=connections" },
        { new LimitOptions { Users = ["=3"] }, nameof(LimitOptions.Users), "'=3' is not user=connections" },
        { new LimitOptions { Users = ["john=0"] }, nameof(LimitOptions.Users), "'john=0'" },
        { new LimitOptions { Users = ["ok=2", "john=many"] }, nameof(LimitOptions.Users), "'john=many'" },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public void Validate_refuses_a_bad_value_naming_the_option_and_the_value(LimitOptions options, string parameter, string message)
    {
        var ex = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Equal(parameter, ex.ParamName);
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_accepts_the_defaults_and_well_formed_limits()
    {
        new LimitOptions().Validate();
        new LimitOptions { UpstreamMaxConnections = 1, UpstreamRate = "600/m", UserMaxConnections = 3, Users = ["john=1", " mary = 20 "] }.Validate();
    }

    [Fact]
    public void A_users_own_entry_wins_over_the_default_and_users_without_either_are_unlimited()
    {
        var both = new LimitOptions { UserMaxConnections = 5, Users = ["john=2"] };
        Assert.Equal(new LimitPolicy(2, null), both.ForUser("john"));
        Assert.Equal(new LimitPolicy(5, null), both.ForUser("mary"));
        Assert.Equal(new LimitPolicy(5, null), both.ForUser("John"));

        var ownOnly = new LimitOptions { Users = ["john=2"] };
        Assert.True(ownOnly.LimitsUsers);
        Assert.Equal(new LimitPolicy(2, null), ownOnly.ForUser("john"));
        Assert.True(ownOnly.ForUser("mary").IsUnlimited);

        Assert.False(new LimitOptions().LimitsUsers);
        Assert.True(new LimitOptions().ForUser("john").IsUnlimited);
    }

    [Fact]
    public void A_copy_with_other_user_entries_uses_its_own_entries()
    {
        var first = new LimitOptions { Users = ["john=2"] };
        Assert.Equal(2, first.ForUser("john").MaxConcurrent);
        var changed = first with { Users = ["john=7"] };
        Assert.Equal(7, changed.ForUser("john").MaxConcurrent);
        Assert.Equal(2, first.ForUser("john").MaxConcurrent);
    }

    [Fact]
    public void An_upstream_records_own_limits_win_over_the_defaults()
    {
        var defaults = new LimitOptions { UpstreamMaxConnections = 8, UpstreamRate = "100/m" };
        var own = LimitRate.Parse("10/s");
        Assert.Equal(new LimitPolicy(3, own), defaults.ForUpstream(3, own));
        Assert.Equal(new LimitPolicy(8, LimitRate.Parse("100/m")), defaults.ForUpstream(null, null));
        Assert.Equal(new LimitPolicy(3, LimitRate.Parse("100/m")), defaults.ForUpstream(3, null));
        Assert.Equal(new LimitPolicy(8, own), defaults.ForUpstream(null, own));

        Assert.True(new LimitOptions().ForUpstream(null, null).IsUnlimited);
        Assert.Equal(new LimitPolicy(1, null), new LimitOptions().ForUpstream(1, null));
    }

    [Fact]
    public void A_policy_describes_itself_for_logs_and_refusals()
    {
        Assert.Equal("unlimited", LimitPolicy.Unlimited.ToString());
        Assert.Equal("at most 4 at once, 50/s new", new LimitPolicy(4, LimitRate.Parse("50/s")).ToString());
    }
}
