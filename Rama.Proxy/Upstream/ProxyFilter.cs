using System.Text;

namespace Rama.Proxy.Upstream;

/// <summary>The string-valued fields a filter can constrain.</summary>
public enum ProxyField
{
    Id,
    Pool,
    Continent,
    Country,
    State,
    City,
    Carrier,
    Asn,
}

/// <summary>
/// What a request asks of its upstream (rama's ProxyFilter). Values within one field are OR-ed,
/// fields are AND-ed; comparisons are case-insensitive (values are stored lower-case). A record whose
/// value is <c>*</c> matches any requested value of that field. A requested <c>*</c> is the same as
/// not asking for that field (no constraint: also records without the field match). Flags: true
/// = the record must have it, false (<c>!mobile</c>) = it must not, null = either.
/// </summary>
public sealed class ProxyFilter : IEquatable<ProxyFilter>
{
    private static readonly int FieldCount = Enum.GetValues<ProxyField>().Length;
    private readonly string[][] _values;
    private string? _canonical;

    public static ProxyFilter Empty { get; } = new(null, null, null, null);

    private ProxyFilter(string[][]? values, bool? datacenter, bool? residential, bool? mobile)
    {
        _values = values ?? Enumerable.Range(0, FieldCount).Select(_ => Array.Empty<string>()).ToArray();
        Datacenter = datacenter;
        Residential = residential;
        Mobile = mobile;
    }

    public bool? Datacenter { get; }

    public bool? Residential { get; }

    public bool? Mobile { get; }

    /// <summary>The requested values of <paramref name="field"/> (lower-case, distinct, in the order first given); empty = any.</summary>
    public IReadOnlyList<string> Values(ProxyField field) => _values[(int)field];

    /// <summary>True when nothing is constrained.</summary>
    public bool IsEmpty => Datacenter is null && Residential is null && Mobile is null && _values.All(v => v.Length == 0);

    /// <summary>A filter with one more value for <paramref name="field"/> (OR); <c>*</c> clears the field's constraint.</summary>
    public ProxyFilter With(ProxyField field, string value)
    {
        var normalized = field == ProxyField.Asn
            ? (UpstreamProxy.TryNormalizeAsn(value, out var asn) ? asn : throw new FormatException($"'{value}' is not an ASN"))
            : UpstreamProxy.Normalize(value);
        if (normalized is null)
        {
            throw new FormatException($"empty value for {field.ToString().ToLowerInvariant()}");
        }

        var values = (string[][])_values.Clone();
        var current = values[(int)field];
        if (normalized == UpstreamProxy.Wildcard || (current.Length == 1 && current[0] == UpstreamProxy.Wildcard))
        {
            values[(int)field] = [UpstreamProxy.Wildcard];
        }
        else if (Array.IndexOf(current, normalized) < 0)
        {
            values[(int)field] = [.. current, normalized];
        }

        return new ProxyFilter(values, Datacenter, Residential, Mobile);
    }

    public ProxyFilter WithDatacenter(bool? value) => new(_values, value, Residential, Mobile);

    public ProxyFilter WithResidential(bool? value) => new(_values, Datacenter, value, Mobile);

    public ProxyFilter WithMobile(bool? value) => new(_values, Datacenter, Residential, value);

    /// <summary>The values that constrain <paramref name="field"/>: empty when any value will do (none given, or <c>*</c>).</summary>
    internal string[] Constraint(ProxyField field)
    {
        var values = _values[(int)field];
        return values.Length == 1 && values[0] == UpstreamProxy.Wildcard ? [] : values;
    }

    /// <summary>The reference (linear) definition of a match; the database's index must agree with it.</summary>
    public bool Matches(UpstreamProxy proxy)
    {
        for (var f = 0; f < FieldCount; f++)
        {
            var wanted = Constraint((ProxyField)f);
            if (wanted.Length == 0)
            {
                continue;
            }

            var have = f == (int)ProxyField.Id ? proxy.Id.ToLowerInvariant() : Get(proxy, (ProxyField)f);
            if (have is null || (have != UpstreamProxy.Wildcard && Array.IndexOf(wanted, have) < 0))
            {
                return false;
            }
        }

        return (Datacenter is not { } dc || proxy.Datacenter == dc)
            && (Residential is not { } res || proxy.Residential == res)
            && (Mobile is not { } mob || proxy.Mobile == mob);
    }

    internal static string? Get(UpstreamProxy proxy, ProxyField field) => field switch
    {
        ProxyField.Id => proxy.Id,
        ProxyField.Pool => proxy.Pool,
        ProxyField.Continent => proxy.Continent,
        ProxyField.Country => proxy.Country,
        ProxyField.State => proxy.State,
        ProxyField.City => proxy.City,
        ProxyField.Carrier => proxy.Carrier,
        _ => proxy.Asn,
    };

    /// <summary>
    /// A canonical text (fields in a fixed order, values sorted): equal filters have equal text.
    /// Used for equality, caching and logs, e.g. <c>country=us,ca;residential;!mobile</c>.
    /// </summary>
    public override string ToString()
    {
        if (_canonical is not null)
        {
            return _canonical;
        }

        var builder = new StringBuilder();
        for (var f = 0; f < FieldCount; f++)
        {
            var values = _values[f];
            if (values.Length == 0)
            {
                continue;
            }

            if (builder.Length > 0)
            {
                builder.Append(';');
            }

            builder.Append(((ProxyField)f).ToString().ToLowerInvariant()).Append('=').AppendJoin(',', values.Order(StringComparer.Ordinal));
        }

        Flag(builder, "datacenter", Datacenter);
        Flag(builder, "residential", Residential);
        Flag(builder, "mobile", Mobile);
        return _canonical = builder.Length == 0 ? "*" : builder.ToString();

        static void Flag(StringBuilder builder, string name, bool? value)
        {
            if (value is { } v)
            {
                if (builder.Length > 0)
                {
                    builder.Append(';');
                }

                builder.Append(v ? "" : "!").Append(name);
            }
        }
    }

    public bool Equals(ProxyFilter? other) => other is not null && ToString() == other.ToString();

    public override bool Equals(object? obj) => Equals(obj as ProxyFilter);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(ToString());
}
