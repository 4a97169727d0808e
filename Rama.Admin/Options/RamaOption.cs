namespace Rama.Admin.Options;

/// <summary>How many values an option takes on the command line.</summary>
public enum OptionArity
{
    /// <summary>A switch: present means <c>true</c> (or the option's <see cref="RamaOption.FlagValue"/>).</summary>
    Flag,

    /// <summary>One value; the last one given wins.</summary>
    Single,

    /// <summary>A list (<c>--auth a --auth b</c>, <c>Rama:Auth:0</c>, <c>Rama__Auth__1</c>); on the command line the list replaces the files' and the environment's.</summary>
    Repeatable,
}

/// <summary>A switch that sets an option's key to one fixed value (<c>--upstream-http</c> = <c>Rama:Tls:UpstreamMode=http</c>).</summary>
public sealed record OptionShorthand(string Name, string Value, string Description);

/// <summary>
/// One option, declared once: its configuration key (the name in JSON files and, with <c>__</c> for <c>:</c>, in the
/// environment), its command-line name and aliases, what it means, which values it takes and whether its value is a
/// secret. The command line, the environment and JSON files all become configuration under <see cref="Key"/>, and the
/// options records are read from there through <see cref="OptionsReader"/>, so every source is validated the same way.
/// </summary>
public sealed record RamaOption
{
    /// <summary>
    /// The configuration key, e.g. <c>Rama:DrainTimeout</c>. Keys of named entries use <c>*</c> for the entry's name
    /// (<c>Rama:Listeners:*:Bind</c>). Null for options of the command line only (<c>--config</c>, <c>--version</c>).
    /// </summary>
    public string? Key { get; init; }

    /// <summary>The command-line name (<c>--drain-timeout</c>); null for options set through configuration only.</summary>
    public string? Name { get; init; }

    /// <summary>Other command-line names of the same option. Default none.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>Switches that set <see cref="Key"/> to a fixed value. Default none.</summary>
    public IReadOnlyList<OptionShorthand> Shorthands { get; init; } = [];

    /// <summary>One sentence for <c>--help</c> and the README.</summary>
    public required string Description { get; init; }

    /// <summary>Default <see cref="OptionArity.Single"/>.</summary>
    public OptionArity Arity { get; init; } = OptionArity.Single;

    /// <summary>The values allowed and how they are normalised. Default <see cref="OptionValue.Text"/> (any non-empty text).</summary>
    public OptionValue Value { get; init; } = OptionValue.Text;

    /// <summary>The value written for a <see cref="OptionArity.Flag"/> given on the command line. Default <c>true</c>.</summary>
    public string FlagValue { get; init; } = "true";

    /// <summary>The default as <c>config show</c> prints it; null when unset means "none".</summary>
    public string? Default { get; init; }

    /// <summary>The value is a secret (passwords, the cluster secret): <c>config show</c> and error messages redact it. Default false.</summary>
    public bool Secret { get; init; }

    /// <summary>Every command-line name of this option: <see cref="Name"/>, <see cref="Aliases"/> and the shorthands.</summary>
    public IEnumerable<string> CommandLineNames =>
        (Name is null ? [] : new[] { Name }).Concat(Aliases).Concat(Shorthands.Select(s => s.Name));

    /// <summary>The key of this option in the named entry <paramref name="entry"/> (replaces the <c>*</c> of <see cref="Key"/>).</summary>
    public string KeyFor(string entry) => Key?.Replace("*", entry, StringComparison.Ordinal) ?? throw new InvalidOperationException($"{Name} has no configuration key");

    /// <summary>The last segment of <see cref="Key"/> (<c>Bind</c> of <c>Rama:Listeners:*:Bind</c>).</summary>
    public string LeafName => Key is null ? "" : Key[(Key.LastIndexOf(':') + 1)..];

    /// <summary>How <paramref name="value"/> is shown: as is, or redacted for a secret (a credential keeps its user name).</summary>
    public string Show(string? value) => value is null ? "(none)" : Secret ? Redact(value) : value;

    /// <summary>Redacts a secret; <c>user:password</c> keeps the user so an operator can tell the entries apart.</summary>
    public static string Redact(string value)
    {
        var colon = value.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 ? value[..colon] + ":***" : "***";
    }

    /// <summary>How this option is named in messages: <c>Rama:Tls:UnknownSni (--unknown-sni)</c>.</summary>
    public string Describe(string? key = null)
    {
        key ??= Key;
        return key is null ? Name ?? "" : Name is null ? key : $"{key} ({Name})";
    }
}
