using System.Collections;
using Rama.Admin.Options;

namespace Rama.Admin.Tests.Options;

/// <summary>The declaration infrastructure: one declaration per option, the layers' precedence, validation messages, redaction.</summary>
public sealed class OptionsModelTests : IDisposable
{
    private static readonly RamaOption Name = new() { Key = "Test:Name", Name = "--name", Description = "a name", Default = "anon" };
    private static readonly RamaOption Colour = new() { Key = "Test:Colour", Name = "--colour", Aliases = ["-c"], Value = OptionValue.Choice(["red", "blue"], ("navy", "blue")), Description = "a colour" };
    private static readonly RamaOption Users = new() { Key = "Test:Users", Name = "--user", Arity = OptionArity.Repeatable, Value = OptionValue.Credential, Secret = true, Description = "users" };
    private static readonly RamaOption Wait = new() { Key = "Test:Wait", Name = "--wait", Value = OptionValue.Duration(TimeSpan.Zero, TimeSpan.FromMinutes(1)), Description = "a wait" };
    private static readonly RamaOption Fast = new() { Key = "Test:Mode", Value = OptionValue.Choice(["slow", "fast"]), Shorthands = [new OptionShorthand("--fast", "fast", "go fast")], Description = "mode" };
    private static readonly RamaOption EntryBind = new() { Key = "Test:Entries:*:Bind", Value = OptionValue.Endpoint, Description = "bind" };

    private readonly string _dir = Directory.CreateTempSubdirectory("rama-admin-tests").FullName;

    private static RamaCommandLine CommandLine() => new("test-tool", "a test tool", [.. CommonOptions.All, Name, Colour, Users, Wait, Fast, EntryBind]);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Microsoft.Extensions.Configuration.IConfigurationRoot Build(string[] args, string? appsettings = null, string? configFile = null, IDictionary? environment = null)
    {
        if (appsettings is not null)
        {
            File.WriteAllText(Path.Combine(_dir, RamaConfiguration.AppSettingsFile), appsettings);
        }

        if (configFile is not null)
        {
            var path = Path.Combine(_dir, "extra.json");
            File.WriteAllText(path, configFile);
            args = [.. args, "--config", path];
        }

        var parsed = CommandLine().Parse(args);
        Assert.Empty(parsed.Errors);
        return RamaConfiguration.Build(_dir, parsed, environment ?? new Hashtable());
    }

