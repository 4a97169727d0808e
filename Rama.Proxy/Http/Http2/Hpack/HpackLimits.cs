namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>
/// Limits of the HPACK decoder (RFC 7541 §7.3, RFC 9113 §10.5.1): what bounds the memory a peer can make
/// us spend on one header block. Every default names where it comes from. Call <see cref="Validate"/> at start-up.
/// </summary>
public sealed record HpackLimits
{
    /// <summary>
    /// The SETTINGS_HEADER_TABLE_SIZE we announce (RFC 9113 §6.5.2): the largest dynamic table the peer may
    /// make us hold, and the size the table starts at. Default 4096: the protocol's initial value, and
    /// Kestrel's <c>Http2Limits.HeaderTableSize</c>.
    /// </summary>
    public int HeaderTableSize { get; init; } = 4096;

    /// <summary>
    /// The SETTINGS_MAX_HEADER_LIST_SIZE we announce and enforce (RFC 9113 §6.5.2): the sum over the decoded
    /// fields of name + value + 32 octets. Above it: <see cref="HpackError.HeaderListTooLarge"/>, found before
    /// the field that crosses it is handed out, so an HPACK bomb (one table entry indexed thousands of times)
    /// costs at most this much. Default 32 KiB: Kestrel's <c>MaxRequestHeadersTotalSize</c>, which Kestrel also
    /// announces as SETTINGS_MAX_HEADER_LIST_SIZE, and our HTTP/1.1 <see cref="HttpLimits.MaxHeaderBytes"/>.
    /// </summary>
    public int MaxHeaderListSize { get; init; } = 32 * 1024;

    /// <summary>
    /// Longest string literal, both as encoded on the wire and once Huffman-decoded. Above it:
    /// <see cref="HpackError.StringTooLong"/>, found from the length prefix before any byte is copied.
    /// Default 16 KiB: Kestrel's <c>Http2Limits.MaxRequestHeaderFieldSize</c>.
    /// </summary>
    public int MaxStringLength { get; init; } = 16 * 1024;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad option.</summary>
    public void Validate()
    {
        if (HeaderTableSize < 0)
        {
            throw new ArgumentException($"{nameof(HpackLimits)}.{nameof(HeaderTableSize)} must be 0 or more, was {HeaderTableSize}", nameof(HeaderTableSize));
        }

        HttpLimits.Positive(MaxHeaderListSize, nameof(MaxHeaderListSize));
        HttpLimits.Positive(MaxStringLength, nameof(MaxStringLength));
    }
}
