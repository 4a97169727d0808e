using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace Rama.Admin.Options;

/// <summary>One line of the effective configuration: a key and its value as shown (secrets redacted).</summary>
public sealed record EffectiveValue(string Key, string Value);

/// <summary>
/// Reads declared options from the merged configuration (files, environment, command line) and validates every value
/// against its declaration. A bad value becomes a problem that names the key (and the command-line name), the value
/// and what is allowed; reading never stops at the first one, so an operator sees them all. Every value read (or its
/// default) is recorded in <see cref="Effective"/>, which is what <c>config show</c> prints. No side effects.
/// </summary>
public sealed partial class OptionsReader
{
    private readonly List<string> _problems = [];
    private readonly List<EffectiveValue> _effective = [];
    private readonly Dictionary<string, RamaOption> _declared;

    /// <param name="configuration">The merged configuration.</param>
    /// <param name="declared">Every declared option; keys inside bound sections (<see cref="Section{T}"/>) take their validation from here.</param>
    public OptionsReader(IConfiguration configuration, IEnumerable<RamaOption> declared)
    {
        Configuration = configuration;
        _declared = declared.Where(o => o.Key is not null).ToDictionary(o => o.Key!, StringComparer.OrdinalIgnoreCase);
    }

    public IConfiguration Configuration { get; }

    /// <summary>The problems found so far, one sentence each.</summary>
    public IReadOnlyList<string> Problems => _problems;

    /// <summary>Every value read so far, in reading order.</summary>
    public IReadOnlyList<EffectiveValue> Effective => _effective;

    public void AddProblem(string problem) => _problems.Add(problem);

    /// <summary>Records a value for <c>config show</c> that was not read through this reader (e.g. a derived listener).</summary>
    public void Show(string key, string value) => _effective.Add(new(key, value));

    /// <summary>Whether <paramref name="key"/> (or anything under it) is set in any source.</summary>
    public bool IsSet(string key) => Configuration[key] is not null || Configuration.GetSection(key).GetChildren().Any();

    /// <summary>The option's value, normalised; null when unset or refused (then a problem is recorded).</summary>
    public string? Text(RamaOption option, string? key = null)
    {
        key ??= option.Key ?? throw new ArgumentException($"{option.Name} has no configuration key", nameof(option));
        var raw = Configuration[key];
        if (raw is null)
        {
            Show(key, option.Default ?? "(none)");
            return null;
        }

        if (!option.Value.TryNormalize(raw, out var value))
        {
            Refuse(option, key, raw);
            return null;
        }

        Show(key, option.Show(value));
        return value;
    }

    public bool Flag(RamaOption option, bool fallback = false, string? key = null) =>
        Text(option, key) is { } text ? bool.Parse(text) : fallback;

    public long Integer(RamaOption option, long fallback, string? key = null) =>
        Text(option, key) is { } text ? long.Parse(text, CultureInfo.InvariantCulture) : fallback;

    public TimeSpan Duration(RamaOption option, TimeSpan fallback, string? key = null) =>
        Text(option, key) is { } text ? TimeSpan.Parse(text, CultureInfo.InvariantCulture) : fallback;

    /// <summary>The values of a list (<c>Key:0</c>, <c>Key:1</c>, ... or one value at <c>Key</c> itself), each validated.</summary>
    public IReadOnlyList<string> List(RamaOption option, string? key = null)
    {
        key ??= option.Key ?? throw new ArgumentException($"{option.Name} has no configuration key", nameof(option));
        var values = new List<string>();
        var section = Configuration.GetSection(key);
        var children = section.GetChildren().ToList();
        List<(string Key, string? Raw)> raws = children.Count > 0
            ? [.. children.Select(c => (c.Path, c.Value))]
            : section.Value is { Length: > 0 } single ? [(key, single)] : []; // JSON's empty array [] reads as ""
        foreach (var (itemKey, raw) in raws)
        {
            if (raw is null)
            {
                AddProblem($"{option.Describe(itemKey)} is a section, not a value: allowed {option.Value.Allowed}");
            }
            else if (option.Value.TryNormalize(raw, out var value))
            {
                values.Add(value);
                Show(itemKey, option.Show(value));
            }
            else
            {
                Refuse(option, itemKey, raw);
            }
        }

        if (raws.Count == 0)
        {
            Show(key, option.Default ?? "(none)");
        }

        return values;
    }

    /// <summary>Records the refusal of <paramref name="raw"/> at <paramref name="key"/>.</summary>
    public void Refuse(RamaOption option, string key, string raw) =>
        AddProblem($"{option.Describe(key)} is '{option.Show(raw)}': allowed {option.Value.Allowed}");

    /// <summary>
    /// Refuses every key under <paramref name="section"/> whose first segment is not in <paramref name="allowed"/>
    /// (a typo must not silently do nothing).
    /// </summary>
    public void RefuseUnknownKeys(string section, IReadOnlyCollection<string> allowed, string what)
    {
        foreach (var child in Configuration.GetSection(section).GetChildren())
        {
            if (!allowed.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                AddProblem($"{child.Path} is not a key of {what}: allowed are {string.Join(", ", allowed)}");
            }
        }
    }
}
