using System.Text;
using Rama.Proxy.Http.Http2.Hpack;

namespace Rama.Proxy.Http.Http2;

/// <summary>
/// Receives one decoded header block (a request or response head, or trailers) and checks it against RFC 9113
/// §8.2 and §8.3: pseudo-headers first, known, not repeated, of the right kind; lowercase names; no
/// connection-specific fields; no CR, LF or NUL in values. A violation makes the message malformed
/// (<see cref="Malformed"/>: a stream error PROTOCOL_ERROR, §8.1.1); decoding still runs to the end of the block so the
/// HPACK table stays in step.
/// </summary>
internal sealed class Http2HeaderCollector(bool request, bool trailers) : IHpackHeaderHandler
{
    private bool _regularSeen;
    // The pseudo-headers' letters in order, one byte each (at most five distinct: a repeat is malformed before it is added).
    private ulong _pseudoOrder;
    private int _pseudoCount;

    public string? Method { get; private set; }
    public string? Scheme { get; private set; }
    public string? Authority { get; private set; }
    public string? Path { get; private set; }

    /// <summary>RFC 8441 §4: the :protocol of an extended CONNECT.</summary>
    public string? Protocol { get; private set; }

    public int Status { get; private set; } = -1;

    public HttpHeaders Headers { get; } = new();

    /// <summary>content-length when present (§8.1.1: DATA must add up to it), else -1.</summary>
    public long ContentLength { get; private set; } = -1;

    /// <summary>The first letters of the pseudo-headers in order (m, a, s, p; t for :protocol; the Akamai PS field).</summary>
    public string PseudoHeaderOrder => string.Create(_pseudoCount, _pseudoOrder, static (chars, order) =>
    {
        for (var i = 0; i < chars.Length; i++)
        {
            chars[i] = (char)(byte)(order >> (8 * i));
        }
    });

    /// <summary>Why the message is malformed, or null.</summary>
    public string? Malformed { get; private set; }

    private void AddPseudo(char letter)
    {
        if (_pseudoCount < 8)
        {
            _pseudoOrder |= (ulong)(byte)letter << (8 * _pseudoCount++);
        }
    }

    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed)
    {
        if (Malformed is not null)
        {
            return;
        }

        if (name.IsEmpty)
        {
            Malformed = "empty field name";
            return;
        }

        if (value.IndexOfAny((byte)'\r', (byte)'\n', (byte)0) >= 0)
        {
            Malformed = "CR, LF or NUL in a field value"; // §8.2.1
            return;
        }

        if (name[0] == (byte)':')
        {
            OnPseudoHeader(name, value);
            return;
        }

        _regularSeen = true;
        foreach (var b in name)
        {
            // §8.2.1: lowercase token characters only.
            if (b is (>= (byte)'A' and <= (byte)'Z') or <= 0x20 or >= 0x7f or (byte)':')
            {
                Malformed = "field name with an uppercase or invalid character";
                return;
            }
        }

        // §8.2.2: connection-specific fields; TE only as "trailers".
        if (name.SequenceEqual("connection"u8) || name.SequenceEqual("proxy-connection"u8) || name.SequenceEqual("keep-alive"u8)
            || name.SequenceEqual("transfer-encoding"u8) || name.SequenceEqual("upgrade"u8))
        {
            Malformed = "connection-specific field " + Encoding.ASCII.GetString(name);
            return;
        }

        if (name.SequenceEqual("te"u8) && !value.SequenceEqual("trailers"u8))
        {
            Malformed = "te other than trailers";
            return;
        }

        if (name.SequenceEqual("content-length"u8) && !trailers)
        {
            if (!System.Buffers.Text.Utf8Parser.TryParse(value, out long length, out var consumed) || consumed != value.Length || length < 0
                || (ContentLength >= 0 && ContentLength != length))
            {
                Malformed = "invalid content-length";
                return;
            }

            ContentLength = length;
        }

        Headers.Add(name.ToArray(), value.ToArray());
    }

    private void OnPseudoHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        // §8.3: pseudo-headers only in heads, before every regular field.
        if (trailers || _regularSeen)
        {
            Malformed = trailers ? "pseudo-header in trailers" : "pseudo-header after a regular field";
            return;
        }

        string? Set(string? current, char letter, ReadOnlySpan<byte> v)
        {
            if (current is not null)
            {
                Malformed = "repeated pseudo-header";
                return current;
            }

            AddPseudo(letter);
            return Encoding.Latin1.GetString(v);
        }

        if (request)
        {
            if (name.SequenceEqual(":method"u8))
            {
                if (Method is not null)
                {
                    Malformed = "repeated pseudo-header";
                    return;
                }

                AddPseudo('m');
                Method = HttpMethods.Intern(value);
            }
            else if (name.SequenceEqual(":scheme"u8))
            {
                Scheme = Set(Scheme, 's', value);
            }
            else if (name.SequenceEqual(":authority"u8))
            {
                Authority = Set(Authority, 'a', value);
            }
            else if (name.SequenceEqual(":path"u8))
            {
                Path = Set(Path, 'p', value);
            }
            else if (name.SequenceEqual(":protocol"u8))
            {
                Protocol = Set(Protocol, 't', value);
            }
            else
            {
                Malformed = "unknown or response pseudo-header in a request";
            }

            return;
        }

        if (!name.SequenceEqual(":status"u8) || Status >= 0)
        {
            Malformed = "unknown, request or repeated pseudo-header in a response";
            return;
        }

        AddPseudo('s');
        if (value.Length != 3 || !System.Buffers.Text.Utf8Parser.TryParse(value, out int status, out _) || status < 100)
        {
            Malformed = "invalid :status";
            return;
        }

        Status = status;
    }

    /// <summary>
    /// The checks that need the whole block (§8.3.1, §8.5, RFC 8441 §4). Returns null when the head is well formed,
    /// else the reason. <paramref name="connectProtocolEnabled"/>: we announced SETTINGS_ENABLE_CONNECT_PROTOCOL.
    /// </summary>
    public string? Complete(bool connectProtocolEnabled)
    {
        if (Malformed is not null || trailers)
        {
            return Malformed;
        }

        if (!request)
        {
            return Status < 0 ? Malformed = "missing :status" : null;
        }

        if (Method is null)
        {
            return Malformed = "missing :method";
        }

        if (Method == HttpMethods.Connect && Protocol is null)
        {
            // §8.5: CONNECT has :authority only.
            return Scheme is not null || Path is not null || string.IsNullOrEmpty(Authority) ? Malformed = "CONNECT with :scheme or :path, or without :authority" : null;
        }

        if (Protocol is not null && (Method != HttpMethods.Connect || !connectProtocolEnabled))
        {
            return Malformed = "unexpected :protocol"; // RFC 8441 §4
        }

        if (string.IsNullOrEmpty(Scheme) || string.IsNullOrEmpty(Path))
        {
            return Malformed = "missing :scheme or :path"; // §8.3.1
        }

        return null;
    }
}
