namespace Rama.Admin.Options;

/// <summary>The options every Rama executable has (rama-node, rama-lighthouse).</summary>
public static class CommonOptions
{
    /// <summary>Extra JSON configuration file, read after the embedded appsettings.json and before the environment.</summary>
    public static RamaOption Config { get; } = new()
    {
        Name = "--config",
        Description = "Extra JSON configuration file (same shape as appsettings.json); read after appsettings.json, before the environment and the command line",
    };

    /// <summary>Prints the version and exits 0.</summary>
    public static RamaOption Version { get; } = new()
    {
        Name = "--version",
        Arity = OptionArity.Flag,
        Description = "Print the version and exit",
    };

    /// <summary>The actor system's name; every node of a fleet (and its lighthouse) must use the same one.</summary>
    public static RamaOption SystemName { get; } = new()
    {
        Key = "Rama:System:Name",
        Name = "--system-name",
        Default = SystemOptions.DefaultName,
        Value = OptionValue.Pattern("[A-Za-z0-9][A-Za-z0-9_-]*", "is a name of letters, digits, '-' and '_' that starts with a letter or digit (an Akka.NET actor system name)"),
        Description = "Actor system name; every node and lighthouse of one fleet must share it (default rama)",
    };

    /// <summary>Every common option.</summary>
    public static IReadOnlyList<RamaOption> All { get; } = [Config, Version, SystemName];
}

/// <summary>The actor system (section <c>Rama:System</c>).</summary>
public sealed record SystemOptions
{
    public const string DefaultName = "rama";

    /// <summary>The actor system's name (<c>Rama:System:Name</c>, <c>--system-name</c>). Default <c>rama</c>: Akka.NET only lets systems of the same name form a cluster.</summary>
    public string Name { get; init; } = DefaultName;

    /// <summary>Reads and validates the options.</summary>
    public static SystemOptions Read(OptionsReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        return new SystemOptions { Name = reader.Text(CommonOptions.SystemName) ?? DefaultName };
    }
}