    [Fact]
    public void Two_options_with_one_name_are_refused_when_the_command_line_is_made()
    {
        var twin = new RamaOption { Key = "Test:Other", Name = "--name", Description = "the same name" };
        var ex = Assert.Throws<InvalidOperationException>(() => new RamaCommandLine("t", "t", [Name, twin]));
        Assert.Contains("--name", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_alias_or_a_shorthand_that_reuses_a_name_is_refused_too()
    {
        var alias = new RamaOption { Key = "Test:A", Name = "--a", Aliases = ["--colour"], Description = "a" };
        Assert.Throws<InvalidOperationException>(() => new RamaCommandLine("t", "t", [Colour, alias]));
        var shorthand = new RamaOption { Key = "Test:B", Description = "b", Shorthands = [new OptionShorthand("--version", "x", "clash with the common --version")] };
        Assert.Throws<InvalidOperationException>(() => new RamaCommandLine("t", "t", [.. CommonOptions.All, shorthand]));
    }

    [Fact]
    public void The_test_command_line_has_no_duplicate_names() => Assert.Empty(CommandLine().DuplicateNames());

    [Fact]
    public void Appsettings_then_config_file_then_environment_then_command_line_each_override_the_one_before()
    {
        const string file = """{ "Test": { "Name": "appsettings", "Colour": "red", "Wait": "1" } }""";
        Assert.Equal("appsettings", Build([], appsettings: file)["Test:Name"]);
        Assert.Equal("config", Build([], appsettings: file, configFile: """{ "Test": { "Name": "config" } }""")["Test:Name"]);
        var env = new Hashtable { ["Test__Name"] = "env" };
        var both = Build([], appsettings: file, configFile: """{ "Test": { "Name": "config" } }""", environment: env);
        Assert.Equal("env", both["Test:Name"]);
        Assert.Equal("red", both["Test:Colour"]);
        var all = Build(["--name", "cli"], appsettings: file, configFile: """{ "Test": { "Name": "config" } }""", environment: env);
        Assert.Equal("cli", all["Test:Name"]);
        Assert.Equal("1", all["Test:Wait"]);
    }

    [Fact]
    public void A_repeatable_option_on_the_command_line_replaces_the_whole_list_below()
    {
        var configuration = Build(["--user", "cli:pw"], appsettings: """{ "Test": { "Users": [ "a:1", "b:2", "c:3" ] } }""");
        var reader = new OptionsReader(configuration, [Users]);
        Assert.Equal(["cli:pw"], reader.List(Users));
        Assert.Empty(reader.Problems);
    }

    [Fact]
    public void One_key_of_a_named_entry_is_overridden_from_the_environment_and_its_other_keys_stay()
    {
        var configuration = Build([], appsettings: """{ "Test": { "Entries": { "edge": { "Bind": "127.0.0.1:8080", "Kind": "proxy" } } } }""",
            environment: new Hashtable { ["Test__Entries__edge__Bind"] = "127.0.0.1:9000" });
        var reader = new OptionsReader(configuration, [EntryBind]);
        Assert.Equal("127.0.0.1:9000", reader.Text(EntryBind, EntryBind.KeyFor("edge")));
        Assert.Equal("proxy", configuration["Test:Entries:edge:Kind"]);
    }

    [Fact]
    public void A_bad_value_is_refused_with_its_key_its_command_line_name_the_value_and_what_is_allowed()
    {
        var reader = new OptionsReader(Build(["--colour", "green", "--wait", "soon"]), [Colour, Wait]);
        Assert.Null(reader.Text(Colour));
        reader.Duration(Wait, TimeSpan.Zero);
        Assert.Equal(2, reader.Problems.Count);
        Assert.Equal("Test:Colour (--colour) is 'green': allowed are red, blue", reader.Problems[0]);
        Assert.Contains("Test:Wait (--wait) is 'soon'", reader.Problems[1], StringComparison.Ordinal);
        Assert.Contains("seconds", reader.Problems[1], StringComparison.Ordinal);
    }

    [Fact]
    public void Choices_are_case_insensitive_and_aliases_normalise_and_an_alias_on_the_command_line_works()
    {
        var reader = new OptionsReader(Build(["-c", "NAVY", "--fast"]), [Colour, Fast]);
        Assert.Equal("blue", reader.Text(Colour));
        Assert.Equal("fast", reader.Text(Fast));
        Assert.Empty(reader.Problems);
    }

    [Fact]
    public void Durations_take_seconds_or_hh_mm_ss_and_are_bounded()
    {
        var reader = new OptionsReader(Build(["--wait", "2.5"]), [Wait]);
        Assert.Equal(TimeSpan.FromSeconds(2.5), reader.Duration(Wait, TimeSpan.Zero));
        reader = new OptionsReader(Build(["--wait", "00:00:07"]), [Wait]);
        Assert.Equal(TimeSpan.FromSeconds(7), reader.Duration(Wait, TimeSpan.Zero));
        reader = new OptionsReader(Build(["--wait", "61"]), [Wait]);
        reader.Duration(Wait, TimeSpan.Zero);
        Assert.Single(reader.Problems);
    }

    [Fact]
    public void Secrets_are_redacted_in_the_effective_configuration_and_in_messages()
    {
        var reader = new OptionsReader(Build(["--user", "john:s3cret", "--user", "nocolon"]), [Users, Name]);
        reader.List(Users);
        reader.Text(Name);
        var shown = new StringWriter();
        RamaConfiguration.WriteEffective(shown, "test-tool", reader.Effective);
        var text = shown.ToString();
        Assert.Contains("Test:Users:0 = john:***", text, StringComparison.Ordinal);
        Assert.Contains("Test:Name = anon", text, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", text, StringComparison.Ordinal);
        var problem = Assert.Single(reader.Problems);
        Assert.Contains("Test:Users:1 (--user) is '***'", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("nocolon", problem, StringComparison.Ordinal);
    }

    private sealed record Inner
    {
        public int Count { get; init; } = 3;

        public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
    }

    private enum Transport
    {
        Auto,
        Epoll,
    }

    private sealed record Outer
    {
        public Inner Inner { get; init; } = new();

        public Transport Transport { get; init; }

        public string? Note { get; init; }
    }

    [Fact]
    public void A_bound_section_sets_nested_records_and_refuses_unknown_keys_and_bad_values()
    {
        var good = new OptionsReader(Build([], appsettings: """{ "S": { "Inner": { "Count": "5", "Timeout": "2" }, "Transport": "EPOLL", "Note": "n" } }"""), []);
        var bound = good.Section("S", new Outer());
        Assert.Empty(good.Problems);
        Assert.Equal(new Outer { Inner = new Inner { Count = 5, Timeout = TimeSpan.FromSeconds(2) }, Transport = Transport.Epoll, Note = "n" }, bound);
        Assert.Contains(new EffectiveValue("S:Inner:Count", "5"), good.Effective);

        var bad = new OptionsReader(Build([], appsettings: """{ "S": { "Inner": { "Cuont": "5", "Count": "many" }, "Transport": "turbo" } }"""), []);
        bad.Section("S", new Outer());
        Assert.Contains(bad.Problems, p => p.StartsWith("S:Inner:Cuont is not a key", StringComparison.Ordinal) && p.Contains("Count, Timeout", StringComparison.Ordinal));
        Assert.Contains(bad.Problems, p => p.StartsWith("S:Inner:Count is 'many': allowed is a whole number", StringComparison.Ordinal));
        Assert.Contains("S:Transport is 'turbo': allowed are auto, epoll", bad.Problems);
    }

    [Fact]
    public void Unknown_keys_under_a_section_are_refused()
    {
        var reader = new OptionsReader(Build([], appsettings: """{ "Test": { "Name": "x", "Nmae": "y" } }"""), []);
        reader.RefuseUnknownKeys("Test", ["Name"], "Test");
        Assert.Equal("Test:Nmae is not a key of Test: allowed are Name", Assert.Single(reader.Problems));
    }

    [Fact]
    public void A_missing_config_file_is_refused()
    {
        var parsed = CommandLine().Parse(["--config", Path.Combine(_dir, "missing.json")]);
        var ex = Assert.Throws<OptionsException>(() => RamaConfiguration.Build(_dir, parsed, new Hashtable()));
        Assert.Contains("missing.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Version_prints_the_tool_and_its_version_and_exits_0()
    {
        var output = new StringWriter();
        var startup = await RamaStartup.RunAsync(CommandLine(), ["--version"], typeof(RamaStartup).Assembly, output, TextWriter.Null);
        Assert.Equal(ExitCodes.Ok, startup.ExitCode);
        Assert.StartsWith("test-tool 1.", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_option_exits_2()
    {
        var error = new StringWriter();
        var startup = await RamaStartup.RunAsync(CommandLine(), ["--nmae", "x"], typeof(RamaStartup).Assembly, TextWriter.Null, error);
        Assert.Equal(ExitCodes.BadOptions, startup.ExitCode);
        Assert.Contains("--nmae", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Options_given_after_config_show_are_read_too()
    {
        var parsed = CommandLine().Parse(["config", "show", "--name", "late"]);
        Assert.True(parsed.ConfigShow);
        Assert.Contains(new KeyValuePair<string, string?>("Test:Name", "late"), parsed.Values);
    }
}
