using System.Diagnostics.CodeAnalysis;

namespace Rama.Proxy.Core;

/// <summary>
/// A typed bag of per-connection / per-request values (Kestrel's features, rama's extensions):
/// one value per type. Not thread-safe: a connection's pipeline owns it.
/// </summary>
public sealed class Extensions
{
    private Dictionary<Type, object>? _values;
    private readonly Extensions? _parent;

    public Extensions()
    {
    }

    /// <summary>A child bag: reads fall back to the parent (a request's bag over its connection's).</summary>
    public Extensions(Extensions parent) => _parent = parent;

    public void Set<T>(T value) where T : notnull => (_values ??= [])[typeof(T)] = value;

    public bool TryGet<T>([NotNullWhen(true)] out T? value) where T : notnull
    {
        if (_values is not null && _values.TryGetValue(typeof(T), out var boxed))
        {
            value = (T)boxed;
            return true;
        }

        if (_parent is not null)
        {
            return _parent.TryGet(out value);
        }

        value = default;
        return false;
    }

    public T? Get<T>() where T : class => TryGet<T>(out var value) ? value : null;

    public bool Contains<T>() where T : notnull => TryGet<T>(out _);

    public bool Remove<T>() where T : notnull => _values is not null && _values.Remove(typeof(T));
}
