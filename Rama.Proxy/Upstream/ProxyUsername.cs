using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Rama.Proxy.Upstream;

/// <summary>One label of a username as written (key case kept, so the username formats back unchanged).</summary>
public sealed record UsernameLabel(string Key, string? Value)
{
    public override string ToString() => Value is null ? Key : Key + "-" + Value;
}

/// <summary>
/// A proxy username with routing labels: <c>&lt;user&gt;{-&lt;label&gt;}*</c>, e.g.
/// <c>john-country-us-residential-!mobile-session-42</c>. Keys taking a value: <c>id</c>, <c>pool</c>,
/// <c>continent</c>, <c>country</c>, <c>state</c>, <c>city</c>, <c>carrier</c>, <c>asn</c> (repeating a
/// key adds an OR-ed value) and <c>session</c> (once); flags: <c>datacenter</c>, <c>residential</c>,
/// <c>mobile</c> and their negations <c>!datacenter</c>, ... Keys are case-insensitive. The base user
/// is everything before the first '-', so base user names cannot contain '-' (values neither: write
/// <c>city-new_york</c>). Strict by default: an unknown label is an error that names it.
/// </summary>
public sealed record ProxyUsername(string BaseUser, IReadOnlyList<UsernameLabel> Labels, ProxyFilter Filter, string? Session)
{
    /// <summary>Label keys that take a value, and the filter field each sets (null: the session).</summary>
    private static readonly Dictionary<string, ProxyField?> ValueKeys = new(StringComparer.OrdinalIgnoreCase)
    {
        ["id"] = ProxyField.Id,
        ["pool"] = ProxyField.Pool,
        ["continent"] = ProxyField.Continent,
        ["country"] = ProxyField.Country,
        ["state"] = ProxyField.State,
        ["city"] = ProxyField.City,
        ["carrier"] = ProxyField.Carrier,
        ["asn"] = ProxyField.Asn,
        ["session"] = null,
    };

    /// <summary>True when the username carries any routing label (a filter or a session).</summary>
    public bool HasLabels => Labels.Count > 0;

    /// <summary>
    /// Parses <paramref name="username"/>. With <paramref name="strict"/> (the default) an unknown label
    /// fails with an error naming it; otherwise unknown labels are kept (for formatting) but ignored.
    /// </summary>
    public static bool TryParse(string username, [NotNullWhen(true)] out ProxyUsername? parsed, out string error, bool strict = true)
    {
        parsed = null;
        var tokens = username.Split('-');
        var baseUser = tokens[0];
        if (baseUser.Length == 0)
        {
            error = "the username is empty before its first '-'";
            return false;
        }

        var labels = new List<UsernameLabel>();
        var filter = ProxyFilter.Empty;
        string? session = null;
        for (var i = 1; i < tokens.Length; i++)
        {
            var key = tokens[i];
            if (key.Length == 0)
            {
                error = $"empty label at position {i} (two '-' in a row, or a trailing '-')";
                return false;
            }

            if (ValueKeys.TryGetValue(key, out var field))
            {
                if (i + 1 >= tokens.Length || tokens[i + 1].Length == 0)
                {
                    error = $"label '{key}' needs a value ({key.ToLowerInvariant()}-<value>)";
                    return false;
                }

                var value = tokens[++i];
                labels.Add(new UsernameLabel(key, value));
                if (field is null)
                {
                    if (session is not null)
                    {
                        error = "label 'session' given twice";
                        return false;
                    }

                    session = value;
                    continue;
                }

                try
                {
                    filter = filter.With(field.Value, value);
                }
                catch (FormatException ex)
                {
                    error = $"label '{key}-{value}': {ex.Message}";
                    return false;
                }

                continue;
            }

            var negated = key.StartsWith('!');
            var flag = negated ? key[1..] : key;
            bool? current;
            switch (flag.ToLowerInvariant())
            {
                case "datacenter":
                    current = filter.Datacenter;
                    filter = filter.WithDatacenter(!negated);
                    break;
                case "residential":
                    current = filter.Residential;
                    filter = filter.WithResidential(!negated);
                    break;
                case "mobile":
                    current = filter.Mobile;
                    filter = filter.WithMobile(!negated);
                    break;
                default:
                    if (strict)
                    {
                        error = $"unknown label '{key}'";
                        return false;
                    }

                    labels.Add(new UsernameLabel(key, null));
                    continue;
            }

            if (current is { } before && before == negated)
            {
                error = $"conflicting labels '{flag.ToLowerInvariant()}' and '!{flag.ToLowerInvariant()}'";
                return false;
            }

            labels.Add(new UsernameLabel(key, null));
        }

        parsed = new ProxyUsername(baseUser, labels, filter, session);
        error = "";
        return true;
    }

    public static ProxyUsername Parse(string username, bool strict = true) =>
        TryParse(username, out var parsed, out var error, strict) ? parsed : throw new FormatException(error);

    /// <summary>The username as written: base user and labels joined with '-' (a parsed username formats back to the same string).</summary>
    public override string ToString()
    {
        var builder = new StringBuilder(BaseUser);
        foreach (var label in Labels)
        {
            builder.Append('-').Append(label.Key);
            if (label.Value is not null)
            {
                builder.Append('-').Append(label.Value);
            }
        }

        return builder.ToString();
    }
}
