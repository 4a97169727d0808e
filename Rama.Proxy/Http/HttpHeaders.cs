using System.Collections;
using System.Text;

namespace Rama.Proxy.Http;

/// <summary>One field line as received: the original name bytes (case kept) and the value without surrounding OWS.</summary>
public readonly record struct HttpHeaderField(ReadOnlyMemory<byte> Name, ReadOnlyMemory<byte> Value)
{
    /// <summary>The name as text (allocates; for logs and tests, not the hot path).</summary>
    public string NameText => Encoding.Latin1.GetString(Name.Span);

    /// <summary>The value as text (Latin-1, RFC 9110 §5.5 obs-text kept byte for byte; allocates).</summary>
    public string ValueText => Encoding.Latin1.GetString(Value.Span);

    public bool NameIs(ReadOnlySpan<byte> name) => System.Text.Ascii.EqualsIgnoreCase(Name.Span, name);

    public override string ToString() => NameText + ": " + ValueText;
}

/// <summary>
/// The header fields of a message in their original order and case (RFC 9110 §5.3: order of
/// same-named fields is significant). Names and values are raw bytes, usually slices of one buffer
/// holding the head; lookups compare ASCII case-insensitively without allocating.
/// </summary>
public sealed class HttpHeaders : IReadOnlyList<HttpHeaderField>
{
    private HttpHeaderField[] _fields;
    private int _count;

    public HttpHeaders(int capacity = 8) => _fields = capacity == 0 ? [] : new HttpHeaderField[capacity];

    public int Count => _count;

