using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Rama.Proxy.Http.Http2.Hpack;

/// <summary>
/// Why a header block was refused. RFC 9113 §4.3: a header block that cannot be decompressed is a
/// connection error of type COMPRESSION_ERROR (0x9), because the decoder's dynamic table can no longer
/// be trusted to match the peer's. The one exception is <see cref="HeaderListTooLarge"/>: the block was
/// decoded correctly up to a limit of ours, so the HTTP/2 layer may answer 431 on that stream
/// (RFC 9113 §10.5.1, RFC 6585 §5) instead, provided it keeps the table in step (see <see cref="HpackErrors.IsConnectionError"/>).
/// </summary>
public enum HpackError
{
    /// <summary>RFC 7541 §2.3.3: index 0, or an index past the static and dynamic tables. COMPRESSION_ERROR.</summary>
    IndexOutOfRange,
    /// <summary>RFC 7541 §5.1: an integer above 2^31-1 or longer than 5 continuation octets. COMPRESSION_ERROR.</summary>
    IntegerOverflow,
    /// <summary>RFC 7541 §5.2: EOS inside a Huffman string, padding longer than 7 bits, or padding not all ones. COMPRESSION_ERROR.</summary>
    InvalidHuffman,
    /// <summary>RFC 7541 §4.2, §6.3: a dynamic table size update above the SETTINGS_HEADER_TABLE_SIZE we announced. COMPRESSION_ERROR.</summary>
    TableSizeUpdateTooLarge,
    /// <summary>RFC 7541 §4.2: a dynamic table size update after the first field of a block. COMPRESSION_ERROR.</summary>
    TableSizeUpdateNotAtStart,
    /// <summary>
    /// RFC 7541 §4.2, RFC 9113 §4.3.1: we lowered SETTINGS_HEADER_TABLE_SIZE below the table's size and the
    /// next block did not start with a size update within the new limit. COMPRESSION_ERROR.
    /// </summary>
    TableSizeUpdateMissing,
    /// <summary>
    /// RFC 9113 §6.5.2: the decoded fields (name + value + 32 each) exceed <see cref="HpackLimits.MaxHeaderListSize"/>
    /// (the HPACK bomb). 431 on the stream, or COMPRESSION_ERROR when the block could not be decoded to its end.
    /// </summary>
    HeaderListTooLarge,
    /// <summary>A string literal (encoded or decoded) longer than <see cref="HpackLimits.MaxStringLength"/>. COMPRESSION_ERROR.</summary>
    StringTooLong,
    /// <summary>The block ends inside a representation (an integer, a string, a name without its value). COMPRESSION_ERROR.</summary>
    Truncated,
}

/// <summary>A header block that cannot be decoded: the one exception type of the HPACK codec.</summary>
public sealed class HpackDecodingException(HpackError error, string message) : Exception(message)
{
    public HpackError Error { get; } = error;

    /// <summary>True when the HTTP/2 layer must close the connection with COMPRESSION_ERROR (RFC 9113 §4.3).</summary>
    public bool IsConnectionError => HpackErrors.IsConnectionError(Error);
}

/// <summary>Maps <see cref="HpackError"/> to the HTTP/2 answer and throws it without inflating callers (a throw helper).</summary>
public static class HpackErrors
{
    /// <summary>HTTP/2 COMPRESSION_ERROR (RFC 9113 §7).</summary>
    public const int CompressionError = 0x9;

    /// <summary>
    /// Every reason is a connection error COMPRESSION_ERROR (RFC 9113 §4.3) except
    /// <see cref="HpackError.HeaderListTooLarge"/>, which a server may answer with 431 on the stream
    /// (RFC 9113 §10.5.1) — only if it still decodes the rest of the block to keep its table in step.
    /// </summary>
    public static bool IsConnectionError(HpackError error) => error != HpackError.HeaderListTooLarge;

    /// <summary>The HTTP status a server answers on the stream, or null when the answer is closing the connection with COMPRESSION_ERROR.</summary>
    public static int? StatusCode(HpackError error) => error == HpackError.HeaderListTooLarge ? 431 : null;

    [DoesNotReturn]
    [StackTraceHidden]
    internal static void Throw(HpackError error) => throw new HpackDecodingException(error, Describe(error));

    [DoesNotReturn]
    [StackTraceHidden]
    internal static T Throw<T>(HpackError error) => throw new HpackDecodingException(error, Describe(error));

    /// <summary>A short text for logs and GOAWAY debug data.</summary>
    public static string Describe(HpackError error) => error switch
    {
        HpackError.IndexOutOfRange => "HPACK index out of range",
        HpackError.IntegerOverflow => "HPACK integer overflow",
        HpackError.InvalidHuffman => "invalid HPACK Huffman string",
        HpackError.TableSizeUpdateTooLarge => "HPACK table size update above SETTINGS_HEADER_TABLE_SIZE",
        HpackError.TableSizeUpdateNotAtStart => "HPACK table size update after a header field",
        HpackError.TableSizeUpdateMissing => "HPACK table size update required after SETTINGS_HEADER_TABLE_SIZE was lowered",
        HpackError.HeaderListTooLarge => "header list too large",
        HpackError.StringTooLong => "HPACK string literal too long",
        HpackError.Truncated => "truncated HPACK header block",
        _ => error.ToString(),
    };
}
