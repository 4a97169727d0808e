using System.Text;

namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>How the encoder represents a field (RFC 7541 §6.2); <see cref="Auto"/> lets it choose.</summary>
public enum HpackIndexing
{
    /// <summary>
    /// The encoder's choice: a reference when the table holds the field, never-indexed for sensitive fields
    /// (<see cref="HpackEncoderOptions.NeverIndexSensitiveFields"/>), else incremental indexing when the
    /// entry takes at most 3/4 of the table, else without indexing.
    /// </summary>
    Auto,
    /// <summary>RFC 7541 §6.2.1: literal added to the dynamic table (or a reference when the table already holds it).</summary>
    Incremental,
    /// <summary>RFC 7541 §6.2.2: literal not added to the table (or a reference when the table already holds it).</summary>
    WithoutIndexing,
    /// <summary>
    /// RFC 7541 §6.2.3: literal never added to a table, and every intermediary must re-encode it the same way.
    /// Never replaced by a reference. The decoder reports it so that a proxy keeps it.
    /// </summary>
    NeverIndexed,
}

/// <summary>
/// One header field of an HTTP/2 header list: raw name bytes (lowercase, RFC 9113 §8.2.1), raw value
/// bytes, and how it should be (or was, for <see cref="HpackIndexing.NeverIndexed"/>) represented.
/// </summary>
public readonly record struct HpackHeaderField(ReadOnlyMemory<byte> Name, ReadOnlyMemory<byte> Value, HpackIndexing Indexing = HpackIndexing.Auto)
{
    /// <summary>The name as text (allocates; for logs and tests).</summary>
    public string NameText => Encoding.Latin1.GetString(Name.Span);

    /// <summary>The value as text (Latin-1, byte for byte; allocates).</summary>
    public string ValueText => Encoding.Latin1.GetString(Value.Span);

    /// <summary>RFC 9113 §6.5.2 / RFC 7541 §4.1: name + value + 32 octets.</summary>
    public int Size => Name.Length + Value.Length + HpackDynamicTable.EntryOverhead;

    /// <summary>A field from text (Latin-1; allocates; for tests and configuration).</summary>
    public static HpackHeaderField From(string name, string value, HpackIndexing indexing = HpackIndexing.Auto) =>
        new(Encoding.Latin1.GetBytes(name), Encoding.Latin1.GetBytes(value), indexing);

    public override string ToString() => Indexing == HpackIndexing.NeverIndexed ? $"{NameText}: {ValueText} (never indexed)" : $"{NameText}: {ValueText}";
}

/// <summary>Receives the fields of a header block in order, as the decoder reads them.</summary>
public interface IHpackHeaderHandler
{
    /// <summary>
    /// One field. The spans are valid only during the call (they point into the block, the decoder's
    /// buffers or its table); copy what must outlive it. <paramref name="neverIndexed"/>: the field came as
    /// a never-indexed literal (RFC 7541 §6.2.3) and must be re-encoded as one.
    /// </summary>
    void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed);
}

/// <summary>Collects decoded fields as copies (one array per name and value; for tests and simple callers).</summary>
public sealed class HpackHeaderList : IHpackHeaderHandler
{
    public List<HpackHeaderField> Fields { get; } = [];

    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed) =>
        Fields.Add(new HpackHeaderField(name.ToArray(), value.ToArray(), neverIndexed ? HpackIndexing.NeverIndexed : HpackIndexing.Auto));
}
