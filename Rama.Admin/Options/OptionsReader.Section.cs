using System.Collections;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace Rama.Admin.Options;

// Bound sections: an options record of a library (e.g. Rama.Proxy's ForwardProxyOptions under Rama:Proxy) whose
// settable properties are its keys. Its properties are the declaration (name, type, default in the record's own
// documentation); keys that are also declared as options (with a command-line name) take that declaration's values.
public sealed partial class OptionsReader
{
    private static readonly OptionValue AnyDuration = OptionValue.Duration(TimeSpan.Zero, TimeSpan.FromDays(30));

    /// <summary>
    /// Binds the section <paramref name="key"/> onto a copy of <paramref name="defaults"/>: every key must be a settable
    /// property (string, bool, whole and decimal numbers, durations, enums, lists of strings, or a nested record of
    /// those); an unknown key or a bad value is a problem naming the key, the value and what is allowed. Every leaf of
    /// the result is recorded for <c>config show</c>.
    /// </summary>
    public T Section<T>(string key, T defaults) where T : class
    {
        var bound = (T)BindObject(Configuration.GetSection(key), defaults, typeof(T));
        ShowObject(key, bound);
        return bound;
    }

    private static readonly MethodInfo CloneMethod = typeof(object).GetMethod("MemberwiseClone", BindingFlags.Instance | BindingFlags.NonPublic)!;

    private static IEnumerable<PropertyInfo> Settable(Type type) =>
        type.GetProperties(BindingFlags.Instance | BindingFlags.Public)
            .Where(p => p.CanRead && p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0 && IsBindable(p.PropertyType));

    private static bool IsLeaf(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type == typeof(string) || type == typeof(bool) || type == typeof(int) || type == typeof(long) || type == typeof(double)
               || type == typeof(TimeSpan) || type.IsEnum;
    }

    private static bool IsStringList(Type type) =>
        type == typeof(string[]) || type == typeof(List<string>) || type == typeof(IReadOnlyList<string>) || type == typeof(IList<string>);

    private static bool IsBindable(Type type) =>
        IsLeaf(type) || IsStringList(type) || (type.IsClass && type != typeof(string) && !typeof(Delegate).IsAssignableFrom(type)
                                               && !typeof(IEnumerable).IsAssignableFrom(type) && type.GetConstructor(Type.EmptyTypes) is not null);

    private object BindObject(IConfigurationSection section, object? current, Type type)
    {
        // A shallow copy: nested defaults may be shared instances (e.g. a static Default), never mutated in place.
        var target = current is null ? Activator.CreateInstance(type)! : CloneMethod.Invoke(current, null)!;
        var properties = Settable(type).ToList();
        foreach (var child in section.GetChildren())
        {
            var property = properties.FirstOrDefault(p => p.Name.Equals(child.Key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                AddProblem($"{child.Path} is not a key: allowed under {section.Path} are {string.Join(", ", properties.Select(p => p.Name))}");
                continue;
            }

            var propertyType = property.PropertyType;
            if (IsLeaf(propertyType))
            {
                if (child.Value is null)
                {
                    AddProblem($"{child.Path} is a section, not a value");
                }
                else if (TryConvert(child.Path, child.Value, propertyType, out var value))
                {
                    property.SetValue(target, value);
                }
            }
            else if (IsStringList(propertyType))
            {
                List<string> items = child.GetChildren().Any()
                    ? [.. child.GetChildren().Select(c => c.Value ?? "")]
                    : child.Value is { Length: > 0 } one ? [one] : [];
                property.SetValue(target, propertyType == typeof(string[]) ? items.ToArray() : items);
            }
            else
            {
                property.SetValue(target, BindObject(child, property.GetValue(target), propertyType));
            }
        }

        return target;
    }

    private bool TryConvert(string path, string raw, Type type, out object? value)
    {
        value = null;
        var underlying = Nullable.GetUnderlyingType(type);
        if (underlying is not null && raw.Length == 0)
        {
            return true;
        }

        type = underlying ?? type;
        var declared = _declared.GetValueOrDefault(path);
        if (type == typeof(string) && declared is null)
        {
            value = raw;
            return true;
        }

        var check = declared?.Value ?? (type == typeof(bool) ? OptionValue.Boolean
            : type == typeof(int) ? OptionValue.Integer(int.MinValue, int.MaxValue)
            : type == typeof(long) ? OptionValue.Integer(long.MinValue, long.MaxValue)
            : type == typeof(TimeSpan) ? AnyDuration
            : type.IsEnum ? OptionValue.Choice([.. Enum.GetNames(type).Select(n => n.ToLowerInvariant())])
            : null);
        string? normalized;
        if (check is null)
        {
            // double
            if (double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
            {
                value = number;
                return true;
            }

            AddProblem($"{path} is '{raw}': allowed is a number (0.5, 10)");
            return false;
        }

        if (!check.TryNormalize(raw, out normalized))
        {
            AddProblem($"{declared?.Describe(path) ?? path} is '{declared?.Show(raw) ?? raw}': allowed {check.Allowed}");
            return false;
        }

        value = type == typeof(bool) ? bool.Parse(normalized)
            : type == typeof(int) ? int.Parse(normalized, CultureInfo.InvariantCulture)
            : type == typeof(long) ? long.Parse(normalized, CultureInfo.InvariantCulture)
            : type == typeof(TimeSpan) ? TimeSpan.Parse(normalized, CultureInfo.InvariantCulture)
            : type.IsEnum ? Enum.Parse(type, normalized, ignoreCase: true)
            : normalized;
        return true;
    }

    private void ShowObject(string path, object? value)
    {
        if (value is null)
        {
            Show(path, "(none)");
            return;
        }

        foreach (var property in Settable(value.GetType()))
        {
            var key = path + ":" + property.Name;
            var item = property.GetValue(value);
            if (IsLeaf(property.PropertyType))
            {
                var declared = _declared.GetValueOrDefault(key);
                var text = item switch
                {
                    null => "(none)",
                    TimeSpan t => t.ToString("c", CultureInfo.InvariantCulture),
                    bool b => b ? "true" : "false",
                    Enum e => e.ToString().ToLowerInvariant(),
                    IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                    _ => item.ToString() ?? "",
                };
                Show(key, declared is null || item is null ? text : declared.Show(text));
            }
            else if (IsStringList(property.PropertyType))
            {
                var items = ((IEnumerable<string>?)item ?? []).ToList();
                if (items.Count == 0)
                {
                    Show(key, "(none)");
                }

                for (var i = 0; i < items.Count; i++)
                {
                    Show(string.Create(CultureInfo.InvariantCulture, $"{key}:{i}"), items[i]);
                }
            }
            else
            {
                ShowObject(key, item);
            }
        }
    }
}
