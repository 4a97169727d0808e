using System.CommandLine;
using System.CommandLine.Help;
using System.Globalization;

namespace Rama.Admin.Options;

/// <summary>
/// The command line of a Rama executable, made from the declared options: each becomes a System.CommandLine option
/// (recursive, so it is also accepted after a subcommand such as <c>config show</c>), and a parse turns what was given
/// into configuration under the options' keys, the top layer above the files and the environment. It has
/// <c>config show</c> and <c>--version</c>; more subcommands are added with <see cref="Add"/>. Construction fails when
/// two options share a name or an alias.
/// </summary>
public sealed class RamaCommandLine
{
    private readonly List<(RamaOption Declared, Option Option)> _options = [];
    private readonly List<(RamaOption Declared, OptionShorthand Shorthand, Option<bool> Option)> _shorthands = [];
    private readonly Option<string?> _config;
    private readonly Option<bool> _version;

    public RamaCommandLine(string tool, string description, IEnumerable<RamaOption> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Tool = tool;
        Declared = [.. options];
        Root = new RootCommand(description);
        foreach (var builtIn in Root.Options.OfType<VersionOption>().ToList())
        {
            // Our own --version (declared in CommonOptions): same output everywhere, and declared once.
            Root.Options.Remove(builtIn);
        }

        _config = new Option<string?>(CommonOptions.Config.Name!) { Description = CommonOptions.Config.Description, Recursive = true };
        _version = new Option<bool>(CommonOptions.Version.Name!) { Description = CommonOptions.Version.Description, Recursive = true };
        Root.Options.Add(_config);
        Root.Options.Add(_version);
        foreach (var declared in Declared.Where(d => d.Name is not null && d != CommonOptions.Config && d != CommonOptions.Version))
        {
            var aliases = declared.Aliases.ToArray();
            Option option = declared.Arity switch
            {
                OptionArity.Flag => new Option<bool>(declared.Name!, aliases),
                OptionArity.Single => new Option<string?>(declared.Name!, aliases),
                _ => new Option<string[]>(declared.Name!, aliases) { Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false },
            };
            option.Description = declared.Description;
            option.Recursive = true;
            Root.Options.Add(option);
            _options.Add((declared, option));
        }

        foreach (var declared in Declared)
        {
            foreach (var shorthand in declared.Shorthands)
            {
                var option = new Option<bool>(shorthand.Name) { Description = shorthand.Description, Recursive = true };
                Root.Options.Add(option);
                _shorthands.Add((declared, shorthand, option));
            }
        }

        ConfigShow = new Command("show", "Print the effective configuration (appsettings.json < --config file < environment < command line; secrets redacted) and exit");
        var config = new Command("config", "The effective configuration") { ConfigShow };
        Root.Subcommands.Add(config);
        // Running without a subcommand starts the executable (the caller does that after the parse).
        Root.SetAction(_ => ExitCodes.Ok);
        ConfigShow.SetAction(_ => ExitCodes.Ok);
        ThrowOnDuplicates();
    }

    public string Tool { get; }

    public IReadOnlyList<RamaOption> Declared { get; }

    public RootCommand Root { get; }

    /// <summary>The <c>config show</c> command.</summary>
    public Command ConfigShow { get; }

    /// <summary>Adds a subcommand (its options must not reuse a name of the root's).</summary>
    public void Add(Command command)
    {
        Root.Subcommands.Add(command);
        ThrowOnDuplicates();
    }

    /// <summary>Every option name or alias used twice anywhere on this command line (root, subcommands, built-ins).</summary>
    public IReadOnlyList<string> DuplicateNames()
    {
        var names = new List<string>();
        void Collect(Command command)
        {
            foreach (var option in command.Options)
            {
                names.Add(option.Name);
                names.AddRange(option.Aliases);
            }

            foreach (var sub in command.Subcommands)
            {
                Collect(sub);
            }
        }

        Collect(Root);
        return [.. names.GroupBy(n => n, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key)];
    }

    private void ThrowOnDuplicates()
    {
        if (DuplicateNames() is { Count: > 0 } duplicates)
        {
            throw new InvalidOperationException($"{Tool}: option name(s) declared twice: {string.Join(", ", duplicates)}");
        }
    }

    /// <summary>Parses <paramref name="args"/>; what was given becomes configuration under the declared keys.</summary>
    public CommandLineResult Parse(IReadOnlyList<string> args)
    {
        var parsed = Root.Parse(args);
        var values = new List<KeyValuePair<string, string?>>();
        var replaced = new List<string>();
        foreach (var (declared, option) in _options)
        {
            if (declared.Key is null || parsed.GetResult(option) is not { Implicit: false })
            {
                continue;
            }

            switch (option)
            {
                case Option<bool> flag when parsed.GetValue(flag):
                    values.Add(new(declared.Key, declared.FlagValue));
                    break;
                case Option<string?> single when parsed.GetValue(single) is { } value:
                    values.Add(new(declared.Key, value));
                    break;
                case Option<string[]> many when parsed.GetValue(many) is { Length: > 0 } items:
                    replaced.Add(declared.Key);
                    values.AddRange(items.Select((item, i) => new KeyValuePair<string, string?>(string.Create(CultureInfo.InvariantCulture, $"{declared.Key}:{i}"), item)));
                    break;
            }
        }

        foreach (var (declared, shorthand, option) in _shorthands)
        {
            if (declared.Key is not null && parsed.GetValue(option))
            {
                values.Add(new(declared.Key, shorthand.Value));
            }
        }

        return new CommandLineResult
        {
            ParseResult = parsed,
            Errors = [.. parsed.Errors.Select(e => e.Message)],
            Help = parsed.Action is HelpAction,
            Version = parsed.GetValue(_version),
            ConfigShow = parsed.CommandResult.Command == ConfigShow,
            ConfigFile = parsed.GetValue(_config),
            Values = values,
            ReplacedLists = replaced,
        };
    }
}

/// <summary>What a command line asked for.</summary>
public sealed record CommandLineResult
{
    public required ParseResult ParseResult { get; init; }

    /// <summary>Syntax errors (unknown option, missing value); exit 2.</summary>
    public required IReadOnlyList<string> Errors { get; init; }

    public bool Help { get; init; }

    public bool Version { get; init; }

    /// <summary><c>config show</c> was asked for.</summary>
    public bool ConfigShow { get; init; }

    /// <summary>The <c>--config</c> file, if any.</summary>
    public string? ConfigFile { get; init; }

    /// <summary>The options given, as configuration (key, value); the top layer.</summary>
    public IReadOnlyList<KeyValuePair<string, string?>> Values { get; init; } = [];

    /// <summary>Keys of repeatable options given on the command line: the list replaces the lower layers' list.</summary>
    public IReadOnlyList<string> ReplacedLists { get; init; } = [];

    /// <summary>The (sub)command that was parsed.</summary>
    public Command Command => ParseResult.CommandResult.Command;
}
