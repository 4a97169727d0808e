using System.Collections;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace Rama.Admin.Options;

/// <summary>A start-up problem the operator must fix (bad value, unreadable file): the executable exits 2 with its message.</summary>
public sealed class OptionsException : Exception
{
    public OptionsException()
    {
    }

    public OptionsException(string message) : base(message)
    {
    }

    public OptionsException(string message, Exception innerException) : base(message, innerException)
    {
    }
}

/// <summary>
/// The layers of configuration, lowest first: the embedded <c>appsettings.json</c> (beside the executable), the
/// <c>--config</c> file, environment variables (<c>Rama__Listeners__edge__Bind</c> = <c>Rama:Listeners:edge:Bind</c>),
/// the command line. A repeatable option given on the command line replaces its whole list below.
/// </summary>
public static class RamaConfiguration
{
    public const string AppSettingsFile = "appsettings.json";

    /// <summary>Merges the layers into one configuration.</summary>
    /// <param name="baseDirectory">Where appsettings.json is looked for (optional there).</param>
    /// <param name="commandLine">The parsed command line (its <c>--config</c> file and values).</param>
    /// <param name="environment">Environment variables; default the process's.</param>
    /// <exception cref="OptionsException">The <c>--config</c> file does not exist or is not valid JSON.</exception>
    public static IConfigurationRoot Build(string baseDirectory, CommandLineResult commandLine, IDictionary? environment = null)
    {
        ArgumentNullException.ThrowIfNull(commandLine);
        var files = new ConfigurationBuilder().AddJsonFile(Path.Combine(baseDirectory, AppSettingsFile), optional: true, reloadOnChange: false);
        if (commandLine.ConfigFile is { } file)
        {
            var full = Path.GetFullPath(file);
            if (!File.Exists(full))
            {
                throw new OptionsException($"--config file '{full}' does not exist");
            }

            files.AddJsonFile(full, optional: false, reloadOnChange: false);
        }

        IConfigurationRoot lower;
        try
        {
            lower = files.AddInMemoryCollection(FromEnvironment(environment ?? Environment.GetEnvironmentVariables())).Build();
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            throw new OptionsException($"cannot read the configuration file: {ex.Message}", ex);
        }

        var merged = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in lower.AsEnumerable().Where(kv => kv.Value is not null && !commandLine.ReplacedLists.Any(list => IsUnder(kv.Key, list))))
        {
            merged[key] = value;
        }

        foreach (var (key, value) in commandLine.Values)
        {
            merged[key] = value; // the command line wins
        }

        return new ConfigurationBuilder().AddInMemoryCollection(merged).Build();
    }

    /// <summary>Environment variables as configuration: <c>__</c> separates sections, as in .NET's environment provider (no prefix).</summary>
    public static IEnumerable<KeyValuePair<string, string?>> FromEnvironment(IDictionary environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        // One value per key, the later source winning (a configuration key may appear twice: CLUSTER_SECRET and
        // Rama__Cluster__Secret, or two spellings of one key in different case).
        var merged = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in EnvironmentEntries(environment))
        {
            merged[key] = value;
        }

        return merged;
    }

    private static IEnumerable<KeyValuePair<string, string?>> EnvironmentEntries(IDictionary environment)
    {
        // Lighthouse's container variables first, so an explicit Rama__Cluster__... of the same environment wins.
        foreach (var (variable, key) in LighthouseVariables)
        {
            if (environment[variable] is string { Length: > 0 } value)
            {
                yield return new(key, value);
            }
        }

        foreach (DictionaryEntry entry in environment)
        {
            if (entry.Key is string key && key.Length > 0)
            {
                yield return new(key.Replace("__", ConfigurationPath.KeyDelimiter, StringComparison.Ordinal), entry.Value as string);
            }
        }
    }

    /// <summary>The variables of Petabridge's Lighthouse image, and the keys they set (the fleet's options, Rama.Admin.Cluster).</summary>
    public static IReadOnlyList<(string Variable, string Key)> LighthouseVariables { get; } =
    [
        ("CLUSTER_IP", "Rama:Cluster:PublicHost"),
        ("CLUSTER_PORT", "Rama:Cluster:Port"),
        ("CLUSTER_SEEDS", "Rama:Cluster:Seeds"),
        ("CLUSTER_SECRET", "Rama:Cluster:Secret"),
    ];

    private static bool IsUnder(string key, string list) =>
        key.Equals(list, StringComparison.OrdinalIgnoreCase)
        || (key.Length > list.Length && key.StartsWith(list, StringComparison.OrdinalIgnoreCase) && key[list.Length] == ':');

    /// <summary>The version line: <c>rama-node 1.0.0+abc123</c>.</summary>
    public static string VersionLine(string tool, Assembly assembly)
    {
        ArgumentNullException.ThrowIfNull(assembly);
        var version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                      ?? assembly.GetName().Version?.ToString() ?? "0.0.0";
        return $"{tool} {version}";
    }

    /// <summary>Writes the effective configuration as <c>key = value</c> lines (values as recorded: secrets already redacted).</summary>
    public static void WriteEffective(TextWriter output, string tool, IEnumerable<EffectiveValue> values)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(values);
        output.WriteLine($"# {tool}: effective configuration (appsettings.json < --config file < environment < command line); secrets redacted");
        foreach (var value in values)
        {
            output.WriteLine($"{value.Key} = {value.Value}");
        }
    }
}