    public HttpHeaderField this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)_count, nameof(index));
            return _fields[index];
        }
    }

    public void Add(ReadOnlyMemory<byte> name, ReadOnlyMemory<byte> value) => Insert(_count, name, value);

    /// <summary>Removes every field, keeping the capacity (a connection's list reused for its next head).</summary>
    internal void Clear()
    {
        Array.Clear(_fields, 0, _count); // drop the slices of the buffer the last head was parsed in
        _count = 0;
    }

    /// <summary>Adds a field from text (Latin-1 bytes; the caller supplies a valid token and value).</summary>
    public void Add(string name, string value) => Add(Encoding.Latin1.GetBytes(name), Encoding.Latin1.GetBytes(value));

    public void Insert(int index, ReadOnlyMemory<byte> name, ReadOnlyMemory<byte> value)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)index, (uint)_count, nameof(index));
        if (_count == _fields.Length)
        {
            Array.Resize(ref _fields, Math.Max(8, _count * 2));
        }

        Array.Copy(_fields, index, _fields, index + 1, _count - index);
        _fields[index] = new HttpHeaderField(name, value);
        _count++;
    }

    /// <summary>Replaces the value of the field at <paramref name="index"/>, keeping its name and position.</summary>
    public void SetValue(int index, ReadOnlyMemory<byte> value)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)_count, nameof(index));
        _fields[index] = _fields[index] with { Value = value };
    }

    public void RemoveAt(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)_count, nameof(index));
        _count--;
        Array.Copy(_fields, index + 1, _fields, index, _count - index);
        _fields[_count] = default;
    }

    /// <summary>Removes every field named <paramref name="name"/>; returns how many.</summary>
    public int Remove(ReadOnlySpan<byte> name)
    {
        var kept = 0;
        for (var i = 0; i < _count; i++)
        {
            if (!_fields[i].NameIs(name))
            {
                _fields[kept++] = _fields[i];
            }
        }

        var removed = _count - kept;
        Array.Clear(_fields, kept, removed);
        _count = kept;
        return removed;
    }

    /// <summary>Index of the first field named <paramref name="name"/> at or after <paramref name="start"/>, or -1.</summary>
    public int IndexOf(ReadOnlySpan<byte> name, int start = 0)
    {
        for (var i = start; i < _count; i++)
        {
            if (_fields[i].NameIs(name))
            {
                return i;
            }
        }

        return -1;
    }

    public bool Contains(ReadOnlySpan<byte> name) => IndexOf(name) >= 0;

    /// <summary>The value of the first field named <paramref name="name"/>.</summary>
    public bool TryGetValue(ReadOnlySpan<byte> name, out ReadOnlyMemory<byte> value)
    {
        var i = IndexOf(name);
        value = i >= 0 ? _fields[i].Value : default;
        return i >= 0;
    }

    /// <summary>The first value as text, or null (allocates; off the hot path).</summary>
    public string? GetText(string name)
    {
        Span<byte> bytes = stackalloc byte[Math.Min(name.Length, 256)];
        if (name.Length > bytes.Length)
        {
            return null;
        }

        var written = Encoding.Latin1.GetBytes(name, bytes);
        return TryGetValue(bytes[..written], out var value) ? Encoding.Latin1.GetString(value.Span) : null;
    }

    /// <summary>
    /// True when any field named <paramref name="name"/> has <paramref name="token"/> as a member of
    /// its comma-separated list (RFC 9110 §5.6.1), case-insensitively: <c>Connection: keep-alive, Upgrade</c>.
    /// </summary>
    public bool ContainsToken(ReadOnlySpan<byte> name, ReadOnlySpan<byte> token)
    {
        for (var i = IndexOf(name); i >= 0; i = IndexOf(name, i + 1))
        {
            var list = new HttpListEnumerator(_fields[i].Value.Span);
            while (list.MoveNext())
            {
                if (System.Text.Ascii.EqualsIgnoreCase(list.Current, token))
                {
                    return true;
                }
            }
        }

        return false;
    }

    public Enumerator GetEnumerator() => new(this);

    IEnumerator<HttpHeaderField> IEnumerable<HttpHeaderField>.GetEnumerator()
    {
        for (var i = 0; i < _count; i++)
        {
            yield return _fields[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => ((IEnumerable<HttpHeaderField>)this).GetEnumerator();

    public override string ToString() => string.Join("\r\n", (IEnumerable<HttpHeaderField>)this);

    /// <summary>Allocation-free enumerator.</summary>
    public struct Enumerator(HttpHeaders headers)
    {
        private int _index = -1;

        public readonly HttpHeaderField Current => headers._fields[_index];

        public bool MoveNext() => ++_index < headers._count;
    }
}

/// <summary>Walks the members of a comma-separated field value (RFC 9110 §5.6.1), skipping empty members and OWS.</summary>
public ref struct HttpListEnumerator(ReadOnlySpan<byte> value)
{
    private ReadOnlySpan<byte> _rest = value;

    public ReadOnlySpan<byte> Current { get; private set; }

    public bool MoveNext()
    {
        while (!_rest.IsEmpty)
        {
            var comma = _rest.IndexOf((byte)',');
            var member = comma < 0 ? _rest : _rest[..comma];
            _rest = comma < 0 ? default : _rest[(comma + 1)..];
            member = member.Trim(" \t"u8);
            if (!member.IsEmpty)
            {
                Current = member;
                return true;
            }
        }

        return false;
    }
}

/// <summary>Field names the codec and the proxy look at (RFC 9110/9112), as bytes.</summary>
public static class HeaderNames
{
    public static ReadOnlySpan<byte> Host => "Host"u8;
    public static ReadOnlySpan<byte> ContentLength => "Content-Length"u8;
    public static ReadOnlySpan<byte> TransferEncoding => "Transfer-Encoding"u8;
    public static ReadOnlySpan<byte> Connection => "Connection"u8;
    public static ReadOnlySpan<byte> KeepAlive => "Keep-Alive"u8;
    public static ReadOnlySpan<byte> ProxyConnection => "Proxy-Connection"u8;
    public static ReadOnlySpan<byte> ProxyAuthorization => "Proxy-Authorization"u8;
    public static ReadOnlySpan<byte> ProxyAuthenticate => "Proxy-Authenticate"u8;
    public static ReadOnlySpan<byte> TE => "TE"u8;
    public static ReadOnlySpan<byte> Trailer => "Trailer"u8;
    public static ReadOnlySpan<byte> Upgrade => "Upgrade"u8;
    public static ReadOnlySpan<byte> Expect => "Expect"u8;
    public static ReadOnlySpan<byte> Via => "Via"u8;
}
