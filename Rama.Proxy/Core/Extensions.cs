using System.Diagnostics.CodeAnalysis;

namespace Rama.Proxy.Core;

/// <summary>
/// A typed bag of per-connection / per-request values (Kestrel's features, rama's extensions):
/// one value per type. Not thread-safe: a connection's pipeline owns it.
/// </summary>
public sealed class Extensions
{
    // A few values per bag (a request's: its HTTP/2 stream, fingerprints, routing): a small array scanned by type beats a
    // dictionary's hashing and costs one allocation instead of three.
    private Entry[]? _values;
    private int _count;
    private readonly Extensions? _parent;

    public Extensions()
    {
    }

    /// <summary>A child bag: reads fall back to the parent (a request's bag over its connection's).</summary>
    public Extensions(Extensions parent) => _parent = parent;

    public void Set<T>(T value) where T : notnull
    {
        var index = IndexOf(typeof(T));
        if (index >= 0)
        {
            _values![index].Value = value;
            return;
        }

        if (_values is null)
        {
            _values = new Entry[4];
        }
        else if (_count == _values.Length)
        {
            Array.Resize(ref _values, _count * 2);
        }

        _values[_count++] = new Entry(typeof(T), value);
    }

    public bool TryGet<T>([NotNullWhen(true)] out T? value) where T : notnull
    {
        var index = IndexOf(typeof(T));
        if (index >= 0)
        {
            value = (T)_values![index].Value;
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

    public bool Remove<T>() where T : notnull
    {
        var index = IndexOf(typeof(T));
        if (index < 0)
        {
            return false;
        }

        _count--;
        Array.Copy(_values!, index + 1, _values!, index, _count - index);
        _values![_count] = default;
        return true;
    }

    private int IndexOf(Type type)
    {
        for (var i = 0; i < _count; i++)
        {
            if (ReferenceEquals(_values![i].Type, type))
            {
                return i;
            }
        }

        return -1;
    }

    private struct Entry(Type type, object value)
    {
        public Type Type = type;
        public object Value = value;
    }
}
